"""Atomic output files: a reader never sees a half-written table.

Every writer here writes to a hidden temporary file in the destination folder, flushes
it to disk, then renames it over the destination (``os.replace`` is atomic on POSIX and
Windows). An interrupted run leaves at most a ``.*.tmp`` file, never a truncated output
with the final name.

Every CSV and TSV the project writes goes through :func:`write_csv`, which neutralises
spreadsheet formulas (OWASP "CSV injection"): a text cell (or column name) starting with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading apostrophe, so a
slide named ``=HYPERLINK(...)`` reads as text in Excel or LibreOffice instead of running.
Numbers are never touched: numeric columns are written as they are, and a text cell that
is a plain number (``-1.5``) is not a formula. :func:`read_csv` removes those apostrophes
again, giving back the original text (the escaping is one-to-one: a text that already
starts with apostrophes before a formula character gets one more).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from PIL import Image

__all__ = [
    "atomic_path",
    "file_fingerprint",
    "metadata_json",
    "neutralise_formulas",
    "read_csv",
    "read_parquet_metadata",
    "restore_formulas",
    "write_csv",
    "write_json",
    "write_parquet",
    "write_png",
]

METADATA_KEY = b"napari_gbm"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Context manager giving a temporary path beside `path` that replaces it on success.

    The temporary file (``.<name>.*.tmp``, created empty) is fsynced and renamed over `path`
    when the block ends without error, with the usual umask permissions; on any error it is
    removed and the error re-raised. Missing parent folders are created.

    Parameters
    ----------
    path : str or os.PathLike
        The final destination.

    Yields
    ------
    pathlib.Path
        The temporary file to write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp makes files private (0600); outputs get the usual umask permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_parquet(
    df: pd.DataFrame, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None
) -> Path:
    """Write `df` as Parquet atomically.

    Parameters
    ----------
    df : pandas.DataFrame
        The table; its index is not written.
    path : str or os.PathLike
        Destination file.
    metadata : dict, optional
        JSON-able; stored in the file's schema metadata under ``napari_gbm`` (read back
        with :func:`read_parquet_metadata`). None stores none.

    Returns
    -------
    pathlib.Path
        `path`.
    """
    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata is not None:
        meta = dict(table.schema.metadata or {})
        meta[METADATA_KEY] = metadata_json(metadata)
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def metadata_json(metadata: dict[str, Any]) -> bytes:
    """`metadata` encoded for a Parquet schema.

    Parameters
    ----------
    metadata : dict
        JSON-able, numpy scalars and arrays and paths allowed (converted).

    Returns
    -------
    bytes
        UTF-8 JSON.

    Raises
    ------
    TypeError
        If a value is not JSON serialisable.
    """
    return json.dumps(metadata, default=_json_default).encode()


def read_parquet_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``napari_gbm`` metadata stored by :func:`write_parquet`.

    Parameters
    ----------
    path : str or os.PathLike
        A Parquet file (only its schema is read).

    Returns
    -------
    dict
        The metadata; empty if there is none.
    """
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(METADATA_KEY)
    return json.loads(raw) if raw else {}


#: first characters that make a spreadsheet read a cell as a formula (OWASP)
FORMULA_CHARACTERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _is_formula(text: str) -> bool:
    """Would a spreadsheet run ``text`` (after any apostrophes we added) as a formula?"""
    core = text.lstrip("'")
    return core[:1] in FORMULA_CHARACTERS and not _PLAIN_NUMBER.fullmatch(core)


def _escape(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and _is_formula(value) else value


def _unescape(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("'") and _is_formula(value[1:]):
        return value[1:]
    return value


def _map_text(df: pd.DataFrame, fn: Any) -> pd.DataFrame:
    """``df`` with ``fn`` applied to every text cell and column name (numeric, boolean
    and date columns are skipped); ``df`` itself when nothing changes."""
    out = df
    names = [fn(c) for c in df.columns]
    if names != list(df.columns):
        out = df.copy()
        out.columns = pd.Index(names)
    for j in range(df.shape[1]):
        s = df.iloc[:, j]
        if (
            pd.api.types.is_numeric_dtype(s.dtype)
            or pd.api.types.is_bool_dtype(s.dtype)
            or pd.api.types.is_datetime64_any_dtype(s.dtype)
            or pd.api.types.is_timedelta64_dtype(s.dtype)
        ):
            continue
        if isinstance(s.dtype, pd.CategoricalDtype):
            cats = [fn(v) for v in s.cat.categories]
            if cats != list(s.cat.categories):
                out = df.copy() if out is df else out
                out.isetitem(j, s.cat.rename_categories(cats))
            continue
        try:
            uniques = pd.unique(s.dropna())
        except TypeError:  # unhashable cells (lists): one at a time
            uniques = s.dropna().to_numpy()
        mapping = {v: fn(v) for v in uniques if isinstance(v, str) and fn(v) != v}
        if mapping:
            out = df.copy() if out is df else out
            out.isetitem(j, s.where(~s.isin(list(mapping)), s.map(mapping)))
    return out


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Escape the text that a spreadsheet would run as a formula (see the module docstring).

    Parameters
    ----------
    df : pandas.DataFrame
        Any table.

    Returns
    -------
    pandas.DataFrame
        `df` with every text cell, category and column name starting with ``=``, ``+``,
        ``-``, ``@``, a tab or a carriage return (and not a plain number) prefixed by an
        apostrophe; numeric, boolean and date columns untouched. `df` itself when nothing
        changes, otherwise a copy.
    """
    return _map_text(df, _escape)


def restore_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """The inverse of :func:`neutralise_formulas`: the apostrophe it added removed.

    Parameters
    ----------
    df : pandas.DataFrame
        A table read from a file that :func:`write_csv` wrote.

    Returns
    -------
    pandas.DataFrame
        `df` itself when nothing changes, otherwise a copy.
    """
    return _map_text(df, _unescape)


def write_csv(
    df: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    sep: str = ",",
    fast: bool = False,
    **to_csv: Any,
) -> Path:
    r"""Write `df` as UTF-8 CSV (or TSV) atomically, without its index, formulas neutralised.

    Parameters
    ----------
    df : pandas.DataFrame
        The table; escaped with :func:`neutralise_formulas` first.
    path : str or os.PathLike
        Destination file.
    sep : str, default ","
        Field separator (``"\t"`` for TSV).
    fast : bool, default False
        Use Arrow's writer (about 10x pandas' speed on a big cell table, shortest float
        digits, ``true``/``false`` booleans; the `to_csv` options are not applied), falling
        back to pandas for tables Arrow cannot type.
    **to_csv
        Keyword arguments for ``pandas.DataFrame.to_csv`` (``float_format`` ...).

    Returns
    -------
    pathlib.Path
        `path`.
    """
    safe = neutralise_formulas(df)
    with atomic_path(path) as tmp:
        if fast:
            try:
                table = pa.Table.from_pandas(safe, preserve_index=False)
                options = pcsv.WriteOptions(delimiter=sep, quoting_style="needed")
                pcsv.write_csv(table, tmp, options)
                return Path(path)
            except (pa.ArrowException, TypeError, ValueError):
                pass
        safe.to_csv(tmp, sep=sep, index=False, encoding="utf-8", **to_csv)
    return Path(path)


def read_csv(path: str | os.PathLike[str], **read_csv: Any) -> pd.DataFrame:
    r"""Read a CSV (or TSV) that :func:`write_csv` wrote, with its text as it was.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    **read_csv
        Keyword arguments for ``pandas.read_csv`` (``sep="\t"`` for TSV ...).

    Returns
    -------
    pandas.DataFrame
        The table with :func:`restore_formulas` applied.
    """
    return restore_formulas(pd.read_csv(path, **read_csv))


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write JSON atomically (indented by 2, UTF-8, a final newline).

    Parameters
    ----------
    obj : Any
        JSON-able; numpy scalars and arrays and paths are converted.
    path : str or os.PathLike
        Destination file.

    Returns
    -------
    pathlib.Path
        `path`.

    Raises
    ------
    TypeError
        If a value is not JSON serialisable.
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        _dump(obj, fh)
    return Path(path)


def _dump(obj: Any, fh: IO[str]) -> None:
    json.dump(obj, fh, indent=2, ensure_ascii=False, default=_json_default)
    fh.write("\n")


def write_png(rgb: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an image array as PNG atomically.

    Parameters
    ----------
    rgb : numpy.ndarray
        uint8, shape (h, w, 3) RGB or (h, w, 4) RGBA (anything ``PIL.Image.fromarray``
        takes).
    path : str or os.PathLike
        Destination file.

    Returns
    -------
    pathlib.Path
        `path`.
    """
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(rgb)).save(tmp, format="PNG")
    return Path(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def file_fingerprint(
    path: str | os.PathLike[str], *, full_below: int = 256 * 2**20
) -> dict[str, Any]:
    """A checksum of an input file.

    SHA-256 of the whole file when it is small, else of its size, first and last MiB (a
    whole slide can be many GB; this still changes when the file is replaced or cut).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    full_below : int, default 256 MiB
        Files of at most this many bytes are hashed whole.

    Returns
    -------
    dict
        ``algorithm`` (``"sha256"`` or ``"sha256-size-head-tail"``), ``digest`` (hex) and
        ``size`` (bytes).
    """
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= full_below:
            for block in iter(lambda: fh.read(2**20), b""):
                h.update(block)
            kind = "sha256"
        else:
            h.update(str(size).encode())
            h.update(fh.read(2**20))
            fh.seek(size - 2**20)
            h.update(fh.read(2**20))
            kind = "sha256-size-head-tail"
    return {"algorithm": kind, "digest": h.hexdigest(), "size": size}
