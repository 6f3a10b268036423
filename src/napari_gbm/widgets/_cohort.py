"""Cohort & stratification dock widget: load a cohort table (and a clinical CSV), or the
output folder of ``napari-gbm cohort``; choose the survival columns, covariates, the
biomarker to group by and the cut-off; run :func:`napari_gbm.survival.stratify.run_stratify` in a
thread worker; see the Kaplan-Meier curves, the C-index, the log-rank p and the Cox hazard
ratios in the dock, and the risk group of the patient of the slide open in the viewer.

Everything shown is read back from what ``run_stratify`` wrote (``metrics.json``,
``risk.csv``, ``cox_summary.csv``), so the dock and the files always agree. The functions
above the widget class (:func:`read_results`, :func:`slide_ids_of_layer`, ...) do not touch
Qt.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    RadioButtons,
    Select,
    SpinBox,
)

from napari_gbm.survival.plots import format_p
from napari_gbm.survival.stratify import (
    CUTOFFS,
    DEFAULT_COVARIATES,
    MAX_LEVELS,
    event_indicator,
    load_table,
)
from napari_gbm.widgets._dock import ScrollingDock

if TYPE_CHECKING:
    import napari

__all__ = ["CohortResults", "CohortWidget", "KMCurve", "read_results", "slide_ids_of_layer"]

MODEL_RISK = "model risk"
SOURCES = ("table file", "cohort output folder")
TABLE_FILTER = "*.csv *.tsv *.txt *.parquet"
_TIME_UNITS = ("months", "days", "weeks", "years")


# -- results (no Qt) ----------------------------------------------------------------------
@dataclass(frozen=True)
class KMCurve:
    """One risk group's Kaplan-Meier estimate (:func:`napari_gbm.survival.kaplan_meier`)."""

    name: str
    n: int
    n_events: int
    table: pd.DataFrame


@dataclass(frozen=True)
class CohortResults:
    """A finished stratification as shown in the dock.

    ``metrics`` is ``metrics.json``; ``hazard_ratios`` is ``cox_summary.csv``; ``patients``
    is ``risk.csv`` with the patient's follow-up ``time`` and ``event`` (0/1) added;
    ``curves`` holds one Kaplan-Meier estimate per risk group (lowest group first).
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


def _float(values: pd.Series) -> np.ndarray:
    """float64 values, NaN where missing or not a number."""
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


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
            "time": _float(base[time_col]),
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
    """Read a finished :func:`~napari_gbm.survival.stratify.run_stratify` output folder and compute
    the Kaplan-Meier curve of each risk group.

    ``table`` (and ``clinical``) are the inputs of the run: they supply each patient's
    follow-up time and event, which ``risk.csv`` does not hold.

    Raises
    ------
    ValueError
        If ``out`` holds no complete run (no ``metrics.json``), or ``risk.csv`` names
        patients the tables do not have.
    """
    from napari_gbm.io import read_csv
    from napari_gbm.survival import kaplan_meier

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


def slide_ids_of_layer(layer: Any) -> list[str]:
    """Candidate slide ids of a layer: ``metadata["napari_gbm"]["slide_id"]``, then the
    stem of ``metadata["slide_path"]`` (with and without every suffix: ``a.ome.tif``
    gives ``a.ome`` and ``a``)."""
    meta = getattr(layer, "metadata", None) or {}
    ids: list[str] = []
    inner = meta.get("napari_gbm")
    if isinstance(inner, dict) and inner.get("slide_id"):
        ids.append(str(inner["slide_id"]))
    if meta.get("slide_path"):
        name = Path(str(meta["slide_path"])).name
        ids += [Path(name).stem, name.split(".")[0]]
    return list(dict.fromkeys(i for i in ids if i))


def patient_of_slide(
    slide_ids: list[str], slide_patients: dict[str, str], patient_ids: set[str]
) -> tuple[str, str, str] | None:
    """(slide id, patient id, how) for the first candidate slide id found: in the slide
    table (``slide_patients``), as a patient id itself, or starting with a patient id and
    a separator (TCGA-style barcodes: ``TCGA-02-0001-01Z-00-DX1`` -> ``TCGA-02-0001``)."""
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


def _pick(columns: list[str], exact: str, pattern: str, exclude: str = "$^") -> str | None:
    if exact in columns:
        return exact
    for c in columns:
        low = c.lower()
        if re.search(pattern, low) and not re.search(exclude, low):
            return c
    return None


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


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def summary_text(metrics: dict[str, Any]) -> str:
    """The dock's text summary of ``metrics.json``."""
    rg = metrics["risk_groups"]
    cuts = ", ".join(f"{c:.4g}" for c in rg["cuts"])
    groups = ", ".join(f"{n} n={c}" for n, c in zip(rg["names"], rg["counts"], strict=True))
    lines = [
        f"patients: {metrics['n']}, events: {metrics['n_events']}",
        f"C-index (in-sample, Harrell): {_fmt(metrics['c_index'], '.3f')}",
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


def _compute(
    table: pd.DataFrame,
    clinical: pd.DataFrame | None,
    out: Path,
    params: dict[str, Any],
) -> CohortResults:
    from napari_gbm.survival.stratify import run_stratify

    run_stratify(table, out, clinical=clinical, **params)
    return read_results(out, table, clinical, id_col=params["id_col"])


# -- the widget ---------------------------------------------------------------------------
class CohortWidget(ScrollingDock):
    """Cohort & stratification dock widget (see the module docstring)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = napari_viewer
        self._worker: Any = None
        self._table: pd.DataFrame | None = None
        self._clinical: pd.DataFrame | None = None
        self._slide_source: pd.DataFrame | None = None
        self._slide_patients: dict[str, str] = {}
        self._results: CohortResults | None = None

        self._source = RadioButtons(label="input", choices=list(SOURCES), orientation="horizontal")
        self._source.value = SOURCES[0]
        self._path = FileEdit(
            label="cohort table",
            mode=FileDialogMode.EXISTING_FILE,
            filter=TABLE_FILTER,
            nullable=True,
            tooltip="One row per patient, or per slide (slide_id, patient_id: slides are "
            "aggregated per patient); CSV, TSV or Parquet. Or the output folder of "
            "`napari-gbm cohort` (its patients.parquet and slides.parquet).",
        )
        self._clinical_path = FileEdit(
            label="clinical table (optional)",
            mode=FileDialogMode.EXISTING_FILE,
            filter=TABLE_FILTER,
            nullable=True,
            tooltip="One row per patient: patient id, follow-up time, event (1 = death "
            "observed), other clinical covariates; joined on the patient id.",
        )
        self._load_btn = PushButton(text="Load")
        self._id_col = ComboBox(label="patient id column", choices=[])
        self._time_col = ComboBox(
            label="time column",
            choices=[],
            nullable=True,
            tooltip="Follow-up time (e.g. months from diagnosis to death or last contact).",
        )
        self._event_col = ComboBox(
            label="event column",
            choices=[],
            nullable=True,
            tooltip="1 / yes / true / dead / deceased = death observed, 0 / no / false / "
            "alive / living = censored (any case); an empty cell is missing.",
        )
        self._group_by = ComboBox(
            label="stratify by",
            choices=[MODEL_RISK],
            tooltip="A biomarker to split patients by, or the model's risk score.",
        )
        self._cutoff = ComboBox(
            label="cut-off",
            choices=list(CUTOFFS),
            value="median",
            tooltip="median: 2 groups; tertiles: 3; quartiles: 4; optimal: the maximally "
            "selected log-rank cut (its p is corrected); manual: the cuts below.",
        )
        self._cuts = LineEdit(
            label="manual cuts", value="", tooltip="Increasing cut values, e.g. '10, 25'."
        )
        self._covariates = Select(
            label="Cox covariates",
            choices=[],
            tooltip="Covariates of the Cox (or MLP) model: numbers, yes/no, or categories "
            "(e.g. IDH Mutant / WT: one hazard ratio per level against the most frequent). "
            "None selected: the default biomarkers " + ", ".join(DEFAULT_COVARIATES) + ".",
        )
        self._covariates.native.setMaximumHeight(120)
        self._model = ComboBox(
            label="model",
            choices=["cox", "mlp"],
            value="cox",
            tooltip="cox: linear Cox model; mlp: a small neural Cox model (minutes on CPU).",
        )
        self._ties = ComboBox(label="ties", choices=["efron", "breslow"], value="efron")
        self._l2 = FloatSpinBox(
            label="L2 penalty", value=0.0, min=0.0, max=1000.0, step=0.1,
            tooltip="Ridge penalty of the Cox model (0 = none).",
        )  # fmt: skip
        self._cv_folds = SpinBox(
            label="CV folds", value=5, min=0, max=20,
            tooltip="Patient-grouped cross-validated C-index (0 or 1: none).",
        )  # fmt: skip
        self._dropna = CheckBox(text="leave out patients with missing values", value=False)
        self._out = FileEdit(
            label="output folder",
            mode=FileDialogMode.EXISTING_DIRECTORY,
            nullable=True,
            tooltip="Where km.png, forest.png, risk.csv, cox_summary.csv, metrics.json and "
            "report.md go (default: stratify/ next to the table).",
        )
        self._run_btn = PushButton(text="Run stratification")
        self._progress = ProgressBar(label="", value=0, min=0, max=0, visible=False)
        self._status = Label(label="status", value="load a cohort table")
        self._slide_risk = Label(label="open slide", value="(no slide layer)")
        self.extend(
            [
                self._source, self._path, self._clinical_path, self._load_btn, self._id_col,
                self._time_col, self._event_col, self._group_by, self._cutoff, self._cuts,
                self._covariates, self._model, self._ties, self._l2, self._cv_folds,
                self._dropna, self._out, self._run_btn, self._progress, self._status,
                self._slide_risk,
            ]
        )  # fmt: skip
        self._status.native.setWordWrap(True)
        self._slide_risk.native.setWordWrap(True)
        self._build_results_pane()
        self._on_cutoff()

        self._source.changed.connect(self._on_source)
        self._cutoff.changed.connect(self._on_cutoff)
        self._load_btn.changed.connect(self.load)
        self._id_col.changed.connect(self._build_slide_map)
        self._run_btn.changed.connect(self.run)
        napari_viewer.layers.events.inserted.connect(self._update_slide_risk)
        napari_viewer.layers.events.removed.connect(self._update_slide_risk)
        napari_viewer.layers.selection.events.active.connect(self._update_slide_risk)
        self._update_slide_risk()
        self.fit_width()

    # -- layout ----------------------------------------------------------------------------
    def _build_results_pane(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure
        from qtpy.QtGui import QFontDatabase
        from qtpy.QtWidgets import QAbstractItemView, QPlainTextEdit, QTableWidget, QTabWidget

        self._figure = Figure(figsize=(5.0, 4.0), dpi=100, layout="constrained")
        self._canvas = FigureCanvasQTAgg(self._figure)
        self._canvas.setMinimumHeight(400)  # the curves and the number-at-risk table
        self._draw_placeholder()
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self._summary = QPlainTextEdit()
        self._summary.setReadOnly(True)
        self._summary.setFont(mono)
        self._hr_table = QTableWidget(0, 5)
        # per SD (per unit a density in cells/mm² reads "1 (1-1)"), yes/no per unit
        self._hr_table.setHorizontalHeaderLabels(["covariate", "HR", "95 % CI", "per", "p"])
        self._hr_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self._hr_table.verticalHeader()
        if header is not None:
            header.setVisible(False)
        self._tabs = QTabWidget()
        self._tabs.addTab(self._canvas, "Kaplan-Meier")
        self._tabs.addTab(self._summary, "Summary")
        self._tabs.addTab(self._hr_table, "Hazard ratios (Cox)")
        self.body.layout().addWidget(self._tabs)

    def _draw_placeholder(self) -> None:
        self._figure.clear()
        ax = self._figure.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "Kaplan-Meier curves appear here\nafter a run", ha="center",
                va="center", color="#777777", transform=ax.transAxes)  # fmt: skip
        ax.set_axis_off()
        self._canvas.draw_idle()

    def _on_source(self, *_: Any) -> None:
        folder = self._source.value == SOURCES[1]
        self._path.mode = (
            FileDialogMode.EXISTING_DIRECTORY if folder else FileDialogMode.EXISTING_FILE
        )
        self._path.label = "cohort folder" if folder else "cohort table"

    def _on_cutoff(self, *_: Any) -> None:
        self._cuts.visible = self._cutoff.value == "manual"

    # -- loading -----------------------------------------------------------------------------
    def load(self, *_: Any) -> bool:
        """Read the table (and clinical table) and fill the column choices; True if loaded.
        A cohort folder with a finished ``stratify/`` run shows that run."""
        path = self._path.value
        if path is None or not str(path).strip():
            return self._error("choose a cohort table (or a cohort output folder) first")
        path = Path(str(path))
        folder = self._source.value == SOURCES[1]
        if folder and not path.is_dir():
            return self._error(
                f"'{path}' is not a folder; choose the output folder of a cohort run"
            )
        if not folder and not path.is_file():
            return self._error(f"'{path}' is not a file; choose a CSV, TSV or Parquet table")
        try:
            table = _read(path, "cohort table")
            clinical = None
            if self._clinical_path.value is not None and str(self._clinical_path.value).strip():
                clinical = _read(Path(str(self._clinical_path.value)), "clinical table")
        except ValueError as exc:
            return self._error(str(exc))
        slide_source = table
        if folder and (path / "slides.parquet").is_file() and "slide_id" not in table.columns:
            try:
                slide_source = pd.read_parquet(path / "slides.parquet")
            except Exception as exc:  # a broken file: the table is still usable
                self._warn(f"could not read {path / 'slides.parquet'}: {exc}")
        self._table, self._clinical, self._slide_source = table, clinical, slide_source
        self._clear_results()
        self._fill_columns()
        id_col = str(self._id_col.value)
        self._build_slide_map()
        self._out.value = _unused_folder((path if folder else path.parent) / "stratify")
        n_pat = table[id_col].nunique() if id_col in table.columns else len(table)
        kind = "slide table" if self._slide_patients and len(table) > n_pat else "patient table"
        self._status.value = (
            f"loaded {path.name}: {len(table)} rows, {len(table.columns)} columns "
            f"({kind}, {n_pat} patients)"
            + ("" if clinical is None else f"; clinical: {len(clinical)} rows")
        )
        if folder and (path / "stratify" / "metrics.json").is_file():
            self._show_saved(path / "stratify")
        self._update_slide_risk()
        return True

    def _build_slide_map(self, *_: Any) -> None:
        """slide id -> patient id, from the slide table (or a cohort's slides.parquet)."""
        src, id_col = self._slide_source, str(self._id_col.value)
        self._slide_patients = {}
        if src is not None and {"slide_id", id_col} <= set(src.columns):
            pairs = src[["slide_id", id_col]].dropna().astype(str)
            self._slide_patients = dict(zip(pairs["slide_id"], pairs[id_col], strict=True))
        self._update_slide_risk()

    def _clear_results(self) -> None:
        self._results = None
        self._draw_placeholder()
        self._summary.setPlainText("")
        self._hr_table.setRowCount(0)

    def _columns(self) -> list[str]:
        cols = [str(c) for c in self._table.columns] if self._table is not None else []
        if self._clinical is not None:
            cols += [str(c) for c in self._clinical.columns if str(c) not in cols]
        return cols

    def _numeric_columns(self) -> list[str]:
        out: list[str] = []
        for df in (self._table, self._clinical):
            if df is None:
                continue
            for c in df.columns:
                dtype = df[c].dtype
                if (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)) and (
                    str(c) not in out
                ):
                    out.append(str(c))
        return out

    def _categorical_columns(self) -> list[str]:
        """Text columns with 2 to MAX_LEVELS values (IDH Mutant / WT, sex M / F): Cox
        covariates that run_stratify encodes as one 0/1 column per level."""
        out: list[str] = []
        for df in (self._table, self._clinical):
            if df is None:
                continue
            for c in df.columns:
                s = df[c]
                if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
                    continue
                try:
                    text = s.dropna().astype(str).str.strip()
                    n = text[text != ""].nunique()
                except TypeError:  # unhashable cells
                    continue
                if 2 <= n <= MAX_LEVELS and str(c) not in out:
                    out.append(str(c))
        return out

    def _fill_columns(self) -> None:
        cols = self._columns()
        numeric = self._numeric_columns()
        self._id_col.choices = cols
        self._id_col.value = _pick(cols, "patient_id", r"patient|case|subject") or cols[0]
        self._time_col.choices = cols
        self._time_col.value = _pick(
            cols, "time_months", r"(^|_)(time|months?|days|os|survival|follow)", r"censor"
        )
        self._event_col.choices = cols
        self._event_col.value = _pick(
            cols, "event", r"event|status|death|dead|vital", r"censor|time|month|day"
        )
        skip = {self._id_col.value, self._time_col.value, self._event_col.value, "slide_id"}
        candidates = [c for c in numeric if c not in skip]
        self._group_by.choices = [MODEL_RISK, *candidates]
        self._group_by.value = MODEL_RISK
        categories = [c for c in self._categorical_columns() if c not in skip]
        self._covariates.choices = [*candidates, *[c for c in categories if c not in candidates]]
        self._covariates.value = [c for c in DEFAULT_COVARIATES if c in candidates]

    def _show_saved(self, out: Path) -> None:
        """Show a finished run (a cohort folder's ``stratify/``) and set the controls to
        its parameters."""
        assert self._table is not None
        try:
            res = read_results(out, self._table, self._clinical, id_col=str(self._id_col.value))
        except (ValueError, KeyError, OSError) as exc:
            self._warn(f"the saved stratification in {out} could not be shown: {exc}")
            return
        m = res.metrics
        for widget, value in ((self._time_col, m["time"]), (self._event_col, m["event"])):
            if value in widget.choices:
                widget.value = value
        by = m["risk_groups"]["by"]
        self._group_by.value = by if by in self._group_by.choices else MODEL_RISK
        self._cutoff.value = m["risk_groups"]["method"]
        self._covariates.value = [c for c in m["covariates"] if c in self._covariates.choices]
        self._model.value = m["model"]
        self._ties.value = m["ties"]
        self._l2.value = float(m["l2"])
        self._show_results(res)
        self._status.value += f"\nshowing the saved run in {out}"

    # -- running -----------------------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        """The keyword arguments of run_stratify from the controls (ValueError if unusable)."""
        if self._table is None:
            raise ValueError("load a cohort table first")
        cols = set(self._columns())
        time_col, event_col = self._time_col.value, self._event_col.value
        if time_col is None or event_col is None:
            raise ValueError(
                "choose the time and event columns; the table has no survival columns "
                "recognised by name: load the clinical table with the follow-up time and "
                "event (1 = death) per patient"
            )
        for what, col in (("time", time_col), ("event", event_col)):
            if col not in cols:
                raise ValueError(f"the {what} column {col!r} is not in the loaded tables")
        if time_col == event_col:
            raise ValueError(f"the time and event columns are the same ({time_col!r})")
        covariates = [str(c) for c in self._covariates.value]
        clash = [c for c in covariates if c in (time_col, event_col, self._id_col.value)]
        if clash:
            raise ValueError(f"{clash} cannot be a covariate: it is the id, time or event")
        group_by = None if self._group_by.value == MODEL_RISK else str(self._group_by.value)
        cutoff = str(self._cutoff.value)
        cuts = None
        if cutoff == "manual":
            cuts = _parse_cuts(str(self._cuts.value))
        return {
            "time_col": str(time_col),
            "event_col": str(event_col),
            "covariates": covariates or None,
            "model": str(self._model.value),
            "ties": str(self._ties.value),
            "id_col": str(self._id_col.value),
            "cutoff": cutoff,
            "cuts": cuts,
            "group_by": group_by,
            "l2": float(self._l2.value),
            "cv_folds": int(self._cv_folds.value),
            "dropna": bool(self._dropna.value),
        }

    def run(self, *_: Any) -> Any:
        """Start the stratification in a worker; returns the worker (None on bad input)."""
        from napari.qt.threading import create_worker

        try:
            params = self._params()
        except ValueError as exc:
            self._error(str(exc))
            return None
        out = self._out.value
        if out is None or not str(out).strip():
            out = Path(tempfile.mkdtemp(prefix="napari-gbm-stratify-"))
            self._out.value = out
        assert self._table is not None
        worker = create_worker(
            _compute,
            self._table,
            self._clinical,
            Path(str(out)),
            params,
            # without "errored" here, errors re-raise into the Qt event loop as tracebacks
            _connect={
                "returned": self._on_returned,
                "errored": lambda exc: self._error(f"stratification failed: {exc}"),
                "finished": self._done,
            },
            _start_thread=False,
        )
        self._run_btn.enabled = False
        self._progress.visible = True
        self._status.value = f"running ({params['model']} model) ..."
        self._worker = worker
        worker.start()
        return worker

    def _on_returned(self, res: CohortResults) -> None:
        self._show_results(res)
        self._status.value = f"done: results in {res.out}"

    def _done(self) -> None:
        self._run_btn.enabled = True
        self._progress.visible = False
        self._worker = None

    # -- showing -----------------------------------------------------------------------------
    def _show_results(self, res: CohortResults) -> None:
        self._results = res
        self._draw_km(res)
        self._summary.setPlainText(summary_text(res.metrics))
        self._fill_hr_table(res.hazard_ratios)
        self._update_slide_risk()

    def _draw_km(self, res: CohortResults) -> None:
        """The report's KM drawing (:func:`napari_gbm.survival.plots.draw_km`, with its
        number-at-risk table) on the dock's figure."""
        from napari_gbm.survival.plots import draw_km

        fig = self._figure
        fig.clear()
        rg = res.metrics["risk_groups"]
        draw_km(
            fig,
            res.patients["time"].to_numpy(dtype=np.float64),
            res.patients["event"].to_numpy(dtype=np.int64),
            res.patients["risk_group_label"].to_numpy(dtype=np.intp),
            [curve.name for curve in res.curves],
            title=f"Kaplan-Meier by {_pretty(rg['by'])} ({rg['method']})",
            time_label=_time_label(str(res.metrics["time"])),
        )
        self._canvas.draw_idle()

    def _fill_hr_table(self, summary: pd.DataFrame) -> None:
        from qtpy.QtWidgets import QTableWidgetItem

        from napari_gbm.survival.stratify import reported_hazard_ratios

        self._hr_table.setRowCount(len(summary))
        for i, r in enumerate(reported_hazard_ratios(summary).itertuples(index=False)):
            cells = [
                str(r.covariate),
                f"{r.hazard_ratio:.3g}",
                f"{r.ci_lower:.3g}-{r.ci_upper:.3g}",
                str(r.per),
                format_p(float(r.p)),
            ]
            for j, text in enumerate(cells):
                self._hr_table.setItem(i, j, QTableWidgetItem(text))
        self._hr_table.resizeColumnsToContents()

    def _update_slide_risk(self, *_: Any) -> None:
        layers = list(self._viewer.layers)
        active = self._viewer.layers.selection.active
        if active in layers:  # the selected slide first
            layers.remove(active)
            layers.insert(0, active)
        seen: set[str] = set()
        lines: list[str] = []
        for layer in layers:
            ids = slide_ids_of_layer(layer)
            if not ids or ids[0] in seen:
                continue
            seen.add(ids[0])
            lines.append(self._risk_line(ids))
        self._slide_risk.value = "\n".join(lines[:4]) or "(no slide layer)"

    def _risk_line(self, ids: list[str]) -> str:
        if self._table is None:
            return f"slide {ids[0]}: load a cohort table to see its patient's risk group"
        id_col = str(self._id_col.value)
        patient_ids = set(self._table[id_col].astype(str)) if id_col in self._table else set()
        found = patient_of_slide(ids, self._slide_patients, patient_ids)
        if found is None:
            return f"slide {ids[0]}: not in the cohort table"
        sid, pid, _how = found
        if self._results is None:
            return f"slide {sid} -> patient {pid} (run the stratification to see its risk group)"
        risk = self._results.risk_of(pid)
        if risk is None:
            return f"slide {sid} -> patient {pid}: not stratified (no survival data or left out)"
        group, score = risk
        rg = self._results.metrics["risk_groups"]
        names = list(rg["names"])
        k = len(names)
        rank = names.index(group) if group in names else -1
        where = {0: f"lowest of {k}", k - 1: f"highest of {k}"}.get(
            rank, f"{rank + 1} of {k} from the lowest"
        )
        return (
            f"slide {sid} -> patient {pid}: risk group {group} ({where} by "
            f"{_pretty(rg['by'])}); {self._results.metrics['model']} risk score {score:.3g}"
        )

    # -- messages ----------------------------------------------------------------------------
    def _error(self, message: str) -> bool:
        from napari.utils.notifications import show_error

        self._status.value = message
        show_error(message)
        return False

    def _warn(self, message: str) -> None:
        from napari.utils.notifications import show_warning

        show_warning(message)


def _read(path: Path, what: str) -> pd.DataFrame:
    """A table via load_table, with every reading failure as a ValueError naming the file."""
    try:
        df = load_table(path)
    except ValueError as exc:  # load_table's messages name the file
        raise ValueError(f"could not read the {what}: {exc}") from None
    except Exception as exc:  # parser, encoding and Arrow errors of a damaged file
        raise ValueError(
            f"could not read the {what} {path.name} ({type(exc).__name__}: {exc}); "
            "give a CSV, TSV or Parquet table with a header row"
        ) from None
    if len(df) == 0 or len(df.columns) < 2:
        raise ValueError(
            f"the {what} {path.name} has {len(df)} rows and {len(df.columns)} column(s) "
            f"{[str(c) for c in df.columns][:5]}: is it a table with a header row and one "
            "row per patient or slide?"
        )
    return df


def _parse_cuts(text: str) -> list[float]:
    parts = [p for p in re.split(r"[,;\s]+", text.strip()) if p]
    try:
        cuts = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"manual cuts must be numbers separated by commas, got {text!r}") from None
    if not cuts:
        raise ValueError("the manual cut-off needs one or more cut values, e.g. '15' or '10, 25'")
    return cuts


def _unused_folder(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``, ... : the first that holds no stratification
    yet, so a run from the dock never overwrites one (such as the demo's)."""
    path, k = base, 1
    while (path / "metrics.json").exists() or (path.exists() and any(path.iterdir())):
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path
