"""Risk groups from a continuous score: fixed quantiles, manual cuts, or an "optimal" cut.

A subject is in group g when ``cuts[g-1] < score <= cuts[g]``: group 0 is the lowest scores
("low", T1, Q1), group k-1 the highest. Quantile cuts are ``np.quantile`` (linear
interpolation) at 1/2, 1/3 and 2/3, or 1/4, 1/2 and 3/4.

The optimal cut is the maximally selected log-rank statistic: every distinct score value c
with a fraction of subjects at or below it between ``min_prop`` and ``max_prop`` (10th to
90th percentile by default) is tried as "low <= c < high", and the cut with the largest
standardised log-rank statistic |Z| wins (the smallest such c on ties). Its raw p-value is
far too small (about 40 % false positives at a nominal 5 %, Altman et al. 1994), so two
corrections are reported:

- **Lausen & Schumacher (1992)**, from the Brownian-bridge limit of the maximally selected
  statistic (Miller & Siegmund 1982): with b = max |Z|, phi the normal density and cuts
  allowed between the quantiles e1 = ``min_prop`` and e2 = ``max_prop``,
  p = 4 phi(b) / b + phi(b) (b - 1/b) ln(e2 (1 - e1) / ((1 - e2) e1)),
  taken as 1 for b < 1 and clipped to [0, 1] (as R maxstat's ``pLausen92``). Asymptotic: it
  assumes many events and a continuous score; it is conservative in small samples and most
  accurate for small p (where it matters).
- **Altman et al. (1994)**, their simplification of the same for the 10th-90th percentile
  range: p_cor = -1.63 p (1 + 2.35 ln p) (and -3.13 p (1 + 1.65 ln p) for 5th-95th), stated
  to work for 0.0001 < p < 0.1. Outside that range it is reported but flagged; above the
  formula's maximum (p > 0.24 for 10 %) it is set to 1, and it is never below p. Only
  defined for the two symmetric ranges; NaN for any other.

Sources: Lausen B, Schumacher M. Maximally selected rank statistics. Biometrics
1992;48:73-85. Altman DG, Lausen B, Sauerbrei W, Schumacher M. Dangers of using "optimal"
cutpoints in the evaluation of prognostic factors. J Natl Cancer Inst 1994;86:829-35
(summarised in Altman, Br J Cancer 1998;78:556-7: p 0.0224 -> 0.29, 0.0028 -> 0.06).
Formula form checked against R package maxstat's ``pLausen92``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import pandas as pd
from scipy import stats

from napari_gbm.survival._validate import check_score, check_survival

__all__ = [
    "METHODS",
    "OptimalCut",
    "RiskGroups",
    "optimal_cutoff",
    "p_altman",
    "p_lausen_schumacher",
    "risk_groups",
]

METHODS = ("median", "tertiles", "quartiles", "manual", "optimal")

# Altman et al. 1994: p_cor = -a p (1 + b ln p), by the smallest allowed quantile
_ALTMAN = {0.1: (1.63, 2.35), 0.05: (3.13, 1.65)}
ALTMAN_VALID_P = (1e-4, 0.1)


@dataclass(frozen=True)
class OptimalCut:
    """The maximally selected log-rank cut of :func:`optimal_cutoff`.

    Attributes
    ----------
    cut : float
        The cut, in score units: low group score <= cut < high group.
    statistic : float
        Its standardised log-rank statistic, max |Z|.
    chi2 : float
        ``statistic ** 2``.
    p_value : float
        Raw (uncorrected, far too small) p-value of the cut.
    p_lausen : float
        Lausen-Schumacher corrected p-value (:func:`p_lausen_schumacher`), never below
        `p_value`.
    p_altman : float
        Altman corrected p-value (:func:`p_altman`); NaN unless the range is symmetric
        (``min_prop + max_prop == 1``) with ``min_prop`` 0.1 or 0.05.
    altman_in_range : bool
        Whether `p_value` lies where Altman's formula is stated valid (1e-4 to 0.1).
    min_prop, max_prop : float
        The range of quantiles cuts were tried in.
    candidates : pandas.DataFrame
        Every cut tried: ``cut``, ``n_low``, ``n_high``, ``statistic`` (|Z|), ``chi2``,
        ``p`` (raw).
    """

    cut: float
    statistic: float
    chi2: float
    p_value: float
    p_lausen: float
    p_altman: float
    altman_in_range: bool
    min_prop: float
    max_prop: float
    candidates: pd.DataFrame = field(repr=False, compare=False)


@dataclass(frozen=True)
class RiskGroups:
    """Risk groups of a score, as returned by :func:`risk_groups`.

    Attributes
    ----------
    labels : numpy.ndarray of intp, shape (n,)
        Group of each subject: 0 = lowest scores ... k-1 = highest.
    names : tuple of str
        Name of each group.
    cuts : numpy.ndarray of float64, shape (k - 1,)
        Increasing cut values, in score units (group g: ``cuts[g-1] < score <= cuts[g]``).
    method : str
        The method that made the cuts (one of :data:`METHODS`).
    optimal : OptimalCut or None
        The optimal cut, for method ``"optimal"``; None otherwise.
    """

    labels: np.ndarray
    names: tuple[str, ...]
    cuts: np.ndarray
    method: str
    optimal: OptimalCut | None = None

    @property
    def label_names(self) -> np.ndarray:
        """The group name of each subject."""
        return np.asarray(self.names, dtype=object)[self.labels]

    @property
    def counts(self) -> np.ndarray:
        """Subjects per group."""
        return np.bincount(self.labels, minlength=len(self.names))


def p_lausen_schumacher(statistic: float, min_prop: float = 0.1, max_prop: float = 0.9) -> float:
    """Lausen-Schumacher (1992) p-value of a maximally selected standardised statistic.

    Parameters
    ----------
    statistic : float
        max |Z| over cuts between the `min_prop` and `max_prop` quantiles.
    min_prop : float, default 0.1
        Lowest quantile a cut was allowed at.
    max_prop : float, default 0.9
        Highest quantile a cut was allowed at.

    Returns
    -------
    float
        The p-value, clipped to [0, 1]; 1 for a statistic below 1.

    Raises
    ------
    ValueError
        If the statistic is not finite, or not ``0 < min_prop < max_prop < 1``.
    """
    _check_props(min_prop, max_prop)
    b = float(statistic)
    if not np.isfinite(b):
        raise ValueError(f"statistic must be finite, got {statistic!r}")
    if b < 1.0:
        return 1.0
    phi = float(stats.norm.pdf(b))
    log_term = np.log(max_prop * (1.0 - min_prop) / ((1.0 - max_prop) * min_prop))
    p = 4.0 * phi / b + phi * (b - 1.0 / b) * log_term
    return float(min(max(p, 0.0), 1.0))


def p_altman(p_min: float, min_prop: float = 0.1) -> float:
    """Altman et al. (1994) corrected p-value of a minimal log-rank p over cuts.

    Stated valid for 0.0001 < p_min < 0.1. Past the formula's maximum (p_min > 0.24 for
    0.1) it returns 1; it never returns less than `p_min`; clipped to [0, 1].

    Parameters
    ----------
    p_min : float
        The smallest raw p-value over the cuts, in [0, 1].
    min_prop : float, default 0.1
        Cuts were allowed between the `min_prop` and ``1 - min_prop`` quantiles; only 0.1
        and 0.05 are defined.

    Returns
    -------
    float
        The corrected p-value; NaN for any other `min_prop`.

    Raises
    ------
    ValueError
        If `p_min` is outside [0, 1].
    """
    p = float(p_min)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p_min must be in [0, 1], got {p_min!r}")
    key = next((k for k in _ALTMAN if abs(k - min_prop) < 1e-12), None)
    if key is None:
        return float("nan")
    a, b = _ALTMAN[key]
    if p == 0.0:
        return 0.0
    p_turn = np.exp(-(1.0 + b) / b)  # where -a p (1 + b ln p) stops increasing
    if p >= p_turn:
        return 1.0
    corrected = -a * p * (1.0 + b * np.log(p))
    return float(min(max(corrected, p), 1.0))


def _check_props(min_prop: float, max_prop: float) -> None:
    if not (0.0 < min_prop < max_prop < 1.0):
        raise ValueError(
            f"need 0 < min_prop < max_prop < 1, got min_prop={min_prop!r}, max_prop={max_prop!r}"
        )


@numba.njit(cache=True)
def _maxstat_kernel(
    time_idx: np.ndarray,
    event: np.ndarray,
    n_high: np.ndarray,
    n_at_risk: np.ndarray,
    n_events: np.ndarray,
    weight: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Log-rank U (observed - expected events of the high group) and its variance for
    each high-group size in ``n_high`` (ascending); subjects are in descending score order,
    so the high group of size h is the first h of them."""
    n_times = n_at_risk.size
    leave = np.zeros(n_times)
    ev = np.zeros(n_times)
    u_out = np.empty(n_high.size)
    v_out = np.empty(n_high.size)
    done = 0
    for k in range(n_high.size):
        while done < n_high[k]:
            j = time_idx[done]
            leave[j] += 1.0
            if event[done]:
                ev[j] += 1.0
            done += 1
        u = 0.0
        v = 0.0
        at_risk = 0.0
        for j in range(n_times - 1, -1, -1):
            at_risk += leave[j]
            if n_events[j] > 0:
                f = at_risk / n_at_risk[j]
                u += ev[j] - n_events[j] * f
                v += weight[j] * f * (1.0 - f)
        u_out[k] = u
        v_out[k] = v
    return u_out, v_out


def optimal_cutoff(
    score: Any, time: Any, event: Any, *, min_prop: float = 0.1, max_prop: float = 0.9
) -> OptimalCut:
    """The cut of `score` with the largest two-group log-rank statistic.

    Parameters
    ----------
    score : array_like, shape (n,)
        Continuous score (biomarker, model risk).
    time : array_like, shape (n,)
        Follow-up times, > 0.
    event : array_like of 0/1 or bool, shape (n,)
        1 where the event was observed.
    min_prop, max_prop : float, default 0.1 and 0.9
        Cuts are the distinct scores c with min_prop <= fraction(score <= c) <= max_prop.

    Returns
    -------
    OptimalCut
        ``cut`` (low: score <= cut), ``statistic`` (max |Z|), ``chi2``, raw ``p_value``,
        ``p_lausen``, ``p_altman`` (+ ``altman_in_range``), and all ``candidates``.

    Raises
    ------
    ValueError
        If the inputs are invalid, there is no event, the proportions are not
        ``0 < min_prop < max_prop < 1``, or no score value gives a cut in that range.
    """
    _check_props(min_prop, max_prop)
    t, e = check_survival(time, event, min_subjects=2)
    s = check_score(score, t.size, "score")
    if not e.any():
        raise ValueError("no events: an optimal cut needs observed events")
    n = t.size
    values, counts = np.unique(s, return_counts=True)
    frac_le = np.cumsum(counts) / n
    ok = (frac_le >= min_prop - 1e-12) & (frac_le <= max_prop + 1e-12)
    if not ok.any():
        raise ValueError(
            f"no candidate cut: no score value has between {min_prop:g} and {max_prop:g} of "
            "the subjects at or below it (too few distinct scores); use fixed cuts instead"
        )
    cuts = values[ok]
    n_low = np.cumsum(counts)[ok]
    n_high = n - n_low

    uniq_t, t_idx = np.unique(t, return_inverse=True)
    n_leave = np.bincount(t_idx, minlength=uniq_t.size).astype(np.float64)
    d = np.bincount(t_idx, weights=e.astype(np.float64), minlength=uniq_t.size)
    n_at_risk = np.cumsum(n_leave[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(n_at_risk > 1, d * (n_at_risk - d) / (n_at_risk - 1.0), 0.0)
    order = np.argsort(-s, kind="stable")
    rev = np.argsort(n_high, kind="stable")  # kernel wants ascending high-group sizes
    u_sorted, v_sorted = _maxstat_kernel(
        t_idx[order].astype(np.int64),
        e[order],
        n_high[rev].astype(np.int64),
        n_at_risk,
        d,
        weight,
    )
    u = np.empty_like(u_sorted)
    v = np.empty_like(v_sorted)
    u[rev] = u_sorted
    v[rev] = v_sorted
    with np.errstate(divide="ignore", invalid="ignore"):
        zabs = np.where(v > 0, np.abs(u) / np.sqrt(v), 0.0)
    chi2 = zabs**2
    p_raw = stats.chi2.sf(chi2, 1)
    best = int(np.argmax(zabs))
    p_min = float(p_raw[best])
    candidates = pd.DataFrame(
        {
            "cut": cuts,
            "n_low": n_low.astype(np.int64),
            "n_high": n_high.astype(np.int64),
            "statistic": zabs,
            "chi2": chi2,
            "p": p_raw,
        }
    )
    symmetric = abs(min_prop + max_prop - 1.0) < 1e-12
    return OptimalCut(
        cut=float(cuts[best]),
        statistic=float(zabs[best]),
        chi2=float(chi2[best]),
        p_value=p_min,
        p_lausen=max(p_lausen_schumacher(float(zabs[best]), min_prop, max_prop), p_min),
        p_altman=p_altman(p_min, min_prop) if symmetric else float("nan"),
        altman_in_range=bool(symmetric and ALTMAN_VALID_P[0] <= p_min <= ALTMAN_VALID_P[1]),
        min_prop=float(min_prop),
        max_prop=float(max_prop),
        candidates=candidates,
    )


def risk_groups(
    score: Any,
    method: str = "median",
    *,
    cuts: Sequence[float] | None = None,
    time: Any = None,
    event: Any = None,
    min_prop: float = 0.1,
    max_prop: float = 0.9,
    names: Sequence[str] | None = None,
) -> RiskGroups:
    """Split subjects into risk groups by a continuous score.

    Parameters
    ----------
    score : array_like, shape (n,)
        The score; higher = higher risk group.
    method : {"median", "tertiles", "quartiles", "manual", "optimal"}, default "median"
        How the cuts are chosen (see the module docstring).
    cuts : sequence of float, optional
        Increasing cut values in score units, for ``"manual"`` only.
    time, event : array_like, shape (n,), optional
        Follow-up times and event indicators, for ``"optimal"`` only.
    min_prop, max_prop : float, default 0.1 and 0.9
        Range of the optimal cut (see :func:`optimal_cutoff`).
    names : sequence of str, optional
        Group names; default "low"/"high" for two groups, else T1-T3, Q1-Q4 or G1..Gk.

    Returns
    -------
    RiskGroups
        Per-subject labels, group names, cuts and (for ``"optimal"``) the optimal cut.

    Raises
    ------
    ValueError
        For an unknown method, arguments given to a method that does not use them, an empty
        or invalid score, missing or non-increasing manual cuts, ``"optimal"`` without
        time and event, a wrong number of names, or an empty group.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method != "manual" and cuts is not None:
        raise ValueError(f"cuts are only used with method='manual', not {method!r}")
    if method != "optimal" and (time is not None or event is not None):
        raise ValueError(f"time and event are only used with method='optimal', not {method!r}")
    n = np.asarray(score).reshape(-1).size if not isinstance(score, pd.Series) else score.size
    s = check_score(score, n, "score")
    if s.size == 0:
        raise ValueError("score is empty")
    optimal = None
    if method == "median":
        cut_values = np.array([np.median(s)])
    elif method == "tertiles":
        cut_values = np.quantile(s, [1 / 3, 2 / 3])
    elif method == "quartiles":
        cut_values = np.quantile(s, [0.25, 0.5, 0.75])
    elif method == "manual":
        if cuts is None or len(cuts) == 0:
            raise ValueError("method='manual' needs cuts=[...] (one or more cut values)")
        cut_values = np.asarray(cuts, dtype=np.float64).reshape(-1)
        if not np.isfinite(cut_values).all() or (np.diff(cut_values) <= 0).any():
            raise ValueError(f"manual cuts must be finite and strictly increasing, got {cuts!r}")
    else:
        if time is None or event is None:
            raise ValueError("method='optimal' needs time= and event=")
        optimal = optimal_cutoff(s, time, event, min_prop=min_prop, max_prop=max_prop)
        cut_values = np.array([optimal.cut])

    k = cut_values.size + 1
    labels = np.searchsorted(cut_values, s, side="left").astype(np.intp)
    group_names = tuple(names) if names is not None else _default_names(method, k)
    if len(group_names) != k:
        raise ValueError(f"{len(group_names)} names given for {k} groups")
    counts = np.bincount(labels, minlength=k)
    if (counts == 0).any():
        empty = [group_names[g] for g in np.flatnonzero(counts == 0)]
        raise ValueError(
            f"risk group(s) {empty} are empty with cuts {cut_values.tolist()} "
            f"(score range {s.min():g} to {s.max():g}; many tied scores make quantile cuts "
            "coincide): use fewer groups or other cuts"
        )
    return RiskGroups(
        labels=labels, names=group_names, cuts=cut_values, method=method, optimal=optimal
    )


def _default_names(method: str, k: int) -> tuple[str, ...]:
    if k == 2:
        return ("low", "high")
    if method == "tertiles":
        return tuple(f"T{i + 1}" for i in range(k))
    if method == "quartiles":
        return tuple(f"Q{i + 1}" for i in range(k))
    return tuple(f"G{i + 1}" for i in range(k))
