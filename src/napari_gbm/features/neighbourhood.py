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
"""

from __future__ import annotations

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


def neighbourhood_features(
    x_um: np.ndarray,
    y_um: np.ndarray,
    *,
    radius_um: float = 50.0,
    max_edge_um: float = 50.0,
) -> pd.DataFrame:
    """Neighbourhood features of points at ``(x_um, y_um)``; see the module docstring.

    Parameters
    ----------
    x_um, y_um : array of float, shape (n,)
        Centroids in µm.
    radius_um : float
        Disc radius of the local density.
    max_edge_um : float
        Delaunay edges longer than this are not counted as neighbours.
    """
    x = np.asarray(x_um, dtype=np.float64).ravel()
    y = np.asarray(y_um, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x_um and y_um differ in length: {x.size} vs {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("centroids must be finite")
    if not (radius_um > 0 and max_edge_um > 0):
        raise ValueError("radius_um and max_edge_um must be positive")
    n = x.size
    out = pd.DataFrame({c: np.zeros(n, dtype=t) for c, t in NEIGHBOURHOOD_COLUMNS.items()})
    if n == 0:
        return out
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
    has = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out["delaunay_neighbours"] = count.astype(np.int32)
        out["delaunay_distance_mean_um"] = np.where(has, total / count, np.nan).astype(np.float32)
    out["delaunay_distance_min_um"] = np.where(has, dmin, np.nan).astype(np.float32)
    out["delaunay_distance_max_um"] = np.where(has, dmax, np.nan).astype(np.float32)

    tree = cKDTree(pts)
    if n > 1:
        nn, _ = tree.query(pts, k=2)
        out["nearest_neighbour_um"] = nn[:, 1].astype(np.float32)
    else:
        out["nearest_neighbour_um"] = np.float32(np.nan)
    within = tree.query_ball_point(pts, r=radius_um, return_length=True) - 1  # not itself
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
