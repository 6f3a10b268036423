"""Nucleus segmentation throughput and accuracy vs a plain scikit-image pipeline.

    .venv/bin/python benchmarks/bench_segment.py [--size 2048] [--repeat 3] [--stain he]

Writes a synthetic slide (0.5 µm/px) to a temporary folder, cuts level 0 into 1024 x
1024 tiles and times, single-threaded and in the same run:

- ``napari_gbm.detect.segment.segment_nuclei`` (defaults: nuclei *and* cells);
- a plain scikit-image pipeline: hematoxylin by ``separate_stains``, Gaussian, Otsu
  threshold on the tile, ``remove_small_objects``, distance-transform
  ``peak_local_max`` seeds and ``watershed``, area filter (nuclei only).

Prints megapixels per second per core for both, their ratio, and detection F1 of both
against the generator's truth (centroids matched one-to-one within 4 µm, detections
restricted to tissue).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

MPP = 0.5
TILE = 1024


def skimage_pipeline(rgb: np.ndarray, mpp: float) -> np.ndarray:
    """The textbook scikit-image nucleus segmentation, with the same µm limits."""
    from skimage.color import hed_from_rgb, separate_stains
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import watershed

    hema = separate_stains(rgb, hed_from_rgb)[..., 0]
    smooth = gaussian(hema, sigma=1.0 / mpp)
    mask = smooth > threshold_otsu(smooth)
    mask = remove_small_objects(mask, max_size=int(10 / mpp**2))
    dist = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(dist, min_distance=max(1, round(2.5 / mpp)), labels=ndi.label(mask)[0])
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=mask)
    area = np.bincount(labels.ravel()) * mpp**2
    bad = (area < 10) | (area > 400)
    bad[0] = True
    labels[bad[labels]] = 0
    return labels


def ours(rgb: np.ndarray, mpp: float) -> np.ndarray:
    from napari_gbm.detect.segment import segment_nuclei

    return segment_nuclei(rgb, mpp).nuclei


def _centroids(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size == 0:
        return np.zeros((0, 2))
    return np.asarray(ndi.center_of_mass(np.ones(labels.shape), labels, ids))[:, ::-1]


def f1_score(det: np.ndarray, truth: pd.DataFrame, regions: np.ndarray, ds: int) -> float:
    """F1 of detected centroids (x, y px) vs truth, one-to-one within 4 µm, on tissue."""
    code = regions[(det[:, 1] // ds).astype(int), (det[:, 0] // ds).astype(int)]
    det = det[code != 0]
    true = truth[["centroid_x_px", "centroid_y_px"]].to_numpy()
    near = cKDTree(true).query_ball_point(det, 4.0 / MPP)
    rows = np.repeat(np.arange(len(det)), [len(v) for v in near])
    cols = np.concatenate([np.asarray(v, int) for v in near]) if len(det) else np.zeros(0, int)
    if rows.size == 0:
        return 0.0
    ur, ri = np.unique(rows, return_inverse=True)
    uc, ci = np.unique(cols, return_inverse=True)
    cost = np.full((ur.size, uc.size), 1e6)
    cost[ri, ci] = np.hypot(*(det[rows] - true[cols]).T)
    r, c = linear_sum_assignment(cost)
    tp = int(np.sum(cost[r, c] < 1e6))
    precision, recall = tp / max(len(det), 1), tp / max(len(true), 1)
    return 2 * precision * recall / max(precision + recall, 1e-9)


def _time_tiles(
    fn: Callable[[np.ndarray, float], np.ndarray], tiles: list[tuple[int, int, np.ndarray]]
) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    cents = []
    for x0, y0, rgb in tiles:
        labels = fn(rgb, MPP)
        cents.append(_centroids(labels) + np.array([x0, y0]))
    return time.perf_counter() - t0, np.concatenate(cents)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="slide side in px")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stain", choices=("he", "hdab"), default="he")
    args = parser.parse_args()

    from napari_gbm.detect.segment import segment_nuclei
    from napari_gbm.synthetic import make_synthetic_slide
    from napari_gbm.wsi.slide import Slide

    with tempfile.TemporaryDirectory() as tmp:
        info = make_synthetic_slide(
            Path(tmp) / "bench.tif", size_px=(args.size, args.size), stain=args.stain, seed=3
        )
        with Slide(info.path) as slide:
            tiles = [
                (x, y, slide.read_region((x, y), 0, (TILE, TILE)))
                for y in range(0, args.size - TILE + 1, TILE)
                for x in range(0, args.size - TILE + 1, TILE)
            ]
        truth = pd.read_parquet(info.nuclei_path)
        regions = np.asarray(Image.open(info.regions_path))
        ds = int(json.loads(info.truth_path.read_text())["region_downsample"])

    segment_nuclei(tiles[0][2][:256, :256], MPP)  # compile / load the numba cache
    if args.stain == "hdab":
        from napari_gbm.detect.stain import HDAB

        def run_ours(rgb: np.ndarray, mpp: float) -> np.ndarray:
            return segment_nuclei(rgb, mpp, HDAB).nuclei
    else:
        run_ours = ours
    mp = len(tiles) * TILE * TILE / 1e6
    t_ours, t_sk = [], []
    for _ in range(args.repeat):  # interleaved so load changes hit both alike
        dt, c_ours = _time_tiles(run_ours, tiles)
        t_ours.append(dt)
        dt, c_sk = _time_tiles(skimage_pipeline, tiles)
        t_sk.append(dt)
    m_ours, m_sk = statistics.median(t_ours), statistics.median(t_sk)
    print(f"{len(tiles)} tiles of {TILE}x{TILE} ({mp:.1f} MP), stain {args.stain}, 1 thread")
    print(f"segment_nuclei (nuclei+cells): {mp / m_ours:6.2f} MP/s per core")
    print(f"scikit-image pipeline:         {mp / m_sk:6.2f} MP/s per core")
    print(f"speed ratio (ours / skimage):  {m_sk / m_ours:6.2f}x")
    f_ours = f1_score(c_ours, truth, regions, ds)
    f_sk = f1_score(c_sk, truth, regions, ds)
    print(f"detection F1: ours {f_ours:.3f}, scikit-image {f_sk:.3f}")


if __name__ == "__main__":
    main()
