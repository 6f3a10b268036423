"""Input checks shared by the survival statistics: one clear ValueError per kind of bad input.

Every public function here returns plain float64 / bool numpy arrays, so the statistics
below them never see pandas dtypes, lists, NaN or mismatched lengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "check_covariates",
    "check_groups",
    "check_score",
    "check_survival",
]


def _float_1d(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-d float64 array (NaN where pandas has missing values)."""
    try:
        if isinstance(values, pd.Series | pd.Index):
            arr = values.to_numpy(dtype="float64", na_value=np.nan)
        else:
            arr = np.asarray(values, dtype="float64")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _no_nan(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(bad.sum()) - n_nan
        what = ", ".join(
            s for s in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} infinite" if n_inf else "") if s
        )
        raise ValueError(
            f"{name} has {what} value(s) of {arr.size}; drop or fill those subjects first"
        )


def check_survival(
    time: Any, event: Any, *, min_subjects: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Follow-up times and event indicators, checked.

    Parameters
    ----------
    time : (n,) array-like
        Follow-up times; finite and > 0.
    event : (n,) array-like
        1/True where the event was observed, 0/False where the subject was censored.
    min_subjects : int
        Fewest subjects accepted.

    Returns
    -------
    time : (n,) float64 array
    event : (n,) bool array
    """
    t = _float_1d(time, "time")
    _no_nan(t, "time")
    if isinstance(event, pd.Series) and event.dtype == object:
        event = event.astype("float64")
    e_raw = _float_1d(event, "event")
    if t.size != e_raw.size:
        raise ValueError(
            f"time and event have different lengths ({t.size} and {e_raw.size}); "
            "pass one value of each per subject"
        )
    if t.size < min_subjects:
        raise ValueError(f"need at least {min_subjects} subject(s), got {t.size}")
    _no_nan(e_raw, "event")
    not01 = (e_raw != 0) & (e_raw != 1)
    if not01.any():
        examples = np.unique(e_raw[not01])[:5].tolist()
        raise ValueError(
            f"event must be 0/1 or bool (1 = event observed, 0 = censored); "
            f"{int(not01.sum())} value(s) are neither, e.g. {examples}"
        )
    nonpos = t <= 0
    if nonpos.any():
        raise ValueError(
            f"time must be > 0; {int(nonpos.sum())} subject(s) have time <= 0 "
            f"(smallest {t.min():g}). A subject lost at time 0 carries no follow-up: drop it, "
            "or give it a small positive time"
        )
    return t, e_raw.astype(bool)


def check_score(score: Any, n: int, name: str = "risk") -> np.ndarray:
    """A per-subject score (risk, biomarker) as float64, same length as the cohort, no NaN."""
    s = _float_1d(score, name)
    if s.size != n:
        raise ValueError(f"{name} has {s.size} values but there are {n} subjects")
    _no_nan(s, name)
    return s


def check_groups(groups: Any, n: int) -> tuple[np.ndarray, list[Any]]:
    """Group labels as integer codes 0..k-1 (k >= 2) and the sorted distinct labels."""
    g = pd.Series(np.asarray(groups).reshape(-1) if not isinstance(groups, pd.Series) else groups)
    if g.size != n:
        raise ValueError(f"groups has {g.size} labels but there are {n} subjects")
    missing = g.isna()
    if missing.any():
        raise ValueError(
            f"groups has {int(missing.sum())} missing label(s); give every subject a group"
        )
    codes, uniques = pd.factorize(g, sort=True)
    if len(uniques) < 2:
        raise ValueError(f"need at least 2 groups to compare, got {len(uniques)} ({list(uniques)})")
    return codes.astype(np.intp), list(uniques)


def check_covariates(
    X: Any,
    n: int | None,
    names: Sequence[str] | None = None,
    *,
    allow_constant: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """A covariate matrix as (n, p) float64 and its column names.

    DataFrame columns keep their names; arrays get ``names`` or ``x0, x1, ...``. NaN or
    infinite entries are refused, naming the columns and counts; so are constant columns
    (for fitting) unless ``allow_constant`` (for prediction). ``n=None`` accepts any number
    of rows.
    """
    if isinstance(X, pd.DataFrame):
        col_names = [str(c) for c in X.columns]
        repeated = sorted({c for c in col_names if col_names.count(c) > 1})
        if repeated:
            raise ValueError(f"covariate column(s) {repeated} appear more than once")
        non_numeric = [
            str(c)
            for c in X.columns
            if not (pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))
        ]
        if non_numeric:
            raise ValueError(
                f"covariates must be numeric; column(s) {non_numeric} are not "
                "(encode categories as 0/1 columns first)"
            )
        arr = X.to_numpy(dtype="float64", na_value=np.nan)
    else:
        try:
            arr = np.asarray(X, dtype="float64")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"covariates must be numeric: {exc}") from None
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"covariates must be a 2-d table, got shape {arr.shape}")
        col_names = [f"x{j}" for j in range(arr.shape[1])]
    if names is not None:
        if len(names) != arr.shape[1]:
            raise ValueError(f"{len(names)} names given for {arr.shape[1]} covariate columns")
        col_names = [str(c) for c in names]
    if len(set(col_names)) != len(col_names):
        dup = sorted({c for c in col_names if col_names.count(c) > 1})
        raise ValueError(f"covariate names must be unique; repeated: {dup}")
    if arr.shape[1] == 0:
        raise ValueError("no covariates given")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"covariates have {arr.shape[0]} rows but there are {n} subjects")
    bad = ~np.isfinite(arr)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0))
        detail = ", ".join(f"{col_names[j]!r}: {int(bad[:, j].sum())}" for j in cols)
        raise ValueError(
            f"covariates have NaN or infinite values (column: count) {detail}; "
            "drop or impute those subjects first"
        )
    if allow_constant:
        return arr, col_names
    if arr.shape[0] < 2:
        raise ValueError(f"need at least 2 subjects to fit covariates, got {arr.shape[0]}")
    constant = [col_names[j] for j in range(arr.shape[1]) if np.ptp(arr[:, j]) == 0]
    if constant:
        raise ValueError(
            f"covariate(s) {constant} are constant over the subjects and carry no "
            "information; remove them"
        )
    return arr, col_names
