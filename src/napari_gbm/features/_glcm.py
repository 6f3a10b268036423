"""Numba kernels behind :mod:`napari_gbm.features.texture`: quantisation, label bounding
boxes, per-object grey-level co-occurrence matrices (GLCM) and the 13 Haralick features.

Every kernel takes its sizes from its arguments (no module globals are read), so Numba's
on-disk cache stays valid. The feature definitions follow HistomicsTK 1.4
(``compute_haralick_features``); see the docstring of
:func:`napari_gbm.features.texture.haralick_features` for the formulas and the choices.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["haralick_per_object", "label_bboxes", "quantise"]


@njit(cache=True, nogil=True)
def quantise(image, grey_lo, grey_hi, levels):
    """Grey levels ``0..levels-1`` of ``image`` (uint8, same shape).

    ``round((x - lo) / (hi - lo) * (levels - 1))`` with rounding half to even (as
    ``np.round``) in that order of operations, as HistomicsTK's ``graycomatrixext``;
    values outside ``[lo, hi]`` are clipped to the first or last level.
    """
    n_rows, n_cols = image.shape
    out = np.empty((n_rows, n_cols), np.uint8)
    span = grey_hi - grey_lo
    top = levels - 1
    for r in range(n_rows):
        for c in range(n_cols):
            q = np.rint((np.float64(image[r, c]) - grey_lo) / span * top)
            if q < 0.0:
                q = 0.0
            elif q > top:
                q = np.float64(top)
            out[r, c] = np.uint8(q)
    return out


@njit(cache=True, nogil=True)
def label_bboxes(labels, max_label):
    """Bounding boxes of labels ``1..max_label``: (max_label + 1, 4) int64 array of
    ``row_start, col_start, row_stop, col_stop`` (stops exclusive, as skimage's bbox);
    ``row_stop == -1`` for a label that is absent. Row 0 (background) stays absent.
    """
    n_rows, n_cols = labels.shape
    bbox = np.empty((max_label + 1, 4), np.int64)
    for k in range(max_label + 1):
        bbox[k, 0] = n_rows
        bbox[k, 1] = n_cols
        bbox[k, 2] = -1
        bbox[k, 3] = -1
    for r in range(n_rows):
        for c in range(n_cols):
            k = labels[r, c]
            if k == 0:
                continue
            if r < bbox[k, 0]:
                bbox[k, 0] = r
            if c < bbox[k, 1]:
                bbox[k, 1] = c
            if r + 1 > bbox[k, 2]:
                bbox[k, 2] = r + 1
            if c + 1 > bbox[k, 3]:
                bbox[k, 3] = c + 1
    return bbox


@njit(cache=True, nogil=True)
def _glcm(q, r0, c0, r1, c1, dr, dc, lo, hi, symmetric, normalize, glcm):
    """Fill ``glcm[lo:hi+1, lo:hi+1]`` with the co-occurrences of the pixel pairs
    ``(p, p + (dr, dc))`` with both pixels in the window ``[r0, r1) x [c0, c1)``;
    ``glcm[level(p), level(p + offset)]`` counts, as HistomicsTK.
    """
    for i in range(lo, hi + 1):
        for j in range(lo, hi + 1):
            glcm[i, j] = 0.0
    # rows/cols whose neighbour at the offset is still inside the window
    ra = max(r0, r0 - dr)
    rb = min(r1, r1 - dr)
    ca = max(c0, c0 - dc)
    cb = min(c1, c1 - dc)
    for r in range(ra, rb):
        for c in range(ca, cb):
            glcm[q[r, c], q[r + dr, c + dc]] += 1.0
    if symmetric:
        for i in range(lo, hi + 1):
            glcm[i, i] *= 2.0
            for j in range(i + 1, hi + 1):
                s = glcm[i, j] + glcm[j, i]
                glcm[i, j] = s
                glcm[j, i] = s
    if normalize:
        total = 0.0
        for i in range(lo, hi + 1):
            for j in range(lo, hi + 1):
                total += glcm[i, j]
        if total > 0.0:
            for i in range(lo, hi + 1):
                for j in range(lo, hi + 1):
                    glcm[i, j] /= total


@njit(cache=True, nogil=True, error_model="numpy")
def _features(glcm, lo, hi, px, py, p_sum, p_diff, out):
    """The 13 Haralick features of one GLCM (nonzero only in ``[lo, hi]^2``) into ``out``,
    in HistomicsTK's order. ``px, py, p_sum, p_diff`` are scratch of sizes L, L, 2L-1, L.
    """
    n_levels = px.shape[0]
    eps = 1e-5  # HistomicsTK's log2(p + 1e-5): a zero probability contributes exactly 0
    px[:] = 0.0
    py[:] = 0.0
    p_sum[:] = 0.0
    p_diff[:] = 0.0
    asm = 0.0
    idm = 0.0
    sum_ij = 0.0
    entropy = 0.0
    for i in range(lo, hi + 1):
        for j in range(lo, hi + 1):
            p = glcm[i, j]
            if p == 0.0:
                continue
            px[i] += p
            py[j] += p
            p_sum[i + j] += p
            p_diff[abs(i - j)] += p
            asm += p * p
            idm += p / (1.0 + (i - j) * (i - j))
            sum_ij += i * j * p
            entropy -= p * np.log2(p + eps)
    mean_x = 0.0
    sq_x = 0.0
    hx = 0.0
    hy = 0.0
    for i in range(lo, hi + 1):
        mean_x += i * px[i]
        sq_x += i * i * px[i]
        if px[i] != 0.0:
            hx -= px[i] * np.log2(px[i] + eps)
        if py[i] != 0.0:
            hy -= py[i] * np.log2(py[i] + eps)
    variance = sq_x - mean_x * mean_x
    contrast = 0.0
    diff_entropy = 0.0
    diff_mean = 0.0
    for k in range(n_levels):
        contrast += k * k * p_diff[k]
        diff_mean += p_diff[k]
        if p_diff[k] != 0.0:
            diff_entropy -= p_diff[k] * np.log2(p_diff[k] + eps)
    diff_mean /= n_levels
    diff_var = 0.0
    for k in range(n_levels):
        d = p_diff[k] - diff_mean
        diff_var += d * d
    diff_var /= n_levels  # np.var of the L entries of p_{x-y}, as HistomicsTK
    sum_avg = 0.0
    sum_sq = 0.0
    sum_entropy = 0.0
    for k in range(2 * lo, 2 * hi + 1):
        sum_avg += k * p_sum[k]
        sum_sq += k * k * p_sum[k]
        if p_sum[k] != 0.0:
            sum_entropy -= p_sum[k] * np.log2(p_sum[k] + eps)
    hxy1 = 0.0
    hxy2 = 0.0
    for i in range(lo, hi + 1):
        if px[i] == 0.0:
            continue
        for j in range(lo, hi + 1):
            pp = px[i] * py[j]
            if pp == 0.0:
                continue
            lg = np.log2(pp + eps)
            hxy1 -= glcm[i, j] * lg
            hxy2 -= pp * lg
    imc2 = 1.0 - np.exp(-2.0 * (hxy2 - entropy))
    if imc2 < 0.0:
        imc2 = 0.0
    out[0] = asm
    out[1] = contrast
    # np.float64 so that 0/0 is NaN (as HistomicsTK) under NUMBA_DISABLE_JIT=1 too
    out[2] = np.float64(sum_ij - mean_x * mean_x) / np.float64(variance)
    out[3] = variance
    out[4] = idm
    out[5] = sum_avg
    out[6] = sum_sq - sum_avg * sum_avg
    out[7] = sum_entropy
    out[8] = entropy
    out[9] = diff_var
    out[10] = diff_entropy
    out[11] = np.float64(entropy - hxy1) / np.float64(max(hx, hy))
    out[12] = np.sqrt(imc2)


@njit(cache=True, nogil=True, error_model="numpy")
def _one_object(q, window, offsets, symmetric, normalize, glcm, px, py, p_sum, p_diff, feats, out):
    """Mean and range over the offsets of the features of one object's window."""
    r0 = window[0]
    c0 = window[1]
    r1 = window[2]
    c1 = window[3]
    lo = 255
    hi = 0
    for r in range(r0, r1):
        for c in range(c0, c1):
            v = q[r, c]
            if v < lo:
                lo = v
            if v > hi:
                hi = v
    lo_i = np.int64(lo)
    hi_i = np.int64(hi)
    n_off = offsets.shape[0]
    n_feat = feats.shape[1]
    for o in range(n_off):
        _glcm(
            q, r0, c0, r1, c1, offsets[o, 0], offsets[o, 1], lo_i, hi_i, symmetric, normalize, glcm
        )
        _features(glcm, lo_i, hi_i, px, py, p_sum, p_diff, feats[o])
    for f in range(n_feat):
        total = 0.0
        f_min = np.inf
        f_max = -np.inf
        has_nan = False
        for o in range(n_off):
            x = feats[o, f]
            total += x
            if np.isnan(x):
                has_nan = True
            else:
                f_min = min(f_min, x)
                f_max = max(f_max, x)
        out[2 * f] = total / n_off  # NaN if any offset is NaN, as np.mean
        out[2 * f + 1] = np.nan if has_nan else f_max - f_min  # as np.ptp


@njit(cache=True, parallel=True, error_model="numpy")
def haralick_per_object(q, windows, offsets, n_levels, n_features, symmetric, normalize, n_blocks):
    """Haralick mean/range features of every object, (n_objects, 2 * n_features) float64.

    ``q`` is the quantised image (uint8 levels ``< n_levels``); ``windows`` the (n, 4)
    int64 pixel windows ``row_start, col_start, row_stop, col_stop`` whose pixel pairs
    count; ``offsets`` the (m, 2) int64 ``(drow, dcol)`` vectors. Objects are split into
    ``n_blocks`` contiguous blocks run in parallel, each with its own scratch GLCM, so the
    memory is O(n_blocks * L^2) and every object's result is independent of the threads.
    """
    n = windows.shape[0]
    n_off = offsets.shape[0]
    out = np.empty((n, 2 * n_features), np.float64)
    for b in prange(n_blocks):
        start = b * n // n_blocks
        stop = (b + 1) * n // n_blocks
        glcm = np.zeros((n_levels, n_levels), np.float64)
        px = np.empty(n_levels, np.float64)
        py = np.empty(n_levels, np.float64)
        p_sum = np.empty(2 * n_levels - 1, np.float64)
        p_diff = np.empty(n_levels, np.float64)
        feats = np.empty((n_off, n_features), np.float64)
        for k in range(start, stop):
            _one_object(
                q,
                windows[k],
                offsets,
                symmetric,
                normalize,
                glcm,
                px,
                py,
                p_sum,
                p_diff,
                feats,
                out[k],
            )
    return out
