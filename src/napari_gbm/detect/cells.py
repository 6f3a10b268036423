"""Whole-slide cell analysis: tiles -> nuclei and cells -> features -> one cell table.

Streams the slide tile by tile. Each tile is read with its halo at the grid's
resolution, segmented, measured, and only the cells whose nucleus centroid lies in the
tile's core are kept (the ownership rule), so a cell on a seam is counted once and results
do not depend on where the grid falls. Coordinates are mapped back to level-0 pixels of
the input. Neighbourhood features are computed once over all cells at the end.

Tiles run on a pool of threads (``CellParams.n_threads``), at most one tile per thread in
flight, and their results are taken in tile order: ``cell_id`` runs in tile order and the
table is the same, bit for bit, whatever the thread count. Threads, not processes: the
numba kernels (segmentation and features) and OpenSlide's reads release the GIL. SciPy's
ndimage filters in the segmentation do not (about a quarter of a tile's time), which
leaves two threads free to overlap (1.6-2.0x measured on two free cores) but would limit
more than ~4; worker processes would each hold another copy of the libraries (~300 MB)
and load the numba cache again.

Progress is reported through a callback; a cancel callback stops the run between tiles
with :class:`Cancelled` (nothing is written by this module).
"""

from __future__ import annotations

import math
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from napari_gbm.biomarkers.ihc import PositivityParams
from napari_gbm.detect._tile_cells import grade, tile_cells
from napari_gbm.detect.calibration import CalibrationParams, SlideCalibration, calibrate_slide
from napari_gbm.detect.nucleus_params import NucleusParams, halo_um
from napari_gbm.detect.stain import StainVectors, stain_preset
from napari_gbm.features.neighbourhood import NEIGHBOURHOOD_COLUMNS, neighbourhood_features
from napari_gbm.io import METADATA_KEY, atomic_path, metadata_json
from napari_gbm.schema import conform_cell_table, empty_cell_table
from napari_gbm.wsi.slide import Slide
from napari_gbm.wsi.tiling import TileGrid, read_tile
from napari_gbm.wsi.tissue import TissueMask

__all__ = ["Cancelled", "CellParams", "analyze_cells", "needed_overlap_px", "slide_calibration"]


class Cancelled(Exception):
    """The run was cancelled by the caller."""


@dataclass(frozen=True)
class CellParams:
    """Everything that decides the cells, besides the tile grid (and the slide's
    calibration, which :func:`slide_calibration` measures with ``calibration``).

    ``n_threads`` is the number of threads a run uses. By default they analyse that many
    tiles at once (one thread each). ``n_workers`` sets the number of tiles at once
    explicitly; the threads left over (``n_threads // n_workers``) then go to the feature
    kernels inside each tile (``n_workers=1, n_threads=4``: one tile at a time, kernels on
    4 threads). Neither changes any result.

    Attributes
    ----------
    stain : {"he", "hdab"}, default "he"
        The staining: H&E or H-DAB (hematoxylin and DAB); picks the preset stain vectors.
    nucleus : NucleusParams
        Nucleus detection parameters (lengths in µm, areas in µm²).
    calibration : CalibrationParams
        How the slide's stain vectors, white point and contrast level are measured.
    texture : bool, default True
        Compute Haralick texture of the nucleus hematoxylin OD (quantised over
        :data:`HARALICK_OD_LIMITS`, OD); False leaves those columns NaN.
    neighbourhood_radius_um : float, default 50.0
        Disc radius of the local cell density, µm.
    neighbourhood_max_edge_um : float, default 50.0
        Delaunay edges longer than this (µm) do not count as neighbours.
    n_threads : int, default 1
        Threads a run uses, >= 1.
    n_workers : int, optional
        Tiles analysed at once, >= 1; default ``n_threads``.

    Raises
    ------
    ValueError
        If `stain` is not ``"he"`` or ``"hdab"``, or `n_threads` / `n_workers` is not an
        integer >= 1.
    """

    stain: str = "he"
    nucleus: NucleusParams = field(default_factory=NucleusParams)
    calibration: CalibrationParams = field(default_factory=CalibrationParams)
    texture: bool = True
    neighbourhood_radius_um: float = 50.0
    neighbourhood_max_edge_um: float = 50.0
    n_threads: int = 1
    n_workers: int | None = None

    def __post_init__(self) -> None:
        if self.stain not in ("he", "hdab"):
            raise ValueError(f"stain must be 'he' (H&E) or 'hdab' (H-DAB), got {self.stain!r}")
        for name in ("n_threads", "n_workers"):
            value = getattr(self, name)
            if value is None and name == "n_workers":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    @property
    def tile_workers(self) -> int:
        """Tiles analysed at the same time: ``n_workers``, else ``n_threads``."""
        return int(self.n_threads if self.n_workers is None else self.n_workers)

    @property
    def kernel_threads(self) -> int:
        """Threads for the feature kernels of one tile: what is left of ``n_threads``."""
        return max(1, int(self.n_threads) // self.tile_workers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def needed_overlap_px(cells: CellParams, target_mpp: float) -> int:
    """The tile overlap that makes cells independent of the tile grid.

    Parameters
    ----------
    cells : CellParams
        Its nucleus parameters decide the halo (:func:`halo_um`, µm).
    target_mpp : float
        Pixel size of the tile grid, µm/px.

    Returns
    -------
    int
        The halo in pixels at `target_mpp`, rounded up.
    """
    return math.ceil(halo_um(cells.nucleus) / target_mpp)


def slide_calibration(
    slide: Slide,
    params: CellParams,
    *,
    target_mpp: float,
    tissue: TissueMask | None = None,
    stain_vectors: StainVectors | None = None,
    given: SlideCalibration | None = None,
) -> SlideCalibration | None:
    """The calibration a run uses.

    Parameters
    ----------
    slide : Slide
        The slide, sampled when its calibration is measured here.
    params : CellParams
        Its ``stain``, ``nucleus`` and ``calibration`` parameters are used.
    target_mpp : float
        Pixel size of the analysis, µm/px.
    tissue : TissueMask, optional
        The slide's tissue, where the calibration sample is taken; None: detected with
        the default parameters.
    stain_vectors : StainVectors, optional
        The starting stain vectors; default: the preset of ``params.stain``.
    given : SlideCalibration, optional
        A calibration passed in by the user: returned as it is.

    Returns
    -------
    SlideCalibration or None
        `given` if any, else the slide's own
        (:func:`~napari_gbm.detect.calibration.calibrate_slide`), or None when
        ``params.calibration.enabled`` is False.

    Raises
    ------
    SlideError
        If the calibration is measured and the slide has no pixel size.
    """
    if given is not None:
        return given
    if not params.calibration.enabled:
        return None
    return calibrate_slide(
        slide,
        params.stain,
        params.nucleus,
        tissue=tissue,
        target_mpp=target_mpp,
        params=params.calibration,
        preset=stain_vectors,
    )


def _stains_and_calibration(
    slide: Slide,
    grid: TileGrid,
    params: CellParams,
    stain_vectors: StainVectors | None,
    calibration: SlideCalibration | None,
) -> tuple[StainVectors, SlideCalibration | None]:
    """The stain vectors and calibration a run over ``grid`` uses."""
    cal = slide_calibration(
        slide,
        params,
        target_mpp=grid.params.target_mpp,
        stain_vectors=stain_vectors,
        given=calibration,
    )
    return (cal.stains if cal else stain_vectors or stain_preset(params.stain)), cal


def analyze_cells(
    slide: Slide,
    grid: TileGrid,
    params: CellParams | None = None,
    *,
    stain_vectors: StainVectors | None = None,
    calibration: SlideCalibration | None = None,
    slide_id: str = "",
    positivity: PositivityParams | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    tissue: TissueMask | None = None,
) -> pd.DataFrame:
    """Detect and measure every cell in the selected tiles of ``grid``, in memory.

    For whole slides written to disk, :func:`analyze_cells_to_parquet` keeps memory flat.

    Parameters
    ----------
    stain_vectors : starting stain vectors (default: the preset of ``params.stain``).
    calibration : the slide's calibration; None: measured here from the slide when
        ``params.calibration.enabled`` (its stain vectors and white point replace
        ``stain_vectors``).
    positivity : how ``positive_class`` grades cells (default: nucleus DAB OD mean at
        0.2 / 0.4 / 0.6); cells of slides without DAB get -1 (not graded).
    progress : callable(tiles_done, tiles_total, cells_so_far), optional
    cancel : callable() -> bool, optional
        Checked before each tile; when it returns True, :class:`Cancelled` is raised.
    tissue : the slide's tissue mask; when given, cells off the tissue are left out
        (:meth:`~napari_gbm.wsi.tissue.TissueMask.on_tissue`).

    Returns
    -------
    DataFrame
        The cell table (see :mod:`napari_gbm.schema`), ``cell_id`` 1..n in tile order.
    """
    params = params or CellParams()
    stains, cal = _stains_and_calibration(slide, grid, params, stain_vectors, calibration)
    parts = list(
        _cell_parts(
            slide, grid, params, stains, cal, slide_id, positivity, progress, cancel, tissue
        )
    )
    if not parts:
        return empty_cell_table(stains.names[:2])
    cells = pd.concat(parts, ignore_index=True)
    parts.clear()
    nb = _neighbourhood(
        cells["centroid_x_um"].to_numpy(), cells["centroid_y_um"].to_numpy(), params
    )
    for col in nb.columns:
        cells[col] = nb[col].to_numpy()
    return cells


def analyze_cells_to_parquet(
    slide: Slide,
    grid: TileGrid,
    path: str | Path,
    params: CellParams | None = None,
    *,
    stain_vectors: StainVectors | None = None,
    calibration: SlideCalibration | None = None,
    slide_id: str = "",
    metadata: dict[str, Any] | None = None,
    positivity: PositivityParams | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    tissue: TissueMask | None = None,
    row_group_rows: int = 65_536,
) -> np.ndarray:
    """Like :func:`analyze_cells`, but streamed to a Parquet file.

    Memory holds one tile's cells plus the centroids of all (for the neighbourhood
    features), whatever the slide size. The file appears only when complete (atomic).

    Parameters
    ----------
    slide : Slide
        The slide.
    grid : TileGrid
        The tile grid; its selected tiles are analysed.
    path : str or Path
        The Parquet file to write (replaced if it exists).
    params : CellParams, optional
        Default: ``CellParams()``.
    stain_vectors, calibration, slide_id, positivity, progress, cancel, tissue
        As for :func:`analyze_cells`.
    metadata : dict, optional
        JSON-able run metadata, stored in the file's schema under ``METADATA_KEY``.
    row_group_rows : int, default 65536
        About this many rows per Parquet row group.

    Returns
    -------
    numpy.ndarray of int64
        The cells per tile, indexed by ``tile_id`` (one entry per tile of `grid`, 0 for
        tiles not selected).

    Raises
    ------
    Cancelled
        When `cancel` returns True; no file is written.
    """
    params = params or CellParams()
    stains, cal = _stains_and_calibration(slide, grid, params, stain_vectors, calibration)
    names = stains.names[:2]
    schema = pa.Schema.from_pandas(empty_cell_table(names), preserve_index=False)
    if metadata is not None:
        schema = schema.with_metadata({METADATA_KEY: metadata_json(metadata)})
    per_tile = np.zeros(len(grid.tiles), np.int64)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".cells-") as tmp:
        # pass 1: every tile's cells, neighbourhood columns still empty
        first = Path(tmp) / "pass1.parquet"
        with pq.ParquetWriter(first, schema) as writer:
            buffer = _RowBuffer(writer, schema, row_group_rows)
            for part in _cell_parts(
                slide, grid, params, stains, cal, slide_id, positivity, progress, cancel, tissue
            ):
                per_tile += np.bincount(part["tile_id"].to_numpy(), minlength=len(per_tile))
                xs.append(part["centroid_x_um"].to_numpy())
                ys.append(part["centroid_y_um"].to_numpy())
                buffer.add(part)
            buffer.flush()
        # pass 2: neighbourhood over all centroids, filled in row group by row group
        x = np.concatenate(xs) if xs else np.zeros(0)
        y = np.concatenate(ys) if ys else np.zeros(0)
        xs.clear()
        ys.clear()
        nb = _neighbourhood(x, y, params)
        with atomic_path(path) as final, pq.ParquetWriter(final, schema) as writer:
            src = pq.ParquetFile(first)
            offset = 0
            for i in range(src.num_row_groups):
                table = src.read_row_group(i)
                n = table.num_rows
                for col in nb.columns:
                    j = table.schema.get_field_index(col)
                    table = table.set_column(
                        j, col, pa.array(nb[col].to_numpy()[offset : offset + n])
                    )
                writer.write_table(table)
                offset += n
            if src.num_row_groups == 0:
                writer.write_table(schema.empty_table())
    return per_tile


class _RowBuffer:
    """Collects per-tile tables and writes row groups of about ``rows`` rows."""

    def __init__(self, writer: Any, schema: Any, rows: int) -> None:
        self.writer, self.schema, self.rows = writer, schema, rows
        self.parts: list[pd.DataFrame] = []
        self.n = 0

    def add(self, part: pd.DataFrame) -> None:
        self.parts.append(part)
        self.n += len(part)
        if self.n >= self.rows:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            df = pd.concat(self.parts, ignore_index=True)
            self.writer.write_table(
                pa.Table.from_pandas(df, schema=self.schema, preserve_index=False)
            )
        self.parts, self.n = [], 0


def _neighbourhood(x: np.ndarray, y: np.ndarray, params: CellParams) -> pd.DataFrame:
    return neighbourhood_features(
        x, y, radius_um=params.neighbourhood_radius_um, max_edge_um=params.neighbourhood_max_edge_um
    )


def _cell_parts(
    slide: Slide,
    grid: TileGrid,
    params: CellParams,
    stains: StainVectors,
    calibration: SlideCalibration | None,
    slide_id: str,
    positivity: PositivityParams | None,
    progress: Callable[[int, int, int], None] | None,
    cancel: Callable[[], bool] | None,
    tissue: TissueMask | None = None,
) -> Iterator[pd.DataFrame]:
    """Each selected tile's owned cells as a schema-conformed table (``cell_id`` running
    over the slide in tile order; neighbourhood columns NaN, filled by the caller).
    With ``tissue``, cells whose centroid is off the tissue (beyond its margin, see
    :meth:`TissueMask.on_tissue`) are dropped: glass, black borders, pen marks.

    Tiles run on ``params.tile_workers`` threads; results are taken in tile order."""
    tiles = list(grid.selected.itertuples(index=False))
    names = stains.names[:2]

    def analyse(tile: Any) -> pd.DataFrame:
        rgb = read_tile(slide, grid, tile._asdict())
        part = tile_cells(rgb, tile, grid, stains, params, calibration)
        if tissue is not None and len(part):
            keep = tissue.on_tissue(
                part["centroid_x_px"].to_numpy(), part["centroid_y_px"].to_numpy()
            )
            part = part[keep].reset_index(drop=True)
        return part

    n_cells = 0
    results = _in_order(analyse, tiles, params.tile_workers, cancel)
    for done, part in enumerate(results):
        if len(part):
            n = len(part)
            part.insert(0, "cell_id", np.arange(n_cells + 1, n_cells + n + 1, dtype=np.int64))
            part.insert(1, "slide_id", slide_id)
            part["centroid_x_um"] = part["centroid_x_px"] * grid.slide_mpp
            part["centroid_y_um"] = part["centroid_y_px"] * grid.slide_mpp
            empty = pd.DataFrame(
                {
                    c: np.zeros(n, dtype=t) if t.startswith("int") else np.full(n, np.nan, t)
                    for c, t in NEIGHBOURHOOD_COLUMNS.items()
                },
                index=part.index,
            )
            empty["positive_class"] = grade(part, positivity or PositivityParams())
            part = conform_cell_table(pd.concat([part, empty], axis=1), names)
            n_cells += n
            yield part
        if progress is not None:
            progress(done + 1, len(tiles), n_cells)


def _in_order(
    fn: Callable[[Any], pd.DataFrame],
    items: Iterable[Any],
    n_workers: int,
    cancel: Callable[[], bool] | None,
) -> Iterator[pd.DataFrame]:
    """``fn(item)`` for each item, in order, computed on ``n_workers`` threads.

    At most ``n_workers`` items are in flight (running, or done and waiting for an earlier
    one), so memory holds about ``n_workers + 1`` tiles: the one the caller is handling
    and those in flight. ``cancel()`` is asked before each item is started; when it says
    so, nothing more starts, items not yet started are dropped, running ones are waited
    for, and :class:`Cancelled` is raised. An error in ``fn`` is raised here, in order.
    """
    items = list(items)
    total = len(items)
    if n_workers <= 1 or total <= 1:
        for done, item in enumerate(items):
            if cancel is not None and cancel():
                raise Cancelled(f"cancelled after {done} of {total} tiles")
            yield fn(item)
        return
    pool = ThreadPoolExecutor(max_workers=min(n_workers, total), thread_name_prefix="tile")
    pending: deque[Future[pd.DataFrame]] = deque()
    try:
        started = 0
        for done in range(total):
            while started < total and len(pending) < n_workers:
                if cancel is not None and cancel():
                    raise Cancelled(f"cancelled after {done} of {total} tiles")
                pending.append(pool.submit(fn, items[started]))
                started += 1
            result = pending.popleft().result()
            # start the next tile before handing this one over: the pool stays busy
            # while the caller writes it
            if started < total:
                if cancel is not None and cancel():
                    raise Cancelled(f"cancelled after {done} of {total} tiles")
                pending.append(pool.submit(fn, items[started]))
                started += 1
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
