"""Output folders: checked before any work, and cleared of what interrupted runs left.

A run that fails after minutes of work because ``--out`` is a file, lies under a file,
or cannot be written wastes the user's time and leaves a traceback. :func:`check_output_folder`
says so in one line before anything is read. :func:`remove_leftovers` deletes the hidden
temporary files and folders (``.*.tmp``, ``.cells-*``) that a killed run leaves in an
output folder; the writers (:mod:`napari_gbm.io`) remove their own on any error they
live through, but not on SIGKILL or a worker process torn down mid-write.

A finished analysis folder is recognised by :func:`is_complete` (every file of
:data:`OUTPUT_FILES`, ``summary.json`` last), and :func:`find_analysed_slide` finds the slide
it was made from, wherever it has moved.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from napari_gbm.io import file_fingerprint

__all__ = [
    "LEFTOVER_PATTERNS",
    "OPTIONAL_OUTPUT_FILES",
    "OUTPUT_FILES",
    "check_output_folder",
    "find_analysed_slide",
    "is_complete",
    "remove_leftovers",
]

#: hidden temporary names of the atomic writers (io.atomic_path) and the cell streamer
LEFTOVER_PATTERNS = (".*.tmp", ".cells-*")
#: files an analysis writes for some slides only (vessels: H&E, CD31, CD34); a re-run
#: removes an earlier run's first, so they never outlive the analysis they came from
OPTIONAL_OUTPUT_FILES = ("vessels.parquet", "mvp_foci.parquet")
#: files of a complete analysis folder; summary.json is written last and marks completion
OUTPUT_FILES = (
    "cells.parquet",
    "tiles.parquet",
    "maps.npz",
    "overview.png",
    "tissue_mask.png",
    "summary.json",
)


def check_output_folder(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """Make sure `path` is, or can become, a writable folder.

    It is not created here: a bad slide found next leaves no empty folder behind. A missing
    folder is checked by writing a probe file in its nearest existing parent.

    Parameters
    ----------
    path : str or os.PathLike
        The output folder.
    what : str, default "--out"
        The option or field the path came from, for the message.

    Returns
    -------
    pathlib.Path
        `path`.

    Raises
    ------
    ValueError
        Naming `what`, the path and the reason: it is a file, a part of it is a file, or it
        cannot be created or written (permissions, a read-only file system).
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{what} {out} is a file, not a folder; choose a folder")
    target = out
    if not out.exists():  # nothing is created here: the nearest existing parent must do
        target = next((p for p in out.parents if p.exists()), Path("."))
        if not target.is_dir():
            raise ValueError(f"{what} {out} lies under {target}, which is a file; choose a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", suffix=".tmp", dir=target)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ValueError(
            f"{what} {out} cannot be written ({reason}); choose a folder you can write to"
        ) from None
    return out


def remove_leftovers(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files and folders of interrupted runs in `folder`, and the
    optional outputs of an earlier run (:data:`OPTIONAL_OUTPUT_FILES`).

    Only `folder` itself is searched, not its subfolders; names matching
    :data:`LEFTOVER_PATTERNS` or :data:`OPTIONAL_OUTPUT_FILES` are removed, and ones that
    cannot be (in use, gone) skipped.

    Parameters
    ----------
    folder : str or os.PathLike
        An output folder; a missing one is fine.

    Returns
    -------
    list of pathlib.Path
        What was removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for pattern in (*LEFTOVER_PATTERNS, *OPTIONAL_OUTPUT_FILES):
        for p in folder.glob(pattern):
            try:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
                removed.append(p)
            except OSError:
                continue  # another process's file in use, or gone already
    return removed


def find_analysed_slide(folder: str | Path, summary: dict[str, Any]) -> Path | None:
    """The slide an analysis folder was made from, wherever it is now.

    Candidates, in order: the recorded absolute path, the path recorded relative to the
    folder (slide and results moved together), a file of the same name beside the folder,
    then inside it. A candidate counts only if its size is the recorded one.

    Parameters
    ----------
    folder : str or pathlib.Path
        The analysis folder.
    summary : dict
        Its ``summary.json`` content (the ``input`` record is read).

    Returns
    -------
    pathlib.Path or None
        The resolved slide path; None when no candidate fits.
    """
    folder = Path(folder)
    rec = summary.get("input", {})
    name = Path(rec.get("path", "")).name
    candidates = [Path(rec["path"])] if rec.get("path") else []
    if rec.get("path_from_output"):
        candidates.append(folder / rec["path_from_output"])
    if name:
        candidates += [folder.parent / name, folder / name]
    for cand in candidates:
        try:
            if cand.is_file() and ("size" not in rec or cand.stat().st_size == rec["size"]):
                return cand.resolve()
        except OSError:
            continue
    return None


def is_complete(out: str | Path, source: str | Path | None = None) -> bool:
    """Whether `out` holds a complete analysis.

    Parameters
    ----------
    out : str or pathlib.Path
        The analysis folder: complete when every file of :data:`OUTPUT_FILES` is there and
        ``summary.json`` reads as JSON.
    source : str or pathlib.Path, optional
        The slide; when given, it must also have the same size and checksum as when it was
        analysed (an unreadable slide gives False).

    Returns
    -------
    bool
        True for a complete analysis (of `source`, when given).
    """
    out = Path(out)
    if not all((out / name).is_file() for name in OUTPUT_FILES):
        return False
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(summary, dict):
        return False
    if source is None:
        return True
    recorded = summary.get("input", {})
    try:
        now = file_fingerprint(source)
    except OSError:
        return False
    return bool(recorded.get("digest") == now["digest"] and recorded.get("size") == now["size"])
