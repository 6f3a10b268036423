"""Numba kernels for stain deconvolution and nucleus segmentation.

Each kernel is small, typed by its caller (:mod:`napari_gbm.detect.stain`,
:mod:`napari_gbm.detect.segment`), free of module globals, and checked against a scipy /
scikit-image reference in the tests (also with ``NUMBA_DISABLE_JIT=1``).
"""

from __future__ import annotations

import heapq

import numpy as np
from numba import njit, types
from numba.typed import Dict

__all__ = [
    "deconvolve_lut",
    "edt_nearest",
    "label_stats",
    "merge_shallow_regions",
    "region_saddles",
    "watershed_groups",
]

_BIG = 1e20


@njit(cache=True, nogil=True)
def deconvolve_lut(rgb: np.ndarray, lut: np.ndarray, inv: np.ndarray, out: np.ndarray) -> None:
    """Stain concentrations of a uint8 RGB image through a per-channel OD table.

    ``out[k, y, x] = sum_c lut[rgb[y, x, c], c] * inv[c, k]``.
    """
    h, w = rgb.shape[0], rgb.shape[1]
    for y in range(h):
        for x in range(w):
            r = lut[rgb[y, x, 0], 0]
            g = lut[rgb[y, x, 1], 1]
            b = lut[rgb[y, x, 2], 2]
            for k in range(3):
                out[k, y, x] = r * inv[0, k] + g * inv[1, k] + b * inv[2, k]


@njit(cache=True, nogil=True)
def _envelope_1d(
    f: np.ndarray,
    src: np.ndarray,
    n: int,
    d: np.ndarray,
    srcout: np.ndarray,
    v: np.ndarray,
    z: np.ndarray,
) -> None:
    """Felzenszwalb-Huttenlocher lower envelope of parabolas ``f[q] + (p - q)^2``."""
    k = -1
    for q in range(n):
        if f[q] >= _BIG:
            continue
        if k < 0:
            k = 0
            v[0] = q
            z[0] = -_BIG
            z[1] = _BIG
            continue
        s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2.0 * q - 2.0 * v[k])
        while s <= z[k]:
            k -= 1
            if k < 0:
                break
            s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2.0 * q - 2.0 * v[k])
        k += 1
        v[k] = q
        z[k] = -_BIG if k == 0 else s
        z[k + 1] = _BIG
    if k < 0:
        for p in range(n):
            d[p] = _BIG
            srcout[p] = -1
        return
    j = 0
    for p in range(n):
        while z[j + 1] < p:
            j += 1
        q = v[j]
        d[p] = (p - q) * (p - q) + f[q]
        srcout[p] = src[q]


@njit(cache=True, nogil=True)
def edt_nearest(feature: np.ndarray, dist2: np.ndarray, nearest: np.ndarray) -> None:
    """Exact squared Euclidean distance to the nearest feature pixel, and its index.

    Parameters
    ----------
    feature : ndarray of bool, shape (h, w)
    dist2 : ndarray of float64, shape (h, w)
        Output: squared distance (``>= 1e20`` where there is no feature at all).
    nearest : ndarray of int64, shape (h, w)
        Output: flat index of the nearest feature pixel (-1 if none).
    """
    h, w = feature.shape
    n = max(h, w)
    f = np.empty(n)
    src = np.empty(n, np.int64)
    d = np.empty(n)
    so = np.empty(n, np.int64)
    v = np.empty(n, np.int64)
    z = np.empty(n + 1)
    for x in range(w):  # columns: distance to the nearest feature in the column
        for y in range(h):
            f[y] = 0.0 if feature[y, x] else _BIG
            src[y] = y * w + x
        _envelope_1d(f, src, h, d, so, v, z)
        for y in range(h):
            dist2[y, x] = d[y]
            nearest[y, x] = so[y]
    for y in range(h):  # rows: combine the column distances
        for x in range(w):
            f[x] = dist2[y, x]
            src[x] = nearest[y, x]
        _envelope_1d(f, src, w, d, so, v, z)
        for x in range(w):
            dist2[y, x] = d[x]
            nearest[y, x] = so[x]


@njit(cache=True, nogil=True)
def region_saddles(
    labels: np.ndarray, height: np.ndarray, n_labels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pass height between every pair of 8-adjacent regions.

    The saddle of regions ``a`` and ``b`` is the highest ``min(height[p], height[q])``
    over 8-neighbouring pixels ``p`` in ``a`` and ``q`` in ``b``.

    Returns
    -------
    a, b : ndarray of int64
        Region pairs with ``a < b``.
    saddle : ndarray of float64
    """
    h, w = labels.shape
    best = Dict.empty(key_type=types.int64, value_type=types.float64)
    for y in range(h):
        for x in range(w):
            la = labels[y, x]
            if la == 0:
                continue
            ha = height[y, x]
            for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
                yy, xx = y + dy, x + dx
                if yy >= h or xx < 0 or xx >= w:
                    continue
                lb = labels[yy, xx]
                if lb == 0 or lb == la:
                    continue
                s = float(min(ha, height[yy, xx]))
                key = np.int64(min(la, lb)) * (n_labels + 1) + max(la, lb)
                if s > best.get(key, -1.0):
                    best[key] = s
    m = len(best)
    a = np.empty(m, np.int64)
    b = np.empty(m, np.int64)
    sad = np.empty(m)
    for i, (key, s) in enumerate(best.items()):
        a[i] = key // (n_labels + 1)
        b[i] = key % (n_labels + 1)
        sad[i] = s
    return a, b, sad


@njit(cache=True, nogil=True)
def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True, nogil=True)
def merge_shallow_regions(
    a: np.ndarray,
    b: np.ndarray,
    saddle: np.ndarray,
    order: np.ndarray,
    peak: np.ndarray,
    min_depth: float,
    min_ratio: float,
) -> np.ndarray:
    """Merge watershed basins separated by a shallow or wide pass (h-maxima dynamics).

    Pairs are visited in ``order`` (highest saddle first; ties broken by label so the
    result does not depend on hashing or on the tile offset). Two basins merge unless the lower
    peak rises at least ``min_depth`` above the saddle and the saddle is at most
    ``min_ratio`` times that peak (for a distance map: the neck is narrower than
    ``min_ratio`` of the smaller object's width). The merged basin keeps the higher peak.

    Returns
    -------
    ndarray of int64, shape (len(peak),)
        Root label of every label (0 stays 0).
    """
    n = peak.shape[0]
    parent = np.arange(n)
    top = peak.copy()
    for k in order:
        ra = _find(parent, a[k])
        rb = _find(parent, b[k])
        if ra == rb:
            continue
        low = min(top[ra], top[rb])
        s = saddle[k]
        if low - s < min_depth or s > min_ratio * low:
            if top[ra] >= top[rb]:
                parent[rb] = ra
            else:
                parent[ra] = rb
    for i in range(n):
        parent[i] = _find(parent, i)
    return parent


@njit(cache=True, nogil=True)
def label_stats(
    labels: np.ndarray, values: np.ndarray, n_labels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel count, maximum of ``values`` and first (raster) flat index per label."""
    count = np.zeros(n_labels + 1, np.int64)
    vmax = np.full(n_labels + 1, -np.inf)
    first = np.full(n_labels + 1, labels.size, np.int64)
    flat = labels.ravel()
    vals = values.ravel()
    for i in range(flat.size):
        lab = flat[i]
        count[lab] += 1
        if vals[i] > vmax[lab]:
            vmax[lab] = vals[i]
        if first[lab] > i:
            first[lab] = i
    return count, vmax, first


@njit(cache=True, nogil=True)
def watershed_groups(
    height: np.ndarray,
    markers: np.ndarray,
    mask: np.ndarray,
    seeds: np.ndarray,
    group_start: np.ndarray,
    labels: np.ndarray,
) -> None:
    """Marker watershed (8-connected priority flood), one foreground clump at a time.

    Flooding each clump on its own, with ties broken by push order, makes the result
    depend only on the clump (not on other clumps or the tile offset), unlike a
    single global flood.

    Parameters
    ----------
    height : ndarray of float32, shape (h, w)
        Landscape; lower floods first.
    markers : ndarray of int64, shape (h, w)
        Marker labels (> 0) at the seed pixels.
    mask : ndarray of bool, shape (h, w)
        Pixels that may be labelled.
    seeds : ndarray of int64
        Flat indices of marker pixels, grouped by clump, raster order within a group.
    group_start : ndarray of int64
        Start of each group in ``seeds`` (plus a final end offset).
    labels : ndarray of int64, shape (h, w)
        Output, zero on entry.
    """
    h, w = height.shape
    hf = height.ravel()
    mf = markers.ravel()
    kf = mask.ravel()
    lf = labels.ravel()
    for g in range(group_start.size - 1):
        heap = [(np.float32(0.0), np.int64(0), np.int64(0))]
        heap.pop()
        age = 0
        for k in range(group_start[g], group_start[g + 1]):
            p = seeds[k]
            lf[p] = mf[p]
            heapq.heappush(heap, (hf[p], np.int64(age), p))
            age += 1
        while len(heap) > 0:
            _, _, p = heapq.heappop(heap)
            y, x = p // w, p % w
            for dy in range(-1, 2):
                yy = y + dy
                if yy < 0 or yy >= h:
                    continue
                for dx in range(-1, 2):
                    xx = x + dx
                    if xx < 0 or xx >= w or (dy == 0 and dx == 0):
                        continue
                    q = yy * w + xx
                    if kf[q] and lf[q] == 0:
                        lf[q] = lf[p]
                        heapq.heappush(heap, (hf[q], np.int64(age), q))
                        age += 1
