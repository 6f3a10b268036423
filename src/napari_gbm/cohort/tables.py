"""The cohort tables, written once every slide has an outcome, and their stratification.

From the slides' outcomes (:func:`~napari_gbm.cohort.task.analyze_task`), under the output
folder ``DIR``: ``slides.parquet`` (one row per analysed slide, :func:`flatten_summary` of its
``summary.json`` with ids and clinical columns), ``patients.parquet``
(:func:`napari_gbm.survival.patients.aggregate_patients` joined with the manifest's clinical
columns), ``failures.csv`` and ``failures.parquet`` (:data:`FAILURE_COLUMNS`) and
``cohort.json``; then ``DIR/stratify/`` (:func:`napari_gbm.survival.stratify.run_stratify`)
when the manifest has survival time and event columns. :class:`CohortResult` holds them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from napari_gbm import __version__
from napari_gbm.cohort.manifest import (
    _ID_COLUMNS,
    DEFAULT_EVENT_COL,
    DEFAULT_TIME_COL,
    Cohort,
)
from napari_gbm.io import write_csv, write_json, write_parquet
from napari_gbm.survival.bags import cohort_tiles
from napari_gbm.survival.patients import aggregate_patients, join_clinical
from napari_gbm.survival.stratify import run_stratify

if TYPE_CHECKING:
    from napari_gbm.pipeline import AnalyzeParams

__all__ = ["FAILURE_COLUMNS", "CohortResult", "flatten_summary"]

#: the cohort's one logger, written to DIR/cohort.log during a run (see run_cohort)
log = logging.getLogger("napari_gbm.cohort")

FAILURE_COLUMNS = (
    "slide_id",
    "patient_id",
    "path",
    "error_type",
    "message",
    "traceback",
    "worker",
)

#: summary entries that are metadata or label dictionaries, not biomarkers
_NOT_BIOMARKERS = frozenset(
    {
        "slide_id",
        "software",
        "input",
        "slide",
        "parameters",
        "positive_class_names",
        "region_classes",
        "whole_image_analysed",
        "elapsed_s",
    }
)


@dataclass
class CohortResult:
    """What :func:`~napari_gbm.cohort.run.run_cohort` wrote (the tables are also on disk).

    Attributes
    ----------
    out : Path
        The output folder.
    slides : pandas.DataFrame
        One row per analysed (or skipped) slide: ids, biomarkers, clinical columns.
    failures : pandas.DataFrame
        One row per failed slide, columns :data:`FAILURE_COLUMNS`, all text.
    patients : pandas.DataFrame or None
        One row per patient, None when no slide was analysed.
    n_analysed, n_skipped, n_failed : int
        The slides' outcomes.
    elapsed_s : float
        Seconds from the start of the run to the tables written.
    stratify : dict or None
        What :func:`napari_gbm.run_stratify` returned, None when not stratified.
    notes : list of str
        What was not done, and why (also in ``cohort.json`` and ``cohort.log``).
    """

    out: Path
    slides: pd.DataFrame
    failures: pd.DataFrame
    patients: pd.DataFrame | None
    n_analysed: int
    n_skipped: int
    n_failed: int
    elapsed_s: float
    stratify: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def flatten_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A slide's ``summary.json`` as one table row.

    Metadata dictionaries (input, slide, parameters) and label dictionaries are left out.

    Parameters
    ----------
    summary : mapping
        A slide's ``summary.json``, as read.

    Returns
    -------
    dict
        Its scalar biomarkers, the ``heterogeneity`` entries as
        ``heterogeneity_<biomarker>_<statistic>``, and ``stain``, ``slide_mpp``,
        ``whole_image_analysed``, ``elapsed_s``, ``napari_gbm_version`` and ``warnings``
        (the plausibility warnings joined by ``"; "``).
    """
    row: dict[str, Any] = {}
    for key, value in summary.items():
        if key in _NOT_BIOMARKERS:
            continue
        if key == "heterogeneity" and isinstance(value, Mapping):
            for name, stats in value.items():
                if isinstance(stats, Mapping):
                    for stat, v in stats.items():
                        row[f"heterogeneity_{name}_{stat}"] = v
                else:
                    row[f"heterogeneity_{name}"] = stats
        elif not isinstance(value, Mapping | list | tuple):
            row[key] = value
    row["stain"] = summary.get("parameters", {}).get("cells", {}).get("stain")
    row["slide_mpp"] = summary.get("slide", {}).get("mpp")
    row["whole_image_analysed"] = summary.get("whole_image_analysed")
    row["elapsed_s"] = summary.get("elapsed_s")
    row["napari_gbm_version"] = summary.get("software", {}).get("napari_gbm")
    # plausibility warnings (napari_gbm.qc), e.g. a wrong pixel size: one cell per slide
    row["warnings"] = "; ".join(summary.get("warnings", []))
    return row


def _slides_table(cohort: Cohort, outcomes: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    rows = []
    for s in cohort.slides:
        outcome = outcomes.get(s.slide_id)
        if outcome is None or outcome["status"] == "failed":
            continue
        row = {
            "slide_id": s.slide_id,
            "patient_id": s.patient_id,
            "path": str(s.path),
            **flatten_summary(outcome["summary"]),
        }
        for col, value in s.clinical.items():
            row[_clinical_name(col, row)] = value
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=[*_ID_COLUMNS, *cohort.clinical_columns])
    for col in df.columns:
        if df[col].dtype == object:
            values = df[col].dropna()
            if values.empty or all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values
            ):
                df[col] = pd.to_numeric(df[col], errors="raise").astype("float64")
    return df


def _clinical_name(col: str, row: Mapping[str, Any]) -> str:
    """A clinical column named like a biomarker keeps its values as ``<name>_clinical``
    (as :func:`napari_gbm.survival.patients.join_clinical` names such clashes)."""
    if col not in row:
        return col
    log.warning("clinical column %r is also a biomarker: stored as %r", col, f"{col}_clinical")
    return f"{col}_clinical"


def _failures_table(cohort: Cohort, outcomes: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    rows = [
        {
            "slide_id": s.slide_id,
            "patient_id": s.patient_id,
            "path": str(s.path),
            **{k: str(outcomes[s.slide_id].get(k, "")) for k in FAILURE_COLUMNS[3:]},
        }
        for s in cohort.slides
        if outcomes.get(s.slide_id, {}).get("status") == "failed"
    ]
    return pd.DataFrame(rows, columns=list(FAILURE_COLUMNS)).astype(str)


def _write_tables(
    cohort: Cohort,
    out: Path,
    params: AnalyzeParams,
    outcomes: Mapping[str, Mapping[str, Any]],
    t0: float,
) -> CohortResult:
    """Write the slides, patients and failures tables and ``cohort.json`` under ``out``."""
    slides = _slides_table(cohort, outcomes)
    failures = _failures_table(cohort, outcomes)
    counts = {k: sum(o["status"] == k for o in outcomes.values()) for k in ("analysed", "skipped")}
    meta = {
        "software": {"napari_gbm": __version__},
        "input": os.path.abspath(cohort.source),
        "parameters": params.to_dict(),
    }
    notes: list[str] = []
    write_parquet(slides, out / "slides.parquet", metadata=meta)
    patients = _patients_table(slides, cohort, notes)
    if patients is not None:
        write_parquet(patients, out / "patients.parquet", metadata=meta)
    write_parquet(failures, out / "failures.parquet", metadata=meta)
    write_csv(failures, out / "failures.csv")  # a slide named "=HYPERLINK(..)" stays text
    result = CohortResult(
        out=out,
        slides=slides,
        failures=failures,
        patients=patients,
        n_analysed=counts["analysed"],
        n_skipped=counts["skipped"],
        n_failed=len(failures),
        elapsed_s=round(time.perf_counter() - t0, 3),
        notes=notes,
    )
    write_json(
        {
            **meta,
            "n_slides": len(cohort.slides),
            "n_analysed": result.n_analysed,
            "n_skipped": result.n_skipped,
            "n_failed": result.n_failed,
            "n_patients": None if patients is None else len(patients),
            "clinical_columns": list(cohort.clinical_columns),
            "elapsed_s": result.elapsed_s,
            "notes": notes,
        },
        out / "cohort.json",
    )
    return result


def _patients_table(slides: pd.DataFrame, cohort: Cohort, notes: list[str]) -> pd.DataFrame | None:
    if slides.empty:
        notes.append("patients.parquet not written: no slide was analysed")
        log.warning(notes[-1])
        return None
    clinical_in_table = [
        f"{c}_clinical" if f"{c}_clinical" in slides.columns else c for c in cohort.clinical_columns
    ]
    biomarkers = slides.drop(columns=clinical_in_table)
    patients = aggregate_patients(biomarkers, id_col="patient_id")
    if cohort.clinical_columns:
        clinical = cohort.clinical_table()
        patients = join_clinical(
            patients, clinical[clinical["patient_id"].isin(slides["patient_id"])], "patient_id"
        )
    return patients


# --- stratification of the patients table ---


def _check_survival_columns(
    cohort: Cohort,
    time_col: str | None,
    event_col: str | None,
    covariates: Sequence[str] | None,
) -> None:
    """Refuse, before anything runs, survival columns the manifest does not have."""
    named = [c for c in (time_col, event_col) if c is not None]
    missing = [c for c in named if c not in cohort.clinical_columns]
    if missing:
        raise ValueError(
            f"the survival column(s) {', '.join(missing)} are not in the manifest; its clinical "
            f"columns are {', '.join(cohort.clinical_columns) or 'none'}"
        )
    if covariates and (time_col or DEFAULT_TIME_COL) not in cohort.clinical_columns:
        raise ValueError("covariates were given but the manifest has no survival time column")


def _stratify(
    cohort: Cohort,
    result: CohortResult,
    out: Path,
    time_col: str | None,
    event_col: str | None,
    covariates: Sequence[str] | None,
    model: str,
) -> dict[str, Any] | None:
    """Stratify the patients table into ``out/stratify`` when the manifest has survival
    columns (``model="mil"``: from the tiles of the slides in ``out/slides.parquet``);
    otherwise add a note to ``result`` saying why not, and return None."""
    t_col = time_col or DEFAULT_TIME_COL
    e_col = event_col or DEFAULT_EVENT_COL
    if t_col not in cohort.clinical_columns or e_col not in cohort.clinical_columns:
        if cohort.clinical_columns:
            result.notes.append(
                f"no stratification: the manifest has no '{t_col}' and '{e_col}' columns "
                "(name the survival columns with --time-col and --event-col)"
            )
            log.info(result.notes[-1])
        return None
    if result.patients is None:
        result.notes.append("no stratification: there is no patients table")
        log.warning(result.notes[-1])
        return None
    log.info("stratify: %d patients, time %s, event %s", len(result.patients), t_col, e_col)
    return run_stratify(
        result.patients,
        out / "stratify",
        time_col=t_col,
        event_col=e_col,
        covariates=list(covariates) if covariates else None,
        model=model,
        id_col="patient_id",
        table_name=f"the manifest {cohort.source}",  # where time, event, categories come from
        # MIL learns from each patient's tissue tiles: those of the slides analysed here
        tiles=cohort_tiles(out) if model == "mil" else None,
    )
