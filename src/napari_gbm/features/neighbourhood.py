"""Neighbourhood features of cells from their centroids (µm): Delaunay neighbours and
local density.

Computed once over all the cells of a slide (not per tile), so they do not depend on the
tile grid. Columns (one row per input point, in input order):

- ``delaunay_neighbours``: number of Delaunay neighbours closer than ``max_edge_um``
  (longer triangle edges span gaps in the tissue, not neighbours);
- ``delaunay_distance_mean_um``, ``delaunay_distance_min_um``,
  ``delaunay_distance_max_um``: distances to those neighbours (NaN with none);
- ``nearest_neighbour_um``: distance to the nearest other cell (NaN if alone);
- ``density_per_mm2``: other cells within ``radius_um`` per mm² of the disc.

Memory stays bounded whatever the number of cells. Qhull needs ~750 bytes per point, so a
whole slide's triangulation (3 million cells: 2.2 GB) is never built: above
``window_points`` points the plane is cut into square windows of about that many points,
each triangulated with a margin of ``5 * max_edge_um`` around it, and each short edge is
taken from the window holding its midpoint. An edge of a window's triangulation is an edge
of the whole triangulation when some circle through its ends is empty of all points; the
angles it subtends at the opposite vertices of its two triangles (α, β) decide that
(Delaunay iff α + β < π), and points outside the window subtend at most
``asin(length / distance to the window's edge)``. Edges that this bound cannot settle
(a side with no point near it facing an almost flat triangle: rare) are settled against
all points. So the edges are those of the whole triangulation, except that for exactly
cocircular points, where the triangulation is not unique, two windows may each keep a
different diagonal. The k-d tree queries run in blocks of points too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numba
import numpy as np
import pandas as pd
from scipy.spatial import Delaunay, QhullError, cKDTree

__all__ = ["NEIGHBOURHOOD_COLUMNS", "neighbourhood_features"]

NEIGHBOURHOOD_COLUMNS = {
    "delaunay_neighbours": "int32",
    "delaunay_distance_mean_um": "float32",
    "delaunay_distance_min_um": "float32",
    "delaunay_distance_max_um": "float32",
    "nearest_neighbour_um": "float32",
    "density_per_mm2": "float32",
}
#: points per triangulation window above which the triangulation is cut into windows
WINDOW_POINTS = 100_000
#: points per block of k-d tree queries
QUERY_BLOCK = 200_000


def neighbourhood_features(
    x_um: np.ndarray,
    y_um: np.ndarray,
    *,
    radius_um: float = 50.0,
    max_edge_um: float = 50.0,
    window_points: int = WINDOW_POINTS,
) -> pd.DataFrame:
    """Neighbourhood features of points at ``(x_um, y_um)``; see the module docstring.

    Parameters
    ----------
    x_um, y_um : array of float, shape (n,)
        Centroids in µm.
    radius_um : float, default 50.0
        Disc radius of the local density, µm.
    max_edge_um : float, default 50.0
        Delaunay edges longer than this (µm) are not counted as neighbours.
    window_points : int, default WINDOW_POINTS (100,000)
        Above this many points the triangulation is done window by window (about this
        many points each), which bounds memory; results do not depend on it (see the
        module docstring for exactly cocircular points).

    Returns
    -------
    pandas.DataFrame
        One row per point, in input order, with the columns and dtypes of
        :data:`NEIGHBOURHOOD_COLUMNS`: distances in µm (NaN without neighbour),
        ``density_per_mm2`` = other cells within `radius_um` per mm² of the disc (not
        corrected for the disc's part off tissue).

    Raises
    ------
    ValueError
        If `x_um` and `y_um` differ in length or are not finite, `radius_um` or
        `max_edge_um` is not positive, or `window_points` is not an integer >= 3.
    """
    x = np.asarray(x_um, dtype=np.float64).ravel()
    y = np.asarray(y_um, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x_um and y_um differ in length: {x.size} vs {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("centroids must be finite")
    if not (radius_um > 0 and max_edge_um > 0):
        raise ValueError("radius_um and max_edge_um must be positive")
    if isinstance(window_points, bool) or not isinstance(window_points, int) or window_points < 3:
        raise ValueError(f"window_points must be an integer >= 3, got {window_points!r}")
    n = x.size
    out = pd.DataFrame({c: np.zeros(n, dtype=t) for c, t in NEIGHBOURHOOD_COLUMNS.items()})
    if n == 0:
        return out
    count: np.ndarray
    total: np.ndarray
    if n <= window_points:
        pts = np.column_stack([x, y])
        i, j = _delaunay_edges(pts)
        d = np.hypot(x[i] - x[j], y[i] - y[j])
        keep = d <= max_edge_um
        i, j, d = i[keep], j[keep], d[keep]
        # each undirected edge counts for both ends
        ends = np.concatenate([i, j])
        dist = np.concatenate([d, d])
        count = np.bincount(ends, minlength=n)
        total = np.bincount(ends, weights=dist, minlength=n)
        dmin = np.full(n, np.inf)
        dmax = np.full(n, -np.inf)
        np.minimum.at(dmin, ends, dist)
        np.maximum.at(dmax, ends, dist)
        del pts, ends, dist
    else:
        count = np.zeros(n, np.int64)
        total = np.zeros(n, np.float64)
        dmin = np.full(n, np.inf)
        dmax = np.full(n, -np.inf)
        for i, j, d in _short_edges_by_window(x, y, max_edge_um, window_points):
            _accumulate_edges(i, j, d, count, total, dmin, dmax)
    has = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out["delaunay_neighbours"] = count.astype(np.int32)
        out["delaunay_distance_mean_um"] = np.where(has, total / count, np.nan).astype(np.float32)
    out["delaunay_distance_min_um"] = np.where(has, dmin, np.nan).astype(np.float32)
    out["delaunay_distance_max_um"] = np.where(has, dmax, np.nan).astype(np.float32)
    del count, total, dmin, dmax, has

    tree = cKDTree(np.column_stack([x, y]))
    nearest = np.full(n, np.nan, np.float32)
    within = np.zeros(n, np.int64)
    for lo in range(0, n, QUERY_BLOCK):
        block = np.column_stack([x[lo : lo + QUERY_BLOCK], y[lo : lo + QUERY_BLOCK]])
        if n > 1:
            nn, _ = tree.query(block, k=2)
            nearest[lo : lo + len(block)] = nn[:, 1]
        # not itself
        within[lo : lo + len(block)] = (
            tree.query_ball_point(block, r=radius_um, return_length=True) - 1
        )
    out["nearest_neighbour_um"] = nearest
    disc_mm2 = np.pi * radius_um**2 / 1e6
    out["density_per_mm2"] = (within / disc_mm2).astype(np.float32)
    return out


def _delaunay_edges(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges (i < j) of the Delaunay triangulation; for fewer than 3
    points or collinear points, the edges between consecutive points along the line."""
    n = len(pts)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    try:
        if n < 3:
            raise QhullError("fewer than 3 points")
        tri = Delaunay(pts).simplices
    except QhullError:
        # degenerate (collinear or too few points): neighbours are consecutive points
        order = np.lexsort((pts[:, 1], pts[:, 0]))
        return np.minimum(order[:-1], order[1:]), np.maximum(order[:-1], order[1:])
    edges = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [0, 2]]])
    edges.sort(axis=1)
    edges = np.unique(edges, axis=0)
    return edges[:, 0].astype(np.int64), edges[:, 1].astype(np.int64)


# --- the triangulation window by window ------------------------------------------------


def _accumulate_edges(
    i: np.ndarray,
    j: np.ndarray,
    d: np.ndarray,
    count: np.ndarray,
    total: np.ndarray,
    dmin: np.ndarray,
    dmax: np.ndarray,
) -> None:
    ends = np.concatenate([i, j])
    dist = np.concatenate([d, d])
    np.add.at(count, ends, 1)
    np.add.at(total, ends, dist)
    np.minimum.at(dmin, ends, dist)
    np.maximum.at(dmax, ends, dist)


def _short_edges_by_window(
    x: np.ndarray, y: np.ndarray, max_edge_um: float, window_points: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The Delaunay edges no longer than ``max_edge_um`` as ``(i, j, length)`` arrays
    (``i < j``), window by window; each edge comes once, from the window holding its
    midpoint."""
    n = x.size
    margin = 5.0 * max_edge_um
    x0, y0 = float(x.min()), float(y.min())
    width, height = float(x.max()) - x0, float(y.max()) - y0
    area = max(width * height, 1e-12)
    side = max(math.sqrt(area * window_points / n), 4.0 * margin)
    n_cols = max(1, math.floor(width / side) + 1)
    n_rows = max(1, math.floor(height / side) + 1)

    def cell_of(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        col = np.clip(np.floor((px - x0) / side), 0, n_cols - 1).astype(np.int64)
        row = np.clip(np.floor((py - y0) / side), 0, n_rows - 1).astype(np.int64)
        return row * n_cols + col

    cell = cell_of(x, y)
    order = np.argsort(cell, kind="stable")
    bounds = np.searchsorted(cell[order], np.arange(n_rows * n_cols + 1))
    del cell
    for row in range(n_rows):
        for col in range(n_cols):
            parts = [
                order[bounds[r * n_cols + c] : bounds[r * n_cols + c + 1]]
                for r in range(max(0, row - 1), min(n_rows, row + 2))
                for c in range(max(0, col - 1), min(n_cols, col + 2))
            ]
            near = np.concatenate(parts)
            if near.size < 2:
                continue
            # the window: this cell widened by the margin (unclipped)
            wx0, wy0 = x0 + col * side - margin, y0 + row * side - margin
            wx1, wy1 = x0 + (col + 1) * side + margin, y0 + (row + 1) * side + margin
            inside = (x[near] >= wx0) & (x[near] < wx1) & (y[near] >= wy0) & (y[near] < wy1)
            idx = np.sort(near[inside])
            if idx.size < 2:
                continue
            i, j, alpha, beta = _window_edges(x[idx], y[idx])
            i, j = idx[i], idx[j]
            d = np.hypot(x[i] - x[j], y[i] - y[j])
            own = (d <= max_edge_um) & (
                cell_of((x[i] + x[j]) / 2, (y[i] + y[j]) / 2) == row * n_cols + col
            )
            i, j, d, alpha, beta = i[own], j[own], d[own], alpha[own], beta[own]
            # the largest angle a point outside the window can subtend over the edge
            room = np.minimum(
                np.minimum.reduce([x[i] - wx0, wx1 - x[i], y[i] - wy0, wy1 - y[i]]),
                np.minimum.reduce([x[j] - wx0, wx1 - x[j], y[j] - wy0, wy1 - y[j]]),
            )
            eps = np.arcsin(np.minimum(1.0, d / np.maximum(room, 1e-300)))
            sure = np.maximum(alpha, eps) + np.maximum(beta, eps) < np.pi - 1e-9
            for k in np.flatnonzero(~sure):
                a_all, b_all = _opposite_angles(x, y, int(i[k]), int(j[k]))
                sure[k] = a_all + b_all <= np.pi + 1e-9  # ties: the window's choice
            keep = sure
            yield np.minimum(i, j)[keep], np.maximum(i, j)[keep], d[keep]


def _window_edges(
    x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edges ``(i, j)`` of the triangulation of the window's points, each once, with the
    angles subtended at the opposite vertex on either side (0 where no triangle)."""
    pts = np.column_stack([x, y])
    try:
        if len(pts) < 3:
            raise QhullError("fewer than 3 points")
        tri = Delaunay(pts)
    except QhullError:
        order = np.lexsort((y, x))
        zero = np.zeros(len(order) - 1)
        return order[:-1], order[1:], zero, zero.copy()
    simplices, neighbours = tri.simplices.astype(np.int64), tri.neighbors.astype(np.int64)
    del tri
    own_s, own_k = [], []
    for vertex in range(3):  # the edge opposite each vertex, from one of its triangles
        t = neighbours[:, vertex]
        s = np.flatnonzero((t < 0) | (np.arange(len(t)) < t))
        own_s.append(s)
        own_k.append(np.full(s.size, vertex))
    s = np.concatenate(own_s)
    k = np.concatenate(own_k)
    i = simplices[s, (k + 1) % 3]
    j = simplices[s, (k + 2) % 3]
    a = simplices[s, k]
    alpha = _angle(x, y, i, j, a)
    t = neighbours[s, k]
    beta = np.zeros(s.size)
    other = t >= 0
    m = np.argmax(neighbours[t[other]] == s[other, None], axis=1)
    b = simplices[t[other], m]
    beta[other] = _angle(x, y, i[other], j[other], b)
    return i, j, alpha, beta


def _angle(x: np.ndarray, y: np.ndarray, i: np.ndarray, j: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Angle at point ``a`` between the directions to ``i`` and to ``j``."""
    ux, uy = x[i] - x[a], y[i] - y[a]
    vx, vy = x[j] - x[a], y[j] - y[a]
    return np.arctan2(np.abs(ux * vy - uy * vx), ux * vx + uy * vy)


@numba.njit(cache=True, nogil=True)
def _opposite_angles(x: np.ndarray, y: np.ndarray, i: int, j: int) -> tuple:
    """The largest angle over the segment ``i``-``j`` subtended by any point, on each side
    of its line (a point on the segment itself blocks both sides)."""
    ex = x[j] - x[i]
    ey = y[j] - y[i]
    left = 0.0
    right = 0.0
    for r in range(x.size):
        if r == i or r == j:  # noqa: SIM109 (numba)
            continue
        ux, uy = x[i] - x[r], y[i] - y[r]
        vx, vy = x[j] - x[r], y[j] - y[r]
        angle = math.atan2(abs(ux * vy - uy * vx), ux * vx + uy * vy)
        side = ex * (y[r] - y[i]) - ey * (x[r] - x[i])
        if side >= 0:
            left = max(left, angle)
        if side <= 0:
            right = max(right, angle)
    return left, right
