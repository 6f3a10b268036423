"""Benchmark: whole-slide analyze at 50k x 50k: tile threads and peak memory.

    .venv/bin/python benchmarks/bench_analyze.py slide [--size 51200] [--work DIR]
    .venv/bin/python benchmarks/bench_analyze.py threads [--tiles 24] [--rounds 2] [--work DIR]
    .venv/bin/python benchmarks/bench_analyze.py neighbourhood [--cells 500000,1000000,2000000]
    /usr/bin/time -v .venv/bin/napari-gbm analyze DIR/repeated-51200.tif --threads 2 \\
        --no-texture --out DIR/out

``slide`` writes the test slide in seconds: the densest 512² window of nuclei of a
synthetic H&E slide (``make_synthetic_slide``, 4096², seed 3: ~1,360 nuclei per 1024²
tile, as dense as the synthetic tumour gets) repeated over a ``--size``² pyramidal JPEG
TIFF at 0.5 µm/px (:func:`napari_gbm._testing.write_repeated_tile_slide`). Every tile of
the slide is tissue.

``threads`` analyses the first ``--tiles`` tissue tiles of that slide with
``analyze_cells`` (no texture, as the memory run) on 1 and on 2 tile threads, in rounds
whose order alternates, and prints wall and CPU time per tile, CPU / wall, and whether
the tables are identical. The machine these numbers are for has 2 cores shared with other
jobs: wall time shows what a second thread gets when a core is free, CPU time what the
work costs.

``neighbourhood`` measures pass 2 of ``analyze_cells_to_parquet`` (the Delaunay and
density features over all centroids of a slide, the only part whose memory grows with the
slide): for each ``--cells`` count, a fresh child process places that many points as the
dense tumour places nuclei (the repeated window's centroids, tiled) and runs
``neighbourhood_features``; it prints the peak RSS above the process's baseline, bytes
per cell, and seconds.

The full run (last line) is the measurement of record: ``/usr/bin/time -v`` reports the
peak RSS of the whole analyze, both passes and all outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 3
WINDOW = (1024, 1536, 512)  # (y0, x0, side) of the densest 512² window of the seed-3 slide
MPP = 0.5


def source_slide(work: Path) -> Path:
    from napari_gbm.synthetic import make_synthetic_slide

    path = work / "synthetic-4096.tif"
    if not path.exists():
        make_synthetic_slide(path, size_px=(4096, 4096), stain="he", seed=SEED)
    return path


def window_centroids(work: Path) -> np.ndarray:
    """True nucleus centroids (µm) inside the repeated window, relative to its corner."""
    y0, x0, side = WINDOW
    truth = pd.read_parquet(work / "synthetic-4096.nuclei.parquet")
    x = truth["centroid_x_px"].to_numpy() - x0
    y = truth["centroid_y_px"].to_numpy() - y0
    inside = (x >= 0) & (x < side) & (y >= 0) & (y < side)
    return np.column_stack([x[inside], y[inside]]) * MPP


def make_slide(work: Path, size: int) -> Path:
    from napari_gbm import Slide
    from napari_gbm._testing import write_repeated_tile_slide

    path = work / f"repeated-{size}.tif"
    if path.exists():
        return path
    y0, x0, side = WINDOW
    rgb = Slide(source_slide(work)).read_region((x0, y0), 0, (side, side))
    start = time.perf_counter()
    write_repeated_tile_slide(path, size, mpp=MPP, tile_px=side, tile_rgb=rgb)
    print(
        f"wrote {path} ({size}², {path.stat().st_size / 1e6:.0f} MB) in "
        f"{time.perf_counter() - start:.1f} s"
    )
    return path


def cmd_slide(args: argparse.Namespace) -> None:
    make_slide(args.work, args.size)


def cmd_threads(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from napari_gbm import Slide
    from napari_gbm.detect.cells import CellParams, analyze_cells, needed_overlap_px
    from napari_gbm.wsi.tiling import TilingParams, make_tile_grid
    from napari_gbm.wsi.tissue import detect_tissue

    slide = Slide(make_slide(args.work, args.size))
    base = CellParams(texture=False)
    tiling = TilingParams(overlap_px=needed_overlap_px(base, MPP))
    grid = make_tile_grid(slide, detect_tissue(slide), tiling)
    keep = np.zeros(len(grid.tiles), bool)
    keep[np.flatnonzero(grid.tiles["selected"].to_numpy())[: args.tiles]] = True
    grid = replace(grid, tiles=grid.tiles.assign(selected=keep))
    analyze_cells(slide, replace(grid, tiles=grid.tiles.assign(selected=False)), base)  # JIT
    times: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    tables: dict[int, pd.DataFrame] = {}
    for r in range(args.rounds):
        for n in (1, 2) if r % 2 == 0 else (2, 1):
            cpu, wall = time.process_time(), time.perf_counter()
            tables[n] = analyze_cells(slide, grid, replace(base, n_threads=n))
            times[n].append((time.perf_counter() - wall, time.process_time() - cpu))
    same = tables[1].equals(tables[2])
    n_cells = len(tables[1])
    load = os.getloadavg()
    print(
        f"{args.tiles} tiles of 1024² (+ {tiling.overlap_px} px halo), {n_cells} cells, "
        f"no texture; load average {load[0]:.1f}; tables identical: {same}"
    )
    for n, rows in times.items():
        wall = float(np.median([w for w, _ in rows]))
        cpu = float(np.median([c for _, c in rows]))
        print(
            f"  {n} tile thread(s): {wall / args.tiles:.3f} s wall per tile, "
            f"{cpu / args.tiles:.3f} s CPU per tile, CPU/wall {cpu / wall:.2f}, "
            f"{n_cells / wall:.0f} cells/s"
        )


def cmd_neighbourhood(args: argparse.Namespace) -> None:
    source_slide(args.work)
    pattern = window_centroids(args.work)
    np.save(args.work / "window_centroids_um.npy", pattern)
    for n in (int(v) for v in args.cells.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, "_pass2", str(args.work), str(n)],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"  {r['cells']:>9,d} cells: peak RSS +{r['peak_mb'] - r['base_mb']:.0f} MB over "
            f"a {r['base_mb']:.0f} MB process ({r['bytes_per_cell']:.0f} bytes per cell), "
            f"{r['seconds']:.1f} s"
        )


def _pass2(work: Path, n: int) -> None:
    """Child process: ``n`` centroids tiled from the window's pattern, then pass 2."""
    from napari_gbm.features.neighbourhood import neighbourhood_features

    pattern = np.load(work / "window_centroids_um.npy")
    side_um = WINDOW[2] * MPP
    reps = int(np.ceil(np.sqrt(n / len(pattern))))
    ii, jj = np.divmod(np.arange(reps * reps), reps)
    offsets = np.column_stack([jj, ii]) * side_um
    pts = (pattern[None, :, :] + offsets[:, None, :]).reshape(-1, 2)[:n]
    x, y = pts[:, 0].copy(), pts[:, 1].copy()
    del pts, offsets, ii, jj
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    nb = neighbourhood_features(x, y)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert len(nb) == n
    print(
        json.dumps(
            {
                "cells": n,
                "base_mb": base,
                "peak_mb": peak,
                "seconds": seconds,
                "bytes_per_cell": (peak - base) * 2**20 / n,
            }
        )
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_pass2":
        _pass2(Path(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("slide", "threads", "neighbourhood"):
        p = sub.add_parser(name)
        p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-analyze")
        p.add_argument("--size", type=int, default=51_200, help="slide side in pixels")
        if name == "threads":
            p.add_argument("--tiles", type=int, default=24)
            p.add_argument("--rounds", type=int, default=2)
        if name == "neighbourhood":
            p.add_argument("--cells", default="500000,1000000,2000000,3400000")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    {"slide": cmd_slide, "threads": cmd_threads, "neighbourhood": cmd_neighbourhood}[args.command](
        args
    )


if __name__ == "__main__":
    main()
