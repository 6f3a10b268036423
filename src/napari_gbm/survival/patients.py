"""From slides to patients: one row per patient from one row per slide, and the join with
clinical data.

A patient often has several slides (blocks of one resection, or a biopsy and a
resection). The rules, one per kind of biomarker (:data:`AGGREGATION`):

- counts and areas are summed (cells, graded/positive cells per grade, tissue and
  necrosis areas);
- ratios are recomputed from the pooled counts, as if all slides were one: positive %
  (Ki-67 index), H-score and Allred from the pooled grade counts, densities as pooled
  cells / pooled analysed tissue area;
- the hotspot index and the microvessel hotspot are the highest over the slides (a
  pathologist reports the hottest field of the case);
- vessel densities are pooled vessels / pooled analysed tissue area;
- area fractions (necrosis, pseudopalisades, regions, MVP, vessel area) are weighted by
  tissue area;
- nuclear measures (mean area, CV, giant fraction) are weighted by number of cells;
- anything else numeric is the plain mean; ``n_slides`` counts the slides.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from napari_gbm.biomarkers.ihc import ihc_scores

__all__ = ["AGGREGATION", "aggregate_patients", "join_clinical"]

SUMMED = (
    "n_cells", "n_graded", "n_negative", "n_1plus", "n_2plus", "n_3plus", "n_positive",
    "tissue_area_mm2", "analysed_tissue_area_mm2", "necrosis_area_mm2", "n_necrosis_foci",
    "n_vessels", "microvascular_area_mm2", "n_mvp_foci", "n_multilayered_vessels",
)  # fmt: skip
MAXIMUM = (
    "hotspot_positive_percent", "max_local_positive_percent",
    "microvessel_hotspot_density_per_mm2", "microvessel_hotspot_count",
)  # fmt: skip
AREA_WEIGHTED_PREFIXES = (
    "necrosis_fraction", "pseudopalisade_fraction", "region_", "mvp_fraction",
    "vessel_area_fraction",
)  # fmt: skip
CELL_WEIGHTED_PREFIXES = ("nucleus_", "giant_nucleus_fraction")
POOLED = (
    "cell_density_per_mm2", "positive_cells_per_mm2", "positive_percent", "h_score",
    "allred_proportion", "allred_intensity", "allred_score", "vessel_density_per_mm2",
    "microvessel_density_per_mm2",
)  # fmt: skip

AGGREGATION = {
    "sum": SUMMED,
    "pooled counts": POOLED,
    "max": MAXIMUM,
    "tissue-area weighted mean": AREA_WEIGHTED_PREFIXES,
    "cell-weighted mean": CELL_WEIGHTED_PREFIXES,
    "mean": "other numeric columns",
}


def _rule(col: str) -> str:
    if col in SUMMED:
        return "sum"
    if col in POOLED:
        return "pooled"
    if col in MAXIMUM:
        return "max"
    if col.startswith(AREA_WEIGHTED_PREFIXES):
        return "area"
    if col.startswith(CELL_WEIGHTED_PREFIXES):
        return "cells"
    return "mean"


def _weighted(values: pd.Series, weights: pd.Series) -> float:
    ok = values.notna() & weights.notna() & (weights > 0)
    if not ok.any():
        return float("nan")
    return float(np.average(values[ok], weights=weights[ok]))


def aggregate_patients(slides: pd.DataFrame, id_col: str = "patient_id") -> pd.DataFrame:
    """One row per patient from a one-row-per-slide biomarker table.

    Columns are combined by the rules of the module docstring (:data:`AGGREGATION`);
    boolean and non-numeric columns are dropped.

    Parameters
    ----------
    slides : pandas.DataFrame
        One row per slide: the patient id and slide biomarkers (the ``summary.json``
        values: counts, areas in mm², densities per mm², percentages ...).
    id_col : str, default "patient_id"
        Column holding the patient id.

    Returns
    -------
    pandas.DataFrame
        One row per patient, sorted by id: `id_col`, ``n_slides`` and the aggregated
        numeric columns (NaN where no slide has a value).

    Raises
    ------
    ValueError
        If `id_col` is missing or has empty values.
    """
    if id_col not in slides.columns:
        raise ValueError(
            f"the slide table has no {id_col!r} column to group slides by patient; "
            f"it has {list(slides.columns)}"
        )
    ids = slides[id_col]
    if ids.isna().any() or (ids.astype(str).str.strip() == "").any():
        bad = slides.index[ids.isna() | (ids.astype(str).str.strip() == "")].tolist()
        raise ValueError(f"{len(bad)} slides have no {id_col} (rows {bad[:10]})")
    numeric = [
        c for c in slides.columns if c != id_col and pd.api.types.is_numeric_dtype(slides[c])
    ]
    numeric = [c for c in numeric if not pd.api.types.is_bool_dtype(slides[c])]
    rows: list[dict[str, Any]] = []
    for pid, g in slides.groupby(id_col, sort=True):
        row: dict[str, Any] = {id_col: pid, "n_slides": len(g)}
        area = g.get("analysed_tissue_area_mm2")
        tissue = g.get("tissue_area_mm2", area)
        cells = g.get("n_cells")
        for col in numeric:
            rule = _rule(col)
            v = g[col]
            if rule == "sum":
                row[col] = float(v.sum(min_count=1)) if v.notna().any() else np.nan
            elif rule == "max":
                row[col] = float(v.max()) if v.notna().any() else np.nan
            elif rule == "area" and tissue is not None:
                row[col] = _weighted(v, tissue)
            elif rule == "cells" and cells is not None:
                row[col] = _weighted(v, cells)
            elif rule == "pooled":
                continue  # below, from the pooled counts
            else:
                row[col] = float(v.mean()) if v.notna().any() else np.nan
        _pooled(row, g, area)
        rows.append(row)
    out = pd.DataFrame(rows)
    for c in ("n_cells", "n_graded", "n_positive", "n_slides"):
        if c in out and out[c].notna().all():
            out[c] = out[c].astype(np.int64)
    return out


def _pooled(row: dict[str, Any], g: pd.DataFrame, area: pd.Series | None) -> None:
    cols = set(g.columns)
    a = float(area.sum()) if area is not None else float("nan")
    w_cells = g["n_cells"] if "n_cells" in cols else pd.Series(1.0, index=g.index)
    if "cell_density_per_mm2" in cols:
        if "n_cells" in cols and a > 0:
            row["cell_density_per_mm2"] = float(g["n_cells"].sum()) / a
        else:  # no areas: the slides' densities weighted by their cells
            row["cell_density_per_mm2"] = _weighted(g["cell_density_per_mm2"], w_cells)
    for k in ("vessel_density_per_mm2", "microvessel_density_per_mm2"):
        if area is not None and k in cols and "n_vessels" in cols and g[k].notna().any() and a > 0:
            has = g[k].notna()  # slides with that kind of vessel analysis
            row[k] = float(g.loc[has, "n_vessels"].sum()) / float(area[has].sum())
        elif k in cols:
            row[k] = _weighted(g[k], area) if area is not None else float(g[k].mean())
    grades = ("n_negative", "n_1plus", "n_2plus", "n_3plus")
    if set(grades) <= cols and g[list(grades)].notna().all().all():
        counts = g[list(grades)].sum().to_numpy().astype(np.int64)
        classes = np.repeat(np.arange(4), counts)
        graded = "h_score" in cols and g["h_score"].notna().any()
        s = ihc_scores(classes, graded=bool(graded))
        for k in POOLED:
            if k in s and k in cols:
                row[k] = np.nan if s[k] is None else float(s[k])
        if "positive_cells_per_mm2" in cols:
            row["positive_cells_per_mm2"] = (
                s["n_positive"] / a if a > 0 and s["positive_percent"] is not None else np.nan
            )
    else:  # no counts to pool: cell-weighted means of what is there
        for k in POOLED:
            if k in cols and k not in row:
                row[k] = _weighted(g[k], w_cells)


def join_clinical(
    patients: pd.DataFrame, clinical: pd.DataFrame, id_col: str = "patient_id"
) -> pd.DataFrame:
    """Patients (biomarkers) joined with their clinical data, one row per patient with both.

    Patients without clinical data, or clinical rows without slides, are dropped with a
    warning naming them.

    Parameters
    ----------
    patients : pandas.DataFrame
        One row per patient (e.g. from :func:`aggregate_patients`).
    clinical : pandas.DataFrame
        One row per patient: follow-up, events, covariates.
    id_col : str, default "patient_id"
        The patient id column of both tables; ids are compared as strings.

    Returns
    -------
    pandas.DataFrame
        Inner join on `id_col` (converted to str); clinical columns whose name is also a
        patient column get the suffix ``_clinical``.

    Raises
    ------
    ValueError
        If either table lacks `id_col` (listing the columns it has), or the clinical
        table repeats a patient.

    Warns
    -----
    UserWarning
        Naming the patients left out on either side.
    """
    for name, df in (("patient", patients), ("clinical", clinical)):
        if id_col not in df.columns:
            raise ValueError(
                f"the {name} table has no {id_col!r} column; it has {list(df.columns)}. "
                f"Name the patient id column {id_col!r} (or pass its name)."
            )
    left = patients.copy()
    right = clinical.copy()
    left[id_col] = left[id_col].astype(str)
    right[id_col] = right[id_col].astype(str)
    # after the conversion: ids 1 and "1" are one patient, and would give two rows
    dup = right[id_col][right[id_col].duplicated()].unique().tolist()
    if dup:
        raise ValueError(
            f"the clinical table lists {len(dup)} patients more than once: {dup[:10]}; "
            "keep one row per patient"
        )
    no_clinical = sorted(set(left[id_col]) - set(right[id_col]))
    no_slides = sorted(set(right[id_col]) - set(left[id_col]))
    if no_clinical:
        warnings.warn(
            f"{len(no_clinical)} patients have slides but no clinical data and are left "
            f"out: {no_clinical[:10]}",
            stacklevel=2,
        )
    if no_slides:
        warnings.warn(
            f"{len(no_slides)} patients in the clinical table have no slide and are left "
            f"out: {no_slides[:10]}",
            stacklevel=2,
        )
    return left.merge(right, on=id_col, how="inner", suffixes=("", "_clinical"))
