"""A finished stratification read back for display (the Cohort dock, without Qt).

What the Cohort & stratification dock (:mod:`napari_gbm.widgets._cohort`) shows is read
from the files :func:`~napari_gbm.survival.stratify.run_stratify` wrote (``metrics.json``,
``risk.csv``, ``cox_summary.csv``), so the dock and the files always agree:

- :func:`read_results` reads an output folder into :class:`CohortResults`, with a
  Kaplan-Meier curve (:class:`KMCurve`) per risk group;
- :func:`summary_text`, :func:`hazard_ratio_rows`, :func:`km_labels` and
  :func:`risk_text` are the texts the dock shows;
- :func:`patient_of_slide` and :func:`slide_patients` match an open slide to its patient.

The dock's inputs before a run are :mod:`napari_gbm.survival.inputs`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from napari_gbm.io import read_csv
from napari_gbm.survival.km import kaplan_meier
from napari_gbm.survival.stratify_report import format_value, reported_hazard_ratios
from napari_gbm.survival.table_input import event_indicator, numeric_values

__all__ = [
    "CohortResults",
    "KMCurve",
    "hazard_ratio_rows",
    "km_labels",
    "patient_of_slide",
    "read_results",
    "risk_text",
    "slide_patients",
    "summary_text",
]

_TIME_UNITS = ("months", "days", "weeks", "years")


# -- a finished run -----------------------------------------------------------------------
@dataclass(frozen=True)
class KMCurve:
    """One risk group's Kaplan-Meier estimate (:func:`napari_gbm.survival.kaplan_meier`).

    Attributes
    ----------
    name : str
        The risk group's name.
    n : int
        Patients in the group.
    n_events : int
        Events (deaths) observed among them.
    table : DataFrame
        :func:`~napari_gbm.survival.km.kaplan_meier`'s table: ``time`` (in the unit of
        the run's time column), ``n_at_risk``, ``n_events``, ``n_censored``,
        ``survival``, ``ci_lower``, ``ci_upper``.
    """

    name: str
    n: int
    n_events: int
    table: pd.DataFrame


@dataclass(frozen=True)
class CohortResults:
    """A finished stratification as shown in the dock.

    Attributes
    ----------
    out : Path
        The run's output folder.
    metrics : dict
        ``metrics.json``.
    hazard_ratios : DataFrame
        ``cox_summary.csv``.
    patients : DataFrame
        ``risk.csv`` with the patient's follow-up ``time`` (in the unit of the run's time
        column) and ``event`` (0/1) added.
    curves : tuple of KMCurve
        One Kaplan-Meier estimate per risk group (lowest group first).
    id_col : str
        The patient id column of ``patients``.
    """

    out: Path
    metrics: dict[str, Any]
    hazard_ratios: pd.DataFrame
    patients: pd.DataFrame
    curves: tuple[KMCurve, ...]
    id_col: str

    def risk_of(self, patient_id: str) -> tuple[str, float] | None:
        """(risk group name, risk score) of a patient, or None if not stratified."""
        rows = self.patients[self.patients[self.id_col] == str(patient_id)]
        if rows.empty:
            return None
        return str(rows["risk_group"].iloc[0]), float(rows["risk_score"].iloc[0])


def _survival_table(
    table: pd.DataFrame,
    clinical: pd.DataFrame | None,
    id_col: str,
    time_col: str,
    event_col: str,
) -> pd.DataFrame:
    """id, ``time`` and ``event`` per patient: from the table (first row of a patient's
    slides: survival is per patient) or else the clinical table, as run_stratify joins
    them (the table's column wins)."""
    if id_col not in table.columns:
        raise ValueError(f"the table has no patient id column {id_col!r}")
    base = table.drop_duplicates(id_col).copy()
    base[id_col] = base[id_col].astype(str)
    if clinical is not None:
        if id_col not in clinical.columns:
            raise ValueError(f"the clinical table has no patient id column {id_col!r}")
        right = clinical.drop_duplicates(id_col).copy()
        right[id_col] = right[id_col].astype(str)
        base = base.merge(right, on=id_col, how="inner", suffixes=("", "_clinical"))
    missing = [c for c in (time_col, event_col) if c not in base.columns]
    if missing:
        raise ValueError(f"neither the table nor the clinical table has the column(s) {missing}")
    return pd.DataFrame(
        {
            id_col: base[id_col].to_numpy(),
            "time": numeric_values(base[time_col], column=time_col),
            "event": event_indicator(base[event_col], column=event_col),
        }
    )


def read_results(
    out: str | Path,
    table: pd.DataFrame,
    clinical: pd.DataFrame | None = None,
    *,
    id_col: str = "patient_id",
) -> CohortResults:
    """Read a finished :func:`~napari_gbm.survival.stratify.run_stratify` output folder and
    compute the Kaplan-Meier curve of each risk group.

    Parameters
    ----------
    out : str or Path
        The output folder of the run.
    table, clinical : DataFrame
        The inputs of the run: they supply each patient's follow-up time and event,
        which ``risk.csv`` does not hold.
    id_col : str
        The patient id column.

    Returns
    -------
    CohortResults

    Raises
    ------
    ValueError
        If ``out`` holds no complete run (no ``metrics.json``), or ``risk.csv`` names
        patients the tables do not have.
    """
    out = Path(out)
    if not (out / "metrics.json").is_file():
        raise ValueError(f"{out} holds no finished stratification (no metrics.json)")
    metrics = json.loads((out / "metrics.json").read_text())
    # read_csv gives back the ids as they were: "'=HYPERLINK(..)" in the file is the
    # id "=HYPERLINK(..)" (write_csv's formula neutralisation undone)
    risk = read_csv(out / "risk.csv", dtype={id_col: str})
    hazard_ratios = read_csv(out / "cox_summary.csv")
    surv = _survival_table(table, clinical, id_col, metrics["time"], metrics["event"])
    patients = risk.merge(surv, on=id_col, how="left", validate="one_to_one", indicator=True)
    unknown = patients.loc[patients.pop("_merge") == "left_only", id_col].tolist()
    if unknown:
        raise ValueError(
            f"{len(unknown)} patients of {out / 'risk.csv'} are not in the table "
            f"(e.g. {unknown[:5]}): load the table (and clinical CSV) the run was made from"
        )
    names = list(metrics["risk_groups"]["names"])
    curves = []
    for label, name in enumerate(names):
        sel = patients["risk_group_label"].to_numpy() == label
        t = patients["time"].to_numpy()[sel]
        e = patients["event"].to_numpy()[sel]
        curves.append(KMCurve(str(name), int(sel.sum()), int(e.sum()), kaplan_meier(t, e)))
    return CohortResults(out, metrics, hazard_ratios, patients, tuple(curves), id_col)


# -- what the dock shows ------------------------------------------------------------------
def _pretty(col: str) -> str:
    """A column name for a reader: ``positive_percent`` -> ``positive %``."""
    for old, new in (("_percent", " %"), ("_per_mm2", " per mm²"), ("_um2", " µm²"), ("_", " ")):
        col = col.replace(old, new)
    return col


def _time_label(col: str) -> str:
    words = col.replace("_", " ").strip()
    for unit in _TIME_UNITS:
        if words.endswith(" " + unit):
            return f"{words[: -len(unit) - 1]} ({unit})"
    return words


def km_labels(metrics: dict[str, Any]) -> tuple[str, str]:
    """The title and the time-axis label of the Kaplan-Meier plot of a run.

    Parameters
    ----------
    metrics : dict
        The run's ``metrics.json``.

    Returns
    -------
    title, time_label : str
        ``"Kaplan-Meier by positive % (median)"`` and ``"time (months)"`` for a run
        grouped by ``positive_percent`` with the time column ``time_months``.
    """
    rg = metrics["risk_groups"]
    title = f"Kaplan-Meier by {_pretty(rg['by'])} ({rg['method']})"
    return title, _time_label(str(metrics["time"]))


def summary_text(metrics: dict[str, Any]) -> str:
    """The dock's text summary of a run.

    Parameters
    ----------
    metrics : dict
        The run's ``metrics.json``.

    Returns
    -------
    str
        One line each: patients and events, the C-indices, the log-rank test, the risk
        groups (with the corrected p of an optimal cut), the model, the run's notes.
    """
    # lazy: survival.plots loads matplotlib, and the Cohort dock imports this module
    from napari_gbm.survival.plots import format_p

    rg = metrics["risk_groups"]
    cuts = ", ".join(f"{c:.4g}" for c in rg["cuts"])
    groups = ", ".join(f"{n} n={c}" for n, c in zip(rg["names"], rg["counts"], strict=True))
    lines = [
        f"patients: {metrics['n']}, events: {metrics['n_events']}",
        f"C-index (in-sample, Harrell): {format_value(metrics['c_index'], '.3f')}",
    ]
    if metrics.get("cv_c_index_mean") is not None:
        lines.append(
            f"C-index (CV, {metrics.get('cv_folds')} folds): "
            f"{metrics['cv_c_index_mean']:.3f} ± {metrics['cv_c_index_std']:.3f}"
        )
    else:
        lines.append("C-index (CV): not run")
    lr = metrics.get("logrank_statistic")
    lines.append(
        f"log-rank p = {format_p(metrics.get('logrank_p'))}"
        + ("" if lr is None else f" (chi² {lr:.3g}, df {metrics['logrank_df']})")
    )
    lines.append(f"groups by {rg['by']} ({rg['method']}, cut {cuts}): {groups}")
    opt = rg.get("optimal")
    if opt:
        lines.append(
            f"optimal cut: raw p {format_p(opt['p_raw'])} is biased; corrected p "
            f"{format_p(opt['p_lausen_schumacher'])} (Lausen-Schumacher), "
            f"{format_p(opt['p_altman'])} (Altman)"
        )
    lines.append(
        f"model: {metrics['model']} ({metrics['ties']} ties, L2 {metrics['l2']}) on "
        + ", ".join(metrics["covariates"])
    )
    lines += [f"note: {n}" for n in metrics.get("notes", [])]
    return "\n".join(lines)


def hazard_ratio_rows(summary: pd.DataFrame) -> list[list[str]]:
    """The rows of the dock's hazard-ratio table.

    Parameters
    ----------
    summary : DataFrame
        The run's ``cox_summary.csv``.

    Returns
    -------
    list of list of str
        Per covariate: its name, the hazard ratio, the 95 % interval, what the ratio is
        per (an SD, yes vs no, a category vs the reference) and the p value, as
        :func:`~napari_gbm.survival.stratify_report.reported_hazard_ratios` reports them.
    """
    # lazy: survival.plots loads matplotlib, and the Cohort dock imports this module
    from napari_gbm.survival.plots import format_p

    return [
        [
            str(r.covariate),
            f"{r.hazard_ratio:.3g}",
            f"{r.ci_lower:.3g}-{r.ci_upper:.3g}",
            str(r.per),
            format_p(float(r.p)),
        ]
        for r in reported_hazard_ratios(summary).itertuples(index=False)
    ]


def risk_text(results: CohortResults, slide_id: str, patient_id: str) -> str:
    """The dock's line on a slide's patient: the risk group, where it ranks, the score.

    Parameters
    ----------
    results : CohortResults
        The run.
    slide_id, patient_id : str
        The slide open in the viewer and its patient (:func:`patient_of_slide`).

    Returns
    -------
    str
        e.g. ``"slide S1 -> patient P1: risk group high (highest of 2 by positive %);
        cox risk score 0.42"``, or why the patient has no risk group.
    """
    risk = results.risk_of(patient_id)
    if risk is None:
        return (
            f"slide {slide_id} -> patient {patient_id}: not stratified (no survival data or "
            "left out)"
        )
    group, score = risk
    rg = results.metrics["risk_groups"]
    names = list(rg["names"])
    k = len(names)
    rank = names.index(group) if group in names else -1
    where = {0: f"lowest of {k}", k - 1: f"highest of {k}"}.get(
        rank, f"{rank + 1} of {k} from the lowest"
    )
    return (
        f"slide {slide_id} -> patient {patient_id}: risk group {group} ({where} by "
        f"{_pretty(rg['by'])}); {results.metrics['model']} risk score {score:.3g}"
    )


def slide_patients(slides: pd.DataFrame | None, id_col: str) -> dict[str, str]:
    """Slide id -> patient id, from a slide table.

    Parameters
    ----------
    slides : DataFrame or None
        A table with a ``slide_id`` column and ``id_col`` (a cohort's ``slides.parquet``,
        or a cohort table with one row per slide).
    id_col : str
        The patient id column.

    Returns
    -------
    dict
        Empty when ``slides`` is None or lacks either column.
    """
    if slides is None or not {"slide_id", id_col} <= set(slides.columns):
        return {}
    pairs = slides[["slide_id", id_col]].dropna().astype(str)
    return dict(zip(pairs["slide_id"], pairs[id_col], strict=True))


def patient_of_slide(
    slide_ids: list[str], slide_patients: dict[str, str], patient_ids: set[str]
) -> tuple[str, str, str] | None:
    """The patient of a slide, from the slide's candidate ids.

    Parameters
    ----------
    slide_ids : list of str
        Candidate ids of the slide, best first.
    slide_patients : dict
        Slide id -> patient id (:func:`slide_patients`).
    patient_ids : set of str
        The patients of the cohort.

    Returns
    -------
    tuple of (slide id, patient id, how) or None
        For the first candidate found: in the slide table (``"slide table"``), as a
        patient id itself (``"patient id"``), or starting with a patient id and a
        separator (``"id prefix"``; TCGA-style barcodes: ``TCGA-02-0001-01Z-00-DX1`` ->
        ``TCGA-02-0001``).
    """
    for sid in slide_ids:
        if sid in slide_patients:
            return sid, slide_patients[sid], "slide table"
    for sid in slide_ids:
        if sid in patient_ids:
            return sid, sid, "patient id"
    for sid in slide_ids:
        prefixed = [p for p in patient_ids if sid.startswith(p) and sid[len(p)] in "-_. "]
        if prefixed:
            return sid, max(prefixed, key=len), "id prefix"
    return None
