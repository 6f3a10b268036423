"""One cell table in one of the export formats: the writers of the napari widget's export,
chosen by name (what ``napari-gbm export --to`` takes).

- ``csv``, ``tsv``, ``parquet``: :func:`~napari_gbm.export.tables.export_table`, with our,
  QuPath's or HistomicsTK's column names;
- ``geojson``: QuPath GeoJSON, :func:`~napari_gbm.export.geojson.cells_to_geojson`;
- ``anndata``: ``.h5ad``, :func:`napari_gbm.export.anndata.write_cells_h5ad`;
- ``spatialdata``: a ``.zarr`` store with the slide image, nucleus shapes and the cells as a
  table, :func:`napari_gbm.export.spatialdata.write_cells_spatialdata` (optional extra).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from napari_gbm.export.anndata import write_cells_h5ad
from napari_gbm.export.geojson import cells_to_geojson
from napari_gbm.export.spatialdata import write_cells_spatialdata
from napari_gbm.export.tables import export_table

__all__ = ["COMBINABLE", "EXPORT_FORMATS", "NAMES", "export_cells"]

#: format -> the file extensions it is written under (the first is the default)
EXPORT_FORMATS: dict[str, tuple[str, ...]] = {
    "csv": (".csv",),
    "tsv": (".tsv",),
    "parquet": (".parquet",),
    "geojson": (".geojson", ".json"),
    "anndata": (".h5ad",),
    "spatialdata": (".zarr",),
}
#: the formats a cohort's cells can be written to as one file (GeoJSON is one image's objects)
COMBINABLE = ("csv", "tsv", "parquet", "anndata")
#: the column namings: ours, QuPath's, HistomicsTK's (:mod:`.naming`)
NAMES = ("ours", "qupath", "histomicstk")


def _check_choices(to: str, names: str | None, combine: bool, cohort: bool) -> None:
    if to not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {to!r}: use one of {', '.join(EXPORT_FORMATS)}")
    if names is not None and names not in NAMES:
        raise ValueError(f"unknown names {names!r}: use one of {', '.join(NAMES)}")
    if to == "geojson" and names == "histomicstk":
        raise ValueError(
            "GeoJSON measurements carry QuPath's names (the default) or ours: "
            "HistomicsTK's names are for the csv, tsv and parquet tables"
        )
    if to in ("anndata", "spatialdata") and names not in (None, "ours"):
        raise ValueError(
            "AnnData keeps our feature names (var), which scanpy and squidpy read as they "
            "are: leave out --names, or export a table for QuPath's or HistomicsTK's names"
        )
    if combine and cohort and to not in COMBINABLE:
        kind, why = ("GeoJSON", "QuPath opens it over its slide")
        if to == "spatialdata":
            kind, why = ("SpatialData", "its image and shapes are the slide's")
        raise ValueError(
            f"{kind} holds the objects of one image ({why}): export "
            f"a cohort to one {kind} per slide (without combine), or combine to "
            f"{', '.join(COMBINABLE)}"
        )


def export_cells(
    cells: pd.DataFrame,
    path: str | os.PathLike[str],
    to: str,
    *,
    names: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    mpp: float | None = None,
    slide: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a cell table in one format, atomically: the writers of the napari widget.

    Parameters
    ----------
    cells : DataFrame
        A cell table (our column names).
    path : str or os.PathLike
        Destination file (its extension is not checked here: see
        :func:`napari_gbm.export.folders.plan_export`).
    to : {"csv", "tsv", "parquet", "geojson", "anndata", "spatialdata"}
        Tables by :func:`~napari_gbm.export.tables.export_table`, QuPath GeoJSON by
        :func:`~napari_gbm.export.geojson.cells_to_geojson` (objects of type ``"cell"``,
        classified by ``positive_class``), AnnData by
        :func:`napari_gbm.export.anndata.write_cells_h5ad`, SpatialData by
        :func:`napari_gbm.export.spatialdata.write_cells_spatialdata`.
    names : {"ours", "qupath", "histomicstk"}, optional
        Column names of a table (default ours), measurement names in GeoJSON (default
        QuPath's).
    metadata : mapping, optional
        Stored with the export (the slide's ``summary.json``, for example).
    mpp : float, optional
        µm per level-0 pixel, for the GeoJSON and SpatialData shapes (default: from the
        centroid columns).
    slide : str or os.PathLike, optional
        The slide, for the SpatialData image (without it the store has none).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        For an unknown format or names, or a table the writer cannot write (missing
        columns); for SpatialData without the optional extra.
    """
    path = Path(path)
    _check_choices(to, names, False, False)
    if to == "geojson":
        measurements = "ours" if names == "ours" else "qupath"
        cells_to_geojson(cells, path, measurements=measurements, mpp=mpp, metadata=metadata)
        return path
    if to == "anndata":
        write_cells_h5ad(cells, path, metadata=dict(metadata or {}))
        return path
    if to == "spatialdata":
        return write_cells_spatialdata(cells, path, slide=slide, mpp=mpp, metadata=metadata)
    naming = "napari_gbm" if names in (None, "ours") else names
    return export_table(cells, path, naming=naming, metadata=metadata)
