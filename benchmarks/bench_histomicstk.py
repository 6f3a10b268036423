"""napari-gbm vs HistomicsTK 1.4, measured in the same run on the same nuclei and tiles.

    .venv-bench/bin/python benchmarks/bench_histomicstk.py [--size 4096] [--rounds 3]
        [--block 2] [--out DIR]

Needs HistomicsTK, which is not a project dependency: run it from the benchmark venv
(``.venv-bench``: HistomicsTK 1.4.0 plus ``pip install -e .``, see BENCHMARKS.md).

A synthetic H&E slide (``make_synthetic_slide``, 0.5 µm/px, seed 3) is cut into 1024 x
1024 tiles read with ``Slide.read_region``. Three comparisons, all single-threaded
(``OMP_NUM_THREADS=1``, numba ``n_threads=1``), in CPU time (``time.process_time``),
after numba compilation, as the median of ``--rounds`` rounds whose order alternates
(ours first in even rounds, HistomicsTK first in odd ones):

1. **Features**: napari-gbm's nuclei of every tile are put into one label image (one
   label per nucleus, the whole slide). ``measure_cells`` (full table) with the
   hematoxylin OD image runs on all of it and on one central 1024² tile; HistomicsTK's
   ``compute_nuclei_features`` with only the morphometry and intensity families runs on
   that central tile (it needs ~8 ms per nucleus). Per-nucleus times, ratios over the
   whole slide and on the same crop.
2. **Haralick**: ``haralick_features`` vs ``compute_haralick_features`` (32 levels,
   default offsets) on the same labels and the same uint8 image (hematoxylin OD 0-2
   mapped to 0-255, the range napari-gbm's pipeline quantises); values compared.
3. **Detection + features**: on the central ``--block`` x ``--block`` tiles,
   napari-gbm ``segment_nuclei`` (nuclei *and* cells) + ``measure_cells`` (hematoxylin)
   vs HistomicsTK's nuclei-detection CLI steps per tile (``detect_tile_nuclei`` without
   the annotation output): Reinhard normalisation to the CLI's reference (source
   statistics from the whole slide at <= 4096 px, once, untimed, as the CLI does),
   ``color_deconvolution`` (hematoxylin, eosin, null), foreground ``< 60``,
   ``detect_nuclei_kofahi`` (cdog, ``max_clustering``, ``split``, ``area_open``) with
   the CLI defaults for 20x (min/max radius 6/20 px, local max radius 10 px, min area
   80 px), then ``compute_nuclei_features`` (morphometry + intensity on the uint8
   hematoxylin). Megapixels per CPU second, with and without the features step, and
   precision / recall / F1 of both against the generator's truth inside the block
   (``bench_segment.f1_score``: one-to-one centroid match within 4 µm, detections on
   tissue).

measure_cells' time has a per-pixel part (background included), so its time per nucleus
is lower on a tissue-dense tile than over the whole slide, whose corners are glass;
HistomicsTK's is per object. Both per-nucleus figures are printed.

Value agreement of the shared morphometry / intensity features and of all Haralick
features is printed for the central tile (max absolute difference and the number of
nuclei beyond ``atol`` 1e-2; orientation compared as an axis, modulo pi).

The machine these numbers are meant for has 2 cores shared with other jobs: wall time
is noisy there, which is why CPU time is used; ratios move less than single timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from bench_segment import MPP, TILE, _centroids, f1_score  # noqa: E402

# HistomicsTK 1.4 calls scikit-image properties deprecated in 0.26 (FutureWarning per
# object) and divides by zero on flat objects; the warnings would only add noise and time.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=RuntimeWarning)

from histomicstk.features import (  # noqa: E402
    compute_haralick_features,
    compute_nuclei_features,
)
from histomicstk.preprocessing.color_deconvolution import (  # noqa: E402
    color_deconvolution,
    stain_color_map,
)
from histomicstk.preprocessing.color_normalization import (  # noqa: E402
    reinhard,
    reinhard_stats_rgb,
)
from histomicstk.segmentation.nuclear import detect_nuclei_kofahi  # noqa: E402

from napari_gbm.detect.segment import segment_nuclei  # noqa: E402
from napari_gbm.features.measure import measure_cells  # noqa: E402
from napari_gbm.features.texture import HARALICK_FEATURES, haralick_features  # noqa: E402
from napari_gbm.synthetic import make_synthetic_slide  # noqa: E402
from napari_gbm.wsi.slide import Slide  # noqa: E402

# HistomicsTK NucleiDetection CLI defaults (NucleiDetection.xml, analysis at 20x)
REFERENCE_MU_LAB = (8.63234435, -0.11501964, 0.03868433)
REFERENCE_STD_LAB = (0.57506023, 0.10403329, 0.01364062)
STAIN_MATRIX = np.array([stain_color_map[s] for s in ("hematoxylin", "eosin", "null")]).T
FOREGROUND_THRESHOLD = 60
MIN_RADIUS_PX, MAX_RADIUS_PX = 6, 20
LOCAL_MAX_SEARCH_RADIUS_PX = 10
MIN_NUCLEUS_AREA_PX = 80
GLCM_LEVELS = 32
HEMATOXYLIN_OD_MAX = 2.0  # napari-gbm quantises hematoxylin OD over 0-2 for texture
ATOL = 1e-2

# measure_cells column (mpp=None: pixels) -> HistomicsTK column
SHARED_COLUMNS = {
    "centroid_x_px": "Identifier.CentroidX",
    "centroid_y_px": "Identifier.CentroidY",
    "bbox_x0_px": "Identifier.Xmin",
    "bbox_y0_px": "Identifier.Ymin",
    "bbox_x1_px": "Identifier.Xmax",
    "bbox_y1_px": "Identifier.Ymax",
    "area_px": "Size.Area",
    "convex_area_px": "Size.ConvexHullArea",
    "major_axis_px": "Size.MajorAxisLength",
    "minor_axis_px": "Size.MinorAxisLength",
    "perimeter_px": "Size.Perimeter",
    "circularity": "Shape.Circularity",
    "eccentricity": "Shape.Eccentricity",
    "equivalent_diameter_px": "Shape.EquivalentDiameter",
    "extent": "Shape.Extent",
    "minor_major_axis_ratio": "Shape.MinorMajorAxisRatio",
    "solidity": "Shape.Solidity",
    "orientation_rad": "Orientation.Orientation",
    "hematoxylin_min": "Nucleus.Intensity.Min",
    "hematoxylin_max": "Nucleus.Intensity.Max",
    "hematoxylin_mean": "Nucleus.Intensity.Mean",
    "hematoxylin_median": "Nucleus.Intensity.Median",
    "hematoxylin_std": "Nucleus.Intensity.Std",
    "hematoxylin_iqr": "Nucleus.Intensity.IQR",
    "hematoxylin_mad": "Nucleus.Intensity.MAD",
    "hematoxylin_skewness": "Nucleus.Intensity.Skewness",
    "hematoxylin_kurtosis": "Nucleus.Intensity.Kurtosis",
    "hematoxylin_hist_energy": "Nucleus.Intensity.HistEnergy",
    "hematoxylin_hist_entropy": "Nucleus.Intensity.HistEntropy",
}
HTK_HARALICK_NAMES = (
    "ASM",
    "Contrast",
    "Correlation",
    "SumOfSquares",
    "IDM",
    "SumAverage",
    "SumVariance",
    "SumEntropy",
    "Entropy",
    "DifferenceVariance",
    "DifferenceEntropy",
    "IMC1",
    "IMC2",
)

Tile = tuple[int, int, np.ndarray]


def cpu_time(fn: Callable[[], Any]) -> tuple[float, Any]:
    """CPU seconds of this process spent in ``fn()``, and its result."""
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def hematoxylin_u8(od: np.ndarray) -> np.ndarray:
    """Hematoxylin OD 0-2 as uint8 0-255 (HistomicsTK's texture casts to uint8)."""
    return np.clip(np.round(od * (255 / HEMATOXYLIN_OD_MAX)), 0, 255).astype(np.uint8)


# --- the two pipelines, per tile -------------------------------------------------------


def ours_tile(rgb: np.ndarray, features: bool = True) -> tuple[np.ndarray, pd.DataFrame | None]:
    """napari-gbm: nuclei + cells, then (``features``) the full measure_cells table."""
    seg = segment_nuclei(rgb, MPP)
    if not features:
        return seg.nuclei, None
    table = measure_cells(seg.nuclei, {"hematoxylin": seg.stains["hematoxylin"]}, mpp=MPP)
    return seg.nuclei, table


def htk_tile(
    rgb: np.ndarray, src_mu: np.ndarray, src_sigma: np.ndarray, features: bool = True
) -> tuple[np.ndarray, pd.DataFrame | None]:
    """HistomicsTK's detect_tile_nuclei steps (CLI defaults), then (``features``)
    morphometry and intensity features."""
    normalised = reinhard(
        rgb, REFERENCE_MU_LAB, REFERENCE_STD_LAB, src_mu=src_mu, src_sigma=src_sigma
    )
    hema = color_deconvolution(normalised, STAIN_MATRIX).Stains[:, :, 0].astype(float)
    labels = detect_nuclei_kofahi(
        hema,
        hema < FOREGROUND_THRESHOLD,
        MIN_RADIUS_PX,
        MAX_RADIUS_PX,
        MIN_NUCLEUS_AREA_PX,
        LOCAL_MAX_SEARCH_RADIUS_PX,
    )
    if not (features and np.any(labels)):
        return np.asarray(labels, np.int64), None
    return labels, htk_features(labels, hema.astype(np.uint8))


def htk_features(labels: np.ndarray, image: np.ndarray) -> pd.DataFrame:
    """compute_nuclei_features with only the morphometry and intensity families."""
    return compute_nuclei_features(
        labels,
        image,
        morphometry_features_flag=True,
        fsd_features_flag=False,
        intensity_features_flag=True,
        gradient_features_flag=False,
        haralick_features_flag=False,
    )


# --- reporting --------------------------------------------------------------------------


def detection_scores(
    det: np.ndarray, truth: pd.DataFrame, regions: np.ndarray, ds: int
) -> tuple[float, float, float, int]:
    """Precision, recall, F1 (from ``bench_segment.f1_score``) and detections on tissue.

    f1_score counts detections on tissue (region code != 0) against all truth rows:
    F1 = 2 TP / (D + T), so TP, precision and recall follow from D and T.
    """
    f1 = f1_score(det, truth, regions, ds)
    code = regions[(det[:, 1] // ds).astype(int), (det[:, 0] // ds).astype(int)]
    n_det, n_true = int(np.count_nonzero(code)), len(truth)
    tp = f1 * (n_det + n_true) / 2
    return tp / max(n_det, 1), tp / max(n_true, 1), f1, n_det


def agreement(ours: pd.DataFrame, theirs: pd.DataFrame, pairs: dict[str, str]) -> pd.DataFrame:
    """Per feature: max |ours - theirs| and nuclei beyond ATOL (NaN == NaN), by label.

    Orientation is an axis: -pi/2 and pi/2 are the same, so it is compared modulo pi and
    the nuclei whose raw values differ by pi are counted in ``axis_flips``.
    """
    merged = ours.merge(theirs, left_on="label", right_on="Label", how="inner")
    rows = []
    for mine, other in pairs.items():
        a, b = merged[mine].to_numpy(float), merged[other].to_numpy(float)
        both = np.isfinite(a) & np.isfinite(b)
        nan_mismatch = int(np.count_nonzero(np.isnan(a) != np.isnan(b)))
        diff = np.abs(a[both] - b[both])
        flips = 0
        if mine == "orientation_rad":
            flips = int(np.count_nonzero(diff > np.pi / 2))
            diff = np.minimum(diff, np.pi - diff)
        rows.append(
            {
                "napari-gbm": mine,
                "HistomicsTK": other,
                "nuclei": len(merged),
                "max_abs_diff": float(diff.max()) if diff.size else 0.0,
                "beyond_atol": int(np.count_nonzero(diff > ATOL)) + nan_mismatch,
                "axis_flips": flips,
            }
        )
    return pd.DataFrame(rows)


def print_agreement(title: str, table: pd.DataFrame) -> None:
    bad = table[table["beyond_atol"] > 0]
    print(f"\n{title}: {len(table)} features on {table['nuclei'].iloc[0]} nuclei, atol {ATOL}")
    print(f"  largest difference overall: {table['max_abs_diff'].max():.3g}")
    for _, flip in table[table["axis_flips"] > 0].iterrows():
        print(
            f"  {flip['napari-gbm']}: {flip['axis_flips']} nuclei at +pi/2 in one and -pi/2 in "
            "the other (the same axis; compared modulo pi)"
        )
    if bad.empty:
        print("  all agree within atol")
    else:
        print("  features with nuclei beyond atol:")
        print(bad.to_string(index=False))


def row(name: str, ours: str, theirs: str, ratio: str, goal: str) -> None:
    print(f"| {name} | {ours} | {theirs} | {ratio} | {goal} |")


# --- main -------------------------------------------------------------------------------


def load_slide(
    out: Path, size: int
) -> tuple[list[Tile], pd.DataFrame, np.ndarray, int, np.ndarray, np.ndarray]:
    """Write (or reuse) the slide; tiles, truth, regions, downsample, Reinhard stats."""
    path = out / f"bench_htk_{size}.tif"
    if not path.exists():
        make_synthetic_slide(path, size_px=(size, size), stain="he", seed=3)
    stem = path.with_suffix("")
    truth = pd.read_parquet(f"{stem}.nuclei.parquet")
    regions = np.asarray(Image.open(f"{stem}.regions.png"))
    ds = int(json.loads(Path(f"{stem}.truth.json").read_text())["region_downsample"])
    with Slide(path) as slide:
        tiles = [
            (x, y, slide.read_region((x, y), 0, (TILE, TILE)))
            for y in range(0, size - TILE + 1, TILE)
            for x in range(0, size - TILE + 1, TILE)
        ]
        # the CLI's source statistics: the whole slide at <= 4096 px on its long side
        level = next(
            (i for i, dims in enumerate(slide.level_dimensions) if max(dims) <= 4096),
            slide.level_count - 1,
        )
        whole = slide.read_region((0, 0), level, slide.level_dimensions[level])
    src_mu, src_sigma = reinhard_stats_rgb(whole)
    return tiles, truth, regions, ds, np.asarray(src_mu), np.asarray(src_sigma)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="slide side in px (>= 2048)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds")
    parser.add_argument("--block", type=int, default=2, help="detection block, tiles a side")
    parser.add_argument("--out", type=Path, help="keep the slide here (reused if present)")
    args = parser.parse_args()
    if args.size < 2 * TILE or args.size % TILE:
        parser.error(f"--size must be a multiple of {TILE} and >= {2 * TILE}")
    side = args.size // TILE
    if not 1 <= args.block <= side:
        parser.error(f"--block must be 1..{side}")

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        tiles, truth, regions, ds, src_mu, src_sigma = load_slide(out, args.size)

    # one label image of napari-gbm's nuclei over the whole slide, and its hematoxylin
    labels = np.zeros((args.size, args.size), np.int32)
    hema = np.zeros((args.size, args.size), np.float32)
    next_label = 0
    for x0, y0, rgb in tiles:
        seg = segment_nuclei(rgb, MPP)
        nuc = seg.nuclei
        labels[y0 : y0 + TILE, x0 : x0 + TILE] = np.where(nuc > 0, nuc + next_label, 0)
        hema[y0 : y0 + TILE, x0 : x0 + TILE] = seg.stains["hematoxylin"]
        next_label += int(nuc.max(initial=0))
    hema_u8 = hematoxylin_u8(hema)
    c0 = (side // 2) * TILE  # central tile: HistomicsTK's feature crop
    crop = np.s_[c0 : c0 + TILE, c0 : c0 + TILE]
    crop_labels, crop_hema, crop_u8 = labels[crop], hema[crop], hema_u8[crop]
    n_all = int(np.unique(labels).size - 1)
    n_crop = int(np.unique(crop_labels).size - 1)

    b0 = (side - args.block) // 2  # central detection block, in tiles
    block = [
        t
        for t in tiles
        if b0 <= t[0] // TILE < b0 + args.block and b0 <= t[1] // TILE < b0 + args.block
    ]
    lo, hi = b0 * TILE, (b0 + args.block) * TILE
    block_truth = truth[
        truth["centroid_x_px"].between(lo, hi, inclusive="left")
        & truth["centroid_y_px"].between(lo, hi, inclusive="left")
    ]
    block_mp = len(block) * TILE * TILE / 1e6

    # warm-up: numba compilation / cache load, HistomicsTK's lazy imports
    small = np.s_[:256, :256]
    ours_tile(block[0][2][small])
    haralick_features(crop_labels[small], crop_u8[small], levels=GLCM_LEVELS)
    htk_tile(block[0][2][small], src_mu, src_sigma)

    timings: dict[str, list[float]] = {}
    results: dict[str, Any] = {}

    def timed(key: str, fn: Callable[[], Any]) -> None:
        seconds, results[key] = cpu_time(fn)
        timings.setdefault(key, []).append(seconds)

    def run_ours() -> None:
        timed(
            "features_ours_all", lambda: measure_cells(labels, {"hematoxylin": hema}, n_threads=1)
        )
        timed(
            "features_ours_crop",
            lambda: measure_cells(crop_labels, {"hematoxylin": crop_hema}, n_threads=1),
        )
        timed("haralick_ours_all", lambda: haralick_features(labels, hema_u8, levels=GLCM_LEVELS))
        timed(
            "haralick_ours_crop",
            lambda: haralick_features(crop_labels, crop_u8, levels=GLCM_LEVELS),
        )
        timed("detect_ours", lambda: [ours_tile(rgb)[0] for _, _, rgb in block])
        timed("detect_only_ours", lambda: [ours_tile(rgb, False)[0] for _, _, rgb in block])

    def run_htk() -> None:
        timed("features_htk_crop", lambda: htk_features(crop_labels, crop_hema))
        timed(
            "haralick_htk_crop",
            lambda: compute_haralick_features(crop_labels, crop_u8, num_levels=GLCM_LEVELS),
        )
        timed("detect_htk", lambda: [htk_tile(rgb, src_mu, src_sigma)[0] for _, _, rgb in block])
        timed(
            "detect_only_htk",
            lambda: [htk_tile(rgb, src_mu, src_sigma, False)[0] for _, _, rgb in block],
        )

    for r in range(args.rounds):
        for fn in (run_ours, run_htk) if r % 2 == 0 else (run_htk, run_ours):
            fn()
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    t = {key: statistics.median(v) for key, v in timings.items()}
    us = 1e6
    f_all = t["features_ours_all"] / n_all * us
    f_crop = t["features_ours_crop"] / n_crop * us
    f_htk = t["features_htk_crop"] / n_crop * us
    h_all = t["haralick_ours_all"] / n_all * us
    h_crop = t["haralick_ours_crop"] / n_crop * us
    h_htk = t["haralick_htk_crop"] / n_crop * us
    mps_ours, mps_htk = block_mp / t["detect_ours"], block_mp / t["detect_htk"]
    det_ours, det_htk = block_mp / t["detect_only_ours"], block_mp / t["detect_only_htk"]

    def offset_centroids(label_list: list[np.ndarray]) -> np.ndarray:
        pairs = zip(block, label_list, strict=True)
        return np.concatenate([_centroids(lab) + np.array([x0, y0]) for (x0, y0, _), lab in pairs])

    p_o, r_o, f1_o, d_o = detection_scores(
        offset_centroids(results["detect_ours"]), block_truth, regions, ds
    )
    p_h, r_h, f1_h, d_h = detection_scores(
        offset_centroids(results["detect_htk"]), block_truth, regions, ds
    )

    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}; slide {args.size}², H&E, "
        f"{MPP} µm/px; {args.rounds} alternating rounds, medians of CPU time, 1 thread"
    )
    print(
        f"label image: {n_all} napari-gbm nuclei over the slide; HistomicsTK crop: the "
        f"central {TILE}² tile, {n_crop} nuclei; detection block: {len(block)} tiles "
        f"({block_mp:.1f} MP), {len(block_truth)} true nuclei\n"
    )
    print("| measurement | napari-gbm | HistomicsTK 1.4 (same run) | ratio | goal |")
    print("|---|---|---|---|---|")
    row(
        f"morphometry + intensity features, µs/nucleus: napari-gbm on all {n_all} nuclei "
        f"(on the {n_crop}-nucleus crop), HistomicsTK on the crop",
        f"{f_all:.1f} ({f_crop:.1f})",
        f"{f_htk:.0f}",
        f"{f_htk / f_all:.0f}x ({f_htk / f_crop:.0f}x)",
        f">= 200x: {'met' if f_htk / f_all >= 200 else 'not met'}",
    )
    row(
        f"Haralick, 13 x 4 offsets, 32 levels, µs/nucleus: all {n_all} (crop), HistomicsTK crop",
        f"{h_all:.1f} ({h_crop:.1f})",
        f"{h_htk:.0f}",
        f"{h_htk / h_all:.0f}x ({h_htk / h_crop:.0f}x)",
        "",
    )
    row(
        "detection + features, MP/s per core",
        f"{mps_ours:.2f}",
        f"{mps_htk:.3f}",
        f"{mps_ours / mps_htk:.1f}x",
        f">= 10x: {'met' if mps_ours / mps_htk >= 10 else 'not met'}",
    )
    row(
        "detection only (ours: nuclei + cells), MP/s per core",
        f"{det_ours:.2f}",
        f"{det_htk:.3f}",
        f"{det_ours / det_htk:.1f}x",
        "",
    )
    row(
        "detection precision / recall / F1 (4 µm)",
        f"{p_o:.3f} / {r_o:.3f} / {f1_o:.3f} ({d_o} det.)",
        f"{p_h:.3f} / {r_h:.3f} / {f1_h:.3f} ({d_h} det.)",
        "",
        f"better F1: {'met' if f1_o > f1_h else 'not met'}",
    )
    print("\nCPU seconds per round:")
    for key, values in timings.items():
        print(f"  {key:<20} " + "  ".join(f"{v:7.2f}" for v in values))

    print_agreement(
        "measure_cells vs compute_nuclei_features (central tile, same labels and image)",
        agreement(results["features_ours_crop"], results["features_htk_crop"], SHARED_COLUMNS),
    )
    theirs = results["haralick_htk_crop"].copy()
    theirs.insert(0, "Label", np.unique(crop_labels[crop_labels > 0]))  # rprops' order
    pairs = {
        f"haralick_{ours}_{stat}": f"Haralick.{htk}.{stat.capitalize()}"
        for ours, htk in zip(HARALICK_FEATURES, HTK_HARALICK_NAMES, strict=True)
        for stat in ("mean", "range")
    }
    print_agreement(
        "haralick_features vs compute_haralick_features (central tile)",
        agreement(results["haralick_ours_crop"], theirs, pairs),
    )


if __name__ == "__main__":
    main()
