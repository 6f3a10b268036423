"""Harrell's concordance index (C-index) for right-censored data, in O(n log n).

A pair (i, j) is comparable when the subject with the shorter time had the event: t_i < t_j
and event_i, or t_i == t_j with i an event and j censored (the event came first). It is
concordant when the subject that failed first has the higher risk, and pairs with tied
risks (|r_i - r_j| <= tied_tol) count 1/2:

    C = (concordant + tied / 2) / comparable

the definition of scikit-survival's ``concordance_index_censored`` and of lifelines'
``concordance_index(time, -risk, event)``. Pairs whose two times are equal and both
events are not comparable. Counted with a Fenwick tree over risk ranks, sweeping the
distinct times from the longest down.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from napari_gbm.survival._validate import check_score, check_survival

__all__ = ["concordance_counts", "concordance_index"]


@numba.njit(cache=True)
def _fenwick_add(tree: np.ndarray, pos: int) -> None:
    i = pos + 1
    while i < tree.size:
        tree[i] += 1
        i += i & (-i)


@numba.njit(cache=True)
def _fenwick_prefix(tree: np.ndarray, count: int) -> int:
    """Number of stored ranks < ``count``."""
    total = 0
    i = count
    while i > 0:
        total += tree[i]
        i -= i & (-i)
    return total


@numba.njit(cache=True)
def _concordance_kernel(
    starts: np.ndarray,
    event: np.ndarray,
    rank: np.ndarray,
    value: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    lo_val: np.ndarray,
    hi_val: np.ndarray,
    n_ranks: int,
) -> tuple[int, int, int]:
    """Counts over subjects sorted by time, longest first, in groups of equal time.

    ``rank``: index of each subject's risk among the sorted distinct risks; ``lo``/``hi``:
    number of distinct risks < r - tol and <= r + tol; ``lo_val``/``hi_val``: r - tol, r + tol.
    """
    tree = np.zeros(n_ranks + 1, dtype=np.int64)
    n_stored = 0
    concordant = 0
    tied = 0
    pairs = 0
    n_groups = starts.size - 1
    for g in range(n_groups):
        a = starts[g]
        b = starts[g + 1]
        n_cens = 0
        for k in range(a, b):
            if not event[k]:
                n_cens += 1
        cens = np.empty(n_cens, dtype=np.float64)
        c = 0
        for k in range(a, b):
            if not event[k]:
                cens[c] = value[k]
                c += 1
        cens.sort()
        for k in range(a, b):
            if not event[k]:
                continue
            below = _fenwick_prefix(tree, lo[k])
            within = _fenwick_prefix(tree, hi[k]) - below
            concordant += below
            tied += within
            pairs += n_stored
            if n_cens > 0:
                c_below = np.searchsorted(cens, lo_val[k], side="left")
                c_within = np.searchsorted(cens, hi_val[k], side="right") - c_below
                concordant += c_below
                tied += c_within
                pairs += n_cens
        for k in range(a, b):
            _fenwick_add(tree, rank[k])
            n_stored += 1
    return concordant, tied, pairs


def concordance_counts(
    time: Any, event: Any, risk: Any, *, tied_tol: float = 1e-8
) -> tuple[int, int, int]:
    """Pair counts behind :func:`concordance_index`.

    Parameters
    ----------
    time : array_like, shape (n,)
        Follow-up times, > 0.
    event : array_like of 0/1 or bool, shape (n,)
        1 where the event was observed.
    risk : array_like, shape (n,)
        Predicted risk: higher means shorter expected survival.
    tied_tol : float, default 1e-8
        Risks closer than this (risk units) count as tied.

    Returns
    -------
    tuple of int
        ``(concordant, tied_risk, comparable)`` pair counts.

    Raises
    ------
    ValueError
        If the inputs are invalid (NaN, lengths differ, times <= 0) or `tied_tol` is
        negative or not finite.
    """
    t, e = check_survival(time, event)
    r = check_score(risk, t.size, "risk")
    if not np.isfinite(tied_tol) or tied_tol < 0:
        raise ValueError(f"tied_tol must be >= 0, got {tied_tol!r}")
    order = np.argsort(-t, kind="stable")
    ts, es, rs = t[order], e[order], r[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(ts) != 0) + 1, [ts.size])).astype(np.int64)
    uniq = np.unique(rs)
    rank = np.searchsorted(uniq, rs, side="left").astype(np.int64)
    lo_val = rs - tied_tol
    hi_val = rs + tied_tol
    lo = np.searchsorted(uniq, lo_val, side="left").astype(np.int64)
    hi = np.searchsorted(uniq, hi_val, side="right").astype(np.int64)
    con, tie, pairs = _concordance_kernel(
        starts, es, rank, rs, lo, hi, lo_val, hi_val, int(uniq.size)
    )
    return int(con), int(tie), int(pairs)


def concordance_index(time: Any, event: Any, risk: Any, *, tied_tol: float = 1e-8) -> float:
    """Harrell's C-index: the share of comparable pairs the risk orders correctly.

    Parameters
    ----------
    time : array_like, shape (n,)
        Follow-up times, > 0.
    event : array_like of 0/1 or bool, shape (n,)
        1 where the event was observed.
    risk : array_like, shape (n,)
        Predicted risk: higher means shorter expected survival (a Cox linear predictor,
        not a predicted survival time; pass ``-time_pred`` for those).
    tied_tol : float, default 1e-8
        Risks closer than this count as tied (1/2), as scikit-survival; 0 for exact ties
        only, as lifelines.

    Returns
    -------
    float
        In [0, 1]; 0.5 for a random risk, 1 for a perfect ordering.

    Raises
    ------
    ValueError
        If there is no comparable pair, or the inputs are invalid (see
        :func:`concordance_counts`).
    """
    con, tie, pairs = concordance_counts(time, event, risk, tied_tol=tied_tol)
    if pairs == 0:
        raise ValueError(
            "no comparable pairs: the C-index needs at least one event followed by a "
            "longer follow-up time"
        )
    return (con + 0.5 * tie) / pairs
