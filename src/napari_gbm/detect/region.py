"""Cells of one region of a slide (the current view, or a drawn shape), with nucleus
outlines to show: what the Cells widget runs.

The region's cells come from the same tiled analysis as a whole slide (the tiles that
touch the region, halo included, and the ownership rule), so they are the very cells a
whole-slide run finds there, with the same measurements. Outlines are a label image of
the region at the analysis resolution, from one more segmentation of the region itself
(display only: at the region's edge they can differ from the tiled cells).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from napari_gbm.biomarkers.ihc import PositivityParams
from napari_gbm.detect.calibration import SlideCalibration
from napari_gbm.detect.cells import CellParams, analyze_cells, needed_overlap_px, slide_calibration
from napari_gbm.detect.segment import segment_nuclei
from napari_gbm.detect.stain import StainVectors, stain_preset
from napari_gbm.wsi.slide import Slide
from napari_gbm.wsi.tiling import TilingParams, make_tile_grid

__all__ = ["MAX_OUTLINE_PIXELS", "RegionCells", "analyze_region"]

#: outlines are drawn for regions up to this many pixels at the analysis resolution
MAX_OUTLINE_PIXELS = 4096 * 4096


@dataclass
class RegionCells:
    """The cells of one region of a slide, with nucleus outlines to show.

    Attributes
    ----------
    cells : DataFrame
        The cell table of the region (see :mod:`napari_gbm.schema`).
    nuclei : numpy.ndarray of int, optional
        Nucleus label image of the region at ``downsample`` level-0 px per pixel, its
        top-left corner at level-0 ``origin``; None when the region is too large to
        outline (over :data:`MAX_OUTLINE_PIXELS`) or outlines were not asked for.
    origin : (float, float)
        Top-left corner (x, y) of ``nuclei``, level-0 px.
    downsample : float
        Level-0 px per pixel of ``nuclei`` (the analysis resolution).
    box : (float, float, float, float)
        The region (x, y, width, height) in level-0 px, clipped to the slide.
    """

    cells: pd.DataFrame
    nuclei: np.ndarray | None
    origin: tuple[float, float]
    downsample: float
    box: tuple[float, float, float, float]


def analyze_region(
    slide: Slide,
    box_l0: Sequence[float],
    params: CellParams | None = None,
    *,
    polygon: np.ndarray | None = None,
    tiling: TilingParams | None = None,
    stain_vectors: StainVectors | None = None,
    calibration: SlideCalibration | None = None,
    positivity: PositivityParams | None = None,
    outlines: bool = True,
    progress: Callable[[int, int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> RegionCells:
    """Detect and measure the cells whose centroid lies in a region of the slide.

    Parameters
    ----------
    slide : Slide
        The slide; it needs a pixel size.
    box_l0 : sequence of float
        The region (x, y, width, height) in level-0 px; clipped to the slide.
    params : CellParams, optional
        Default: ``CellParams()``.
    polygon : (n, 2) numpy.ndarray, optional
        (x, y) level-0 vertices (n >= 3): keep only the cells inside it (the box should
        contain it).
    tiling : TilingParams, optional
        The grid (default: 0.5 µm/px, 1024 px tiles, the halo detection needs).
    stain_vectors : StainVectors, optional
        Starting stain vectors (default: the preset of ``params.stain``).
    calibration : SlideCalibration, optional
        The *slide's* calibration (pass it when analysing many regions of one slide:
        :func:`napari_gbm.detect.cells.slide_calibration`); None: measured from the whole
        slide here, never from the region, so a region's cells are the cells a
        whole-slide run finds there.
    positivity : PositivityParams, optional
        How ``positive_class`` grades cells, as for :func:`~napari_gbm.detect.cells.analyze_cells`.
    outlines : bool, default True
        Segment the region once more for its nucleus outlines (``RegionCells.nuclei``).
    progress : callable(tiles_done, tiles_total, cells_so_far), optional
        Called after each tile.
    cancel : callable() -> bool, optional
        Checked before each tile; when it returns True,
        :class:`~napari_gbm.detect.cells.Cancelled` is raised.

    Returns
    -------
    RegionCells
        The region's cells, with ``cell_id`` 1..n in tile order before the region's
        selection (so not necessarily consecutive), and its outlines.

    Raises
    ------
    SlideError
        If the slide has no pixel size.
    ValueError
        If the box does not overlap the slide, or `polygon` is not an (n >= 3, 2) array.
    Cancelled
        When `cancel` returns True.
    """
    params = params or CellParams()
    slide.require_mpp()
    w0, h0 = slide.dimensions
    x, y, w, h = (float(v) for v in box_l0)
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(w0), x + w), min(float(h0), y + h)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(
            f"the region ({x:.0f}, {y:.0f}, {w:.0f} x {h:.0f} px) does not overlap the slide "
            f"({w0} x {h0} px); move the view or the shape over the slide"
        )
    tiling = tiling or TilingParams(overlap_px=needed_overlap_px(params, TilingParams().target_mpp))
    grid = make_tile_grid(slide, None, tiling)
    t = grid.tiles
    touch = (
        (t["core_x1_px"] > x0)
        & (t["core_x0_px"] < x1)
        & (t["core_y1_px"] > y0)
        & (t["core_y0_px"] < y1)
    )
    grid = dataclasses.replace(grid, tiles=t.assign(selected=touch.to_numpy()))
    cal = slide_calibration(
        slide, params, target_mpp=tiling.target_mpp, stain_vectors=stain_vectors, given=calibration
    )
    stains = cal.stains if cal else stain_vectors or stain_preset(params.stain)
    cells = analyze_cells(
        slide,
        grid,
        params,
        stain_vectors=stains,
        calibration=cal,
        slide_id=slide.path.stem,
        positivity=positivity,
        progress=progress,
        cancel=cancel,
    )
    cx = cells["centroid_x_px"].to_numpy()
    cy = cells["centroid_y_px"].to_numpy()
    keep = (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)
    if polygon is not None:
        # lazy: matplotlib takes 0.2 s to import, only polygon selections need it
        from matplotlib.path import Path as MplPath

        poly = np.asarray(polygon, dtype=np.float64)
        if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
            raise ValueError("polygon must be an (n >= 3, 2) array of (x, y) vertices")
        keep &= MplPath(poly).contains_points(np.column_stack([cx, cy]))
    cells = cells.loc[keep].reset_index(drop=True)

    nuclei = None
    scale = grid.scale
    if outlines:
        ow, oh = round((x1 - x0) / scale), round((y1 - y0) / scale)
        if 0 < ow * oh <= MAX_OUTLINE_PIXELS:
            rgb = slide.read_downsampled((x0, y0, x1 - x0, y1 - y0), (ow, oh))
            nuclei = segment_nuclei(
                rgb,
                grid.effective_mpp,
                stains,
                params.nucleus,
                cal,
                origin=(round(x0 / scale), round(y0 / scale)),
                n_threads=params.kernel_threads,
            ).nuclei
    return RegionCells(cells, nuclei, (x0, y0), scale, (x0, y0, x1 - x0, y1 - y0))
