"""Log-rank test for 2 or more groups (chi-square with the full hypergeometric covariance).

At each distinct event time t_j with n_j at risk, d_j events, n_gj at risk and O_gj events in
group g: E_gj = d_j n_gj / n_j and

    V_gh = sum_j d_j (n_j - d_j) / (n_j - 1) * n_gj / n_j * (delta_gh - n_hj / n_j)

(terms with n_j = 1 are 0). The statistic is U' V^-1 U over the first k - 1 groups, with
U_g = sum_j (O_gj - E_gj), chi-square with k - 1 degrees of freedom, as lifelines'
``multivariate_logrank_test`` and scikit-survival's ``compare_survival``; for two groups it
is lifelines' ``logrank_test``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg, stats

from napari_gbm.survival._validate import check_groups, check_survival

__all__ = ["LogRankResult", "logrank_test"]


@dataclass(frozen=True)
class LogRankResult:
    """Result of :func:`logrank_test`.

    Attributes
    ----------
    statistic : float
        Chi-square statistic (>= 0).
    df : int
        Degrees of freedom, groups - 1.
    p_value : float
        Chi-square upper tail probability.
    table : pandas.DataFrame
        One row per group (sorted labels): ``group``, ``n``, ``observed`` (events),
        ``expected`` (events expected under equal hazards).
    """

    statistic: float
    df: int
    p_value: float
    table: pd.DataFrame = field(repr=False, compare=False)


def logrank_test(time: Any, event: Any, groups: Any) -> LogRankResult:
    """Compare survival between groups with the (unweighted) log-rank test.

    Parameters
    ----------
    time : array_like, shape (n,)
        Follow-up times, > 0.
    event : array_like of 0/1 or bool, shape (n,)
        1 where the event was observed.
    groups : array_like, shape (n,)
        Any labels (numbers or strings); at least two distinct ones.

    Returns
    -------
    LogRankResult
        ``statistic`` (chi-square), ``df`` (groups - 1), ``p_value``, and ``table``.

    Raises
    ------
    ValueError
        If the inputs are invalid (fewer than 2 subjects or groups, NaN, lengths differ),
        there is no event, or the covariance is singular (a group with no subject at risk at
        any event time).
    """
    t, e = check_survival(time, event, min_subjects=2)
    codes, labels = check_groups(groups, t.size)
    k = len(labels)
    if not e.any():
        raise ValueError("no events: the log-rank test needs at least one observed event")

    uniq, inverse = np.unique(t, return_inverse=True)
    n_times = uniq.size
    # (k, T) counts per group and time: subjects leaving at t_j, events at t_j
    flat = codes * n_times + inverse
    leaving = np.bincount(flat, minlength=k * n_times).reshape(k, n_times).astype(np.float64)
    events = (
        np.bincount(flat, weights=e.astype(np.float64), minlength=k * n_times)
        .reshape(k, n_times)
        .astype(np.float64)
    )
    at_risk = np.cumsum(leaving[:, ::-1], axis=1)[:, ::-1]
    n_j = at_risk.sum(axis=0)
    d_j = events.sum(axis=0)
    keep = d_j > 0
    at_risk, events, n_j, d_j = at_risk[:, keep], events[:, keep], n_j[keep], d_j[keep]

    frac = at_risk / n_j  # (k, J)
    observed = events.sum(axis=1)
    expected = (frac * d_j).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(n_j > 1, d_j * (n_j - d_j) / (n_j - 1.0), 0.0)
    cov = np.diag((w * frac).sum(axis=1)) - (w * frac) @ frac.T

    u = (observed - expected)[: k - 1]
    v = cov[: k - 1, : k - 1]
    try:
        statistic = float(u @ linalg.solve(v, u, assume_a="sym"))
    except (linalg.LinAlgError, ValueError):
        raise ValueError(
            "the log-rank covariance is singular: a group has no subjects at risk at any "
            "event time (e.g. all its subjects leave before the first event); merge or drop it"
        ) from None
    statistic = max(statistic, 0.0)
    p_value = float(stats.chi2.sf(statistic, k - 1))
    table = pd.DataFrame(
        {
            "group": labels,
            "n": np.bincount(codes, minlength=k).astype(np.int64),
            "observed": observed,
            "expected": expected,
        }
    )
    return LogRankResult(statistic=statistic, df=k - 1, p_value=p_value, table=table)
