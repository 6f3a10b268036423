"""Cross-validation grouped by patient: no patient's slides or tiles in two folds.

Survival models are validated by patient, never by slide or tile: slides of one patient
share the outcome, and a model that has seen one of them scores the others too well.
``grouped_cv_splits`` assigns whole patients to folds (balancing the number of patients
with an event across folds when events are given); ``cross_validate`` fits a fresh model
per fold and scores it on the held-out patients with Harrell's C-index.

Rows may be patients (one row each) or slides (several rows per patient, each with the
patient's time and event). The fold C-index is computed per patient: when a patient has
several rows in the test fold, their predicted risks are averaged first, so each patient
counts once, as in the clinic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._validate import check_survival
from .concordance import concordance_index

__all__ = ["CVResult", "cross_validate", "grouped_cv_splits"]


@dataclass(frozen=True)
class CVResult:
    """Result of :func:`cross_validate`.

    Attributes
    ----------
    fold_c_index : list of float
        Harrell's C-index on the held-out patients of each fold.
    mean, std : float
        Mean and sample SD (ddof=1) of ``fold_c_index``.
    out_of_fold_risk : ndarray, shape (n_rows,)
        Each row's risk predicted by the model of the fold that held it out.
    fold : ndarray of int, shape (n_rows,)
        The fold that held each row out.
    """

    fold_c_index: list[float]
    mean: float
    std: float
    out_of_fold_risk: np.ndarray
    fold: np.ndarray


def _patient_codes(patient_ids: Any) -> tuple[np.ndarray, np.ndarray]:
    """Unique patients (first-appearance order) and each row's index into them."""
    ids = pd.Series(np.asarray(patient_ids, dtype=object).reshape(-1))
    if ids.isna().any():
        raise ValueError("patient_ids has missing values; every row needs its patient")
    codes, uniques = pd.factorize(ids, sort=False)
    return np.asarray(uniques, dtype=object), codes.astype(np.int64)


def grouped_cv_splits(
    patient_ids: Any,
    n_splits: int = 5,
    seed: int = 0,
    event: Any = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K-fold splits of rows with every patient's rows in one test fold.

    Parameters
    ----------
    patient_ids : array-like, one per row
    n_splits : int
        Number of folds, 2 <= n_splits <= number of patients.
    seed : int
        Seeds the random assignment of patients to folds.
    event : array-like of bool, one per row, optional
        When given, folds are stratified: patients with an event (any row with an event)
        and censored patients are each spread evenly over the folds.

    Returns
    -------
    list of (train_rows, test_rows)
        Sorted integer row indices; the test rows of the folds partition all rows.
    """
    uniques, codes = _patient_codes(patient_ids)
    n_pat = uniques.size
    if int(n_splits) != n_splits or n_splits < 2:
        raise ValueError(f"n_splits must be an integer >= 2, got {n_splits!r}")
    if n_splits > n_pat:
        raise ValueError(f"n_splits={n_splits} exceeds the number of patients ({n_pat})")
    rng = np.random.default_rng(seed)
    if event is None:
        strata = np.zeros(n_pat, dtype=bool)
    else:
        ev = np.asarray(event).reshape(-1)
        if ev.shape[0] != codes.shape[0]:
            raise ValueError(f"event has {ev.shape[0]} values, patient_ids has {codes.shape[0]}")
        strata = np.zeros(n_pat, dtype=bool)
        np.logical_or.at(strata, codes, ev.astype(bool))
    # shuffle within each stratum, lay the strata end to end, deal patients round-robin:
    # each fold gets n/k (+-1) patients and n_events/k (+-1) patients with an event
    order = np.concatenate([rng.permutation(np.flatnonzero(strata == s)) for s in (True, False)])
    patient_fold = np.empty(n_pat, dtype=np.int64)
    patient_fold[order] = np.arange(n_pat) % n_splits
    row_fold = patient_fold[codes]
    rows = np.arange(codes.shape[0])
    return [(rows[row_fold != k], rows[row_fold == k]) for k in range(n_splits)]


def _take(data: Any, idx: np.ndarray) -> Any:
    if isinstance(data, pd.DataFrame | pd.Series):
        return data.iloc[idx]
    if isinstance(data, np.ndarray):
        return data[idx]
    if isinstance(data, list | tuple):
        return [data[i] for i in idx]
    raise ValueError(
        f"cannot index data of type {type(data).__name__}: "
        "give a DataFrame, an array, or a list (one bag per row)"
    )


def cross_validate(
    make_model: Callable[[], Any],
    X_or_bags: Any,
    time: Any,
    event: Any,
    patient_ids: Any,
    n_splits: int = 5,
    seed: int = 0,
    covariates: Any = None,
) -> CVResult:
    """Patient-grouped K-fold cross-validated C-index of a survival model.

    Parameters
    ----------
    make_model : callable
        Returns a fresh unfitted model with ``fit(X, time, event)`` and
        ``predict_risk(X)`` (and the ``covariates=`` keyword when ``covariates`` is given,
        as :class:`~napari_gbm.survival.mil.AttentionMILCoxModel` has). Called once per fold.
    X_or_bags : DataFrame, array or list
        One row (or bag) per row of ``time``; rows may be patients or slides.
    time, event : array-like, one per row
        A patient's rows must share its time and event.
    patient_ids : array-like, one per row
    n_splits, seed : int
        As in :func:`grouped_cv_splits` (stratified by event).
    covariates : DataFrame or array, optional
        Passed, row-subset, to ``fit`` and ``predict_risk`` as ``covariates=``.

    Returns
    -------
    CVResult
    """
    t, e = check_survival(time, event, min_subjects=2)
    n = t.shape[0]
    n_data = len(X_or_bags)
    if n_data != n:
        raise ValueError(f"X_or_bags has {n_data} rows/bags, time has {n}")
    if covariates is not None and len(covariates) != n:
        raise ValueError(f"covariates has {len(covariates)} rows, time has {n}")
    uniques, codes = _patient_codes(patient_ids)
    if codes.shape[0] != n:
        raise ValueError(f"patient_ids has {codes.shape[0]} values, time has {n}")
    # the outcome belongs to the patient: every row of a patient must agree
    first = np.full(uniques.size, -1)
    first[codes[::-1]] = np.arange(n)[::-1]
    t_pat, e_pat = t[first], e[first]
    bad = (t != t_pat[codes]) | (e != e_pat[codes])
    if bad.any():
        pid = uniques[codes[np.flatnonzero(bad)[0]]]
        raise ValueError(
            f"patient {pid!r} has different time or event values on its rows; "
            "the outcome must be the patient's, repeated on each of its slides"
        )
    if int(e_pat.sum()) < 2:
        raise ValueError(f"need at least 2 patients with an event, got {int(e_pat.sum())}")
    splits = grouped_cv_splits(patient_ids, n_splits, seed, event=e)
    oof = np.full(n, np.nan)
    fold_of_row = np.full(n, -1, dtype=np.int64)
    scores: list[float] = []
    for k, (train, test) in enumerate(splits):
        model = make_model()
        extra_fit: dict[str, Any] = {}
        extra_pred: dict[str, Any] = {}
        if covariates is not None:
            extra_fit["covariates"] = _take(covariates, train)
            extra_pred["covariates"] = _take(covariates, test)
        model.fit(_take(X_or_bags, train), t[train], e[train], **extra_fit)
        risk = np.asarray(model.predict_risk(_take(X_or_bags, test), **extra_pred), float)
        if risk.shape != (test.size,):
            raise ValueError(
                f"the model's predict_risk returned shape {risk.shape}, expected ({test.size},)"
            )
        oof[test] = risk
        fold_of_row[test] = k
        pats = np.unique(codes[test])
        pat_risk = np.bincount(codes[test], weights=risk, minlength=uniques.size)[pats]
        pat_risk /= np.bincount(codes[test], minlength=uniques.size)[pats]
        try:
            c = concordance_index(t_pat[pats], e_pat[pats], pat_risk)
        except ValueError as exc:
            raise ValueError(
                f"fold {k}: no comparable pair among its {pats.size} held-out patients "
                f"({exc}); use fewer splits"
            ) from exc
        scores.append(c)
    arr = np.asarray(scores)
    return CVResult(
        fold_c_index=scores,
        mean=float(arr.mean()),
        std=float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        out_of_fold_risk=oof,
        fold=fold_of_row,
    )
