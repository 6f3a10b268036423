"""Patient stratification: the ``napari-gbm stratify`` job.

From a table with one row per patient (or the slide table of a cohort run, aggregated by
:func:`napari_gbm.survival.patients.aggregate_patients`), optionally joined with a clinical
CSV: fit a survival model, score each patient's risk, split patients into risk groups (by
the model's risk, or by one biomarker with ``group_by``) at a chosen cut-off, and compare
the groups. The models (:class:`StratifyParams` ``model``):

- ``cox``: the linear Cox model on the covariates;
- ``mlp``: a neural-network Cox model on the covariates
  (:class:`~napari_gbm.survival.nn.MLPCoxModel`);
- ``mil``: an attention multiple-instance Cox model over each patient's bag of tiles
  (:class:`~napari_gbm.survival.mil.AttentionMILCoxModel`), from a tile table
  (:mod:`napari_gbm.survival.bags`: the output folder of ``napari-gbm cohort`` has one per
  slide); named covariates (age, MGMT) enter next to the pooled tiles.

The table's columns are read by :mod:`napari_gbm.survival.table_input` (events as 1/0,
yes/no, dead/alive...; times as numbers; text covariates as categories against their most
frequent level). Missing values (empty cells) stop the run, or leave those patients out
with ``dropna``.

Outputs in ``out``: ``cox_summary.csv``, ``risk.csv``, ``metrics.json``, ``km.png``,
``forest.png``, ``model/``, ``report.md`` (and, for ``mil``, ``tile_attention.parquet``),
described in :mod:`napari_gbm.survival.stratify_report`, which writes them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_gbm import __version__
from napari_gbm.survival.bags import TileBags, tile_bags
from napari_gbm.survival.logrank import logrank_test
from napari_gbm.survival.patients import aggregate_patients, join_clinical
from napari_gbm.survival.stratify_params import (
    DEFAULT_COVARIATES,
    StratifyParams,
)
from napari_gbm.survival.stratify_report import (
    cox_summary_table,
    write_outputs,
)
from napari_gbm.survival.table_input import (
    column_sources,
    covariate_values,
    encode_covariates,
    event_indicator,
    numeric_values,
    require_columns,
)

__all__ = ["run_stratify"]


@dataclass
class _Patients:
    """The patients as the models read them."""

    df: pd.DataFrame  # one row per patient, columns parsed, no missing values
    time: np.ndarray
    event: np.ndarray
    X: pd.DataFrame  # the encoded covariates (no columns: MIL on the tiles alone)
    covariates: list[str]
    categorical: dict[str, dict[str, Any]]
    bags: list[pd.DataFrame] | None = None  # MIL: one bag of tiles per patient
    tiles: TileBags | None = None


def run_stratify(
    table: pd.DataFrame,
    out: str | Path,
    params: StratifyParams | None = None,
    *,
    clinical: pd.DataFrame | None = None,
    tiles: pd.DataFrame | None = None,
    table_name: str | None = None,
    clinical_name: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Stratify patients and write the outputs listed in the module docstring.

    Parameters
    ----------
    table : DataFrame
        One row per patient, or per slide with a ``slide_id`` column (aggregated per
        patient); from :func:`~napari_gbm.survival.table_input.load_table`.
    out : str or Path
        The output folder (created if needed).
    params : StratifyParams, optional
        The choices; ``overrides`` replace its fields. Without it, ``overrides`` are the
        fields (``time_col`` and ``event_col`` at least):
        ``run_stratify(table, out, time_col="os", event_col="dead", model="mlp")``.
    clinical : DataFrame, optional
        Clinical data joined by patient id (``join_clinical``).
    tiles : DataFrame, optional
        For ``model="mil"`` (required there; the other models ignore it): one row per
        tile with the patient id and the tile features
        (:func:`~napari_gbm.survival.bags.load_tile_table`).
    table_name, clinical_name : str, optional
        Name the tables' files in messages about a column (default: their
        ``attrs["source"]``, set by ``load_table``).
    **overrides
        Fields of :class:`StratifyParams`.

    Returns
    -------
    dict
        The metrics (``metrics.json``).

    Raises
    ------
    ValueError
        For bad input, with a message naming the problem (a column, a file, patients).
    TypeError
        For a keyword that is not a field of :class:`StratifyParams`.
    """
    p = StratifyParams(**overrides) if params is None else dataclasses.replace(params, **overrides)
    if p.model == "mil" and tiles is None:
        raise ValueError(
            "model 'mil' learns from each patient's tiles: give a tile table (one row per "
            "tile with the patient id and per-tile biomarkers), e.g. the output folder of "
            "`napari-gbm cohort` through napari_gbm.survival.bags.load_tile_table"
        )
    notes: list[str] = []
    sources = column_sources(table, clinical, p.id_col, table_name, clinical_name)
    df = _patient_rows(table, clinical, p, notes)
    covariates = _choose_covariates(df, p, notes)
    df = _read_columns(df, p, covariates, sources, notes)
    bags = None
    if p.model == "mil":
        assert tiles is not None
        bags = tile_bags(tiles, p.tile_features, id_col=p.id_col)
        notes += bags.notes
        df = _with_tiles(df, bags, p, notes)
    data = _model_inputs(df, p, covariates, sources, bags, notes)
    cox, summary_X, fitted, risk = _fit(data, p)
    c_index = float(_concordance(data.time, data.event, risk))
    cv = _cross_validate(data, p, notes)
    groups, lr = _risk_groups(data, risk, p)
    metrics = _metrics(data, p, c_index, cv, groups, lr, notes)
    risk_table = pd.DataFrame(
        {
            p.id_col: data.df[p.id_col].to_numpy(),
            "risk_score": risk,
            "risk_group": groups.label_names,
            "risk_group_label": groups.labels,
        }
    )
    write_outputs(
        Path(out),
        summary=cox_summary_table(cox, summary_X, data.categorical),
        risk=risk_table,
        time=data.time,
        event=data.event,
        groups=groups,
        model=fitted,
        metrics=metrics,
        attention=_attention(fitted, data) if data.bags is not None else None,
    )
    return metrics


def _patient_rows(
    table: pd.DataFrame, clinical: pd.DataFrame | None, p: StratifyParams, notes: list[str]
) -> pd.DataFrame:
    """One row per patient (a slide table aggregated), joined with the clinical table."""
    df = table.copy()
    if p.id_col not in df.columns:
        raise ValueError(
            f"the table has no patient id column {p.id_col!r}; it has {list(df.columns)} "
            "(name it with --id-col)"
        )
    if df[p.id_col].duplicated().any():
        if "slide_id" not in df.columns:
            dup = df[p.id_col][df[p.id_col].duplicated()].unique().tolist()
            raise ValueError(
                f"patient ids are repeated: {dup[:10]} ({len(dup)} in all); give one row per "
                "patient, or a slide table with a slide_id column to aggregate"
            )
        df = aggregate_patients(df, id_col=p.id_col)
        notes.append(
            f"the table has one row per slide: aggregated to {len(df)} patients "
            "(napari_gbm.survival.patients rules)"
        )
    if clinical is not None:
        df = join_clinical(df, clinical, id_col=p.id_col)
    require_columns(df, [p.time_col, p.event_col], "table")
    return df


def _choose_covariates(df: pd.DataFrame, p: StratifyParams, notes: list[str]) -> list[str]:
    """The named covariates (checked), or the defaults: the biomarkers; none for MIL."""
    if p.covariates is not None:
        covariates = list(p.covariates)
    elif p.model == "mil":
        covariates = []
        notes.append("model mil: risk from the tiles alone (name patient covariates to add)")
    else:
        covariates = [c for c in DEFAULT_COVARIATES if c in df.columns]
        if not covariates:
            raise ValueError(
                f"no covariates named and none of the default biomarkers {DEFAULT_COVARIATES} "
                f"is in the table; name them with --covariates (columns: {list(df.columns)})"
            )
        notes.append(f"covariates not named: using the biomarkers {covariates}")
    require_columns(df, covariates, "table")
    if p.group_by is not None:
        require_columns(df, [p.group_by], "table")
    return covariates


def _read_columns(
    df: pd.DataFrame,
    p: StratifyParams,
    covariates: list[str],
    sources: dict[str, str],
    notes: list[str],
) -> pd.DataFrame:
    """Every used column as the model reads it (numbers, 0/1 events, text categories; a
    value that cannot be read stops here, naming its column and file), and the patients
    with missing values refused or, with ``dropna``, left out."""
    t, e, g = p.time_col, p.event_col, p.group_by
    df[t] = numeric_values(df[t], column=t, source=sources.get(t))
    df[e] = event_indicator(df[e], column=e, source=sources.get(e))
    if g is not None and g not in (t, e):
        df[g] = numeric_values(df[g], column=g, source=sources.get(g), what="group-by")
    for c in covariates:
        if c not in (t, e, g):
            df[c] = covariate_values(df[c], c, sources.get(c))
    used = list(dict.fromkeys([t, e, *covariates, *([g] if g else [])]))
    nan_rows = df[used].isna().any(axis=1)
    if not nan_rows.any():
        return df
    per_col = {c: int(df[c].isna().sum()) for c in used if df[c].isna().any()}
    if not p.dropna:
        raise ValueError(
            f"{int(nan_rows.sum())} patients have missing values {per_col} "
            f"(e.g. {df.loc[nan_rows, p.id_col].astype(str).tolist()[:5]}); fill them, or "
            "pass --dropna to leave those patients out"
        )
    notes.append(f"left out {int(nan_rows.sum())} patients with missing values {per_col}")
    return df.loc[~nan_rows].reset_index(drop=True)


def _with_tiles(
    df: pd.DataFrame, bags: TileBags, p: StratifyParams, notes: list[str]
) -> pd.DataFrame:
    """The patients that have tiles: the others refused or, with ``dropna``, left out."""
    have = bags.patient_ids()
    none = ~df[p.id_col].astype(str).isin(have)
    if not none.any():
        return df
    ids = df.loc[none, p.id_col].astype(str).tolist()
    if not p.dropna:
        raise ValueError(
            f"{len(ids)} of {len(df)} patients have no tissue tile with every tile feature "
            f"{list(bags.features)} in the tile table (e.g. {ids[:5]}): check that the tiles "
            "cover every patient, name other features (--tile-features), or pass --dropna to "
            "leave those patients out"
        )
    notes.append(f"left out {len(ids)} patients without tiles (e.g. {ids[:5]})")
    return df.loc[~none].reset_index(drop=True)


def _model_inputs(
    df: pd.DataFrame,
    p: StratifyParams,
    covariates: list[str],
    sources: dict[str, str],
    bags: TileBags | None,
    notes: list[str],
) -> _Patients:
    """Times, events, the encoded covariates and (MIL) the bags, one per patient."""
    time = np.array(df[p.time_col], dtype=np.float64)  # writable copies (pandas 3 views)
    event = np.array(df[p.event_col], dtype=np.float64)
    X, categorical = encode_covariates(df, covariates, sources)
    for c, enc in categorical.items():
        others = ", ".join(repr(v) for v in enc["levels"] if v != enc["reference"])
        notes.append(
            f"categorical covariate {c!r}: hazard ratios of {others} against the reference "
            f"level {enc['reference']!r} (the most frequent)"
        )
    data = _Patients(df, time, event, X, covariates, categorical)
    if bags is not None:
        data.bags = bags.bags(df[p.id_col].tolist())
        data.tiles = bags
        notes.append(
            "cox_summary.csv and forest.png: the linear Cox model on each patient's mean "
            "tile features and the covariates (the MIL risk has no per-covariate ratio)"
        )
    return data


def _new_model(p: StratifyParams) -> Any:
    """A fresh unfitted model of ``p.model`` with ``fit(X, time, event)``."""
    # torch: loaded when a model is fitted, not with this module
    if p.model == "mlp":
        from napari_gbm.survival.nn import MLPCoxModel

        return MLPCoxModel(seed=p.seed, ties=p.ties)
    if p.model == "mil":
        from napari_gbm.survival.mil import AttentionMILCoxModel

        return AttentionMILCoxModel(seed=p.seed, ties=p.ties)
    return _CoxForCV(ties=p.ties, l2=p.l2)


def _covariates_kw(data: _Patients) -> dict[str, Any]:
    """MIL's patient covariates keyword (none when it reads the tiles alone)."""
    if data.bags is None or data.X.shape[1] == 0:
        return {}
    return {"covariates": data.X}


def _fit(data: _Patients, p: StratifyParams) -> tuple[Any, pd.DataFrame, Any, np.ndarray]:
    """The linear Cox model (for ``cox_summary.csv``), its covariates, the fitted model
    and each patient's in-sample risk."""
    from napari_gbm.survival.cox import CoxModel  # torch

    summary_X = data.X
    if data.bags is not None:
        means = pd.DataFrame([b.mean(axis=0) for b in data.bags], index=data.X.index)
        summary_X = pd.concat([means.add_suffix(" (tile mean)"), data.X], axis=1)
    cox = CoxModel().fit(summary_X, data.time, data.event, ties=p.ties, l2=p.l2)
    if p.model == "cox":
        return cox, summary_X, cox, np.asarray(cox.predict_risk(data.X), dtype=np.float64)
    inputs = data.X if data.bags is None else data.bags
    fitted = _new_model(p).fit(inputs, data.time, data.event, **_covariates_kw(data))
    risk = np.asarray(fitted.predict_risk(inputs, **_covariates_kw(data)), dtype=np.float64)
    return cox, summary_X, fitted, risk


def _concordance(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    from napari_gbm.survival.concordance import concordance_index  # numba

    return float(concordance_index(time, event, risk))


def _cross_validate(data: _Patients, p: StratifyParams, notes: list[str]) -> dict[str, Any]:
    """Patient-grouped cross-validated C-index (``cv_c_index_mean/std``, ``cv_folds``),
    or a note saying why it was skipped."""
    n_events = int(np.nansum(data.event))
    k = p.cv_folds
    if not (k >= 2 and len(data.df) >= 2 * k and n_events >= 2 * k):
        notes.append(f"cross-validation skipped: too few patients or events for {k} folds")
        return {}
    from napari_gbm.survival.cv import cross_validate  # numba

    inputs = data.X if data.bags is None else data.bags
    ids = data.df[p.id_col].to_numpy()
    try:
        res = cross_validate(
            lambda: _new_model(p), inputs, data.time, data.event, ids, k, p.seed,
            **_covariates_kw(data),
        )  # fmt: skip
    except ValueError as exc:  # e.g. a fold without events
        notes.append(f"cross-validation skipped: {exc}")
        return {}
    return {"cv_c_index_mean": res.mean, "cv_c_index_std": res.std, "cv_folds": k}


def _risk_groups(data: _Patients, risk: np.ndarray, p: StratifyParams) -> tuple[Any, Any]:
    """The risk groups (of the risk, or of ``group_by``) and the log-rank test between
    them (None for a single group)."""
    from napari_gbm.survival.cutoff import risk_groups  # numba

    score = data.df[p.group_by].to_numpy(dtype=np.float64) if p.group_by else risk
    optimal = p.cutoff == "optimal"
    groups = risk_groups(
        score,
        p.cutoff,
        cuts=list(p.cuts) if p.cuts is not None else None,
        time=data.time if optimal else None,
        event=data.event if optimal else None,
    )
    lr = None
    if len(np.unique(groups.labels)) > 1:
        lr = logrank_test(data.time, data.event, groups.labels)
    return groups, lr


def _metrics(
    data: _Patients,
    p: StratifyParams,
    c_index: float,
    cv: dict[str, Any],
    groups: Any,
    lr: Any,
    notes: list[str],
) -> dict[str, Any]:
    """``metrics.json``."""
    metrics: dict[str, Any] = {
        "c_index": c_index,
        **cv,
        "n": len(data.df),
        "n_events": int(np.nansum(data.event)),
        "logrank_statistic": None if lr is None else float(lr.statistic),
        "logrank_df": None if lr is None else int(lr.df),
        "logrank_p": None if lr is None else float(lr.p_value),
        "risk_groups": {
            "by": p.group_by or f"{p.model} risk score",
            "method": p.cutoff,
            "cuts": [float(c) for c in groups.cuts],
            "names": list(groups.names),
            "counts": [int(c) for c in groups.counts],
        },
        "model": p.model,
        "ties": p.ties,
        "l2": p.l2,
        "covariates": data.covariates,
        "categorical": data.categorical,
        "time": p.time_col,
        "event": p.event_col,
        "notes": notes,
        "software": {"napari_gbm": __version__},
    }
    if data.tiles is not None and data.bags is not None:
        metrics["tile_features"] = list(data.tiles.features)
        metrics["n_tiles"] = int(sum(len(b) for b in data.bags))
    if groups.optimal is not None:
        o = groups.optimal
        metrics["risk_groups"]["optimal"] = {
            "cut": float(o.cut),
            "chi2": float(o.chi2),
            "p_raw": float(o.p_value),
            "p_lausen_schumacher": float(o.p_lausen),
            "p_altman": float(o.p_altman),
            "altman_in_range": bool(o.altman_in_range),
            "min_prop": float(o.min_prop),
            "max_prop": float(o.max_prop),
        }
    return metrics


def _attention(model: Any, data: _Patients) -> pd.DataFrame:
    """Each tile's attention weight in its patient's bag (``tile_attention.parquet``)."""
    assert data.bags is not None and data.tiles is not None
    keys = data.tiles.keys(data.df[data.tiles.id_col].tolist())
    keys["attention"] = np.concatenate([model.attention(b) for b in data.bags])
    return keys


class _CoxForCV:
    """The linear Cox model with the fit signature cross-validation calls."""

    def __init__(self, ties: str, l2: float) -> None:
        from napari_gbm.survival.cox import CoxModel  # torch

        self.model = CoxModel()
        self.ties, self.l2 = ties, l2

    def fit(self, X: Any, time: Any, event: Any) -> _CoxForCV:
        self.model.fit(X, time, event, ties=self.ties, l2=self.l2)
        return self

    def predict_risk(self, X: Any) -> np.ndarray:
        return np.asarray(self.model.predict_risk(X))
