"""Tile geometry at a target resolution, and the ownership rule.

The slide is covered by a regular grid of *cores* of ``tile_size_px`` pixels at the target
resolution; each tile is read with a *halo* of ``overlap_px`` on every side, so that an
object near a seam is seen whole by the tile that owns it. Cores partition the slide
(half-open boxes), so an object belongs to exactly one tile: the one whose core holds its
centroid (:func:`owner_tile_ids`). Nothing on a seam is counted twice or lost.

Frames: ``*_px`` columns are level-0 pixels (x = column), ``*_um`` columns are µm; tile
arrays returned by :func:`read_tile` are at the grid's ``effective_mpp``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from napari_gbm.wsi.slide import Slide
from napari_gbm.wsi.tissue import TissueMask

__all__ = [
    "TileGrid",
    "TilingParams",
    "iter_tiles",
    "make_tile_grid",
    "owner_tile_ids",
    "read_tile",
]

#: A slide pixel size within this relative distance of target/k (k integer) is read at
#: exactly k level-0 px per tile px, without resampling (QuPath does the same).
SNAP_TOLERANCE = 0.02

TILE_COLUMNS = {
    "tile_id": "int64",
    "row": "int64",
    "col": "int64",
    "core_x0_px": "float64",
    "core_y0_px": "float64",
    "core_x1_px": "float64",
    "core_y1_px": "float64",
    "x0_px": "float64",
    "y0_px": "float64",
    "x1_px": "float64",
    "y1_px": "float64",
    "core_x0_um": "float64",
    "core_y0_um": "float64",
    "core_width_um": "float64",
    "core_height_um": "float64",
    "tissue_fraction": "float64",
    "selected": "bool",
}


@dataclass(frozen=True)
class TilingParams:
    """Tile grid parameters; sizes are pixels at `target_mpp`.

    Parameters
    ----------
    target_mpp : float, default 0.5
        Resolution of the tiles, µm/px (snapped to an integer level-0 downsample when
        within 2 %).
    tile_size_px : int, default 1024
        Side of a tile's core, pixels at `target_mpp`; at least 16.
    overlap_px : int, default 64
        Halo read on every side of the core, pixels at `target_mpp`; in
        ``[0, tile_size_px)``.
    min_tissue_fraction : float, default 0.0
        A tile is selected when its core's tissue fraction (0-1) exceeds this; 0 selects
        every tile with any tissue.
    offset_px : tuple of int, default (0, 0)
        ``(x, y)`` shift of the grid origin, pixels at `target_mpp` (taken modulo
        `tile_size_px`).

    Raises
    ------
    ValueError
        If `target_mpp` is not positive and finite, `tile_size_px` < 16, `overlap_px` is
        outside ``[0, tile_size_px)``, or `min_tissue_fraction` is outside [0, 1].
    """

    target_mpp: float = 0.5
    tile_size_px: int = 1024
    overlap_px: int = 64
    min_tissue_fraction: float = 0.0
    offset_px: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if not (self.target_mpp > 0 and math.isfinite(self.target_mpp)):
            raise ValueError(f"target_mpp must be a positive µm/px value, got {self.target_mpp}")
        if self.tile_size_px < 16:
            raise ValueError(f"tile_size_px must be at least 16, got {self.tile_size_px}")
        if not 0 <= self.overlap_px < self.tile_size_px:
            raise ValueError(
                f"overlap_px must be in [0, tile_size_px), got {self.overlap_px} "
                f"for tiles of {self.tile_size_px}"
            )
        if not 0 <= self.min_tissue_fraction <= 1:
            raise ValueError(
                f"min_tissue_fraction must be in [0, 1], got {self.min_tissue_fraction}"
            )


@dataclass(frozen=True)
class TileGrid:
    """A tile grid over one slide: the parameters, the scale and the tile table.

    Attributes
    ----------
    params : TilingParams
        The grid's parameters.
    slide_mpp : float
        The slide's level-0 pixel size, µm/px.
    scale : float
        Level-0 pixels per tile pixel.
    slide_dimensions : tuple of int
        Level-0 ``(width, height)``, pixels.
    col_min, row_min : int
        Grid index of the first column / row (-1 when the offset puts a partial core
        before the origin, else 0).
    n_cols, n_rows : int
        Grid size in tiles.
    tiles : pandas.DataFrame
        One row per tile, ``tile_id = row * n_cols + col``: core and halo boxes in level-0
        pixels (``core_x0_px`` ... ``y1_px``; cores clipped to the slide, halos not), core
        origin and size in µm, ``tissue_fraction`` (0-1) and ``selected`` (columns and
        dtypes of ``TILE_COLUMNS``).
    """

    params: TilingParams
    slide_mpp: float
    scale: float  # level-0 px per tile px
    slide_dimensions: tuple[int, int]
    col_min: int
    row_min: int
    n_cols: int
    n_rows: int
    tiles: pd.DataFrame

    @property
    def effective_mpp(self) -> float:
        """µm per tile pixel (the target, unless snapped to an integer downsample)."""
        return self.slide_mpp * self.scale

    @property
    def tile_shape(self) -> tuple[int, int]:
        """(height, width) of every tile array, halo included."""
        n = self.params.tile_size_px + 2 * self.params.overlap_px
        return n, n

    @property
    def selected(self) -> pd.DataFrame:
        return self.tiles[self.tiles["selected"]]

    def metadata(self) -> dict[str, Any]:
        return {
            "params": asdict(self.params),
            "slide_mpp": self.slide_mpp,
            "effective_mpp": self.effective_mpp,
            "scale": self.scale,
            "slide_dimensions": list(self.slide_dimensions),
            "grid": {
                "col_min": self.col_min,
                "row_min": self.row_min,
                "n_cols": self.n_cols,
                "n_rows": self.n_rows,
            },
            "n_tiles": len(self.tiles),
            "n_selected": int(self.tiles["selected"].sum()),
        }


def _snap_scale(scale: float) -> float:
    k = round(scale)
    if k >= 1 and abs(scale - k) <= SNAP_TOLERANCE * scale:
        return float(k)
    return scale


def make_tile_grid(
    slide: Slide, tissue: TissueMask | None = None, params: TilingParams | None = None
) -> TileGrid:
    """Tile grid over `slide` with per-tile tissue fraction.

    Parameters
    ----------
    slide : Slide
        The slide; it must have a pixel size.
    tissue : TissueMask, optional
        The slide's tissue. Tiles whose core has ``tissue_fraction >
        params.min_tissue_fraction`` are selected; None selects every tile (fraction 1).
    params : TilingParams, optional
        None uses ``TilingParams()``.

    Returns
    -------
    TileGrid
        Cores covering the whole slide.

    Raises
    ------
    SlideError
        If the slide has no pixel size.
    """
    params = params or TilingParams()
    slide_mpp = slide.require_mpp()
    scale = _snap_scale(params.target_mpp / slide_mpp)
    return _grid(slide.dimensions, slide_mpp, scale, params, tissue)


def _grid(
    dims: tuple[int, int],
    slide_mpp: float,
    scale: float,
    params: TilingParams,
    tissue: TissueMask | None,
) -> TileGrid:
    w0, h0 = dims
    t = params.tile_size_px
    ox, oy = params.offset_px[0] % t, params.offset_px[1] % t
    # Core k spans tile px [offset + k t, offset + (k + 1) t); k runs over the cores that
    # meet the slide [0, w0 / scale).
    col_min, row_min = -1 if ox else 0, -1 if oy else 0
    col_max = int(_index(np.array([w0 - 1e-9]), ox, t, scale)[0])
    row_max = int(_index(np.array([h0 - 1e-9]), oy, t, scale)[0])
    cols = np.arange(col_min, col_max + 1)
    rows = np.arange(row_min, row_max + 1)
    grid_r, grid_c = np.meshgrid(rows, cols, indexing="ij")
    rr, cc = grid_r.ravel(), grid_c.ravel()
    cx0 = np.clip(_edge(cc, ox, t, scale), 0, w0)
    cy0 = np.clip(_edge(rr, oy, t, scale), 0, h0)
    cx1 = np.clip(_edge(cc + 1, ox, t, scale), 0, w0)
    cy1 = np.clip(_edge(rr + 1, oy, t, scale), 0, h0)
    halo = params.overlap_px * scale
    x0 = _edge(cc, ox, t, scale) - halo
    y0 = _edge(rr, oy, t, scale) - halo
    size = (t + 2 * params.overlap_px) * scale
    boxes = np.stack([cx0, cy0, cx1, cy1], axis=1)
    frac = tissue.fraction_in_boxes(boxes) if tissue is not None else np.ones(len(boxes))
    selected = (
        frac > params.min_tissue_fraction if tissue is not None else np.ones(len(boxes), bool)
    )
    tiles = pd.DataFrame(
        {
            "tile_id": np.arange(len(rr), dtype=np.int64),
            "row": rr - row_min,
            "col": cc - col_min,
            "core_x0_px": cx0,
            "core_y0_px": cy0,
            "core_x1_px": cx1,
            "core_y1_px": cy1,
            "x0_px": x0,
            "y0_px": y0,
            "x1_px": x0 + size,
            "y1_px": y0 + size,
            "core_x0_um": cx0 * slide_mpp,
            "core_y0_um": cy0 * slide_mpp,
            "core_width_um": (cx1 - cx0) * slide_mpp,
            "core_height_um": (cy1 - cy0) * slide_mpp,
            "tissue_fraction": frac,
            "selected": selected,
        }
    ).astype(TILE_COLUMNS)
    return TileGrid(
        params, slide_mpp, scale, (w0, h0), col_min, row_min, len(cols), len(rows), tiles
    )


def owner_tile_ids(grid: TileGrid, x_px: np.ndarray, y_px: np.ndarray) -> np.ndarray:
    """The tile whose core holds each point (the ownership rule).

    Parameters
    ----------
    grid : TileGrid
        The tile grid.
    x_px, y_px : numpy.ndarray
        Point coordinates, level-0 pixels.

    Returns
    -------
    numpy.ndarray of int64
        ``tile_id`` per point; -1 for points off the slide.
    """
    x = np.asarray(x_px, dtype=np.float64)
    y = np.asarray(y_px, dtype=np.float64)
    t = grid.params.tile_size_px
    ox, oy = grid.params.offset_px[0] % t, grid.params.offset_px[1] % t
    col = _index(x, ox, t, grid.scale) - grid.col_min
    row = _index(y, oy, t, grid.scale) - grid.row_min
    w0, h0 = grid.slide_dimensions
    inside = (x >= 0) & (y >= 0) & (x < w0) & (y < h0)
    inside &= (col >= 0) & (col < grid.n_cols) & (row >= 0) & (row < grid.n_rows)
    return np.where(inside, row * grid.n_cols + col, -1)


def _edge(k: np.ndarray, offset: int, tile: int, scale: float) -> np.ndarray:
    """Level-0 coordinate of core edge ``k`` (the one formula for cores and owners)."""
    return offset * scale + k * (tile * scale)


def _index(v: np.ndarray, offset: int, tile: int, scale: float) -> np.ndarray:
    """Core index k with ``_edge(k) <= v < _edge(k + 1)``, exact in floating point."""
    k = np.floor((v / scale - offset) / tile).astype(np.int64)
    k -= v < _edge(k, offset, tile, scale)  # rounding put v one core too far
    k += v >= _edge(k + 1, offset, tile, scale)  # or one core short
    return k


def read_tile(slide: Slide, grid: TileGrid, tile: Any) -> np.ndarray:
    """RGB of one tile, halo included, at the grid's ``effective_mpp``.

    Parts beyond the slide edge are white.

    Parameters
    ----------
    slide : Slide
        The slide the grid was made for.
    grid : TileGrid
        The tile grid.
    tile : mapping or pandas.Series
        A row of ``grid.tiles``, or anything with ``"x0_px"`` and ``"y0_px"`` keys
        (level-0 pixels of the halo's top-left corner).

    Returns
    -------
    ndarray of uint8, shape ``grid.tile_shape + (3,)``
        The tile.
    """
    x0 = float(tile["x0_px"])
    y0 = float(tile["y0_px"])
    n_h, n_w = grid.tile_shape
    if grid.scale == 1.0 and x0.is_integer() and y0.is_integer():
        return slide.read_region((int(x0), int(y0)), 0, (n_w, n_h))
    return slide.read_downsampled((x0, y0, n_w * grid.scale, n_h * grid.scale), (n_w, n_h))


def iter_tiles(
    slide: Slide, grid: TileGrid, *, selected_only: bool = True
) -> Iterator[tuple[Any, np.ndarray]]:
    """Yield the tiles of a grid with their pixels, one tile in memory at a time.

    Parameters
    ----------
    slide : Slide
        The slide the grid was made for.
    grid : TileGrid
        The tile grid.
    selected_only : bool, default True
        Only the selected tiles; False yields every tile.

    Yields
    ------
    tile_row : namedtuple
        The row of ``grid.tiles`` (``itertuples`` form).
    rgb : ndarray of uint8
        The tile from :func:`read_tile`.
    """
    table = grid.selected if selected_only else grid.tiles
    for row in table.itertuples(index=False):
        yield row, read_tile(slide, grid, row._asdict())
