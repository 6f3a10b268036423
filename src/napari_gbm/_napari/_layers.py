"""Core results as napari layer-data tuples ``(data, kwargs, layer_type)``.

Every layer is placed in µm (``scale`` from the slide's pixel size) so that the slide,
the tissue mask and the tiles line up at any zoom, and carries its parameters and the
software version in ``metadata["napari_gbm"]``. When a slide has no known pixel size,
layers are placed in level-0 pixels instead and say so in their metadata.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_gbm import __version__
from napari_gbm.slide import Slide
from napari_gbm.tiling import TileGrid
from napari_gbm.tissue import TissueMask

LayerData = tuple[Any, dict[str, Any], str]

#: Beyond this many tiles a Shapes layer gets slow; the per-tile image still shows them.
MAX_TILE_SHAPES = 5000
TISSUE_COLOR = "lime"


def _unit(slide_mpp: float | None) -> tuple[float, str]:
    return (slide_mpp, "um") if slide_mpp else (1.0, "pixel")


def slide_metadata(slide: Slide) -> dict[str, Any]:
    info = slide.info()
    info["software"] = {"napari_gbm": __version__}
    return info


def slide_layer(slide: Slide, name: str | None = None) -> LayerData:
    """A lazy multiscale RGB image of the slide, scaled in µm."""
    levels = slide.to_dask()
    # napari reads multiscale data best with a pyramid that shrinks; drop tiny levels
    mpp, unit = _unit(slide.mpp)
    kwargs = {
        "name": name or slide.path.stem,
        "rgb": True,
        "multiscale": len(levels) > 1,
        "contrast_limits": (0, 255),
        "scale": (mpp, mpp),
        "units": (unit, unit),
        "metadata": {"napari_gbm": slide_metadata(slide), "slide_path": str(slide.path)},
    }
    data = levels if len(levels) > 1 else levels[0]
    return data, kwargs, "image"


def tissue_layer(tissue: TissueMask, slide_mpp: float | None, name: str = "tissue") -> LayerData:
    """The tissue mask as a Labels layer (1 = tissue) over the slide."""
    mpp, unit = _unit(slide_mpp)
    ds = tissue.downsample
    # mask pixel r covers level-0 [r ds, (r + 1) ds): its centre is at (r + 0.5) ds - 0.5
    offset = (ds - 1) / 2 * mpp
    kwargs = {
        "name": name,
        "scale": (ds * mpp, ds * mpp),
        "translate": (offset, offset),
        "units": (unit, unit),
        "opacity": 0.3,
        "colormap": {None: "transparent", 0: "transparent", 1: TISSUE_COLOR},
        "metadata": {
            "napari_gbm": {
                "kind": "tissue_mask",
                **tissue.summary(),
                "software": {"napari_gbm": __version__},
            }
        },
    }
    return tissue.mask.astype(np.uint8), kwargs, "labels"


def tile_fraction_layer(grid: TileGrid, name: str = "tile tissue fraction") -> LayerData:
    """One pixel per tile core, valued by its tissue fraction (0-1)."""
    mpp, unit = _unit(grid.slide_mpp)
    t = grid.tiles
    img = np.zeros((grid.n_rows, grid.n_cols), np.float32)
    img[t["row"].to_numpy(), t["col"].to_numpy()] = t["tissue_fraction"].to_numpy()
    step = grid.params.tile_size_px * grid.scale  # level-0 px per core
    # the first core may be clipped by an offset grid: place cells on the full grid
    ox = grid.params.offset_px[0] % grid.params.tile_size_px * grid.scale + grid.col_min * step
    oy = grid.params.offset_px[1] % grid.params.tile_size_px * grid.scale + grid.row_min * step
    kwargs = {
        "name": name,
        "scale": (step * mpp, step * mpp),
        "translate": ((oy + step / 2 - 0.5) * mpp, (ox + step / 2 - 0.5) * mpp),
        "units": (unit, unit),
        "colormap": "viridis",
        "contrast_limits": (0.0, 1.0),
        "opacity": 0.4,
        "visible": False,
        "metadata": {
            "napari_gbm": {
                "kind": "tile_tissue_fraction",
                **grid.metadata(),
                "software": {"napari_gbm": __version__},
            }
        },
    }
    return img, kwargs, "image"


def tile_shapes_layer(grid: TileGrid, name: str = "tiles") -> LayerData | None:
    """Selected tile cores as rectangles (edges only), with the tile table as features.
    ``None`` when there are more than :data:`MAX_TILE_SHAPES` tiles."""
    sel = grid.selected
    if len(sel) > MAX_TILE_SHAPES or len(sel) == 0:
        return None
    mpp, unit = _unit(grid.slide_mpp)
    x0 = (sel["core_x0_px"].to_numpy() - 0.5) * mpp
    y0 = (sel["core_y0_px"].to_numpy() - 0.5) * mpp
    x1 = (sel["core_x1_px"].to_numpy() - 0.5) * mpp
    y1 = (sel["core_y1_px"].to_numpy() - 0.5) * mpp
    rects = np.stack(
        [
            np.stack([y0, x0], 1),
            np.stack([y0, x1], 1),
            np.stack([y1, x1], 1),
            np.stack([y1, x0], 1),
        ],
        axis=1,
    )
    kwargs = {
        "name": name,
        "shape_type": "rectangle",
        "units": (unit, unit),
        # edges in data units (µm): a small fraction of a tile, visible at slide zoom
        "edge_width": 0.015 * grid.params.tile_size_px * grid.effective_mpp,
        "edge_color": "tissue_fraction",
        "edge_colormap": "plasma",
        "face_color": "transparent",
        "features": sel.reset_index(drop=True),
        "metadata": {
            "napari_gbm": {
                "kind": "tiles",
                **grid.metadata(),
                "software": {"napari_gbm": __version__},
            }
        },
    }
    return list(rects), kwargs, "shapes"
