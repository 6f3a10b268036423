"""Patient stratification: the ``napari-gbm stratify`` job.

From a table with one row per patient (or the slide table of a cohort run, aggregated by
:func:`napari_gbm.patients.aggregate_patients`), optionally joined with a clinical CSV:
fit a Cox model (or an MLP Cox model) on chosen covariates, score each patient's risk,
split patients into risk groups (by the model's risk, or by one biomarker with
``group_by``) at a chosen cut-off, and compare the groups.

Outputs in ``out`` (each written atomically; ``metrics.json`` last, so its presence marks
a complete run):

- ``cox_summary.csv``: one row per covariate: ``covariate, coef, hazard_ratio, ci_lower,
  ci_upper, p`` (+ ``se, z``; hazard ratios per unit), then ``sd, hazard_ratio_per_sd,
  ci_lower_per_sd, ci_upper_per_sd`` and ``binary`` (a yes/no covariate, which the report,
  the forest plot and the dock show per unit; the others per SD) of the linear Cox model
  (also for ``model="mlp"``, whose risk has no per-covariate hazard ratio: the table then
  describes the linear model on the same covariates);
- ``risk.csv``: patient id, ``risk_score``, ``risk_group`` (name), ``risk_group_label``;
- ``metrics.json``: ``c_index`` (Harrell's, in-sample, as lifelines'
  ``concordance_index_``), ``cv_c_index_mean/std`` (patient-grouped cross-validation),
  ``n``, ``n_events``, ``logrank_statistic``, ``logrank_df``, ``logrank_p`` between the
  risk groups, the cut-off (and its corrected p for the optimal cut), parameters;
- ``km.png``, ``forest.png``, ``model/`` (weights + JSON metadata), ``report.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_COVARIATES", "load_table", "run_stratify"]

#: covariates used when none are named: the slide biomarkers GBM studies report
DEFAULT_COVARIATES = (
    "positive_percent",
    "cell_density_per_mm2",
    "necrosis_fraction",
    "nucleus_area_um2_cv",
)
CUTOFFS = ("median", "tertiles", "quartiles", "optimal", "manual")


def load_table(path: str | Path) -> pd.DataFrame:
    """A CSV, TSV or Parquet table, or a cohort output folder (its ``patients.parquet``)."""
    path = Path(path)
    if path.is_dir():
        for name in ("patients.parquet", "slides.parquet"):
            if (path / name).is_file():
                return pd.read_parquet(path / name)
        raise ValueError(
            f"{path} is a folder without patients.parquet or slides.parquet; "
            "pass a table or the output folder of `napari-gbm cohort`"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".csv", ".tsv", ".txt"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else None, engine="python")
    raise ValueError(f"{path.name}: give a .csv, .tsv or .parquet table")


def _require(df: pd.DataFrame, cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"the {what} has no column(s) {missing}; it has {list(df.columns)}")


def run_stratify(
    table: pd.DataFrame,
    out: str | Path,
    *,
    time_col: str,
    event_col: str,
    covariates: list[str] | None = None,
    model: str = "cox",
    ties: str = "efron",
    id_col: str = "patient_id",
    clinical: pd.DataFrame | None = None,
    cutoff: str = "median",
    cuts: list[float] | None = None,
    group_by: str | None = None,
    l2: float = 0.0,
    cv_folds: int = 5,
    seed: int = 0,
    dropna: bool = False,
    time_unit: str = "months",
) -> dict[str, Any]:
    """Stratify patients; writes the outputs listed in the module docstring, returns the
    metrics. Raises ValueError with a message naming the problem for bad input."""
    from napari_gbm import __version__
    from napari_gbm.io import atomic_path, write_json
    from napari_gbm.patients import aggregate_patients, join_clinical
    from napari_gbm.survival import (
        CoxModel,
        concordance_index,
        forest_plot,
        km_plot,
        logrank_test,
        risk_groups,
    )

    if model not in ("cox", "mlp"):
        raise ValueError(f"model must be 'cox' or 'mlp', got {model!r}")
    if cutoff not in CUTOFFS:
        raise ValueError(f"cutoff must be one of {CUTOFFS}, got {cutoff!r}")
    notes: list[str] = []
    df = table.copy()
    if id_col not in df.columns:
        raise ValueError(
            f"the table has no patient id column {id_col!r}; it has {list(df.columns)} "
            "(name it with --id-col)"
        )
    if df[id_col].duplicated().any():
        if "slide_id" in df.columns:
            df = aggregate_patients(df, id_col=id_col)
            notes.append(
                f"the table has one row per slide: aggregated to {len(df)} patients "
                "(napari_gbm.patients rules)"
            )
        else:
            dup = df[id_col][df[id_col].duplicated()].unique().tolist()
            raise ValueError(
                f"patient ids are repeated: {dup[:10]} ({len(dup)} in all); give one row per "
                "patient, or a slide table with a slide_id column to aggregate"
            )
    if clinical is not None:
        df = join_clinical(df, clinical, id_col=id_col)
    _require(df, [time_col, event_col], "table")
    if covariates is None:
        covariates = [c for c in DEFAULT_COVARIATES if c in df.columns]
        if not covariates:
            raise ValueError(
                f"no covariates named and none of the default biomarkers {DEFAULT_COVARIATES} "
                f"is in the table; name them with --covariates (columns: {list(df.columns)})"
            )
        notes.append(f"covariates not named: using the biomarkers {covariates}")
    _require(df, covariates, "table")
    if group_by is not None:
        _require(df, [group_by], "table")
    used = list(
        dict.fromkeys([time_col, event_col, *covariates, *([group_by] if group_by else [])])
    )
    nan_rows = df[used].isna().any(axis=1)
    if nan_rows.any():
        per_col = {c: int(df[c].isna().sum()) for c in used if df[c].isna().any()}
        if not dropna:
            raise ValueError(
                f"{int(nan_rows.sum())} patients have missing values {per_col} "
                f"(e.g. {df.loc[nan_rows, id_col].astype(str).tolist()[:5]}); fill them, or "
                "pass --dropna to leave those patients out"
            )
        notes.append(f"left out {int(nan_rows.sum())} patients with missing values {per_col}")
        df = df.loc[~nan_rows].reset_index(drop=True)
    event = df[event_col]
    if event.dtype == object:
        event = (
            event.astype(str)
            .str.strip()
            .str.lower()
            .map({"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0})
        )
    time = np.array(df[time_col], dtype=np.float64)  # writable copies (pandas 3 views are not)
    ev = np.array(event, dtype=np.float64)
    X = df[covariates].astype(np.float64)
    n_events = int(np.nansum(ev))

    cox = CoxModel().fit(X, time, ev, ties=ties, l2=l2)
    if model == "cox":
        fitted: Any = cox
    else:
        from napari_gbm.survival.nn import MLPCoxModel

        fitted = MLPCoxModel(seed=seed, ties=ties).fit(X, time, ev)
    risk = np.asarray(fitted.predict_risk(X), dtype=np.float64)
    c_index = float(concordance_index(time, ev, risk))

    cv: dict[str, Any] = {}
    if cv_folds >= 2 and len(df) >= 2 * cv_folds and n_events >= 2 * cv_folds:
        from napari_gbm.survival.cv import cross_validate

        def make() -> Any:
            if model == "cox":
                return _CoxForCV(ties=ties, l2=l2)
            from napari_gbm.survival.nn import MLPCoxModel

            return MLPCoxModel(seed=seed, ties=ties)

        try:
            res = cross_validate(make, X, time, ev, df[id_col].to_numpy(), cv_folds, seed)
            cv = {"cv_c_index_mean": res.mean, "cv_c_index_std": res.std, "cv_folds": cv_folds}
        except ValueError as exc:  # e.g. a fold without events
            notes.append(f"cross-validation skipped: {exc}")
    else:
        notes.append(f"cross-validation skipped: too few patients or events for {cv_folds} folds")

    score = df[group_by].to_numpy(dtype=np.float64) if group_by else risk
    optimal = cutoff == "optimal"
    groups = risk_groups(
        score, cutoff, cuts=cuts, time=time if optimal else None, event=ev if optimal else None
    )
    lr = logrank_test(time, ev, groups.labels) if len(np.unique(groups.labels)) > 1 else None

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").unlink(missing_ok=True)
    summary = cox.summary()
    # a yes/no covariate (MGMT methylated, IDH mutant) reads per unit: present vs absent
    summary["binary"] = [bool(set(np.unique(X[c])) <= {0.0, 1.0}) for c in summary.covariate]
    with atomic_path(out / "cox_summary.csv") as tmp:
        summary.to_csv(tmp, index=False)
    risk_df = pd.DataFrame(
        {
            id_col: df[id_col].to_numpy(),
            "risk_score": risk,
            "risk_group": groups.label_names,
            "risk_group_label": groups.labels,
        }
    )
    with atomic_path(out / "risk.csv") as tmp:
        risk_df.to_csv(tmp, index=False)
    by = group_by or f"{model} risk score"
    km_plot(
        time, ev, groups.labels, out / "km.png",
        title=f"Kaplan-Meier by {by} ({cutoff} cut-off)",
        group_names=list(groups.names), time_label=time_col,
    )  # fmt: skip
    shown = reported_hazard_ratios(summary)
    forest_plot(
        shown.assign(
            covariate=[f"{c} ({u})" for c, u in zip(shown.covariate, shown.per, strict=True)]
        ),
        out / "forest.png",
        title="Cox model: hazard ratios (95 % CI) per SD, or yes vs no",
    )
    from napari_gbm.survival.persist import save_model

    save_model(fitted, out / "model")
    metrics: dict[str, Any] = {
        "c_index": c_index,
        **cv,
        "n": len(df),
        "n_events": n_events,
        "logrank_statistic": None if lr is None else float(lr.statistic),
        "logrank_df": None if lr is None else int(lr.df),
        "logrank_p": None if lr is None else float(lr.p_value),
        "risk_groups": {
            "by": by,
            "method": cutoff,
            "cuts": [float(c) for c in groups.cuts],
            "names": list(groups.names),
            "counts": [int(c) for c in groups.counts],
        },
        "model": model,
        "ties": ties,
        "l2": l2,
        "covariates": covariates,
        "time": time_col,
        "event": event_col,
        "notes": notes,
        "software": {"napari_gbm": __version__},
    }
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
    (out / "report.md").write_text(_report(metrics, summary, time_unit))
    write_json(metrics, out / "metrics.json")
    return metrics


class _CoxForCV:
    """The linear Cox model with the fit signature cross-validation calls."""

    def __init__(self, ties: str, l2: float) -> None:
        from napari_gbm.survival import CoxModel

        self.model = CoxModel()
        self.ties, self.l2 = ties, l2

    def fit(self, X: Any, time: Any, event: Any) -> _CoxForCV:
        self.model.fit(X, time, event, ties=self.ties, l2=self.l2)
        return self

    def predict_risk(self, X: Any) -> np.ndarray:
        return np.asarray(self.model.predict_risk(X))


def reported_hazard_ratios(summary: pd.DataFrame) -> pd.DataFrame:
    """The hazard ratios to show people (report, forest plot, dock): per standard
    deviation for a measurement (per unit, a density in cells/mm² reads "1 (1-1)"), per
    unit for a yes/no covariate (``binary`` column of ``cox_summary.csv``: present vs
    absent). Columns ``covariate, hazard_ratio, ci_lower, ci_upper, p, per`` (``per`` says
    which: "SD 8.67" or "yes vs no")."""
    binary = (
        summary["binary"].astype(bool).to_numpy()
        if "binary" in summary
        else np.zeros(len(summary), bool)
    )
    if "hazard_ratio_per_sd" not in summary:  # a table from before per-SD columns
        return summary.assign(per="unit")[
            ["covariate", "hazard_ratio", "ci_lower", "ci_upper", "p", "per"]
        ]
    out = pd.DataFrame({"covariate": summary["covariate"], "p": summary["p"]})
    for col in ("hazard_ratio", "ci_lower", "ci_upper"):
        out[col] = np.where(binary, summary[col], summary[f"{col}_per_sd"])
    out["per"] = [
        "yes vs no" if b else f"SD {v:.3g}" for b, v in zip(binary, summary["sd"], strict=True)
    ]
    return out[["covariate", "hazard_ratio", "ci_lower", "ci_upper", "p", "per"]]


def _fmt(v: Any, spec: str = ".3g") -> str:
    return "n/a" if v is None else format(v, spec)


def _report(metrics: dict[str, Any], summary: pd.DataFrame, unit: str) -> str:
    rg = metrics["risk_groups"]
    lines = [
        "# Stratification report",
        "",
        f"{metrics['n']} patients, {metrics['n_events']} events; model: {metrics['model']} "
        f"({metrics['ties']} ties, L2 {metrics['l2']}); covariates: "
        f"{', '.join(metrics['covariates'])}.",
        "",
        f"- C-index (in-sample, Harrell): {_fmt(metrics['c_index'], '.3f')}",
        f"- C-index (patient-grouped CV): {_fmt(metrics.get('cv_c_index_mean'), '.3f')} "
        f"± {_fmt(metrics.get('cv_c_index_std'), '.3f')}",
        f"- Risk groups by {rg['by']} ({rg['method']}, cuts {rg['cuts']}): "
        + ", ".join(f"{n} n={c}" for n, c in zip(rg["names"], rg["counts"], strict=True)),
        f"- Log-rank between groups: chi² {_fmt(metrics['logrank_statistic'])}, "
        f"p = {_fmt(metrics['logrank_p'])}",
        "",
        "| covariate | HR | 95 % CI | per | p |",
        "|---|---|---|---|---|",
    ]
    for r in reported_hazard_ratios(summary).itertuples(index=False):
        lines.append(
            f"| {r.covariate} | {r.hazard_ratio:.3g} | {r.ci_lower:.3g}-{r.ci_upper:.3g} "
            f"| {r.per} | {r.p:.3g} |"
        )
    if metrics["notes"]:
        lines += ["", "Notes:", *[f"- {n}" for n in metrics["notes"]]]
    lines += ["", "Plots: km.png (Kaplan-Meier by group), forest.png (hazard ratios).", ""]
    return "\n".join(lines)
