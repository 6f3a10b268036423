"""Convex hull of one pixel object, rasterised as scikit-image does, and its calipers.

All geometry here is exact integer arithmetic on *doubled* coordinates (one unit = half a
pixel), because every point involved is a pixel centre or the midpoint of a pixel edge.

- scikit-image's ``convex_hull_image`` takes the hull of the four edge midpoints ("diamond")
  of every pixel and marks each pixel centre inside *or on* that polygon. Only the leftmost
  and rightmost pixel of a row can contribute hull vertices, so we feed the per-row column
  extents and build the hull as two monotone chains over the half-pixel row levels. The
  number of centres on each row between the chains is the convex area; it equals
  ``regionprops(...).area_convex`` exactly (no floating-point tolerance involved).
- ``feret_diameter_max`` in scikit-image is the largest distance between marching-squares
  contour points of that rasterised hull, i.e. edge midpoints of its boundary pixels. Their
  convex hull is again the diamond hull of the rasterised rows, so the maximum caliper is
  the diameter of that polygon and the minimum caliper (QuPath's "Min caliper") is its
  smallest width over edge directions (rotating calipers, checked edge by edge).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _cross(oj: int, ox: int, aj: int, ax: int, bj: int, bx: int) -> int:
    return (aj - oj) * (bx - ox) - (ax - ox) * (bj - oj)


@numba.njit(cache=True, nogil=True)
def _levels_from_rows(row_lo: np.ndarray, row_hi: np.ndarray, c0: int) -> tuple:
    """Leftmost/rightmost diamond point on each half-pixel level of a row stack.

    Row ``k`` (centre at level ``2k + 1``) with columns ``row_lo[k]..row_hi[k]`` contributes
    its edge midpoints on levels ``2k`` (top), ``2k + 1`` (left/right) and ``2k + 2``
    (bottom). x is doubled and shifted by 2 so every coordinate is positive, which keeps
    floor/ceil divisions trivial. Empty rows (``row_lo > row_hi``) contribute nothing.
    """
    h = row_lo.size
    lo = np.full(2 * h + 1, np.iinfo(np.int64).max, np.int64)
    hi = np.full(2 * h + 1, -1, np.int64)
    for k in range(h):
        if row_lo[k] > row_hi[k]:
            continue
        a = 2 * (row_lo[k] - c0) + 2
        b = 2 * (row_hi[k] - c0) + 2
        for j in (2 * k, 2 * k + 2):
            lo[j] = min(lo[j], a)
            hi[j] = max(hi[j], b)
        lo[2 * k + 1] = min(lo[2 * k + 1], a - 1)
        hi[2 * k + 1] = max(hi[2 * k + 1], b + 1)
    return lo, hi


@numba.njit(cache=True, nogil=True)
def _chains(lo: np.ndarray, hi: np.ndarray) -> tuple:
    """Left chain (convex minorant of ``lo``) and right chain (concave majorant of ``hi``).

    Andrew's monotone chain with the level as abscissa; collinear points are dropped.
    """
    m = lo.size
    lj = np.empty(m, np.int64)
    lx = np.empty(m, np.int64)
    rj = np.empty(m, np.int64)
    rx = np.empty(m, np.int64)
    nl = 0
    nr = 0
    for j in range(m):
        if lo[j] > hi[j]:
            continue
        while nl >= 2 and _cross(lj[nl - 2], lx[nl - 2], lj[nl - 1], lx[nl - 1], j, lo[j]) <= 0:
            nl -= 1
        lj[nl] = j
        lx[nl] = lo[j]
        nl += 1
        while nr >= 2 and _cross(rj[nr - 2], rx[nr - 2], rj[nr - 1], rx[nr - 1], j, hi[j]) >= 0:
            nr -= 1
        rj[nr] = j
        rx[nr] = hi[j]
        nr += 1
    return lj[:nl], lx[:nl], rj[:nr], rx[:nr]


@numba.njit(cache=True, nogil=True)
def _rasterise(
    lj: np.ndarray, lx: np.ndarray, rj: np.ndarray, rx: np.ndarray, h: int, c0: int
) -> tuple:
    """Columns of the pixel centres inside or on the hull, row by row (closed runs)."""
    run_lo = np.empty(h, np.int64)
    run_hi = np.empty(h, np.int64)
    pl = 0
    pr = 0
    for k in range(h):
        j = 2 * k + 1
        while pl + 1 < lj.size and lj[pl + 1] <= j:
            pl += 1
        while pr + 1 < rj.size and rj[pr + 1] <= j:
            pr += 1
        # x on the chain at level j is num / den (exact rational); a centre in column c
        # sits at x = 2 (c - c0) + 2
        if lj[pl] == j or pl + 1 == lj.size:
            num, den = lx[pl], 1
        else:
            den = lj[pl + 1] - lj[pl]
            num = lx[pl] * den + (j - lj[pl]) * (lx[pl + 1] - lx[pl])
        run_lo[k] = c0 + (num + 2 * den - 1) // (2 * den) - 1
        if rj[pr] == j or pr + 1 == rj.size:
            num, den = rx[pr], 1
        else:
            den = rj[pr + 1] - rj[pr]
            num = rx[pr] * den + (j - rj[pr]) * (rx[pr + 1] - rx[pr])
        run_hi[k] = c0 + num // (2 * den) - 1
    return run_lo, run_hi


@numba.njit(cache=True, nogil=True)
def _calipers(lj: np.ndarray, lx: np.ndarray, rj: np.ndarray, rx: np.ndarray) -> tuple:
    """Diameter and minimum width (in pixels) of the polygon bounded by two chains.

    Rotating calipers: for every edge the farthest vertex (its antipode) moves forward
    monotonically, giving the edge's width and the antipodal pairs, among which lies the
    diameter. Integer arithmetic throughout, so ties are exact.
    """
    px = np.empty(lj.size + rj.size, np.int64)
    py = np.empty(lj.size + rj.size, np.int64)
    n = 0
    for i in range(lj.size + rj.size):
        if i < lj.size:
            x, y = lx[i], lj[i]
        else:  # right chain bottom-up closes the polygon
            x, y = rx[rj.size - 1 - (i - lj.size)], rj[rj.size - 1 - (i - lj.size)]
        if n == 0 or x != px[n - 1] or y != py[n - 1]:  # the chains share end points
            px[n] = x
            py[n] = y
            n += 1
    if n > 1 and px[n - 1] == px[0] and py[n - 1] == py[0]:
        n -= 1
    max_d2 = 0
    min_width = np.inf
    j = 1
    for i in range(n):
        k = (i + 1) % n
        ex = px[k] - px[i]
        ey = py[k] - py[i]
        far = abs(ex * (py[j] - py[i]) - ey * (px[j] - px[i]))
        while True:
            nxt = (j + 1) % n
            d = abs(ex * (py[nxt] - py[i]) - ey * (px[nxt] - px[i]))
            if d < far:
                break
            if d == far:  # an edge parallel to this one: both ends are antipodal
                for q in (i, k):
                    max_d2 = max(max_d2, (px[q] - px[nxt]) ** 2 + (py[q] - py[nxt]) ** 2)
                break
            far = d
            j = nxt
        for q in (i, k):
            max_d2 = max(max_d2, (px[q] - px[j]) ** 2 + (py[q] - py[j]) ** 2)
        min_width = min(min_width, far / np.sqrt(float(ex * ex + ey * ey)))
    return np.sqrt(float(max_d2)) / 2.0, min_width / 2.0


@numba.njit(cache=True, nogil=True)
def hull_features(row_lo: np.ndarray, row_hi: np.ndarray) -> tuple:
    """Convex area (pixels), max caliper and min caliper of one object.

    Parameters
    ----------
    row_lo, row_hi : (h,) int64
        First and last column of the object on each row of its bounding box, top to bottom;
        ``row_lo > row_hi`` marks a row without pixels (objects in several pieces). The
        first and last rows must hold pixels.

    Returns
    -------
    convex_area : int
        Pixel count of scikit-image's ``convex_hull_image`` of the object.
    max_caliper, min_caliper : float
        Largest and smallest width of the hull of that rasterised hull, in pixels.
    """
    h = row_lo.size
    c0 = np.iinfo(np.int64).max
    for k in range(h):
        if row_lo[k] <= row_hi[k]:
            c0 = min(c0, row_lo[k])
    lo, hi = _levels_from_rows(row_lo, row_hi, c0)
    lj, lx, rj, rx = _chains(lo, hi)
    run_lo, run_hi = _rasterise(lj, lx, rj, rx, h, c0)
    convex_area = 0
    for k in range(h):
        convex_area += run_hi[k] - run_lo[k] + 1
    lo, hi = _levels_from_rows(run_lo, run_hi, c0)
    lj, lx, rj, rx = _chains(lo, hi)
    max_caliper, min_caliper = _calipers(lj, lx, rj, rx)
    return convex_area, max_caliper, min_caliper
