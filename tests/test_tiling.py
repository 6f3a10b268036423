"""Tile geometry: cores partition the slide exactly, halos are where they should be,
every point has exactly one owner, and tiles read back the right pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_gbm import Slide
from napari_gbm.wsi.tiling import (
    TileGrid,
    TilingParams,
    _grid,
    _snap_scale,
    iter_tiles,
    make_tile_grid,
    owner_tile_ids,
    read_tile,
)
from napari_gbm.wsi.tissue import TissueMask


def grid_for(dims: tuple[int, int], scale: float = 1.0, **kw: object) -> TileGrid:
    return _grid(dims, 0.5, scale, TilingParams(**kw), None)  # type: ignore[arg-type]


def _check_partition(g: TileGrid) -> None:
    w0, h0 = g.slide_dimensions
    t = g.tiles
    area = ((t.core_x1_px - t.core_x0_px) * (t.core_y1_px - t.core_y0_px)).sum()
    assert area == pytest.approx(w0 * h0)
    assert (t.core_x0_px >= 0).all() and (t.core_x1_px <= w0).all()
    assert (t.core_y0_px >= 0).all() and (t.core_y1_px <= h0).all()
    assert (t.core_x1_px > t.core_x0_px).all() and (t.core_y1_px > t.core_y0_px).all()
    # neighbours share edges exactly: no gap, no overlap
    for _, row in t.groupby("row"):
        row = row.sort_values("col")
        np.testing.assert_array_equal(row.core_x1_px.to_numpy()[:-1], row.core_x0_px.to_numpy()[1:])


@pytest.mark.parametrize("dims", [(1000, 700), (1024, 1024), (1025, 3), (256, 256), (5000, 33)])
@pytest.mark.parametrize("offset", [(0, 0), (100, 37)])
def test_cores_partition_the_slide(dims: tuple[int, int], offset: tuple[int, int]) -> None:
    _check_partition(grid_for(dims, tile_size_px=256, overlap_px=16, offset_px=offset))


def test_hand_computed_grid() -> None:
    g = grid_for((600, 300), tile_size_px=256, overlap_px=10)
    assert (g.n_cols, g.n_rows) == (3, 2)
    t = g.tiles.set_index(["row", "col"])
    last = t.loc[(1, 2)]
    # the last core is clipped to the slide; the read box is the full tile plus halo
    assert (last.core_x0_px, last.core_x1_px, last.core_y0_px, last.core_y1_px) == (
        512,
        600,
        256,
        300,
    )
    assert (last.x0_px, last.x1_px, last.y0_px, last.y1_px) == (502, 778, 246, 522)
    assert g.tile_shape == (276, 276)
    assert last.core_width_um == pytest.approx(88 * 0.5)


def test_halo_scales_with_downsample() -> None:
    # a 0.25 µm/px slide tiled at 0.5 µm/px: 2 level-0 px per tile px
    g = grid_for((4000, 4000), scale=2.0, tile_size_px=512, overlap_px=32)
    first = g.tiles.iloc[0]
    assert first.core_x1_px - first.core_x0_px == 1024
    assert first.x0_px == -64 and first.x1_px == 1024 + 64
    assert g.effective_mpp == 1.0


def test_offset_grid_hand_computed() -> None:
    g = grid_for((600, 300), tile_size_px=256, offset_px=(100, 0))
    cols = g.tiles[g.tiles.row == 0].sort_values("col")
    np.testing.assert_array_equal(cols.core_x0_px, [0, 100, 356])
    np.testing.assert_array_equal(cols.core_x1_px, [100, 356, 600])


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(1, 3000),
    h=st.integers(1, 3000),
    tile=st.integers(16, 700),
    ox=st.integers(0, 699),
    oy=st.integers(0, 699),
    scale=st.sampled_from([1.0, 2.0, 4.0, 1.37]),
    seed=st.integers(0, 2**31),
)
def test_every_point_has_exactly_one_owner(
    w: int, h: int, tile: int, ox: int, oy: int, scale: float, seed: int
) -> None:
    g = grid_for((w, h), scale=scale, tile_size_px=tile, overlap_px=0, offset_px=(ox, oy))
    _check_partition(g)
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(0, w, 300), g.tiles.core_x0_px.to_numpy()])
    y = np.concatenate([rng.uniform(0, h, 300), g.tiles.core_y0_px.to_numpy()])
    keep = (x < w) & (y < h)
    x, y = x[keep], y[keep]
    owner = owner_tile_ids(g, x, y)
    assert (owner >= 0).all()
    t = g.tiles.set_index("tile_id").loc[owner]
    # the owner's core holds the point (half-open: a point on a seam goes right/down)
    assert ((t.core_x0_px.to_numpy() <= x) & (x < t.core_x1_px.to_numpy())).all()
    assert ((t.core_y0_px.to_numpy() <= y) & (y < t.core_y1_px.to_numpy())).all()
    # brute force: exactly one core holds each point
    cx0, cx1 = g.tiles.core_x0_px.to_numpy(), g.tiles.core_x1_px.to_numpy()
    cy0, cy1 = g.tiles.core_y0_px.to_numpy(), g.tiles.core_y1_px.to_numpy()
    hits = (
        (cx0[None] <= x[:, None])
        & (x[:, None] < cx1[None])
        & (cy0[None] <= y[:, None])
        & (y[:, None] < cy1[None])
    )
    assert (hits.sum(axis=1) == 1).all()


def test_points_off_the_slide_have_no_owner() -> None:
    g = grid_for((500, 400), tile_size_px=128)
    owner = owner_tile_ids(g, np.array([-0.1, 500, 10, 499.99]), np.array([5, 5, 400, 399.99]))
    assert owner[:3].tolist() == [-1, -1, -1] and owner[3] >= 0


def test_seam_objects_counted_once_in_each_of_two_tilings() -> None:
    """Objects on a grid of seams: each counted once per tiling, whatever the offset."""
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(0, 2000, 500), np.arange(0, 2000, 64.0)])
    y = np.concatenate([rng.uniform(0, 1500, 500), np.full(32, 256.0)])
    for offset in [(0, 0), (77, 201)]:
        g = grid_for((2000, 1500), tile_size_px=256, offset_px=offset)
        owner = owner_tile_ids(g, x, y)
        counts = np.bincount(owner, minlength=len(g.tiles))
        assert counts.sum() == len(x)


def test_snap_scale() -> None:
    assert _snap_scale(0.5 / 0.499) == 1.0  # CMU-1: read at native 0.499 µm/px
    assert _snap_scale(0.5 / 0.2525) == 2.0  # a 40x scan at 0.2525
    assert _snap_scale(0.5 / 0.226) == pytest.approx(2.2124, rel=1e-3)  # no integer nearby
    assert _snap_scale(0.5) == 0.5  # upsampling is never snapped


def test_tissue_fraction_and_selection(cmu_path: Path) -> None:
    slide = Slide(cmu_path)
    mask = np.zeros((100, 100), bool)
    mask[:50, :] = True  # top half of a 2000 x 2000 level-0 area is tissue
    tm = TissueMask(mask, 20.0, 0.5, False, 0.1, (2000, 2000))
    g = _grid((2000, 2000), 0.5, 1.0, TilingParams(tile_size_px=500, min_tissue_fraction=0.0), tm)
    frac = g.tiles.set_index(["row", "col"]).tissue_fraction
    assert frac.loc[(0, 0)] == 1.0 and frac.loc[(1, 3)] == 1.0
    assert frac.loc[(2, 0)] == 0.0 and frac.loc[(3, 3)] == 0.0
    assert g.selected.row.max() == 1
    del slide


def test_make_tile_grid_needs_mpp(tcga_path: Path) -> None:
    from napari_gbm import SlideError

    with pytest.raises(SlideError, match="pixel size"):
        make_tile_grid(Slide(tcga_path))
    g = make_tile_grid(Slide(tcga_path, mpp=0.25), params=TilingParams(tile_size_px=512))
    assert g.scale == 2.0 and g.effective_mpp == 0.5
    _check_partition(g)


def test_read_tile_native_equals_read_region(cmu_path: Path) -> None:
    slide = Slide(cmu_path)
    g = make_tile_grid(slide, params=TilingParams(tile_size_px=256, overlap_px=16))
    assert g.scale == 1.0  # 0.499 snapped
    row = g.tiles.set_index(["row", "col"]).loc[(3, 4)]
    tile = read_tile(slide, g, row)
    assert tile.shape == (288, 288, 3)
    np.testing.assert_array_equal(
        tile, slide.read_region((4 * 256 - 16, 3 * 256 - 16), 0, (288, 288))
    )


def test_read_tile_downsampled_is_block_mean(tcga_path: Path) -> None:
    slide = Slide(tcga_path, mpp=0.25)
    g = make_tile_grid(slide, params=TilingParams(tile_size_px=128, overlap_px=8))
    row = g.tiles.set_index(["row", "col"]).loc[(7, 8)]  # inside the tissue
    tile = read_tile(slide, g, row).astype(float)
    x0, y0 = int(row.x0_px), int(row.y0_px)
    ref = (
        slide.read_region((x0, y0), 0, (288, 288))
        .astype(float)
        .reshape(144, 2, 144, 2, 3)
        .mean(axis=(1, 3))
    )

    # Read from the scanner's own level 1 (downsample 2.0005, JPEG 2000), which is not
    # the 2x2 mean of level 0 (measured: mean difference ~9 grey levels in tissue). The
    # tile must still be in the right place: no one-pixel shift matches better.
    def err(dy: int, dx: int) -> float:
        a = tile[max(dy, 0) : 144 + min(dy, 0), max(dx, 0) : 144 + min(dx, 0)]
        b = ref[max(-dy, 0) : 144 + min(-dy, 0), max(-dx, 0) : 144 + min(-dx, 0)]
        return float(np.abs(a - b).mean())

    aligned = err(0, 0)
    assert aligned < 15
    shifts = [err(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    assert aligned < 0.75 * min(shifts)


def test_iter_tiles_covers_selected(cmu_path: Path) -> None:
    slide = Slide(cmu_path)
    from napari_gbm.wsi.tissue import detect_tissue

    g = make_tile_grid(slide, detect_tissue(slide), TilingParams(tile_size_px=512, overlap_px=0))
    seen = [row.tile_id for row, rgb in iter_tiles(slide, g)]
    assert seen == g.selected.tile_id.tolist()
    assert 0 < len(seen) < len(g.tiles)


def test_params_validation() -> None:
    with pytest.raises(ValueError, match="overlap"):
        TilingParams(tile_size_px=64, overlap_px=64)
    with pytest.raises(ValueError, match="target_mpp"):
        TilingParams(target_mpp=0)
    with pytest.raises(ValueError, match="tile_size"):
        TilingParams(tile_size_px=8)
