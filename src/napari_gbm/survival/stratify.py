"""Patient stratification: the ``napari-gbm stratify`` job.

From a table with one row per patient (or the slide table of a cohort run, aggregated by
:func:`napari_gbm.survival.patients.aggregate_patients`), optionally joined with a clinical CSV:
fit a Cox model (or an MLP Cox model) on chosen covariates, score each patient's risk,
split patients into risk groups (by the model's risk, or by one biomarker with
``group_by``) at a chosen cut-off, and compare the groups.

Input values (one reading for ``napari-gbm stratify``, the cohort manifest and the Cohort
dock):

- the event column: :func:`event_indicator`: 1/0 (also 1.0/0.0 and booleans), yes/no,
  y/n, true/false, dead/alive, deceased/living, died/censored in any case with spaces
  around; an empty cell is missing; anything else is refused, naming the column, the
  file and the first such values;
- the time column (and ``group_by``): numbers (:func:`numeric_values`); text such as
  ``'12 months'`` is refused the same way;
- covariates: numbers and booleans as they are; a text column whose values are all
  numbers, or all yes/no words, as numbers (0/1); any other text column (IDH
  ``Mutant``/``WT``, sex ``M``/``F``) is categorical: one 0/1 column per level except the
  reference level, the most frequent one (ties: the first alphabetically), named
  ``idh=Mutant (vs WT)``; at most :data:`MAX_LEVELS` levels. A column mixing numbers and
  text is refused, naming the text values.

Missing values (empty cells) stop the run, or leave those patients out with ``dropna``.

Outputs in ``out`` (each written atomically; ``metrics.json`` last, so its presence marks
a complete run; the CSVs through :func:`napari_gbm.io.write_csv`, so an id such as
``=HYPERLINK(...)`` is written ``'=HYPERLINK(...)`` and a spreadsheet does not run it):

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
  risk groups, the cut-off (and its corrected p for the optimal cut), parameters,
  ``categorical`` (per categorical covariate: ``reference``, ``levels``, ``columns``:
  the saved model's inputs);
- ``km.png``, ``forest.png``, ``model/`` (weights + JSON metadata), ``report.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_COVARIATES",
    "EVENT_WORDS",
    "MAX_LEVELS",
    "event_indicator",
    "load_table",
    "numeric_values",
    "run_stratify",
]

#: covariates used when none are named: the slide biomarkers GBM studies report
DEFAULT_COVARIATES = (
    "positive_percent",
    "cell_density_per_mm2",
    "necrosis_fraction",
    "nucleus_area_um2_cv",
)
CUTOFFS = ("median", "tertiles", "quartiles", "optimal", "manual")
#: event indicators as people write them (compared in lower case, spaces stripped)
EVENT_WORDS: dict[str, float] = {
    "1": 1.0, "yes": 1.0, "y": 1.0, "true": 1.0, "dead": 1.0, "deceased": 1.0, "died": 1.0,
    "0": 0.0, "no": 0.0, "n": 0.0, "false": 0.0, "alive": 0.0, "living": 0.0, "censored": 0.0,
}  # fmt: skip
#: most levels a categorical covariate may have (more: an id, or numbers written as text)
MAX_LEVELS = 10


def load_table(path: str | Path) -> pd.DataFrame:
    """A CSV, TSV or Parquet table, or a cohort output folder (its ``patients.parquet``).

    The separator of a text table is found from its first lines (``,``, tab, ``;``, ``|``
    or space: :func:`_separator`); a ``;`` file is read with decimal commas, as European
    Excel writes it. The table's ``attrs["source"]`` is the file read, which
    :func:`run_stratify` names in its messages about a column.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        Naming the file, for one that is not a table: empty, binary (a spreadsheet, an
        image), not UTF-8, an unreadable Parquet file, a header without rows.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("patients.parquet", "slides.parquet"):
            if (path / name).is_file():
                return _read_table(path / name)
        raise ValueError(
            f"{path} is a folder without patients.parquet or slides.parquet; "
            "pass a table or the output folder of `napari-gbm cohort`"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return _read_table(path)


def _separator(head: bytes) -> str:
    """The separator of a delimited text table from its first lines: the first of
    ``, tab ; | space`` that splits every line (quotes respected) into the same number
    (> 1) of fields; ``,`` when none does (one column). A European Excel CSV uses ';', R's
    ``write.table`` a space; a header such as ``Event (1=dead, 0=alive)`` in a ';' file
    does not fool it, as it would a sniffer of the header alone."""
    import csv

    lines = head.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()
    if len(head) == 1 << 16:
        lines = lines[:-1]  # maybe cut in the middle
    lines = [ln for ln in lines if ln.strip()][:50]
    for sep in (",", "\t", ";", "|", " "):
        widths = {len(row) for row in csv.reader(lines, delimiter=sep)}
        if len(widths) == 1 and widths.pop() > 1:
            return sep
    return ","


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv", ".tsv", ".txt"):
        raise ValueError(f"{path.name}: give a .csv, .tsv or .parquet table")
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if not head.strip():
        raise ValueError(f"{path} is empty: a table needs a header row and one row per patient")
    if suffix == ".parquet":
        import pyarrow as pa

        try:
            df = pd.read_parquet(path)
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(f"{path} is not a readable Parquet file: {exc}") from None
    else:
        if b"\x00" in head:
            raise ValueError(
                f"{path} is not a text table: it holds binary data (a spreadsheet, an image "
                "or a Parquet file named .csv?); save it as CSV (UTF-8) or Parquet"
            )
        sep = "\t" if suffix == ".tsv" else _separator(head)
        try:
            # a ';' file is a European Excel CSV: decimal commas
            df = pd.read_csv(path, sep=sep, decimal="," if sep == ";" else ".")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{path} is not UTF-8 text (it has the byte {exc.object[exc.start]:#04x}): "
                "save the table as CSV UTF-8 (Excel: Save As, 'CSV UTF-8')"
            ) from None
        except pd.errors.EmptyDataError:
            raise ValueError(
                f"{path} is empty: a table needs a header row and one row per patient"
            ) from None
        except pd.errors.ParserError as exc:
            raise ValueError(f"{path} is not a readable CSV table: {exc}") from None
        if sep == ";":  # columns written with '.' decimals: numbers as in any CSV
            for c in df.columns:
                if not pd.api.types.is_numeric_dtype(df[c].dtype):
                    numbers = pd.to_numeric(df[c], errors="coerce")
                    if numbers.notna().sum() == df[c].notna().sum():
                        df[c] = numbers
    if df.empty:
        raise ValueError(
            f"{path} has no rows under its header {[str(c) for c in df.columns][:8]}: "
            "a table needs one row per patient (or slide)"
        )
    df.attrs["source"] = str(path)
    return df


def _where(column: str | None, source: str | None, what: str) -> str:
    """ "the event column 'os_event' of clinical.csv" (as much as is known)."""
    text = f"the {what} column" + (f" {column!r}" if column is not None else "")
    return text + (f" of {source}" if source else "")


def _examples(values: list[Any], n_rows: int) -> str:
    return f"{values[:5]!r} ({n_rows} row{'s' if n_rows != 1 else ''})"


def _as_event(value: Any) -> float | None:
    """1.0, 0.0, NaN (an empty cell) or None (not an event indicator)."""
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value) if value in (0, 1) else None
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return float("nan")
        if text in EVENT_WORDS:
            return EVENT_WORDS[text]
        try:
            number = float(text)
        except ValueError:
            return None
        return number if number in (0.0, 1.0) else None
    return None


def _as_number(value: Any) -> float | None:
    """The number, NaN (an empty cell) or None (text that is not a number)."""
    if isinstance(value, bool | np.bool_ | int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return float("nan")
        try:
            return float(text)
        except ValueError:
            return None
    return None


def _parse(values: pd.Series, parse: Any) -> tuple[np.ndarray, list[Any], int]:
    """``parse`` on each distinct value: float64 values (NaN where missing), the values
    ``parse`` refused (first seen first) and how many rows hold them."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    parsed = [parse(v) for v in uniques]
    bad = [j for j, v in enumerate(parsed) if v is None]
    table = np.array([np.nan if v is None else v for v in parsed] + [np.nan], np.float64)
    out = table[codes]  # code -1 (missing) picks the NaN at the end
    n_bad = int(np.isin(codes, bad).sum()) if bad else 0
    shown = [uniques[j] for j in bad]
    return out, [v.item() if isinstance(v, np.generic) else v for v in shown], n_bad


def event_indicator(
    values: Any, *, column: str | None = None, source: str | None = None
) -> np.ndarray:
    """Event indicators as float64: 1.0 = event (death) observed, 0.0 = censored, NaN =
    missing (an empty cell).

    Reads 1/0, 1.0/0.0, booleans, and the words of :data:`EVENT_WORDS` (yes/no, y/n,
    true/false, dead/alive, deceased/living, died/censored) in any case, with spaces
    around. The one reading of an event column: ``napari-gbm stratify``, the cohort
    manifest (through :func:`run_stratify`) and the Cohort dock.

    Raises
    ------
    ValueError
        For any other value (``'maybe'``, ``2``), naming ``column``, ``source`` (the file)
        and the first such values.
    """
    s = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    out, bad, n_bad = _parse(s, _as_event)
    if bad:
        raise ValueError(
            f"{_where(column, source, 'event')} has values that are not an event indicator: "
            f"{_examples(bad, n_bad)}; write 1/0, yes/no, true/false, dead/alive or "
            "deceased/living (1, yes, dead: death observed; 0, no, alive: censored), or "
            "leave the cell empty when unknown"
        )
    return out


def numeric_values(
    values: Any, *, column: str | None = None, source: str | None = None, what: str = "time"
) -> np.ndarray:
    """A column of numbers as float64 (NaN where missing), from numbers or from text that
    is a number (``' 12.5 '``).

    Raises
    ------
    ValueError
        For text that is not a number (``'twelve'``, ``'12 months'``), naming ``column``,
        ``source`` (the file) and the first such values.
    """
    s = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    out, bad, n_bad = _parse(s, _as_number)
    if bad:
        raise ValueError(
            f"{_where(column, source, what)} must hold numbers; it has text "
            f"{_examples(bad, n_bad)}: write the number alone (12, not '12 months'; one unit "
            "for every patient), or leave the cell empty when unknown"
        )
    return out


def _covariate_values(values: pd.Series, column: str, source: str | None) -> pd.Series:
    """A covariate as float64 (numbers; booleans, yes/no words and text that is all numbers
    as numbers) or as text categories (spaces stripped, empty cells missing)."""
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(values.to_numpy(dtype=np.float64, na_value=np.nan), index=values.index)
    numbers, not_numbers, n_text = _parse(values, _as_number)
    if not not_numbers:
        return pd.Series(numbers, index=values.index)
    events, not_events, _ = _parse(values, _as_event)
    if not not_events:  # yes/no, true/false: present vs absent, as a 0/1 column
        return pd.Series(events, index=values.index)
    if np.isfinite(numbers).any():
        raise ValueError(
            f"{_where(column, source, 'covariate')} mixes numbers and text "
            f"{_examples(not_numbers, n_text)}: write numbers only (or leave the cell empty "
            "when unknown), or categories only (e.g. Mutant / WT)"
        )
    text = values.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
    return text.where(text.notna() & (text.astype(str) != ""), None).astype(object)


def _encode_covariates(
    df: pd.DataFrame, covariates: list[str], sources: dict[str, str]
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """The model's covariate matrix: numeric covariates as they are, each categorical one
    as a 0/1 column per level but the reference (the most frequent level; ties: the first
    alphabetically), named ``"<column>=<level> (vs <reference>)"``."""
    cols: dict[str, pd.Series] = {}
    categorical: dict[str, dict[str, Any]] = {}
    for c in covariates:
        s = df[c]
        if s.dtype != object:
            cols[c] = s.astype(np.float64)
            continue
        text = s.astype(str)
        counts = text.value_counts()
        levels = sorted(counts.index)
        where = _where(c, sources.get(c), "covariate")
        if len(levels) < 2:
            raise ValueError(
                f"{where} has the one value {levels!r} for every patient: it carries no "
                "information; remove it"
            )
        if len(levels) > MAX_LEVELS:
            raise ValueError(
                f"{where} has {len(levels)} different text values (e.g. {levels[:5]!r}), "
                f"more than the {MAX_LEVELS} levels a categorical covariate may have: is it "
                "an id, or numbers written as text?"
            )
        ref = min(levels, key=lambda lv: (-int(counts[lv]), lv))
        names = []
        for lv in levels:
            if lv != ref:
                names.append(f"{c}={lv} (vs {ref})")
                cols[names[-1]] = (text == lv).astype(np.float64)
        categorical[c] = {"reference": ref, "levels": levels, "columns": names}
    return pd.DataFrame(cols, index=df.index), categorical


def _column_sources(
    table: pd.DataFrame,
    clinical: pd.DataFrame | None,
    id_col: str,
    table_name: str | None,
    clinical_name: str | None,
) -> dict[str, str]:
    """Column -> the file it comes from, for messages (after join_clinical's renaming)."""
    name = table_name or table.attrs.get("source") or "the table"
    out = {str(c): str(name) for c in table.columns}
    if clinical is not None:
        cname = str(clinical_name or clinical.attrs.get("source") or "the clinical table")
        for c in map(str, clinical.columns):
            if c != id_col:
                out[f"{c}_clinical" if c in out else c] = cname
    return out


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
    table_name: str | None = None,
    clinical_name: str | None = None,
) -> dict[str, Any]:
    """Stratify patients; writes the outputs listed in the module docstring, returns the
    metrics. Raises ValueError with a message naming the problem for bad input.

    ``table_name`` and ``clinical_name`` name the tables' files in messages about a column
    (default: their ``attrs["source"]``, set by :func:`load_table`)."""
    from napari_gbm import __version__
    from napari_gbm.io import write_csv, write_json
    from napari_gbm.survival import (
        CoxModel,
        concordance_index,
        forest_plot,
        km_plot,
        logrank_test,
        risk_groups,
    )
    from napari_gbm.survival.patients import aggregate_patients, join_clinical

    if model not in ("cox", "mlp"):
        raise ValueError(f"model must be 'cox' or 'mlp', got {model!r}")
    if cutoff not in CUTOFFS:
        raise ValueError(f"cutoff must be one of {CUTOFFS}, got {cutoff!r}")
    notes: list[str] = []
    sources = _column_sources(table, clinical, id_col, table_name, clinical_name)
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
                "(napari_gbm.survival.patients rules)"
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

    def src(col: str) -> str | None:
        return sources.get(col)

    # every column as the model reads it: numbers, 0/1 events, text categories; a value
    # that cannot be read stops here, naming its column and file
    df[time_col] = numeric_values(df[time_col], column=time_col, source=src(time_col))
    df[event_col] = event_indicator(df[event_col], column=event_col, source=src(event_col))
    if group_by is not None and group_by not in (time_col, event_col):
        df[group_by] = numeric_values(
            df[group_by], column=group_by, source=src(group_by), what="group-by"
        )
    for c in covariates:
        if c not in (time_col, event_col, group_by):
            df[c] = _covariate_values(df[c], c, src(c))
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
    time = np.array(df[time_col], dtype=np.float64)  # writable copies (pandas 3 views are not)
    ev = np.array(df[event_col], dtype=np.float64)
    X, categorical = _encode_covariates(df, covariates, sources)
    for c, enc in categorical.items():
        others = ", ".join(repr(v) for v in enc["levels"] if v != enc["reference"])
        notes.append(
            f"categorical covariate {c!r}: hazard ratios of {others} against the reference "
            f"level {enc['reference']!r} (the most frequent)"
        )
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
    reference = {n: e["reference"] for e in categorical.values() for n in e["columns"]}
    summary["reference"] = [reference.get(c, "") for c in summary.covariate]
    write_csv(summary, out / "cox_summary.csv")
    risk_df = pd.DataFrame(
        {
            id_col: df[id_col].to_numpy(),
            "risk_score": risk,
            "risk_group": groups.label_names,
            "risk_group_label": groups.labels,
        }
    )
    write_csv(risk_df, out / "risk.csv")  # an id "=HYPERLINK(..)" is written "'=HYPERLINK(..)"
    by = group_by or f"{model} risk score"
    km_plot(
        time, ev, groups.labels, out / "km.png",
        title=f"Kaplan-Meier by {by} ({cutoff} cut-off)",
        group_names=list(groups.names), time_label=time_col,
    )  # fmt: skip
    shown = reported_hazard_ratios(summary)
    forest_plot(
        shown.assign(  # a category's name says its reference already: "idh=Mutant (vs WT)"
            covariate=[
                c if c in reference else f"{c} ({u})"
                for c, u in zip(shown.covariate, shown.per, strict=True)
            ]
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
        "categorical": categorical,
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
    absent) and for a level of a categorical covariate (against the ``reference`` level).
    Columns ``covariate, hazard_ratio, ci_lower, ci_upper, p, per`` (``per`` says which:
    "SD 8.67", "yes vs no" or "vs WT")."""
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
