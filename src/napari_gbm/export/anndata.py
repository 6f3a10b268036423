"""Cells as AnnData (``.h5ad``) for scanpy and squidpy, written with h5py alone.

AnnData's file format is a documented, versioned spec (anndata's "On-disk format" page,
written for anndata 0.8+; every element carries ``encoding-type`` and ``encoding-version``
attributes). This module writes the elements a cell table needs by that spec, so anndata,
which requires pandas < 3 on Python 3.11, is no dependency (docs/NOTES.md, "AnnData without
anndata"). The encodings written:

=========================================  ===================================  =======
what                                       encoding-type                        version
=========================================  ===================================  =======
the file (root group)                      ``anndata``                          0.1.0
``obs``, ``var``                           ``dataframe``                        0.2.0
``X``, ``obsm``, numeric and bool columns  ``array``                            0.2.0
text columns, the index                    ``string-array``                     0.2.0
pandas Categoricals (text with gaps too)   ``categorical``                      0.2.0
pandas Int / boolean with missing values   ``nullable-integer`` / ``-boolean``  0.1.0
``uns`` and the mappings in it             ``dict``                             0.1.0
numbers and text in ``uns``                ``numeric-scalar`` / ``string``      0.2.0
=========================================  ===================================  =======

:func:`write_h5ad` is the generic writer; :func:`write_cells_h5ad` maps a cell table
(:mod:`napari_gbm.schema`) onto it, and :func:`read_analysis_for_anndata` reads an analysis
folder into what it takes. The element encoders are in :mod:`._h5ad`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from napari_gbm.biomarkers.whole_slide import REGION_CLASSES
from napari_gbm.export._h5ad import (
    H5AD_ENCODINGS,
    Compression,
    check_key,
    tag,
    write_array,
    write_dataframe,
    write_group,
    write_uns,
)
from napari_gbm.export._properties import POSITIVE_CLASSES
from napari_gbm.export.tables import _export_metadata
from napari_gbm.io import atomic_path
from napari_gbm.outputs import is_complete

__all__ = [
    "H5AD_ENCODINGS",
    "cells_to_anndata",
    "feature_unit",
    "read_analysis_for_anndata",
    "write_cells_h5ad",
    "write_h5ad",
]

#: obsm entries of the cells and their centroid columns (x, y), in µm and level-0 px
SPATIAL_COLUMNS = {
    "spatial": ("centroid_x_um", "centroid_y_um"),
    "spatial_px": ("centroid_x_px", "centroid_y_px"),
}
#: columns a cell table must have for write_cells_h5ad
REQUIRED_COLUMNS = ("cell_id", *SPATIAL_COLUMNS["spatial"], *SPATIAL_COLUMNS["spatial_px"])
#: numeric columns that are no per-cell features: ids, classes
NOT_FEATURES = ("cell_id", "tile_id", "positive_class", "region_class")


def feature_unit(name: str) -> str:
    """The unit of a cell-table column, from the suffix of its name.

    Parameters
    ----------
    name : str
        A column name (noun first, unit last: ``nucleus_area_um2``).

    Returns
    -------
    str
        ``"µm²"`` (``_um2``), ``"1/mm²"`` (``_per_mm2``), ``"µm"`` (``_um``), ``"px"``
        (``_px``, level 0), ``"rad"`` (``_rad``), ``"OD"`` (``_od_<statistic>``), else
        ``""``: the units of :func:`napari_gbm.schema.cell_table_columns`.
    """
    suffixes = (("_um2", "µm²"), ("_per_mm2", "1/mm²"), ("_um", "µm"), ("_px", "px"))
    for suffix, unit in (*suffixes, ("_rad", "rad")):
        if name.endswith(suffix):
            return unit
    return "OD" if "_od_" in name or name.endswith("_od") else ""


# ----------------------------------------------------------------------- writers


def write_h5ad(
    path: str | os.PathLike[str],
    *,
    X: Any,
    var_names: Any,
    obs: pd.DataFrame,
    obsm: Mapping[str, Any] | None = None,
    var: pd.DataFrame | None = None,
    uns: Mapping[str, Any] | None = None,
    compression: Compression = None,
) -> Path:
    """Write an AnnData ``.h5ad`` file with h5py, by anndata's on-disk format spec.

    The file reads with ``anndata.read_h5ad`` (0.10 and later) and so in scanpy and squidpy.
    It is written to a hidden temporary file and renamed into place
    (:func:`napari_gbm.io.atomic_path`): an interrupted write leaves no file at `path`.

    Parameters
    ----------
    path : str or os.PathLike
        Destination (``.h5ad``); missing folders are created, an existing file replaced.
    X : array_like, shape (n_obs, n_vars)
        The data matrix, stored dense as float32 (NaN allowed).
    var_names : sequence of str, length n_vars
        Variable (column) names, unique.
    obs : pandas.DataFrame, n_obs rows
        Per-observation annotations; its index, as text and unique, gives ``obs_names``.
        Numeric and boolean columns are stored as arrays, text as string arrays (as a
        categorical when it has missing values), pandas Categoricals as categoricals (codes,
        categories, ordered), pandas nullable Int / boolean with missing values as
        nullable arrays. Other dtypes (dates, mixed objects) are refused.
    obsm : mapping of str to array_like, optional
        Per-observation matrices (``"spatial"``: coordinates), each 2-D with n_obs rows.
    var : pandas.DataFrame, n_vars rows, optional
        Per-variable annotations, encoded like `obs`; rows in the order of `var_names` (its
        index, unless a default range, must equal `var_names`).
    uns : mapping, optional
        Unstructured metadata, nested: dicts as groups, text as strings, numbers (bool
        included) as numeric scalars, lists and arrays of numbers as arrays (None in a
        list as NaN), lists of text as string arrays, DataFrames as dataframes; anything
        else in a list (dicts, ragged lists) as its JSON text. None values are left out.
        Keys are text without ``/``.
    compression : {None, "gzip", "lzf"}, default None
        HDF5 filter for `X`, `obsm` and the columns (anndata's own default is none).

    Returns
    -------
    pathlib.Path
        `path`.

    Raises
    ------
    ValueError
        If `X` is not 2-D numeric; `var_names`, `obs`, `var` or an `obsm` entry does not
        match its shape; names repeat; a column has a dtype named above as refused; or a
        key or value of `uns` cannot be stored (what to give instead is said).
    """
    try:
        x = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"X must be a dense numeric matrix: {exc}") from None
    if x.ndim != 2:
        raise ValueError(f"X must be 2-D (n_obs, n_vars), got shape {x.shape}")
    n_obs, n_vars = x.shape
    names = [str(v) for v in var_names]
    if len(names) != n_vars:
        raise ValueError(f"{len(names)} var_names for the {n_vars} columns of X")
    if not isinstance(obs, pd.DataFrame) or len(obs) != n_obs:
        got = f"{len(obs)} rows" if isinstance(obs, pd.DataFrame) else type(obs).__name__
        raise ValueError(f"obs must be a DataFrame with one row per row of X ({n_obs}), got {got}")
    obs_names = [str(v) for v in obs.index]
    for what, labels in (("var_names", names), ("obs_names (obs.index)", obs_names)):
        if len(set(labels)) < len(labels):
            dup = pd.Index(labels)[pd.Index(labels).duplicated()].unique()[:5].tolist()
            raise ValueError(f"{what} repeat: {dup}; names must be unique")
    if var is None:
        var = pd.DataFrame(index=pd.RangeIndex(n_vars))
    if not isinstance(var, pd.DataFrame) or len(var) != n_vars:
        raise ValueError(f"var must be a DataFrame with one row per column of X ({n_vars})")
    if not isinstance(var.index, pd.RangeIndex) and [str(v) for v in var.index] != names:
        raise ValueError("var's index must equal var_names (or be a default range)")
    matrices = {}
    for key, value in (obsm or {}).items():
        m = np.asarray(value.to_numpy() if isinstance(value, pd.DataFrame) else value)
        if m.ndim != 2 or m.shape[0] != n_obs or m.dtype.kind not in "biuf":
            raise ValueError(
                f"obsm[{key!r}] must be a numeric 2-D array with {n_obs} rows, got "
                f"{m.dtype} {m.shape}"
            )
        matrices[check_key(key, "obsm")] = m
    if uns is not None and not isinstance(uns, Mapping):
        raise ValueError(f"uns must be a mapping (a dict), got {type(uns).__name__}")

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        tag(f, "anndata")
        write_array(f, "X", x, compression)
        write_dataframe(f, "obs", obs, obs_names, compression)
        write_dataframe(f, "var", var, names, compression)
        group = write_group(f, "obsm")
        for key, m in matrices.items():
            write_array(group, key, m, compression)
        for empty in ("layers", "obsp", "varm", "varp"):
            write_group(f, empty)
        write_uns(f, "uns", dict(uns or {}), "")
    return Path(path)


def _classes(values: pd.Series, names: Mapping[int, str], what: str, ordered: bool) -> Any:
    """Integer classes as a Categorical of their names; -1 and NaN missing."""
    keys = np.array(sorted(names), dtype=np.int64)
    codes = pd.to_numeric(values, errors="coerce").fillna(-1).to_numpy(dtype=np.int64)
    pos = np.clip(np.searchsorted(keys, codes), 0, len(keys) - 1)
    hit = keys[pos] == codes
    bad = ~hit & (codes != -1)
    if bad.any():
        raise ValueError(
            f"{what} holds {sorted(set(codes[bad].tolist()))[:5]}, not one of "
            f"{keys.tolist()} (or -1 for none)"
        )
    categories = [names[int(k)] for k in keys]
    return pd.Categorical.from_codes(np.where(hit, pos, -1), categories, ordered=ordered)


def write_cells_h5ad(
    cells: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a cell table as AnnData (``.h5ad``): one observation per cell.

    - ``X``: the numeric per-cell features as float32 (every numeric column but the ids,
      centroids and classes); ``var["unit"]`` from each name (:func:`feature_unit`);
    - ``obs``: ``cell_id``, ``slide_id`` (categorical), ``tile_id``, ``positive_class``
      (ordered categorical ``Negative < 1+ < 2+ < 3+``, not graded missing) and ``region``
      (categorical of the tile's region class, when the table has ``region_class`` or
      ``region_name``), and any boolean or text column (text as categoricals).
      ``obs_names`` are the cell ids, or ``"<slide_id>:<cell_id>"`` for several slides;
    - ``obsm["spatial"]``: centroids (x, y) in µm, what squidpy reads;
      ``obsm["spatial_px"]``: the same in level-0 pixels;
    - ``uns``: `metadata` (an analysis's ``summary.json``: slide, mpp, stain vectors,
      calibration, parameters), the software version, and an ``export`` record.

    Parameters
    ----------
    cells : pandas.DataFrame
        A cell table (:mod:`napari_gbm.schema`; ``cells.parquet``, perhaps with
        ``region_class`` added by :func:`read_analysis_for_anndata`), of one or more slides.
    path : str or os.PathLike
        Destination ``.h5ad``, written atomically.
    metadata : mapping, optional
        JSON-able; stored in ``uns`` (None values left out).

    Returns
    -------
    pathlib.Path
        `path`.

    Raises
    ------
    ValueError
        If a column of :data:`REQUIRED_COLUMNS` is missing (they are named), a cell id
        repeats within a slide, a class column holds an unknown class, or a column cannot
        be stored (see :func:`write_h5ad`).
    """
    return write_h5ad(path, **cells_to_anndata(cells, metadata=metadata))


def cells_to_anndata(
    cells: pd.DataFrame, *, metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A cell table as the fields of an AnnData, as :func:`write_cells_h5ad` stores them.

    Also what the SpatialData export's table is made of
    (:mod:`napari_gbm.export.spatialdata`).

    Parameters
    ----------
    cells : pandas.DataFrame
        A cell table (see :func:`write_cells_h5ad`).
    metadata : mapping, optional
        JSON-able, for ``uns``.

    Returns
    -------
    dict
        ``X`` (float32), ``var_names``, ``obs``, ``obsm``, ``var`` and ``uns``: the keyword
        arguments of :func:`write_h5ad`.

    Raises
    ------
    ValueError
        As :func:`write_cells_h5ad`.
    """
    if not isinstance(cells, pd.DataFrame):
        raise ValueError(f"cells must be a pandas DataFrame, got {type(cells).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in cells.columns]
    if missing:
        raise ValueError(
            f"the cell table lacks {missing}: an AnnData of cells needs the columns "
            f"{list(REQUIRED_COLUMNS)} (the cell id and centroids in µm and level-0 px, as "
            "in cells.parquet of napari-gbm analyze)"
        )
    cell_id = cells["cell_id"].to_numpy(dtype=np.int64)
    names = pd.Series(cell_id.astype(str), dtype=object)
    slides = None
    if "slide_id" in cells.columns:
        slides = cells["slide_id"].astype(str).to_numpy(dtype=object)
        if len(set(slides)) > 1:
            names = pd.Series(slides, dtype=object) + ":" + names
    obs = pd.DataFrame({"cell_id": cell_id}, index=pd.Index(names.to_numpy(), dtype=object))
    if obs.index.has_duplicates:
        dup = obs.index[obs.index.duplicated()].unique()[:5].tolist()
        raise ValueError(f"cell ids repeat within a slide: {dup} (the same slide added twice?)")
    if slides is not None:
        obs["slide_id"] = pd.Categorical(slides)
    if "tile_id" in cells.columns:
        obs["tile_id"] = cells["tile_id"].to_numpy()
    if "positive_class" in cells.columns:
        grades = {k: v[0] for k, v in POSITIVE_CLASSES.items()}
        obs["positive_class"] = _classes(cells["positive_class"], grades, "positive_class", True)
    if "region_class" in cells.columns:
        obs["region"] = _classes(cells["region_class"], REGION_CLASSES, "region_class", False)
    elif "region_name" in cells.columns:
        regions = [REGION_CLASSES[k] for k in sorted(REGION_CLASSES)]
        obs["region"] = pd.Categorical(cells["region_name"].to_numpy(), categories=regions)
    features = []
    for col in cells.columns:
        s = cells[col]
        if col in REQUIRED_COLUMNS or col in ("slide_id", "region_name") or col in obs:
            continue
        if pd.api.types.is_bool_dtype(s.dtype) or not pd.api.types.is_numeric_dtype(s.dtype):
            text = not pd.api.types.is_bool_dtype(s.dtype)  # text as categoricals, as anndata
            obs[str(col)] = pd.Categorical(s.to_numpy()) if text else s.to_numpy()
        elif col not in NOT_FEATURES:
            features.append(col)
    x = cells[features].to_numpy(dtype=np.float32, na_value=np.nan)
    var = pd.DataFrame({"unit": [feature_unit(str(c)) for c in features]}, index=features)
    obsm = {k: cells[list(cols)].to_numpy(dtype=np.float64) for k, cols in SPATIAL_COLUMNS.items()}
    uns = _export_metadata(
        metadata,
        format="h5ad",
        n_cells=len(cells),
        obsm_units={"spatial": "µm", "spatial_px": "px (level 0)"},
        positive_class="QuPath's intensity classes; not graded (-1) is missing",
    )
    return {"X": x, "var_names": features, "obs": obs, "obsm": obsm, "var": var, "uns": uns}


def read_analysis_for_anndata(
    folder: str | os.PathLike[str],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The cell table of an analysis folder with each cell's tile region, and its summary.

    Parameters
    ----------
    folder : str or os.PathLike
        A complete ``napari-gbm analyze`` folder (:func:`napari_gbm.outputs.is_complete`).

    Returns
    -------
    cells : pandas.DataFrame
        ``cells.parquet`` with ``region_class`` (int8, the region class of the cell's tile
        in ``tiles.parquet``; -1 where the tile is unknown) added.
    summary : dict
        ``summary.json``: what :func:`write_cells_h5ad` stores as ``metadata``.

    Raises
    ------
    ValueError
        If `folder` is not a complete analysis folder.
    """
    folder = Path(folder)
    if not is_complete(folder):
        raise ValueError(
            f"{folder} is not a complete analysis folder (it needs cells.parquet, "
            "tiles.parquet and summary.json): run napari-gbm analyze on the slide first"
        )
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    cells = pd.read_parquet(folder / "cells.parquet")
    tiles = pd.read_parquet(folder / "tiles.parquet", columns=["tile_id", "region_class"])
    region = pd.Series(tiles["region_class"].to_numpy(), index=tiles["tile_id"].to_numpy())
    if "tile_id" in cells.columns:
        found = region.reindex(cells["tile_id"].to_numpy()).fillna(-1)
        cells["region_class"] = found.to_numpy(dtype=np.int8)
    return cells, summary
