"""One-to-one matching of predicted to true points within a radius.

A prediction and a truth may be paired when they are at most ``radius`` apart (inclusive,
with a relative tolerance of 1e-9 so that a radius converted from µm, e.g.
``0.6 / 0.2 = 2.9999999999999996`` px, still admits a pair exactly 3 px apart). Among all
one-to-one pairings of allowed pairs the matching has the **most pairs**, and among those
the **smallest total distance** (the Hungarian algorithm, ``linear_sum_assignment``).
Greedy nearest-first matching can pair fewer points (see ``tests/test_evaluate.py``).

Speed: only pairs within the radius are considered (``cKDTree.sparse_distance_matrix``),
and each connected component of that pair graph is assigned on its own, so a 5,000-point
image costs many tiny assignments rather than one 5,000 x 5,000 one. Inside a component a
disallowed pair costs more than any set of allowed pairs could, so the assignment first
maximises the number of allowed pairs, then minimises their distance; disallowed pairs are
dropped after the assignment.

TP = pairs, FP = unpaired predictions, FN = unpaired truths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = ["Matching", "match_points"]

#: relative tolerance on the radius (floating-point rounding of µm / mpp)
RADIUS_RTOL = 1e-9


@dataclass(frozen=True)
class Matching:
    """The result of :func:`match_points`.

    Attributes
    ----------
    pred_index, true_index : ndarray of int64, shape (tp,)
        The matched pairs: prediction ``pred_index[k]`` with truth ``true_index[k]``,
        sorted by prediction.
    distance : ndarray of float64, shape (tp,)
        Their distances, in the units of the coordinates.
    n_pred, n_true : int
        How many predictions and truths were matched against each other.
    """

    pred_index: npt.NDArray[np.int64]
    true_index: npt.NDArray[np.int64]
    distance: npt.NDArray[np.float64]
    n_pred: int
    n_true: int

    @property
    def tp(self) -> int:
        return int(self.pred_index.size)

    @property
    def fp(self) -> int:
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        return self.n_true - self.tp

    def pred_partner(self) -> npt.NDArray[np.int64]:
        """For each prediction the index of its truth, or -1 when unmatched."""
        out = np.full(self.n_pred, -1, np.int64)
        out[self.pred_index] = self.true_index
        return out

    def true_partner(self) -> npt.NDArray[np.int64]:
        """For each truth the index of its prediction, or -1 when unmatched."""
        out = np.full(self.n_true, -1, np.int64)
        out[self.true_index] = self.pred_index
        return out

    def pred_distance(self) -> npt.NDArray[np.float64]:
        """For each prediction the distance to its truth, NaN when unmatched."""
        out = np.full(self.n_pred, np.nan)
        out[self.pred_index] = self.distance
        return out


def _as_points(xy: npt.ArrayLike, what: str) -> npt.NDArray[np.float64]:
    arr = np.asarray(xy, dtype=np.float64)
    if arr.size == 0:
        return np.empty((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{what} must be an (n, 2) array of (x, y), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} has NaN or infinite coordinates")
    return arr


def match_points(pred_xy: npt.ArrayLike, true_xy: npt.ArrayLike, radius: float) -> Matching:
    """Match predicted to true points one-to-one within `radius`.

    Parameters
    ----------
    pred_xy, true_xy : array_like, shape (n, 2) and (m, 2)
        Point coordinates (x, y) in the same units as `radius` (e.g. pixels).
    radius : float
        The largest distance of a pair (inclusive, relative tolerance 1e-9).

    Returns
    -------
    Matching
        The pairs: the most pairs possible, and among those the smallest total distance.

    Raises
    ------
    ValueError
        If `radius` is not a positive finite number, or the points are not (n, 2) finite
        coordinates.
    """
    if not (radius > 0 and np.isfinite(radius)):
        raise ValueError(f"radius must be a positive number, got {radius!r}")
    pred = _as_points(pred_xy, "pred_xy")
    true = _as_points(true_xy, "true_xy")
    n, m = len(pred), len(true)
    empty = Matching(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), n, m)
    if n == 0 or m == 0:
        return empty
    r = float(radius) * (1.0 + RADIUS_RTOL)
    pairs = cKDTree(pred).sparse_distance_matrix(cKDTree(true), r, output_type="ndarray")
    if pairs.size == 0:
        return empty
    pi = pairs["i"].astype(np.int64)
    ti = pairs["j"].astype(np.int64)
    dist = pairs["v"].astype(np.float64)

    # components of the bipartite graph: predictions are nodes 0..n-1, truths n..n+m-1
    graph = coo_matrix((np.ones(pi.size), (pi, ti + n)), shape=(n + m, n + m))
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[pi]
    order = np.argsort(edge_comp, kind="stable")
    pi, ti, dist, edge_comp = pi[order], ti[order], dist[order], edge_comp[order]
    starts = np.flatnonzero(np.r_[True, edge_comp[1:] != edge_comp[:-1]])
    ends = np.r_[starts[1:], edge_comp.size]

    out_p: list[npt.NDArray[np.int64]] = []
    out_t: list[npt.NDArray[np.int64]] = []
    out_d: list[npt.NDArray[np.float64]] = []
    single = ends - starts == 1  # one allowed pair: it is the matching
    s = starts[single]
    out_p.append(pi[s])
    out_t.append(ti[s])
    out_d.append(dist[s])
    for a, b in zip(starts[~single], ends[~single], strict=True):
        cp, ct, cd = pi[a:b], ti[a:b], dist[a:b]
        up, lp = np.unique(cp, return_inverse=True)
        ut, lt = np.unique(ct, return_inverse=True)
        # more than the sum of any set of allowed pairs: fewer disallowed pairs first
        big = r * (min(up.size, ut.size) + 1) + 1.0
        cost = np.full((up.size, ut.size), big)
        cost[lp, lt] = cd
        rows, cols = linear_sum_assignment(cost)
        ok = cost[rows, cols] < big
        out_p.append(up[rows[ok]])
        out_t.append(ut[cols[ok]])
        out_d.append(cost[rows[ok], cols[ok]])
    p_all = np.concatenate(out_p)
    order = np.argsort(p_all, kind="stable")
    return Matching(
        p_all[order],
        np.concatenate(out_t)[order],
        np.concatenate(out_d)[order],
        n,
        m,
    )
