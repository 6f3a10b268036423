"""Benchmark: measure_cells vs skimage.measure.regionprops_table on >= 50,000 nuclei.

    .venv/bin/python benchmarks/bench_features.py [--grid 224] [--subset 2000]

A mosaic of random ellipses (semi-axes 7-15 px, like nuclei at 0.5 µm/px; neighbours may
touch) on a jittered grid, with a float intensity image. measure_cells runs after a
warm-up call (JIT compile excluded), single-threaded, then with all cores.
regionprops_table needs a minute or more for 50k objects, so it runs on a crop holding
about ``--subset`` nuclei and its time is scaled per nucleus; measure_cells is timed on
the same crop too, so one ratio compares identical inputs.

measure_cells always computes more morphology than the regionprops properties timed
(calipers, convex area, circularity...). It is timed twice: with its full table (13
intensity statistics, including median/IQR/MAD/histogram, which need a sort per object)
and with ``intensity_stats`` = regionprops' four (mean, min, max, std).

Prints one line per measurement; the goal is >= 50x faster per nucleus.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from skimage.draw import ellipse
from skimage.measure import regionprops_table

from napari_gbm.features.measure import measure_cells

PROPERTIES = [
    "label",
    "area",
    "centroid",
    "bbox",
    "perimeter",
    "eccentricity",
    "orientation",
    "axis_major_length",
    "axis_minor_length",
    "solidity",
    "extent",
    "intensity_mean",
    "intensity_min",
    "intensity_max",
    "intensity_std",
]
SPACING_PX = 32


def nuclei_mosaic(grid: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``grid x grid`` nuclei on a ``SPACING_PX`` grid, and a noisy OD-like image."""
    rng = np.random.default_rng(seed)
    size = grid * SPACING_PX
    labels = np.zeros((size, size), np.int32)
    label = 0
    for row in range(grid):
        for col in range(grid):
            label += 1
            centre = (np.array([row, col]) + 0.5) * SPACING_PX + rng.uniform(-4, 4, 2)
            a, b = rng.uniform(7, 15, 2)
            rr, cc = ellipse(*centre, a, b, shape=labels.shape, rotation=rng.uniform(0, np.pi))
            labels[rr, cc] = label
    image = rng.gamma(2.0, 0.15, labels.shape) + 0.4 * (labels > 0)
    return labels, image


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def line(name: str, seconds: float, n_objects: int) -> float:
    per = seconds / n_objects
    print(f"{name:<52} {seconds:9.3f} s  {n_objects:6d} nuclei  {per * 1e6:9.2f} µs/nucleus")
    return per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=224, help="nuclei per side (224 -> 50k)")
    parser.add_argument("--subset", type=int, default=2000, help="nuclei in the regionprops crop")
    args = parser.parse_args()

    labels, image = nuclei_mosaic(args.grid)
    n = int(np.unique(labels).size - 1)
    images = {"od": image}
    side = int(np.ceil(np.sqrt(args.subset))) * SPACING_PX
    crop_labels, crop_image = labels[:side, :side], image[:side, :side]
    n_crop = int(np.unique(crop_labels).size - 1)
    cores = os.cpu_count() or 1
    print(f"label image {labels.shape[1]} x {labels.shape[0]} px, {n} nuclei, {cores} cores")

    same = {"intensity_stats": ["mean", "min", "max", "std"]}  # regionprops' set
    for kwargs in ({}, same):  # JIT warm-up (compile or load the cache)
        measure_cells(crop_labels, {"od": crop_image}, **kwargs)
        measure_cells(crop_labels, {"od": crop_image}, n_threads=cores, **kwargs)
    theirs = line(
        "regionprops_table, crop (properties above)",
        best_of(lambda: regionprops_table(crop_labels, crop_image, properties=PROPERTIES), 1),
        n_crop,
    )
    print(f"{'regionprops_table, all nuclei (scaled per nucleus)':<52} {theirs * n:9.1f} s")
    for title, kwargs in (("full table", {}), ("regionprops' intensity stats", same)):
        ours = line(
            f"measure_cells, {title}, 1 thread",
            best_of(lambda kw=kwargs: measure_cells(labels, images, **kw), 3),
            n,
        )
        line(
            f"measure_cells, {title}, {cores} threads",
            best_of(lambda kw=kwargs: measure_cells(labels, images, n_threads=cores, **kw), 3),
            n,
        )
        ours_crop = line(
            f"measure_cells, {title}, crop, 1 thread",
            best_of(lambda kw=kwargs: measure_cells(crop_labels, {"od": crop_image}, **kw), 5),
            n_crop,
        )
        print(
            f"  speed-up per nucleus ({title}, 1 thread): {theirs / ours:6.1f}x on all nuclei, "
            f"{theirs / ours_crop:6.1f}x on the same crop (goal >= 50x)"
        )


if __name__ == "__main__":
    main()
