"""Whole-slide images: opening a slide in µm, tissue detection, the tile grid, the overview.

- :mod:`.slide`: :class:`Slide`, one interface over OpenSlide, tifffile and Pillow;
- :mod:`._backends`: the pixel sources behind it, and :mod:`._open`: picking one for a file
  (or saying why none can read it);
- :mod:`.tissue`: :func:`detect_tissue` at low resolution, :class:`TissueMask`;
- :mod:`.tiling`: :class:`TileGrid` at a target resolution and the ownership rule;
- :mod:`.overview`: thumbnail with tissue outline and tile grid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_gbm._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "Slide": "slide",
        "SlideError": "slide",
        "TissueParams": "tissue",
        "TissueMask": "tissue",
        "detect_tissue": "tissue",
        "TilingParams": "tiling",
        "TileGrid": "tiling",
        "make_tile_grid": "tiling",
        "iter_tiles": "tiling",
        "render_overview": "overview",
    },
)

if TYPE_CHECKING:
    from napari_gbm.wsi.overview import render_overview
    from napari_gbm.wsi.slide import Slide, SlideError
    from napari_gbm.wsi.tiling import TileGrid, TilingParams, iter_tiles, make_tile_grid
    from napari_gbm.wsi.tissue import TissueMask, TissueParams, detect_tissue
