"""Exports of whole result folders: what ``napari-gbm export`` runs, without a display.

A result folder is an analysis folder (what ``napari-gbm analyze`` writes, complete when
:func:`napari_gbm.outputs.is_complete`) or a cohort folder (what ``napari-gbm cohort``
writes: ``slides.parquet`` naming the analysed slides, ``slides/<slide_id>/`` an analysis
folder each). :func:`open_results` reads either, :func:`plan_export` chooses the files to
write, and :func:`export_results` writes each slide's cells, or a cohort's cells combined in
one table, through :func:`~napari_gbm.export.formats.export_cells` (the writers of the
napari widget's export, and :func:`napari_gbm.export.anndata.write_cells_h5ad`).

An analysis folder holds no nucleus outlines (the label images are not kept), so a GeoJSON
export draws each nucleus as its moment ellipse and each cell as a circle of its equivalent
diameter (:mod:`._geometry`); the notes of :class:`ExportResult` say so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from napari_gbm.export.anndata import read_analysis_for_anndata
from napari_gbm.export.formats import EXPORT_FORMATS, _check_choices, export_cells
from napari_gbm.export.spatialdata import require_spatialdata
from napari_gbm.export.vessels import vessels_geojson_path, vessels_to_geojson
from napari_gbm.outputs import (
    LEFTOVER_PATTERNS,
    OUTPUT_FILES,
    check_output_folder,
    find_analysed_slide,
    is_complete,
)

__all__ = [
    "AnalysisFolder",
    "CohortFolder",
    "ExportResult",
    "export_results",
    "open_analysis",
    "open_cohort",
    "open_results",
    "plan_export",
]

#: files of a cohort folder that an export must never replace
_COHORT_FILES = ("slides.parquet", "patients.parquet", "failures.parquet", "cohort.json")
_GEOMETRY_NOTE = (
    "the analysis folder keeps no nucleus outlines: in the GeoJSON each nucleus is its moment "
    "ellipse (a 24-vertex polygon of the same area, from the nucleus axes and orientation) and "
    "each cell a circle of its equivalent diameter"
)


@dataclass(frozen=True)
class AnalysisFolder:
    """A complete analysis folder (``napari-gbm analyze``).

    Attributes
    ----------
    path : pathlib.Path
        The folder.
    summary : dict
        Its ``summary.json``: slide biomarkers, slide metadata, parameters, calibration.
    patient_id : str or None
        The slide's patient, for a slide of a cohort.
    """

    path: Path
    summary: dict[str, Any]
    patient_id: str | None = None

    @property
    def slide_id(self) -> str:
        """The slide's id (``summary.json``; the folder name without one)."""
        return str(self.summary.get("slide_id") or self.path.name)

    @property
    def mpp(self) -> float | None:
        """Level-0 pixel size in µm/px, as analysed (None if not recorded)."""
        mpp = self.summary.get("slide", {}).get("mpp")
        return float(mpp) if mpp else None

    def cells(self) -> pd.DataFrame:
        """The cell table, ``cells.parquet``.

        Returns
        -------
        DataFrame
            One row per cell, our column names (:mod:`napari_gbm.schema`).
        """
        return pd.read_parquet(self.path / "cells.parquet")


@dataclass(frozen=True)
class CohortFolder:
    """A finished cohort folder (``napari-gbm cohort``).

    Attributes
    ----------
    path : pathlib.Path
        The folder.
    slides : list of AnalysisFolder
        The analysed slides, in ``slides.parquet`` order.
    run : dict
        Its ``cohort.json`` (empty if absent).
    n_failed : int
        Slides the run could not analyse (``failures.parquet``): they have no cells.
    """

    path: Path
    slides: list[AnalysisFolder]
    run: dict[str, Any] = field(default_factory=dict)
    n_failed: int = 0


@dataclass
class ExportResult:
    """What :func:`export_results` wrote.

    Attributes
    ----------
    paths : list of pathlib.Path
        The files, one per slide or one for the combined cohort.
    n_cells : int
        Cells written, all files together.
    notes : list of str
        What the user should know (failed slides left out, approximate geometry).
    """

    paths: list[Path] = field(default_factory=list)
    n_cells: int = 0
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ reading


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _require_folder(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give an analysis or cohort folder")
    if not path.is_dir():
        raise ValueError(
            f"{path} is a file, not a folder: give the --out folder of napari-gbm analyze or "
            "napari-gbm cohort"
        )


def open_analysis(path: str | os.PathLike[str], patient_id: str | None = None) -> AnalysisFolder:
    """A complete analysis folder, checked.

    Parameters
    ----------
    path : str or os.PathLike
        The ``--out`` folder of ``napari-gbm analyze``.
    patient_id : str, optional
        The slide's patient (a cohort's slides).

    Returns
    -------
    AnalysisFolder

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a folder, or not a complete analysis: what is missing, and what to do.
    """
    folder = Path(path)
    _require_folder(folder)
    if not is_complete(folder):
        missing = [name for name in OUTPUT_FILES if not (folder / name).is_file()]
        begun = len(missing) < len(OUTPUT_FILES) or any(
            any(folder.glob(pattern)) for pattern in LEFTOVER_PATTERNS
        )
        if not begun:
            raise ValueError(
                f"{folder} is neither an analysis folder (no cells.parquet, summary.json) nor a "
                "cohort folder (no slides.parquet): give the --out folder of napari-gbm "
                "analyze or napari-gbm cohort"
            )
        if "summary.json" in missing:
            raise ValueError(
                f"{folder} is an incomplete analysis: it has no summary.json (written last), so "
                "the analysis was interrupted or is still running; run the same napari-gbm "
                "analyze command again to finish it, then export"
            )
        why = f"missing {', '.join(missing)}" if missing else "its summary.json is not JSON"
        raise ValueError(
            f"{folder} is an incomplete analysis ({why}): analyse the slide again into it"
        )
    return AnalysisFolder(folder, _read_json(folder / "summary.json"), patient_id)


def open_cohort(path: str | os.PathLike[str]) -> CohortFolder:
    """A finished cohort folder, each analysed slide checked.

    Parameters
    ----------
    path : str or os.PathLike
        The ``--out`` folder of ``napari-gbm cohort``.

    Returns
    -------
    CohortFolder

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the run did not finish (no ``slides.parquet``), analysed no slide, or a slide it
        lists is not a complete analysis folder.
    """
    folder = Path(path)
    _require_folder(folder)
    index = folder / "slides.parquet"
    if not index.is_file():
        raise ValueError(
            f"cohort folder {folder} has no slides.parquet (written when every slide has an "
            "outcome): the run did not finish; run the same napari-gbm cohort command again "
            "to finish it, or export one slide's folder, slides/<slide_id>"
        )
    table = pd.read_parquet(index)
    if "slide_id" not in table.columns:
        raise ValueError(f"{index} has no slide_id column: is it a napari-gbm cohort table?")
    patients = table["patient_id"] if "patient_id" in table.columns else [None] * len(table)
    slides = [
        open_analysis(folder / "slides" / str(sid), None if pid is None else str(pid))
        for sid, pid in zip(table["slide_id"], patients, strict=True)
    ]
    if not slides:
        raise ValueError(f"cohort folder {folder} has no analysed slide (see failures.csv)")
    failures = folder / "failures.parquet"
    n_failed = pq.ParquetFile(failures).metadata.num_rows if failures.is_file() else 0
    return CohortFolder(folder, slides, _read_json(folder / "cohort.json"), n_failed)


def open_results(path: str | os.PathLike[str]) -> AnalysisFolder | CohortFolder:
    """An analysis folder or a cohort folder, whichever ``path`` is.

    Parameters
    ----------
    path : str or os.PathLike
        The ``--out`` folder of ``napari-gbm analyze`` or ``napari-gbm cohort``.

    Returns
    -------
    AnalysisFolder or CohortFolder
        A cohort folder is one with ``slides.parquet``, ``cohort.json`` or ``slides/``
        (and no ``summary.json``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        As :func:`open_analysis` and :func:`open_cohort`.
    """
    folder = Path(path)
    _require_folder(folder)
    cohort = any((folder / n).exists() for n in ("slides.parquet", "cohort.json", "slides"))
    if cohort and not (folder / "summary.json").exists():
        return open_cohort(folder)
    return open_analysis(folder)


# ------------------------------------------------------------------------------ planning


def _file(out: Path, to: str, default_stem: str) -> Path:
    """``out`` as the file to write: itself, or ``<default_stem><ext>`` inside a folder."""
    exts = EXPORT_FORMATS[to]
    store = to == "spatialdata" and out.suffix.lower() in exts  # a folder itself
    if out.is_dir() and not store:
        check_output_folder(out, "the export folder")
        return out / f"{default_stem}{exts[0]}"
    if out.suffix.lower() not in exts:
        raise ValueError(
            f"cannot write a {to} export to {out.name!r}: give a file ending in "
            f"{' or '.join(exts)}, or an existing folder"
        )
    check_output_folder(out.parent, "the folder of the export")
    return out


def plan_export(
    results: AnalysisFolder | CohortFolder,
    out: str | os.PathLike[str],
    to: str,
    *,
    names: str | None = None,
    combine: bool = False,
) -> list[Path]:
    """The files an export will write, checked before anything is read or written.

    Parameters
    ----------
    results : AnalysisFolder or CohortFolder
        What to export (:func:`open_results`).
    out : str or os.PathLike
        An analysis folder's export (and a cohort's with ``combine``): the file to write,
        with the format's extension, or an existing folder to write ``<slide_id>.<ext>``
        (``cells.<ext>`` for a combined cohort) into. A cohort's export without
        ``combine``: the folder (created if needed) that gets ``<slide_id>.<ext>`` per slide.
        Existing files of these names are replaced (atomically).
    to : {"csv", "tsv", "parquet", "geojson", "anndata", "spatialdata"}
        The format (:data:`EXPORT_FORMATS`).
    names : {"ours", "qupath", "histomicstk"}, optional
        Column names (tables); GeoJSON measurements: QuPath's (default) or ours; AnnData:
        ours only.
    combine : bool
        A cohort's cells in one file with ``slide_id`` and ``patient_id`` columns (not for
        GeoJSON).

    Returns
    -------
    list of pathlib.Path
        One per slide, or one.

    Raises
    ------
    ValueError
        For an unknown format or names, a combination that does not exist (HistomicsTK
        names in GeoJSON, other names in AnnData, a combined GeoJSON), an ``out`` of the
        wrong extension, a file where a folder is needed, one that cannot be written, or a
        target that is one of the folder's own result files.
    """
    out = Path(out)
    cohort = isinstance(results, CohortFolder)
    _check_choices(to, names, combine, cohort)
    if isinstance(results, AnalysisFolder):
        paths = [_file(out, to, results.slide_id)]
        sources = [results.path / n for n in OUTPUT_FILES]
    elif combine:
        paths = [_file(out, to, "cells")]
        sources = [results.path / n for n in _COHORT_FILES]
    else:
        if out.exists() and not out.is_dir():
            raise ValueError(
                f"{out} is a file: a cohort is exported to one file per slide in a folder; "
                "give a folder, or combine the slides into one file"
            )
        check_output_folder(out, "the export folder")
        ext = EXPORT_FORMATS[to][0]
        paths = [out / f"{s.slide_id}{ext}" for s in results.slides]
        sources = [results.path / n for n in _COHORT_FILES]
    slides = [results] if isinstance(results, AnalysisFolder) else results.slides
    sources += [s.path / n for s in slides for n in OUTPUT_FILES]
    own = {p.resolve() for p in sources}
    for p in paths:
        if p.resolve() in own:
            raise ValueError(
                f"{p} would replace a file of the results being exported: choose another name"
            )
    return paths


# ------------------------------------------------------------------------------ writing


def _cells(slide: AnalysisFolder, to: str) -> pd.DataFrame:
    """A slide's cells; for AnnData with each cell's tile region (``region_class``)."""
    if to not in ("anndata", "spatialdata"):
        return slide.cells()
    return read_analysis_for_anndata(slide.path)[0]


def _slide_image(slide: AnalysisFolder) -> Path:
    """The slide an analysis was made from (for the SpatialData image), wherever it is."""
    found = find_analysed_slide(slide.path, slide.summary)
    if found is None:
        recorded = slide.summary.get("input", {}).get("path", "?")
        raise ValueError(
            f"the slide of {slide.path} is not where the analysis recorded it ({recorded}), "
            "nor beside or inside the folder: the SpatialData export needs its image; put "
            "the slide back or beside the analysis folder"
        )
    return found


def _combined(results: CohortFolder, to: str) -> pd.DataFrame:
    """Every slide's cells in one table, ``slide_id`` and ``patient_id`` after ``cell_id``."""
    parts = []
    for slide in results.slides:
        cells = _cells(slide, to)
        if "slide_id" not in cells.columns:
            cells.insert(min(1, cells.shape[1]), "slide_id", slide.slide_id)
        at = cells.columns.get_loc("slide_id") + 1
        cells.insert(int(at), "patient_id", slide.patient_id or "")
        parts.append(cells)
    return pd.concat(parts, ignore_index=True)


def export_results(
    results: AnalysisFolder | CohortFolder,
    out: str | os.PathLike[str],
    to: str,
    *,
    names: str | None = None,
    combine: bool = False,
    progress: Callable[[int, int, Path, int], None] | None = None,
) -> ExportResult:
    """Export the cells of an analysis or cohort folder (see :func:`plan_export`).

    Each file is written atomically: an interrupted export leaves finished files and no
    half-written one. A cohort's slides are read one at a time; combined, the cohort's
    cells are held in memory together. AnnData gets each cell's tile region
    (:func:`napari_gbm.export.anndata.read_analysis_for_anndata`); the tables hold the rows
    and columns of ``cells.parquet`` (combined: with ``patient_id``).

    Parameters
    ----------
    results : AnalysisFolder or CohortFolder
        From :func:`open_results`.
    out : str or os.PathLike
        File or folder (:func:`plan_export`).
    to : {"csv", "tsv", "parquet", "geojson", "anndata", "spatialdata"}
        The format.
    names : {"ours", "qupath", "histomicstk"}, optional
        Column names (:func:`export_cells`).
    combine : bool
        A cohort in one file with ``slide_id`` and ``patient_id`` columns.
    progress : callable, optional
        Called as ``progress(done, total, path, n_cells)`` after each file.

    Returns
    -------
    ExportResult

    Raises
    ------
    ValueError
        As :func:`plan_export` (before anything is written), or from the writer.
    """
    paths = plan_export(results, out, to, names=names, combine=combine)
    result = ExportResult()
    slides = [results] if isinstance(results, AnalysisFolder) else results.slides
    images: list[Path | None] = [None] * len(slides)
    if to == "spatialdata":  # the extra and every slide found, before anything is written
        require_spatialdata()
        images = [_slide_image(s) for s in slides]
        result.notes.append(_GEOMETRY_NOTE.replace("GeoJSON", "SpatialData shapes"))
    if to == "geojson":
        result.notes.append(_GEOMETRY_NOTE)
    if isinstance(results, CohortFolder) and results.n_failed:
        result.notes.append(
            f"{results.n_failed} slide(s) of the cohort failed and have no cells (see "
            f"{results.path / 'failures.csv'}): not exported"
        )

    def done(path: Path, n_cells: int) -> None:
        result.paths.append(path)
        result.n_cells += n_cells
        if progress is not None:
            progress(len(result.paths), len(paths), path, n_cells)

    if isinstance(results, CohortFolder) and combine:
        cells = _combined(results, to)
        meta = {"cohort": results.run, "slides": {s.slide_id: s.summary for s in results.slides}}
        export_cells(cells, paths[0], to, names=names, metadata=meta)
        done(paths[0], len(cells))
        return result
    for slide, path, image in zip(slides, paths, images, strict=True):
        cells = _cells(slide, to)
        meta = slide.summary
        export_cells(cells, path, to, names=names, metadata=meta, mpp=slide.mpp, slide=image)
        done(path, len(cells))
        if to == "geojson" and (slide.path / "vessels.parquet").is_file() and slide.mpp:
            result.paths.append(_vessels_geojson(slide, path))  # for review in QuPath
    return result


def _vessels_geojson(slide: AnalysisFolder, cells_path: Path) -> Path:
    """The slide's vessels and MVP foci beside its cells' GeoJSON."""
    path = vessels_geojson_path(cells_path)
    keys = ("slide_id", "vessel_source", "n_vessels", "n_mvp_foci", "microvascular_area_mm2")
    vessels_to_geojson(
        pd.read_parquet(slide.path / "vessels.parquet"),
        pd.read_parquet(slide.path / "mvp_foci.parquet"),
        float(slide.mpp or 0),
        path,
        slide_id=slide.slide_id,
        metadata={k: slide.summary.get(k) for k in keys},
    )
    return path
