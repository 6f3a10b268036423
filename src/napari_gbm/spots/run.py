"""The spots of one analysis folder: read its cells and Space Ranger's files, aggregate,
write a table (Parquet, CSV) or AnnData (.h5ad), what ``napari-gbm spots`` runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from napari_gbm.export.anndata import write_h5ad
from napari_gbm.io import write_csv, write_parquet
from napari_gbm.spots.aggregate import CELL_COLUMNS, SpotParams, SpotTable, aggregate_spots
from napari_gbm.spots.spaceranger import read_positions, read_scalefactors, read_transform

__all__ = ["OUTPUT_SUFFIXES", "spots_from_analysis", "write_spots"]

OUTPUT_SUFFIXES = (".h5ad", ".parquet", ".csv")


def _analysis(folder: Path) -> dict[str, Any]:
    if not (folder / "summary.json").is_file():
        raise FileNotFoundError(
            f"{folder} is not a complete analysis folder (no summary.json): give the --out "
            "folder of napari-gbm analyze"
        )
    if not (folder / "cells.parquet").is_file():
        raise FileNotFoundError(f"{folder} has no cells.parquet")
    summary: dict[str, Any] = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    return summary


def _tile_regions(folder: Path, cell_columns: list[str]) -> pd.Series | None:
    path = folder / "tiles.parquet"
    if "tile_id" not in cell_columns or not path.is_file():
        return None
    if not {"tile_id", "region_class"} <= set(pq.read_schema(path).names):
        return None
    tiles = pd.read_parquet(path, columns=["tile_id", "region_class"])
    return pd.Series(tiles["region_class"].to_numpy(), index=tiles["tile_id"].to_numpy())


def spots_from_analysis(
    folder: str | os.PathLike[str],
    positions: str | os.PathLike[str],
    scalefactors: str | os.PathLike[str],
    *,
    transform: str | os.PathLike[str] | np.ndarray | None = None,
    params: SpotParams | None = None,
) -> SpotTable:
    """The cells of an analysis folder summarised under Space Ranger's spots.

    Parameters
    ----------
    folder : str or os.PathLike
        A complete analysis folder (``summary.json``, ``cells.parquet``; ``tiles.parquet``
        for the region classes).
    positions : str or os.PathLike
        ``tissue_positions.csv``, ``tissue_positions_list.csv`` or Visium HD's
        ``tissue_positions.parquet``.
    scalefactors : str or os.PathLike
        ``scalefactors_json.json`` of the same run (bin size).
    transform : str, os.PathLike or numpy.ndarray, optional
        Full-resolution to level-0 pixels: a JSON file
        (:func:`~napari_gbm.spots.spaceranger.read_transform`) or a (3, 3) array. None: the
        image Space Ranger used is the slide.
    params : SpotParams, optional
        Default: ``SpotParams()``.

    Returns
    -------
    SpotTable
        As :func:`~napari_gbm.spots.aggregate.aggregate_spots`, its metadata with the slide
        id and the input paths.

    Raises
    ------
    FileNotFoundError
        If the folder is not a complete analysis or an input file is missing.
    ValueError
        Naming missing columns of the cell table or the spot table, a malformed scale
        factor or transform file, or a slide without pixel size.

    Warns
    -----
    UserWarning
        When the spots cannot lie where they are put (see
        :func:`~napari_gbm.spots.spaceranger.plausibility`).
    """
    folder = Path(folder)
    summary = _analysis(folder)
    slide = summary.get("slide") or {}
    mpp = slide.get("mpp")
    if not mpp:
        raise ValueError(f"{folder / 'summary.json'} records no pixel size for the slide")
    names = pq.read_schema(folder / "cells.parquet").names
    missing = [c for c in CELL_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{folder / 'cells.parquet'} lacks the columns {', '.join(missing)}")
    pos = read_positions(positions)
    geometry = read_scalefactors(scalefactors)
    matrix = transform
    if transform is not None and not isinstance(transform, np.ndarray):
        matrix = read_transform(transform)
    cols = [*CELL_COLUMNS, *(["tile_id"] if "tile_id" in names else [])]
    cells = pd.read_parquet(folder / "cells.parquet", columns=cols)
    thresholds = (
        summary.get("parameters", {}).get("biomarkers", {}).get("positivity", {}).get("thresholds")
    )
    dims = slide.get("dimensions")
    result = aggregate_spots(
        cells,
        pos,
        geometry,
        slide_mpp=float(mpp),
        transform=matrix if isinstance(matrix, np.ndarray) else None,
        tile_regions=_tile_regions(folder, names),
        graded=thresholds is None or len(thresholds) == 3,
        slide_dimensions=(int(dims[0]), int(dims[1])) if dims else None,
        params=params,
    )
    result.metadata.update(
        slide_id=summary.get("slide_id") or folder.name,
        analysis_folder=str(folder.resolve()),
        positions=str(Path(positions).resolve()),
        scalefactors=str(Path(scalefactors).resolve()),
    )
    return result


def write_spots(spots: SpotTable, path: str | os.PathLike[str]) -> Path:
    """Write the spot table, its format chosen by the file's suffix.

    Parameters
    ----------
    spots : SpotTable
        From :func:`spots_from_analysis` or
        :func:`~napari_gbm.spots.aggregate.aggregate_spots`.
    path : str or os.PathLike
        ``.parquet`` (the table, the metadata in the file: napari-gbm's napari reader
        opens it as a Points layer), ``.csv`` (the table), or ``.h5ad``: AnnData with
        ``X`` the features (float32), ``var`` their units, ``obs`` indexed by barcode
        (``in_tissue``, ``array_row``, ``array_col``), ``obsm["spatial"]`` the centres
        in level-0 pixels (x, y), as squidpy and scanpy read Space Ranger's,
        ``obsm["spatial_um"]`` in µm, ``uns["spatial"][slide_id]["scalefactors"]`` with
        ``spot_diameter_fullres`` in level-0 pixels, ``uns["napari_gbm"]`` the metadata
        (written with h5py by :func:`napari_gbm.export.anndata.write_h5ad`).

    Returns
    -------
    pathlib.Path
        `path`, written atomically.

    Raises
    ------
    ValueError
        For another suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(
            f"{path.name}: write spots as {', '.join(OUTPUT_SUFFIXES)} (chosen by the suffix)"
        )
    if suffix == ".parquet":
        return write_parquet(spots.table, path, metadata=spots.metadata)
    if suffix == ".csv":
        return write_csv(spots.table, path)
    t = spots.table
    obs = t[["in_tissue", "array_row", "array_col"]].set_axis(t["barcode"].to_numpy())
    obs.index.name = "barcode"
    meta = spots.metadata
    library = str(meta.get("slide_id") or "slide")
    scalefactors = {"spot_diameter_fullres": float(meta["diameter_px"])}
    write_h5ad(
        path,
        X=t[spots.features].to_numpy(np.float32),
        var_names=spots.features,
        obs=obs,
        obsm={
            "spatial": t[["centre_x_px", "centre_y_px"]].to_numpy(np.float64),
            "spatial_um": t[["centre_x_um", "centre_y_um"]].to_numpy(np.float64),
        },
        var=pd.DataFrame({"unit": list(spots.units.values())}, index=spots.features),
        uns={
            "spatial": {library: {"scalefactors": scalefactors}},
            "napari_gbm": meta,
        },
    )
    return path
