"""The files of a stratification: tables, plots, the saved model and ``report.md``.

:func:`write_outputs` writes what :func:`napari_gbm.survival.stratify.run_stratify`
computed into its output folder; :func:`reported_hazard_ratios` is the one choice of how
a hazard ratio is shown (per SD, per unit, against a reference level), for the report,
the forest plot and the Cohort dock.

Outputs (each written atomically, ``metrics.json`` last, so its presence marks a complete
run; the CSVs through :func:`napari_gbm.io.write_csv`, so an id such as ``=HYPERLINK(...)``
is written ``'=HYPERLINK(...)`` and a spreadsheet does not run it):

- ``cox_summary.csv``: one row per covariate: ``covariate, coef, hazard_ratio, ci_lower,
  ci_upper, p`` (+ ``se, z``; hazard ratios per unit), then ``sd, hazard_ratio_per_sd,
  ci_lower_per_sd, ci_upper_per_sd``, ``binary`` (a yes/no covariate, which the report,
  the forest plot and the dock show per unit; the others per SD) and ``reference``, of
  the linear Cox model. The MLP's and the MIL's risk have no per-covariate hazard ratio:
  the table then describes the linear model on the same inputs (for ``mil``: each
  patient's mean of each tile feature, named ``<feature> (tile mean)``, and the
  covariates);
- ``risk.csv``: patient id, ``risk_score``, ``risk_group`` (name), ``risk_group_label``;
- ``metrics.json``: ``c_index`` (Harrell's, in-sample, as lifelines'
  ``concordance_index_``), ``cv_c_index_mean/std`` (patient-grouped cross-validation),
  ``n``, ``n_events``, ``logrank_statistic``, ``logrank_df``, ``logrank_p`` between the
  risk groups, the cut-off (and its corrected p for the optimal cut), parameters,
  ``categorical`` (per categorical covariate: ``reference``, ``levels``, ``columns``:
  the saved model's inputs); for ``mil`` also ``tile_features`` and ``n_tiles``;
- ``km.png``, ``forest.png``, ``model/`` (weights + JSON metadata), ``report.md``;
- ``mil`` only: ``tile_attention.parquet``: each tile's attention weight (id,
  ``slide_id``, ``tile_id``, ``attention``; a patient's weights sum to 1), to map which
  tiles drive a patient's risk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_gbm.io import write_csv, write_json, write_parquet

__all__ = [
    "cox_summary_table",
    "format_value",
    "render_report",
    "reported_hazard_ratios",
    "write_outputs",
]


def cox_summary_table(
    cox: Any, X: pd.DataFrame, categorical: dict[str, dict[str, Any]]
) -> pd.DataFrame:
    """``cox_summary.csv``: the linear Cox model's summary with ``binary`` and ``reference``.

    Parameters
    ----------
    cox : CoxModel
        Fitted on ``X``.
    X : DataFrame
        Its covariates.
    categorical : dict
        The categorical covariates' encoding
        (:func:`~napari_gbm.survival.table_input.encode_covariates`).

    Returns
    -------
    DataFrame
        ``CoxModel.summary()`` plus ``binary`` (a yes/no covariate, read per unit: MGMT
        methylated, IDH mutant) and ``reference`` (a categorical level's reference level,
        else empty).
    """
    summary = cox.summary()
    summary["binary"] = [bool(set(np.unique(X[c])) <= {0.0, 1.0}) for c in summary.covariate]
    reference = {n: e["reference"] for e in categorical.values() for n in e["columns"]}
    summary["reference"] = [reference.get(c, "") for c in summary.covariate]
    return summary


def reported_hazard_ratios(summary: pd.DataFrame) -> pd.DataFrame:
    """The hazard ratios to show people (report, forest plot, dock).

    Per standard deviation for a measurement (per unit, a density in cells/mm² reads
    "1 (1-1)"), per unit for a yes/no covariate (``binary`` column of ``cox_summary.csv``:
    present vs absent) and for a level of a categorical covariate (against the
    ``reference`` level).

    Parameters
    ----------
    summary : DataFrame
        ``cox_summary.csv`` (a table from before the per-SD columns is shown per unit).

    Returns
    -------
    DataFrame
        Columns ``covariate, hazard_ratio, ci_lower, ci_upper, p, per`` (``per`` says
        which: "SD 8.67", "yes vs no" or "vs WT").
    """
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
    refs = (
        [r if isinstance(r, str) and r else "" for r in summary["reference"]]
        if "reference" in summary
        else [""] * len(summary)
    )
    out["per"] = [
        f"vs {r}" if r else "yes vs no" if b else f"SD {v:.3g}"
        for b, v, r in zip(binary, summary["sd"], refs, strict=True)
    ]
    return out[["covariate", "hazard_ratio", "ci_lower", "ci_upper", "p", "per"]]


def write_outputs(
    out: Path,
    *,
    summary: pd.DataFrame,
    risk: pd.DataFrame,
    time: np.ndarray,
    event: np.ndarray,
    groups: Any,
    model: Any,
    metrics: dict[str, Any],
    attention: pd.DataFrame | None = None,
) -> None:
    """Write a stratification's files into ``out`` (created if needed).

    Parameters
    ----------
    out : Path
        The output folder; a ``metrics.json`` already there is removed first.
    summary : DataFrame
        ``cox_summary.csv`` (:func:`cox_summary_table`).
    risk : DataFrame
        ``risk.csv``: id, ``risk_score``, ``risk_group``, ``risk_group_label``.
    time, event : ndarray
        Each patient's follow-up and event, for the Kaplan-Meier plot.
    groups : RiskGroups
        The risk groups (:func:`~napari_gbm.survival.cutoff.risk_groups`).
    model
        The fitted model, saved in ``model/`` (:func:`~napari_gbm.survival.persist.save_model`).
    metrics : dict
        ``metrics.json``; also the source of ``report.md`` and the plots' titles.
    attention : DataFrame, optional
        ``tile_attention.parquet`` (MIL: each tile's attention weight).
    """
    # matplotlib and torch: loaded when a run writes its files
    from napari_gbm.survival.persist import save_model
    from napari_gbm.survival.plots import forest_plot, km_plot

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").unlink(missing_ok=True)
    write_csv(summary, out / "cox_summary.csv")
    write_csv(risk, out / "risk.csv")  # an id "=HYPERLINK(..)" is written "'=HYPERLINK(..)"
    rg = metrics["risk_groups"]
    km_plot(
        time, event, groups.labels, out / "km.png",
        title=f"Kaplan-Meier by {rg['by']} ({rg['method']} cut-off)",
        group_names=list(groups.names), time_label=metrics["time"],
    )  # fmt: skip
    shown = reported_hazard_ratios(summary)
    categories = set(summary.covariate[summary["reference"] != ""])
    forest_plot(
        shown.assign(  # a category's name says its reference already: "idh=Mutant (vs WT)"
            covariate=[
                c if c in categories else f"{c} ({u})"
                for c, u in zip(shown.covariate, shown.per, strict=True)
            ]
        ),
        out / "forest.png",
        title="Cox model: hazard ratios (95 % CI) per SD, or yes vs no",
    )
    save_model(model, out / "model")
    if attention is not None:
        write_parquet(attention, out / "tile_attention.parquet")
    (out / "report.md").write_text(render_report(metrics, summary))
    write_json(metrics, out / "metrics.json")


def format_value(v: Any, spec: str = ".3g") -> str:
    """A number of the report (and of the Cohort dock's summary), or "n/a" when missing.

    Parameters
    ----------
    v : number or None
        The value.
    spec : str, default ".3g"
        A format specification.

    Returns
    -------
    str
    """
    return "n/a" if v is None else format(v, spec)


def render_report(metrics: dict[str, Any], summary: pd.DataFrame) -> str:
    """``report.md``: the cohort, the model's C-index, the groups and the hazard ratios.

    Parameters
    ----------
    metrics : dict
        ``metrics.json`` of the run.
    summary : DataFrame
        ``cox_summary.csv`` of the run.

    Returns
    -------
    str
        Markdown.
    """
    rg = metrics["risk_groups"]
    lines = [
        "# Stratification report",
        "",
        f"{metrics['n']} patients, {metrics['n_events']} events; model: {metrics['model']} "
        f"({metrics['ties']} ties, L2 {metrics['l2']}); covariates: "
        f"{', '.join(metrics['covariates']) or 'none'}.",
    ]
    if "tile_features" in metrics:
        lines.append(
            f"Bags: {metrics['n_tiles']} tiles; tile features: "
            f"{', '.join(metrics['tile_features'])}."
        )
    lines += [
        "",
        f"- C-index (in-sample, Harrell): {format_value(metrics['c_index'], '.3f')}",
        f"- C-index (patient-grouped CV): {format_value(metrics.get('cv_c_index_mean'), '.3f')} "
        f"± {format_value(metrics.get('cv_c_index_std'), '.3f')}",
        f"- Risk groups by {rg['by']} ({rg['method']}, cuts {rg['cuts']}): "
        + ", ".join(f"{n} n={c}" for n, c in zip(rg["names"], rg["counts"], strict=True)),
        f"- Log-rank between groups: chi² {format_value(metrics['logrank_statistic'])}, "
        f"p = {format_value(metrics['logrank_p'])}",
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
