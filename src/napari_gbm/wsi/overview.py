"""The overview picture: slide thumbnail, tissue outline and tile grid, for a quick look
at what an analysis covered without opening napari."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage as ndi

from napari_gbm.wsi.slide import Slide
from napari_gbm.wsi.tiling import TileGrid
from napari_gbm.wsi.tissue import TissueMask

__all__ = ["render_overview"]

TISSUE_RGB = (0, 170, 60)
TILE_RGB = (30, 90, 230)


def render_overview(
    slide: Slide,
    tissue: TissueMask | None = None,
    grid: TileGrid | None = None,
    *,
    max_size: int = 1600,
) -> np.ndarray:
    """RGB overview of a slide and what its analysis covered.

    Thumbnail with the tissue outlined in green, the selected tile cores as blue
    rectangles, and a caption line above it (file name, µm/px, tissue fraction and area,
    tile count and size).

    Parameters
    ----------
    slide : Slide
        The slide.
    tissue : TissueMask, optional
        Tissue to outline; None draws no outline.
    grid : TileGrid, optional
        Tile grid whose selected cores are drawn; None draws none.
    max_size : int, default 1600
        Longest side of the thumbnail, pixels (never upsampled beyond level 0).

    Returns
    -------
    ndarray of uint8, shape (h + caption height, w, 3)
        The picture.
    """
    w0, h0 = slide.dimensions
    f = min(1.0, max_size / max(w0, h0))
    tw, th = max(1, round(w0 * f)), max(1, round(h0 * f))
    img = slide.read_downsampled((0, 0, w0, h0), (tw, th)).astype(np.float32)

    if tissue is not None and tissue.mask.any():
        m = tissue.sampled(th, tw)
        # outline only: a tint would change the stain colours a pathologist reads
        edge = m & ~ndi.binary_erosion(m, iterations=max(2, round(max(tw, th) / 600)))
        img[edge] = TISSUE_RGB

    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    if grid is not None:
        sel = grid.selected
        for x0, y0, x1, y1 in sel[
            ["core_x0_px", "core_y0_px", "core_x1_px", "core_y1_px"]
        ].to_numpy():
            draw.rectangle([x0 * f, y0 * f, x1 * f - 1, y1 * f - 1], outline=TILE_RGB, width=1)

    caption = _caption(slide, tissue, grid)
    font = _font(max(12, tw // 70))
    bbox = draw.textbbox((0, 0), caption, font=font)
    bar_h = int(bbox[3] - bbox[1]) + 10
    canvas = Image.new("RGB", (tw, th + bar_h), (255, 255, 255))
    canvas.paste(pil, (0, bar_h))
    ImageDraw.Draw(canvas).text((5, 4), caption, fill=(20, 20, 20), font=font)
    return np.asarray(canvas)


def _font(size: int) -> Any:
    """DejaVu Sans (shipped inside matplotlib, so µ and ² render), else Pillow's own."""
    try:
        path = files("matplotlib") / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        return ImageFont.truetype(str(path), size)
    except OSError:
        return ImageFont.load_default(size=size)


def _caption(slide: Slide, tissue: TissueMask | None, grid: TileGrid | None) -> str:
    parts = [slide.path.name]
    parts.append("mpp unknown" if slide.mpp is None else f"{slide.mpp:.3g} µm/px")
    if tissue is not None:
        parts.append(
            f"tissue {100 * tissue.tissue_fraction:.1f}% ({tissue.tissue_area_mm2:.2f} mm²)"
        )
    if grid is not None:
        n_sel = int(grid.tiles["selected"].sum())
        parts.append(
            f"{n_sel} tiles of {grid.params.tile_size_px}px at {grid.effective_mpp:.3g} µm/px"
        )
    return "  |  ".join(parts)
