"""The cells of one tile: detection, measurement and the ownership rule, for the
whole-slide run of :mod:`napari_gbm.detect.cells`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from napari_gbm.biomarkers.ihc import NOT_APPLICABLE, PositivityParams, positive_class
from napari_gbm.detect.calibration import SlideCalibration
from napari_gbm.detect.segment import segment_nuclei
from napari_gbm.detect.stain import StainVectors
from napari_gbm.features.compartments import measure_compartments
from napari_gbm.features.texture import haralick_features
from napari_gbm.schema import HARALICK
from napari_gbm.wsi.tiling import TileGrid

if TYPE_CHECKING:
    from napari_gbm.detect.cells import CellParams

#: Haralick texture on nucleus hematoxylin OD quantised over this range (OD units).
HARALICK_OD_LIMITS = (0.0, 2.0)


def grade(part: pd.DataFrame, positivity: PositivityParams) -> np.ndarray:
    """Each cell's positivity class (0 negative, 1-3 = 1+..3+), or ``NOT_APPLICABLE`` when
    the table has no ``positivity.column`` (an H&E slide has no DAB)."""
    if positivity.column not in part:
        return np.full(len(part), NOT_APPLICABLE, np.int8)
    return positive_class(part[positivity.column].to_numpy(), positivity.thresholds)


def tile_cells(
    rgb: np.ndarray,
    tile: Any,
    grid: TileGrid,
    stains: StainVectors,
    params: CellParams,
    calibration: SlideCalibration | None = None,
) -> pd.DataFrame:
    """The cells a tile owns, measured: nuclei and cells detected on ``rgb``, their
    compartment features (and Haralick texture when ``params.texture``), centroids moved to
    level-0 pixels of the slide, and only those whose centroid is in the tile's core (the
    ownership rule of :mod:`napari_gbm.wsi.tiling`, so seam cells are counted once).

    Parameters
    ----------
    rgb : ndarray of uint8, shape (h, w, 3)
        The tile with its halo, read at the grid's resolution.
    tile : namedtuple
        The tile's row of ``grid.tiles`` (``tile_id``, ``x0_px``, ``y0_px``, ``core_*_px``).
    grid : TileGrid
        The tile grid (its ``effective_mpp`` and level-0 ``scale``).
    stains : StainVectors
        The stain vectors of the slide.
    params : CellParams
        Detection and feature parameters.
    calibration : SlideCalibration, optional
        The slide's calibration (its thresholds), if any.

    Returns
    -------
    DataFrame
        One row per owned cell with ``tile_id``; measurements as float32, centroids in
        level-0 px (float64); empty when the tile has no nucleus.
    """
    mpp = grid.effective_mpp
    s = grid.scale
    origin = (round(float(tile.x0_px) / s), round(float(tile.y0_px) / s))
    seg = segment_nuclei(
        rgb,
        mpp,
        stains,
        params.nucleus,
        calibration,
        origin=origin,
        n_threads=params.kernel_threads,
    )
    if int(seg.nuclei.max(initial=0)) == 0:
        return pd.DataFrame()
    images = {name: seg.stains[name] for name in stains.names[:2]}
    table = measure_compartments(
        seg.nuclei, seg.cells, images, mpp=mpp, n_threads=params.kernel_threads
    )
    if params.texture:
        tex = haralick_features(
            seg.nuclei,
            seg.stains["hematoxylin"],
            grey_limits=HARALICK_OD_LIMITS,
            n_threads=params.kernel_threads,
            prefix="nucleus_",
        )
        table = table.merge(tex, on="label", how="left")
    else:  # the columns stay, empty: one schema whatever the options
        names = [f"nucleus_haralick_{f}_{agg}" for f in HARALICK for agg in ("mean", "range")]
        empty = pd.DataFrame(np.nan, index=table.index, columns=names, dtype=np.float32)
        table = pd.concat([table, empty], axis=1)
    # tile pixels -> level-0 pixels of the slide (pixel centres: +0.5 before scaling)
    x0, y0 = float(tile.x0_px), float(tile.y0_px)
    cx = x0 + (table["centroid_x_px"].to_numpy() + 0.5) * s - 0.5
    cy = y0 + (table["centroid_y_px"].to_numpy() + 0.5) * s - 0.5
    own = (
        (cx >= tile.core_x0_px)
        & (cx < tile.core_x1_px)
        & (cy >= tile.core_y0_px)
        & (cy < tile.core_y1_px)
    )
    table = table.loc[own].copy()
    table["centroid_x_px"] = cx[own]
    table["centroid_y_px"] = cy[own]
    table["tile_id"] = np.int64(tile.tile_id)
    # measurements as float32 right away: the per-tile parts of a whole slide add up
    # (the schema stores them so anyway; coordinates stay float64)
    measures = [
        c
        for c in table.columns
        if table[c].dtype == np.float64 and c not in ("centroid_x_px", "centroid_y_px")
    ]
    table[measures] = table[measures].astype(np.float32)
    return table.drop(columns=["label"])
