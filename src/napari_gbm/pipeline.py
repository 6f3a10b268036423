"""The slide pipeline, one step per function, shared by the CLI, the widgets and dask.

So far: tissue detection and tiling (:func:`tile_slide`).
"""

from __future__ import annotations

from napari_gbm.slide import Slide, SlideError
from napari_gbm.tiling import TileGrid, TilingParams, make_tile_grid
from napari_gbm.tissue import TissueMask, TissueParams, detect_tissue

__all__ = ["NoTissueError", "tile_slide"]


class NoTissueError(SlideError):
    """The slide has no tissue (or no tile passes the tissue-fraction cut)."""


def tile_slide(
    slide: Slide,
    tissue_params: TissueParams | None = None,
    tiling_params: TilingParams | None = None,
) -> tuple[TissueMask, TileGrid]:
    """Detect tissue and lay the tile grid over it.

    Raises
    ------
    SlideError
        If the slide has no pixel size (give one with ``Slide(path, mpp=...)``).
    NoTissueError
        If no tissue is found, or no tile has more tissue than the cut.
    """
    tiling_params = tiling_params or TilingParams()
    slide.require_mpp()
    tissue = detect_tissue(slide, tissue_params)
    if not tissue.mask.any():
        raise NoTissueError(
            slide.path,
            f"no tissue found (optical-density threshold {tissue.threshold_od:.3f}); "
            "is the slide blank or overexposed?",
        )
    grid = make_tile_grid(slide, tissue, tiling_params)
    if grid.selected.empty:
        raise NoTissueError(
            slide.path,
            f"no tile has more than {tiling_params.min_tissue_fraction:.0%} tissue; "
            "lower the minimum tissue fraction",
        )
    return tissue, grid
