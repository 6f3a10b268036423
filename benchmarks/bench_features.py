"""Benchmark: measure_cells vs skimage.measure.regionprops_table on >= 50,000 nuclei.

    .venv/bin/python benchmarks/bench_features.py [--grid 224] [--subset 2000] [--rounds 3]

A mosaic of random ellipses (semi-axes 7-15 px, like nuclei at 0.5 µm/px; neighbours may
touch) on a jittered grid, with a float intensity image. measure_cells runs after a
warm-up call (JIT compile excluded), single-threaded, then with all cores.
regionprops_table needs a minute or more for 50k objects, so it runs on a crop holding
about ``--subset`` nuclei and its time is scaled per nucleus; measure_cells is timed on
the same crop too, so one ratio compares identical inputs.

measure_cells always computes more morphology than the regionprops properties timed
(calipers, convex area, circularity...). It is timed twice: with its full table (13
intensity statistics, including median/IQR/MAD/histogram, which need per-object
selections) and with ``intensity_stats`` = regionprops' four (mean, min, max, std), and
with only the median (the statistics the cell table uses besides the moments).

Single-thread times are CPU time (``time.process_time``): the machine these numbers are
for has 2 cores shared with other jobs, where wall time is noise. Each of ``--rounds``
rounds times everything once, in an order that alternates between rounds (regionprops
first in even rounds, last in odd ones); the best (smallest) time over rounds is printed
for both sides, as other jobs can only add CPU time (cache and memory-bus contention),
and the medians follow. Thread runs (``n_threads`` = all cores) are wall time, the only
time that shows a parallel speed-up. The crop is a contiguous copy (a view would make
measure_cells copy it first: a few ms).

Last, the per-pixel cost of background: the first 1024² of the mosaic measured alone and
inside a 4096² label image of zeros (image: the same values, noise elsewhere).

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


def cpu_time(fn: Callable[[], Any]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def wall_time(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def line(name: str, seconds: float, n_objects: int) -> float:
    per = seconds / n_objects
    print(f"{name:<58} {seconds:9.3f} s  {n_objects:6d} nuclei  {per * 1e6:9.2f} µs/nucleus")
    return per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=224, help="nuclei per side (224 -> 50k)")
    parser.add_argument("--subset", type=int, default=2000, help="nuclei in the regionprops crop")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds")
    args = parser.parse_args()

    labels, image = nuclei_mosaic(args.grid)
    n = int(np.unique(labels).size - 1)
    images = {"od": image}
    side = int(np.ceil(np.sqrt(args.subset))) * SPACING_PX
    crop_labels = np.ascontiguousarray(labels[:side, :side])
    crop_image = np.ascontiguousarray(image[:side, :side])
    crop_images = {"od": crop_image}
    n_crop = int(np.unique(crop_labels).size - 1)
    cores = os.cpu_count() or 1
    print(f"label image {labels.shape[1]} x {labels.shape[0]} px, {n} nuclei, {cores} cores")

    sets: dict[str, dict[str, Any]] = {
        "full table": {},
        "regionprops' intensity stats": {"intensity_stats": ["mean", "min", "max", "std"]},
        "moments + median": {"intensity_stats": ["mean", "std", "min", "max", "sum", "median"]},
    }
    for kwargs in sets.values():  # JIT warm-up (compile or load the cache)
        measure_cells(crop_labels, crop_images, **kwargs)
        measure_cells(crop_labels, crop_images, n_threads=cores, **kwargs)

    def theirs() -> Any:
        return regionprops_table(crop_labels, crop_image, properties=PROPERTIES)

    timed: dict[str, list[float]] = {}
    for r in range(args.rounds):
        jobs: list[tuple[str, Callable[[], Any]]] = []
        for title, kw in sets.items():
            jobs.append((f"{title}|all", lambda kw=kw: measure_cells(labels, images, **kw)))
            jobs.append(
                (f"{title}|crop", lambda kw=kw: measure_cells(crop_labels, crop_images, **kw))
            )
        jobs = [("regionprops", theirs), *jobs] if r % 2 == 0 else [*jobs, ("regionprops", theirs)]
        for key, fn in jobs:
            timed.setdefault(key, []).append(cpu_time(fn))
        for title, kw in sets.items():
            fn = lambda kw=kw: measure_cells(labels, images, n_threads=cores, **kw)  # noqa: E731
            timed.setdefault(f"{title}|threads", []).append(wall_time(fn))
    med = {key: float(np.min(values)) for key, values in timed.items()}
    print(f"best of {args.rounds} alternating rounds; CPU time unless marked wall")
    per_theirs = line("regionprops_table, crop (properties above)", med["regionprops"], n_crop)
    print(f"{'regionprops_table, all nuclei (scaled per nucleus)':<58} {per_theirs * n:9.1f} s")
    for title in sets:
        ours = line(f"measure_cells, {title}, 1 thread", med[f"{title}|all"], n)
        ours_crop = line(f"measure_cells, {title}, crop, 1 thread", med[f"{title}|crop"], n_crop)
        line(f"measure_cells, {title}, {cores} threads (wall)", med[f"{title}|threads"], n)
        print(
            f"  speed-up per nucleus ({title}, 1 thread): {per_theirs / ours:6.1f}x on all "
            f"nuclei, {per_theirs / ours_crop:6.1f}x on the same crop (goal >= 50x)"
        )
    per = {key: n_crop if key == "regionprops" or key.endswith("crop") else n for key in timed}
    medians = [f"{key} {np.median(v) / per[key] * 1e6:.1f}" for key, v in timed.items()]
    print("medians over rounds, µs/nucleus: " + ", ".join(medians))
    background_cost(labels, image)


def background_cost(labels: np.ndarray, image: np.ndarray, size: int = 4096) -> None:
    """CPU time (best of 5) of measure_cells on a 1024² piece alone and inside a size²
    image of zeros."""
    tile_labels = np.ascontiguousarray(labels[:1024, :1024])
    tile_image = np.ascontiguousarray(image[:1024, :1024])
    big_labels = np.zeros((size, size), labels.dtype)
    big_image = np.random.default_rng(1).gamma(2.0, 0.15, (size, size))
    at = slice(size // 3, size // 3 + 1024)
    big_labels[at, at] = tile_labels
    big_image[at, at] = tile_image
    for _ in range(2):  # warm-up
        measure_cells(tile_labels, {"od": tile_image})
    alone, inside = [], []
    for _ in range(5):
        alone.append(cpu_time(lambda: measure_cells(tile_labels, {"od": tile_image})))
        inside.append(cpu_time(lambda: measure_cells(big_labels, {"od": big_image})))
    a, b = float(np.min(alone)), float(np.min(inside))
    extra = size * size - 1024 * 1024
    print(
        f"background: 1024² piece alone {a:.4f} s, inside {size}² of zeros {b:.4f} s: "
        f"{(b - a) / extra * 1e9:.2f} ns per background pixel (full table, 1 thread)"
    )


if __name__ == "__main__":
    main()
