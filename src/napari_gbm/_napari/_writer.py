"""npe2 writers: a cells Points layer as a table or QuPath GeoJSON, a nucleus-outline Labels
layer as QuPath GeoJSON. The work is in :mod:`napari_gbm.export`; this module only reads
the layer.

Layer contracts
---------------
- **Cells (Points)**: ``features`` is the cell table (one row per point, see
  :mod:`napari_gbm.schema`); ``metadata["napari_gbm"]`` holds parameters and versions, and
  optionally ``"mpp"`` (µm per level-0 pixel, else taken from the centroid columns). Tables
  keep our column names (``write_cells``) or take QuPath's (``write_cells_qupath_names``).
- **Nucleus outlines (Labels)**: a 2-D label image of a region of the slide (label values
  are cell ids), with ``metadata["napari_gbm"]["region"] = {"x0": float, "y0": float,
  "downsample": float}``: level-0 ``(x0, y0)`` is the top-left corner of label pixel (0, 0)
  and ``downsample`` the level-0 pixels per label pixel, so label pixel ``(row, col)``
  covers level-0 ``[x0 + col d, x0 + (col + 1) d) x [y0 + row d, y0 + (row + 1) d)``.
  (In napari such a layer sits at ``scale = (d mpp, d mpp)`` and ``translate =
  ((y0 + (d - 1) / 2) mpp, (x0 + (d - 1) / 2) mpp)`` over the slide.)

npe2 calls single-layer writers as ``writer(path, data, meta)`` with the layer's data and
its state dict (``features``, ``metadata``, ``name``, ...) and expects the written paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_gbm.export import cells_to_geojson, export_table, labels_to_geojson


def _gbm_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    gbm = dict((meta.get("metadata") or {}).get("napari_gbm") or {})
    if meta.get("name"):
        gbm.setdefault("layer", str(meta["name"]))
    return gbm


def _cell_table(meta: dict[str, Any]) -> pd.DataFrame:
    features = meta.get("features")
    if not isinstance(features, pd.DataFrame) or features.shape[1] == 0:
        raise ValueError(
            f"layer {meta.get('name', '')!r} has no features table: napari-gbm writes the cell "
            "table of a cells Points layer (layer.features, one row per cell)"
        )
    return features


def _write_cells(path: str, meta: dict[str, Any], naming: str) -> list[str]:
    table = _cell_table(meta)
    gbm = _gbm_metadata(meta)
    if Path(path).suffix.lower() == ".geojson":
        mpp = gbm.get("mpp")
        cells_to_geojson(table, path, metadata=gbm, mpp=float(mpp) if mpp else None)
    else:
        export_table(table, path, naming=naming, metadata=gbm)
    return [str(path)]


def write_cells(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Cells layer -> .csv, .tsv, .parquet (our column names) or .geojson (QuPath)."""
    return _write_cells(path, meta, "napari_gbm")


def write_cells_qupath_names(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Cells layer -> .csv or .tsv with QuPath's measurement names."""
    return _write_cells(path, meta, "qupath")


def write_nucleus_outlines(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Nucleus-outline Labels layer -> QuPath GeoJSON of exact pixel-edge polygons."""
    gbm = _gbm_metadata(meta)
    region = gbm.get("region")
    if not isinstance(region, dict) or not {"x0", "y0", "downsample"} <= set(region):
        raise ValueError(
            f"layer {meta.get('name', '')!r} does not say where it lies in the slide: set "
            'metadata["napari_gbm"]["region"] = {"x0": ..., "y0": ..., "downsample": ...} '
            "(level-0 corner of label pixel (0, 0), level-0 pixels per label pixel)"
        )
    labels = data[0] if meta.get("multiscale") else data
    labels = np.asarray(labels)
    offset = (float(region["x0"]), float(region["y0"]))
    labels_to_geojson(
        labels, path, offset=offset, downsample=float(region["downsample"]), metadata=gbm
    )
    return [str(path)]
