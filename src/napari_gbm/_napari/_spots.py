"""Spots of ``napari-gbm spots`` (its ``.parquet``) as a napari Points layer: each spot a
disc (Visium) or square (Visium HD bin) of its real size in µm over the slide, carrying the
per-spot features, coloured by the Ki-67 positive fraction (cell density where nothing is
graded) and recoloured like any Points layer (``layer.face_color = "nucleus_area_um2_mean"``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from napari_gbm import __version__
from napari_gbm._napari._layers import LayerData
from napari_gbm.io import read_parquet_metadata

#: the colour map and limits of the features a spots layer is coloured by at first
SPOT_COLOURS: dict[str, tuple[str, tuple[float, float] | None]] = {
    "positive_fraction": ("inferno", (0.0, 1.0)),
    "cell_density_per_mm2": ("magma", None),
}


def is_spots_file(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a Parquet file that ``napari-gbm spots`` wrote."""
    p = Path(path)
    if p.suffix.lower() != ".parquet" or not p.is_file():
        return False
    try:
        return read_parquet_metadata(p).get("kind") == "spots"
    except (OSError, ValueError, pa.ArrowException):
        return False


def spots_points_layer(
    table: pd.DataFrame, metadata: dict[str, Any], *, name: str | None = None
) -> LayerData:
    """Spots as Points at their centres (level-0 px, scaled to µm), sized to their diameter.

    Parameters
    ----------
    table : pandas.DataFrame
        The spot table (``centre_x_px``, ``centre_y_px`` and the features).
    metadata : dict
        Its metadata: ``slide_mpp`` (µm/px), ``diameter_um``, ``shape``, ``slide_id``.
    name : str, optional
        Layer name; default ``"<slide_id> spots"``.

    Returns
    -------
    LayerData
        ``(data, kwargs, "points")``: ``size`` the spot diameter in level-0 pixels (so the
        diameter in µm on the µm-scaled canvas), the table as ``features``, the face
        coloured by ``positive_fraction`` (0-1, inferno) or, with no graded cell,
        ``cell_density_per_mm2``; spots without a value are transparent inside a white rim.
    """
    mpp = float(metadata.get("slide_mpp") or 1.0)
    data = table[["centre_y_px", "centre_x_px"]].to_numpy(np.float64)
    by = "positive_fraction"
    if by not in table or not np.isfinite(table[by].to_numpy(np.float64)).any():
        by = "cell_density_per_mm2"
    cmap, limits = SPOT_COLOURS[by]
    if limits is None:
        v = table[by].to_numpy(np.float64)
        v = v[np.isfinite(v)]
        hi = float(np.percentile(v, 99)) if v.size else 1.0
        limits = (0.0, hi if hi > 0 else 1.0)
    kwargs = {
        "name": name or f"{metadata.get('slide_id', 'slide')} spots",
        "scale": (mpp, mpp),
        "units": ("um", "um") if metadata.get("slide_mpp") else ("pixel", "pixel"),
        "size": float(metadata["diameter_um"]) / mpp,
        "symbol": "square" if metadata.get("shape") == "square" else "disc",
        "features": table.reset_index(drop=True),
        "face_color": by,
        "face_colormap": cmap,
        "face_contrast_limits": limits,
        "border_color": "white",
        "border_width": 0.04,  # of the diameter: a thin rim shows spots without a value
        "opacity": 0.8,
        "metadata": {
            "napari_gbm": {
                **metadata,
                "kind": "spots",
                "colour_by": {"column": by, "limits": limits},
                "software": metadata.get("software") or {"napari_gbm": __version__},
            }
        },
    }
    return data, kwargs, "points"


def read_spots(path: str | os.PathLike[str] | list[str]) -> list[LayerData]:
    """The layer of a spots ``.parquet`` (the napari reader's entry for it)."""
    p = Path(path if isinstance(path, str | os.PathLike) else path[0])
    return [spots_points_layer(pd.read_parquet(p), read_parquet_metadata(p))]
