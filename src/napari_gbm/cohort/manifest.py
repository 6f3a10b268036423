"""The slides of a cohort: a folder of slides or a manifest CSV, read and checked.

:func:`read_cohort_input` gives a :class:`Cohort` of :class:`CohortSlide`; everything wrong
with the input (missing columns, a slide listed twice, clinical values that differ between
the slides of a patient, two slides with one output folder ...) raises ``ValueError`` naming
the rows or columns concerned, before anything is analysed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "DEFAULT_EVENT_COL",
    "DEFAULT_TIME_COL",
    "MANIFEST_COLUMNS",
    "SLIDE_EXTENSIONS",
    "Cohort",
    "CohortSlide",
    "read_cohort_input",
]

#: manifest columns with a meaning; every other column is a clinical variable
MANIFEST_COLUMNS = {
    "slide_path": "path of the slide (absolute, or relative to the manifest's folder)",
    "patient_id": "the patient the slide comes from (several slides may share one)",
    "slide_id": "optional: name of the slide's output folder (default: the file name stem)",
    "mpp": "optional: level-0 pixel size in µm/px, overriding the file's metadata",
    "stain": "optional: 'he' or 'hdab' for this slide (default: the run's stain)",
}
REQUIRED_COLUMNS = ("slide_path", "patient_id")

#: whole-slide formats a folder scan picks up. Plain images (PNG, JPEG) need a pixel size
#: and often lie beside slides as masks or thumbnails: list them in a manifest, with ``mpp``.
#: A DICOM slide is a folder of files, one per level: list it in a manifest too.
SLIDE_EXTENSIONS = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".scn",
    ".mrxs",
    ".svslide",
    ".bif",
)

#: survival columns looked for in the manifest when none are named
DEFAULT_TIME_COL = "time_months"
DEFAULT_EVENT_COL = "event"

#: columns the runner adds to each slide row (clinical columns may not use these names)
_ID_COLUMNS = ("slide_id", "patient_id", "path")
_META_COLUMNS = ("stain", "slide_mpp", "whole_image_analysed", "elapsed_s", "napari_gbm_version")


@dataclass(frozen=True)
class CohortSlide:
    """One slide of a cohort, as the manifest (or the folder) gives it.

    Attributes
    ----------
    slide_id : str
        Name of the slide's output folder, unique in the cohort.
    path : Path
        The slide file, absolute.
    patient_id : str
        The patient the slide comes from (several slides may share one).
    mpp : float or None
        Level-0 pixel size in µm/px overriding the file's metadata, or None.
    stain : str or None
        ``"he"`` or ``"hdab"`` for this slide, or None for the run's stain.
    clinical : mapping of str to object
        The slide's clinical values, by manifest column (None where empty).
    """

    slide_id: str
    path: Path
    patient_id: str
    mpp: float | None = None
    stain: str | None = None
    clinical: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cohort:
    """The slides of a cohort and the names of its clinical columns (manifest order).

    Attributes
    ----------
    slides : tuple of CohortSlide
        In manifest order (a folder's: sorted by file name).
    clinical_columns : tuple of str
        The manifest's clinical columns, in its order (empty for a folder).
    source : Path
        The folder or manifest the cohort was read from.
    """

    slides: tuple[CohortSlide, ...]
    clinical_columns: tuple[str, ...]
    source: Path

    def clinical_table(self) -> pd.DataFrame:
        """One row per patient: ``patient_id`` and the clinical columns.

        A value missing on one slide of a patient is taken from another.

        Returns
        -------
        pandas.DataFrame
            Columns ``patient_id`` then :attr:`clinical_columns`, patients in order of
            first appearance.
        """
        rows: dict[str, dict[str, Any]] = {}
        for s in self.slides:
            row = rows.setdefault(s.patient_id, {"patient_id": s.patient_id})
            for col in self.clinical_columns:
                if row.get(col) is None:
                    row[col] = s.clinical.get(col)
        return pd.DataFrame(list(rows.values()), columns=["patient_id", *self.clinical_columns])


def read_cohort_input(source: str | os.PathLike[str]) -> Cohort:
    """The slides of a cohort from a folder of slides or a manifest CSV.

    A folder gives every file with a whole-slide extension (:data:`SLIDE_EXTENSIONS`) directly
    in it, sorted by name; each slide is its own patient (``patient_id`` = ``slide_id`` = the
    file name stem). A manifest is a CSV with the columns of :data:`MANIFEST_COLUMNS`
    (``slide_path`` and ``patient_id`` required); any other column is clinical, and must have
    one value per patient.

    Slides that do not exist are kept: running them records a failure, so that the other
    slides still run.

    Parameters
    ----------
    source : path
        A folder of slides or a manifest CSV.

    Returns
    -------
    Cohort

    Raises
    ------
    FileNotFoundError
        When ``source`` does not exist.
    ValueError
        For everything else wrong with the input (a slide given instead of a folder or
        manifest, an unreadable or empty manifest, missing or repeated columns, empty
        paths or patients, a slide listed twice, a bad ``mpp`` or ``stain``, clinical
        values that differ between the slides of a patient, two slides with one
        ``slide_id``), naming the rows or columns concerned.
    """
    source = Path(source)
    if source.is_dir():
        return _scan_folder(source)
    if not source.exists():
        raise FileNotFoundError(f"cohort input '{source}' does not exist")
    if source.suffix.lower() in SLIDE_EXTENSIONS:
        raise ValueError(
            f"'{source}' is a slide; give a folder of slides or a manifest CSV "
            "(napari-gbm analyze runs a single slide)"
        )
    return _read_manifest(source)


def _scan_folder(folder: Path) -> Cohort:
    paths = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SLIDE_EXTENSIONS
    )
    if not paths:
        raise ValueError(
            f"no slides in '{folder}' (looked for {', '.join(SLIDE_EXTENSIONS)}); plain images "
            "and DICOM folders go in a manifest CSV with a slide_path column"
        )
    slides = [CohortSlide(slide_id=p.stem, path=p.resolve(), patient_id=p.stem) for p in paths]
    _check_unique_ids(slides, hint="rename the files, or list them in a manifest with slide_id")
    return Cohort(tuple(slides), (), folder)


def _read_manifest(path: Path) -> Cohort:
    try:
        df = pd.read_csv(path, dtype={"slide_path": str, "patient_id": str, "slide_id": str})
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"manifest '{path}' is not a readable CSV file: {exc}") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"manifest '{path}' is empty") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"manifest '{path}' lacks the column(s) {', '.join(missing)}; it has "
            f"{', '.join(df.columns) or 'none'}. Required: slide_path (the slide file) and "
            "patient_id; optional: slide_id, mpp, stain; any other column is clinical"
        )
    duplicated_cols = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if duplicated_cols:
        raise ValueError(f"manifest '{path}' repeats the column(s) {', '.join(duplicated_cols)}")
    if df.empty:
        raise ValueError(f"manifest '{path}' has no rows")
    for col in ("slide_path", "patient_id"):
        blank = df.index[df[col].isna() | (df[col].astype(str).str.strip() == "")]
        if len(blank):
            raise ValueError(
                f"manifest '{path}': {col} is empty on row(s) {_rows(blank)} (rows count from 1 "
                "after the header)"
            )
    base = path.resolve().parent
    resolved = [_resolve(base, str(p).strip()) for p in df["slide_path"]]
    dupes = _duplicates(str(p) for p in resolved)
    if dupes:
        detail = "; ".join(f"{p} on rows {_rows(rows)}" for p, rows in dupes.items())
        raise ValueError(f"manifest '{path}' lists a slide more than once: {detail}")
    mpps = _optional_mpp(df, path)
    stains = _optional_stain(df, path)
    if "slide_id" in df.columns:
        ids = [
            str(v).strip() if isinstance(v, str) and v.strip() else p.stem
            for v, p in zip(df["slide_id"], resolved, strict=True)
        ]
    else:
        ids = [p.stem for p in resolved]
    clinical_cols = tuple(c for c in df.columns if c not in MANIFEST_COLUMNS)
    reserved = [c for c in clinical_cols if c in _ID_COLUMNS or c in _META_COLUMNS]
    if reserved:
        raise ValueError(
            f"manifest '{path}': the clinical column(s) {', '.join(reserved)} would clash with "
            "columns of the slide table; rename them"
        )
    patients = df["patient_id"].astype(str).str.strip()
    _check_clinical_per_patient(df, patients, clinical_cols, path)
    slides = [
        CohortSlide(
            slide_id=ids[i],
            path=resolved[i],
            patient_id=patients.iloc[i],
            mpp=mpps[i],
            stain=stains[i],
            clinical={c: _scalar(df[c].iloc[i]) for c in clinical_cols},
        )
        for i in range(len(df))
    ]
    _check_unique_ids(slides, hint="add a slide_id column to the manifest")
    return Cohort(tuple(slides), clinical_cols, path)


def _resolve(base: Path, text: str) -> Path:
    p = Path(text).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


def _rows(index: Iterable[Any]) -> str:
    """Manifest row numbers as a person counts them (first data row = 1)."""
    return ", ".join(str(int(i) + 1) for i in index)


def _duplicates(values: Iterable[str]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        seen.setdefault(v, []).append(i)
    return {v: rows for v, rows in seen.items() if len(rows) > 1}


def _optional_mpp(df: pd.DataFrame, path: Path) -> list[float | None]:
    if "mpp" not in df.columns:
        return [None] * len(df)
    values = pd.to_numeric(df["mpp"], errors="coerce")
    bad = df.index[(df["mpp"].notna() & values.isna()) | (values <= 0)]
    if len(bad):
        raise ValueError(
            f"manifest '{path}': mpp must be a positive number of µm per pixel (or empty to "
            f"use the slide's metadata); row(s) {_rows(bad)} have "
            f"{', '.join(repr(df['mpp'].iloc[i]) for i in bad)}"
        )
    return [None if pd.isna(v) else float(v) for v in values]


def _optional_stain(df: pd.DataFrame, path: Path) -> list[str | None]:
    if "stain" not in df.columns:
        return [None] * len(df)
    out: list[str | None] = []
    bad = []
    for i, v in enumerate(df["stain"]):
        if pd.isna(v) or not str(v).strip():
            out.append(None)
            continue
        text = str(v).strip().lower()
        if text not in ("he", "hdab"):
            bad.append(i)
        out.append(text)
    if bad:
        raise ValueError(
            f"manifest '{path}': stain must be 'he' or 'hdab' (or empty); row(s) {_rows(bad)} "
            f"have {', '.join(repr(df['stain'].iloc[i]) for i in bad)}"
        )
    return out


def _check_clinical_per_patient(
    df: pd.DataFrame, patients: pd.Series, cols: Sequence[str], path: Path
) -> None:
    for col in cols:
        conflict = [
            pid
            for pid, values in df[col].groupby(patients, sort=False)
            if values.dropna().nunique() > 1
        ]
        if conflict:
            raise ValueError(
                f"manifest '{path}': the clinical column '{col}' has different values on the "
                f"slides of patient(s) {', '.join(map(str, conflict))}; a clinical variable "
                "has one value per patient"
            )


def _check_unique_ids(slides: Sequence[CohortSlide], *, hint: str) -> None:
    dupes = _duplicates(s.slide_id for s in slides)
    if dupes:
        detail = "; ".join(
            f"{sid!r} ({', '.join(str(slides[i].path) for i in rows)})"
            for sid, rows in dupes.items()
        )
        raise ValueError(f"two slides would share an output folder: {detail}; {hint}")
    for s in slides:
        if s.slide_id in (".", "..") or "/" in s.slide_id or "\\" in s.slide_id:
            raise ValueError(f"slide_id {s.slide_id!r} cannot name a folder; {hint}")


def _scalar(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v
