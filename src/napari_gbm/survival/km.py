"""Kaplan-Meier survival curves with Greenwood variance and log(-log) confidence intervals.

Definitions as in lifelines' ``KaplanMeierFitter`` and scikit-survival's
``kaplan_meier_estimator(conf_type="log-log")``: at each distinct time t_j with n_j
subjects at risk and d_j events,

- S(t) = prod_{t_j <= t} (1 - d_j / n_j)
- Greenwood: v(t) = sum_{t_j <= t} d_j / (n_j (n_j - d_j)) (terms with n_j = d_j left out),
  the variance of log S(t)
- interval: S(t) ** exp(+-z sqrt(v(t)) / log S(t)), the log(-log) transform (Kalbfleisch &
  Prentice); 1 where S = 1 and 0 where S = 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from napari_gbm.survival._validate import check_survival

__all__ = ["KM_COLUMNS", "at_risk_counts", "event_table", "kaplan_meier", "median_survival"]

KM_COLUMNS = ("time", "n_at_risk", "n_events", "n_censored", "survival", "ci_lower", "ci_upper")

# S(t) may reach exactly 1/2 in exact arithmetic but land a few ulps above it as a float
# product; the median must not jump to the next time (or to infinity) because of that.
_HALF_TOL = 1e-12


def event_table(time: np.ndarray, event: np.ndarray) -> pd.DataFrame:
    """Counts at each distinct time of checked arrays (see :func:`kaplan_meier`).

    Parameters
    ----------
    time : numpy.ndarray of float64, shape (n,)
        Follow-up times, already checked (finite, > 0; any unit).
    event : numpy.ndarray of bool, shape (n,)
        True where the event was observed, already checked.

    Returns
    -------
    pandas.DataFrame
        One row per distinct time, ascending: ``time`` (float64), ``n_at_risk`` (subjects
        with time >= t), ``n_events`` and ``n_censored`` at t (int64).
    """
    uniq, inverse = np.unique(time, return_inverse=True)
    n_total = np.bincount(inverse, minlength=uniq.size)
    n_events = np.bincount(inverse, weights=event.astype(np.float64), minlength=uniq.size)
    n_events = n_events.astype(np.int64)
    # at risk at t_j: everyone whose time is >= t_j
    n_at_risk = np.cumsum(n_total[::-1])[::-1]
    return pd.DataFrame(
        {
            "time": uniq.astype(np.float64),
            "n_at_risk": n_at_risk.astype(np.int64),
            "n_events": n_events,
            "n_censored": (n_total - n_events).astype(np.int64),
        }
    )


def kaplan_meier(time: Any, event: Any, *, alpha: float = 0.05) -> pd.DataFrame:
    """Kaplan-Meier estimate of the survival function.

    Parameters
    ----------
    time : array_like, shape (n,)
        Follow-up times (> 0, any unit; the output ``time`` is in the same unit).
    event : array_like of 0/1 or bool, shape (n,)
        1 where the event was observed, 0 where the subject was censored.
    alpha : float, default 0.05
        1 - confidence level of the pointwise interval (0.05: 95 %).

    Returns
    -------
    pandas.DataFrame
        One row per distinct time (events and censorings), sorted: ``time``,
        ``n_at_risk`` (time >= t), ``n_events``, ``n_censored`` at t, ``survival`` S(t)
        (right-continuous: after the events at t), ``ci_lower``, ``ci_upper`` (Greenwood
        variance, log(-log) transform). There is no t = 0 row (S = 1 before the first time).

    Raises
    ------
    ValueError
        If `alpha` is outside (0, 1), or `time` / `event` are invalid (non-numeric, NaN,
        times <= 0, lengths differ, events not 0/1).
    """
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    t, e = check_survival(time, event)
    table = event_table(t, e)
    n = table["n_at_risk"].to_numpy(dtype=np.float64)
    d = table["n_events"].to_numpy(dtype=np.float64)
    surv = np.cumprod(1.0 - d / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where((d > 0) & (n > d), d / (n * (n - d)), 0.0)
    sigma = np.sqrt(np.cumsum(term))
    lower, upper = _loglog_interval(surv, sigma, alpha)
    table["survival"] = surv
    table["ci_lower"] = lower
    table["ci_upper"] = upper
    return table


def _loglog_interval(
    surv: np.ndarray, sigma: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise log(-log) interval of S given sigma = sd of log S."""
    z = stats.norm.isf(alpha / 2.0)
    lower = np.ones_like(surv)
    upper = np.ones_like(surv)
    zero = surv <= 0.0
    lower[zero] = 0.0
    upper[zero] = 0.0
    mid = (~zero) & (surv < 1.0)
    log_s = np.log(surv[mid])
    theta = z * sigma[mid] / log_s  # negative
    lower[mid] = np.exp(np.exp(-theta) * log_s)
    upper[mid] = np.exp(np.exp(theta) * log_s)
    return lower, upper


def median_survival(km: pd.DataFrame) -> float:
    """Median survival time: the first time at which S(t) <= 1/2.

    As lifelines' ``median_survival_time_``, except that an estimate equal to 1/2 up to
    float rounding (1e-12) counts as reaching it.

    Parameters
    ----------
    km : pandas.DataFrame
        A :func:`kaplan_meier` table (``time`` and ``survival`` are read).

    Returns
    -------
    float
        In the unit of ``km["time"]``; ``inf`` if S(t) never reaches 1/2.

    Raises
    ------
    ValueError
        If `km` lacks a ``time`` or ``survival`` column.
    """
    missing = {"time", "survival"} - set(km.columns)
    if missing:
        raise ValueError(f"median_survival needs a kaplan_meier table; missing {sorted(missing)}")
    surv = km["survival"].to_numpy(dtype=np.float64)
    reached = np.flatnonzero(surv <= 0.5 + _HALF_TOL)
    if reached.size == 0:
        return float("inf")
    return float(km["time"].to_numpy(dtype=np.float64)[reached[0]])


def at_risk_counts(time: Any, at: Any) -> np.ndarray:
    """Number of subjects still at risk at given times: the table under Kaplan-Meier plots.

    Parameters
    ----------
    time : array_like, shape (n,)
        Follow-up times of the subjects.
    at : array_like
        Times to count at, in the unit of `time`.

    Returns
    -------
    numpy.ndarray of int64
        Shape of `at`: subjects with time >= each `at` value.
    """
    t = np.sort(np.asarray(time, dtype=np.float64))
    at_arr = np.asarray(at, dtype=np.float64)
    return (t.size - np.searchsorted(t, at_arr, side="left")).astype(np.int64)
