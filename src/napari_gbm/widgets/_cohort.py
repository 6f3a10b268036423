"""Cohort & stratification dock widget: load a cohort table (and a clinical CSV), or the
output folder of ``napari-gbm cohort``; choose the survival columns, covariates, the
biomarker to group by and the cut-off; run :func:`napari_gbm.survival.stratify.run_stratify` in a
thread worker; see the Kaplan-Meier curves, the C-index, the log-rank p and the Cox hazard
ratios in the dock, and the risk group of the patient of the slide open in the viewer.

Everything shown is read back from what ``run_stratify`` wrote (``metrics.json``,
``risk.csv``, ``cox_summary.csv``), so the dock and the files always agree: the reading,
the texts shown (:mod:`napari_gbm.survival.results`) and the checks of the inputs
(:mod:`napari_gbm.survival.inputs`) have no Qt; this module holds the controls and the
layer side (:func:`slide_ids_of_layer`).
"""

from __future__ import annotations

import tempfile
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

from napari_gbm.survival.inputs import column_choices, read_table, stratify_kwargs, unused_folder
from napari_gbm.survival.results import (
    CohortResults,
    hazard_ratio_rows,
    km_labels,
    patient_of_slide,
    read_results,
    risk_text,
    slide_patients,
    summary_text,
)
from napari_gbm.survival.stratify_params import CUTOFFS, DEFAULT_COVARIATES
from napari_gbm.widgets._dock import ScrollingDock

if TYPE_CHECKING:
    import napari

__all__ = ["CohortWidget", "slide_ids_of_layer"]

MODEL_RISK = "model risk"
SOURCES = ("table file", "cohort output folder")
TABLE_FILTER = "*.csv *.tsv *.txt *.parquet"


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
        self._columns: list[str] = []  # of the loaded tables

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
            table = read_table(path, "cohort table")
            clinical = None
            if self._clinical_path.value is not None and str(self._clinical_path.value).strip():
                clinical = read_table(Path(str(self._clinical_path.value)), "clinical table")
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
        self._out.value = unused_folder((path if folder else path.parent) / "stratify")
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
        self._slide_patients = slide_patients(self._slide_source, str(self._id_col.value))
        self._update_slide_risk()

    def _clear_results(self) -> None:
        self._results = None
        self._draw_placeholder()
        self._summary.setPlainText("")
        self._hr_table.setRowCount(0)

    def _fill_columns(self) -> None:
        assert self._table is not None
        choices = column_choices(self._table, self._clinical)
        self._columns = choices.columns
        for widget, value in (
            (self._id_col, choices.id_col),
            (self._time_col, choices.time_col),
            (self._event_col, choices.event_col),
        ):
            widget.choices = choices.columns
            widget.value = value
        self._group_by.choices = [MODEL_RISK, *choices.group_by]
        self._group_by.value = MODEL_RISK
        self._covariates.choices = choices.covariates
        self._covariates.value = choices.default_covariates

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
        return stratify_kwargs(
            self._columns,
            id_col=str(self._id_col.value),
            time_col=self._time_col.value,
            event_col=self._event_col.value,
            covariates=self._covariates.value,
            group_by=None if self._group_by.value == MODEL_RISK else str(self._group_by.value),
            cutoff=str(self._cutoff.value),
            cuts=str(self._cuts.value),
            model=str(self._model.value),
            ties=str(self._ties.value),
            l2=float(self._l2.value),
            cv_folds=int(self._cv_folds.value),
            dropna=bool(self._dropna.value),
        )

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
        title, time_label = km_labels(res.metrics)
        draw_km(
            fig,
            res.patients["time"].to_numpy(dtype=np.float64),
            res.patients["event"].to_numpy(dtype=np.int64),
            res.patients["risk_group_label"].to_numpy(dtype=np.intp),
            [curve.name for curve in res.curves],
            title=title,
            time_label=time_label,
        )
        self._canvas.draw_idle()

    def _fill_hr_table(self, summary: pd.DataFrame) -> None:
        from qtpy.QtWidgets import QTableWidgetItem

        rows = hazard_ratio_rows(summary)
        self._hr_table.setRowCount(len(rows))
        for i, cells in enumerate(rows):
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
        return risk_text(self._results, sid, pid)

    # -- messages ----------------------------------------------------------------------------
    def _error(self, message: str) -> bool:
        from napari.utils.notifications import show_error

        self._status.value = message
        show_error(message)
        return False

    def _warn(self, message: str) -> None:
        from napari.utils.notifications import show_warning

        show_warning(message)
