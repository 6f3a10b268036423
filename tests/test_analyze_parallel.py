"""Tiles on several threads: the same cell table as one thread, in tile order, memory and
cancellation bounded by the pool."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from napari_gbm import Slide
from napari_gbm.detect.cells import (
    Cancelled,
    CellParams,
    _in_order,
    analyze_cells,
    analyze_cells_to_parquet,
)
from napari_gbm.wsi.tiling import TileGrid, TilingParams, make_tile_grid
from napari_gbm.wsi.tissue import detect_tissue


@pytest.fixture(scope="module")
def slide_grid(synthetic_he: Path) -> tuple[Slide, TileGrid]:
    slide = Slide(synthetic_he)
    grid = make_tile_grid(slide, detect_tissue(slide), TilingParams(tile_size_px=512))
    assert len(grid.selected) >= 8  # enough tiles for the pool to matter
    return slide, grid


@pytest.fixture(scope="module")
def serial_table(slide_grid: tuple[Slide, TileGrid]) -> pd.DataFrame:
    slide, grid = slide_grid
    return analyze_cells(slide, grid, CellParams(texture=False))


@pytest.mark.parametrize(
    ("n_threads", "n_workers"),
    [
        (2, None),  # what `napari-gbm analyze --threads 2` asks for: two tiles at once
        (4, 2),  # two tiles at once, each with 2 kernel threads (numba inside the pool)
        (1, 3),  # more tile threads than cores
    ],
)
def test_parallel_table_is_identical_to_serial(
    slide_grid: tuple[Slide, TileGrid],
    serial_table: pd.DataFrame,
    n_threads: int,
    n_workers: int | None,
) -> None:
    slide, grid = slide_grid
    params = CellParams(texture=False, n_threads=n_threads, n_workers=n_workers)
    table = analyze_cells(slide, grid, params)
    assert len(serial_table) > 500
    pd.testing.assert_frame_equal(table, serial_table, check_exact=True)
    # cell ids run in tile order
    assert table.cell_id.tolist() == list(range(1, len(table) + 1))
    rank = pd.Series(np.arange(len(grid.selected)), index=grid.selected.tile_id.to_numpy())
    assert (np.diff(rank.loc[table.tile_id].to_numpy()) >= 0).all()


def test_streamed_parallel_file_equals_serial_table(
    slide_grid: tuple[Slide, TileGrid], serial_table: pd.DataFrame, tmp_path: Path
) -> None:
    slide, grid = slide_grid
    params = CellParams(texture=False, n_threads=2)
    # small row groups: tiles finishing out of order must still be written in order
    per_tile = analyze_cells_to_parquet(
        slide, grid, tmp_path / "cells.parquet", params, row_group_rows=300
    )
    table = pd.read_parquet(tmp_path / "cells.parquet")
    pd.testing.assert_frame_equal(table, serial_table, check_exact=True)
    assert (np.bincount(serial_table.tile_id, minlength=len(per_tile)) == per_tile).all()


def test_progress_and_cancel_with_threads(slide_grid: tuple[Slide, TileGrid]) -> None:
    slide, grid = slide_grid
    seen: list[tuple[int, int, int]] = []
    with pytest.raises(Cancelled, match="cancelled after 2 of"):
        analyze_cells(
            slide,
            grid,
            CellParams(texture=False, n_threads=2),
            progress=lambda d, t, n: seen.append((d, t, n)),
            cancel=lambda: len(seen) >= 2,
        )
    assert [s[0] for s in seen] == [1, 2] and seen[0][1] == len(grid.selected)
    assert seen[1][2] >= seen[0][2]  # cells so far


class _Recorder:
    """A tile function for ``_in_order``: sleeps a varying time (so later items often
    finish first) and records which items ran and how many were in flight at once."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most_running = 0
        self.started: list[int] = []
        self.fail_at = fail_at

    def __call__(self, item: int) -> pd.DataFrame:
        with self.lock:
            self.started.append(item)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            time.sleep(0.002 * ((item * 7) % 5))
            if item == self.fail_at:
                raise ValueError(f"tile {item} is unreadable")
            return pd.DataFrame({"item": [item]})
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("n_workers", [1, 2, 3])
def test_in_order_keeps_order_and_bounds_work_in_flight(n_workers: int) -> None:
    fn = _Recorder()
    # the caller holds each result a moment, as the Parquet writer does
    results = []
    for part in _in_order(fn, range(40), n_workers, None):
        results.append(int(part["item"].iloc[0]))
        time.sleep(0.001)
    assert results == list(range(40))
    assert sorted(fn.started) == list(range(40))
    assert fn.most_running <= n_workers


def test_in_order_cancel_stops_starting_tiles() -> None:
    fn = _Recorder()
    got: list[int] = []
    with pytest.raises(Cancelled, match="cancelled after 5 of 40 tiles"):
        for part in _in_order(fn, range(40), 3, lambda: len(got) >= 5):
            got.append(int(part["item"].iloc[0]))
    assert got == [0, 1, 2, 3, 4]
    # nothing started after the cancel beyond the tiles already in flight
    assert len(fn.started) <= len(got) + 3
    assert fn.running == 0  # tiles in flight were waited for, not abandoned


def test_in_order_raises_a_tile_error_in_order() -> None:
    fn = _Recorder(fail_at=6)
    got: list[int] = []
    with pytest.raises(ValueError, match="tile 6 is unreadable"):
        for part in _in_order(fn, range(40), 3, None):
            got.append(int(part["item"].iloc[0]))
    assert got == list(range(6))
    assert len(fn.started) <= 6 + 3 + 1
    assert fn.running == 0


def test_threads_are_shared_between_tiles_and_kernels() -> None:
    assert (CellParams().tile_workers, CellParams().kernel_threads) == (1, 1)
    assert (CellParams(n_threads=2).tile_workers, CellParams(n_threads=2).kernel_threads) == (2, 1)
    p = CellParams(n_threads=4, n_workers=1)
    assert (p.tile_workers, p.kernel_threads) == (1, 4)
    p = CellParams(n_threads=5, n_workers=2)
    assert (p.tile_workers, p.kernel_threads) == (2, 2)
    assert CellParams(n_threads=2).to_dict()["n_workers"] is None


@pytest.mark.parametrize(
    "kwargs", [{"n_threads": 0}, {"n_workers": 0}, {"n_threads": 1.5}, {"n_workers": True}]
)
def test_bad_thread_counts_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        CellParams(**kwargs)


# --- pass 2 (neighbourhood over all cells) window by window, in bounded memory ---------


def _islands(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Tissue islands with glass between them: hull edges and long gaps at window edges."""
    centres = rng.uniform(0, 5000, (30, 2))
    pts = np.concatenate([rng.normal(c, 150, (800, 2)) for c in centres])
    return pts[:, 0], pts[:, 1]


def _strip(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A row of nearly collinear points (flat triangles, which the window bound cannot
    settle, so they are checked against all points) and a few points beside it."""
    x = np.r_[np.linspace(0, 3000, 400), rng.uniform(0, 3000, 100)]
    y = np.r_[rng.normal(0, 0.5, 400), rng.uniform(200, 3000, 100)]
    return x, y


@pytest.mark.parametrize(
    ("points", "window_points", "max_edge_um"),
    [
        (lambda rng: (rng.uniform(0, 2000, 20_000), rng.uniform(0, 2000, 20_000)), 1500, 50.0),
        (_islands, 2000, 50.0),
        (_islands, 300, 120.0),
        (_strip, 100, 50.0),
    ],
)
def test_windowed_triangulation_gives_the_same_neighbours(
    points: Any, window_points: int, max_edge_um: float
) -> None:
    from napari_gbm.features.neighbourhood import neighbourhood_features

    x, y = points(np.random.default_rng(1))
    whole = neighbourhood_features(x, y, max_edge_um=max_edge_um, window_points=x.size)
    windows = neighbourhood_features(x, y, max_edge_um=max_edge_um, window_points=window_points)
    assert whole.delaunay_neighbours.sum() > x.size  # a real triangulation, not empty
    pd.testing.assert_series_equal(windows.delaunay_neighbours, whole.delaunay_neighbours)
    # sums of the same distances in another order: equal to float32 rounding
    pd.testing.assert_frame_equal(windows, whole, check_exact=False, rtol=1e-6)


def test_an_edge_blocked_from_outside_its_window_is_not_a_neighbour() -> None:
    """p-q is an edge of its window's triangulation (nothing below it there), but r, far
    below and outside that window, sees it under 4.6 degrees while b sees it under 178:
    4.6 + 178 > 180, so p-q is not a Delaunay edge of all the points."""
    from napari_gbm.features.neighbourhood import neighbourhood_features

    rng = np.random.default_rng(0)
    # with max_edge_um = 50 the windows are 1000 µm squares from (0, 0) (two anchors)
    background = rng.uniform(0, 3000, (3000, 2))
    x_bg, y_bg = background[:, 0], background[:, 1]
    clear = (x_bg > 1000) & (x_bg < 2000) & (y_bg > 300) & (y_bg < 1005)
    special = [[1480.0, 1010.0], [1520.0, 1010.0], [1500.0, 1010.35], [1500.0, 510.0]]
    pts = np.concatenate([special, background[~clear], [[0.0, 0.0], [3000.0, 3000.0]]])
    x, y = pts[:, 0], pts[:, 1]
    whole = neighbourhood_features(x, y, max_edge_um=50.0, window_points=x.size)
    windows = neighbourhood_features(x, y, max_edge_um=50.0, window_points=50)
    assert whole.delaunay_neighbours[:4].tolist() == [2, 2, 3, 0]  # p and q not linked
    pd.testing.assert_series_equal(windows.delaunay_neighbours, whole.delaunay_neighbours)


def test_window_points_is_checked() -> None:
    from napari_gbm.features.neighbourhood import neighbourhood_features

    with pytest.raises(ValueError, match="window_points"):
        neighbourhood_features(np.zeros(3), np.zeros(3), window_points=2)
