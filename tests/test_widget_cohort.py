"""Cohort & stratification widget in a real viewer under Xvfb: a synthetic cohort is
loaded, stratified by the widget, and what the dock shows is checked against the files
run_stratify wrote and against a Kaplan-Meier estimate computed by hand here."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari", reason="napari is a runtime dependency")

from _gui import settle, wait_done  # noqa: E402


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 60-patient synthetic cohort as files: a slide table (Parquet), a clinical CSV,
    and a cohort output folder (patients.parquet, slides.parquet) with a finished
    stratify/ run."""
    from napari_gbm.survival.stratify import run_stratify
    from napari_gbm.synthetic.cohort import make_synthetic_cohort

    cohort = make_synthetic_cohort(60, seed=11)
    root = tmp_path_factory.mktemp("cohort_widget")
    cohort.slides.to_parquet(root / "slides.parquet")
    cohort.clinical.to_csv(root / "clinical.csv", index=False)
    folder = root / "cohort_run"
    folder.mkdir()
    patients = cohort.patient_table()
    patients.to_parquet(folder / "patients.parquet")
    cohort.slides.to_parquet(folder / "slides.parquet")
    run_stratify(
        patients, folder / "stratify", time_col="time_months", event_col="event",
        covariates=["positive_percent", "age"], cutoff="quartiles", cv_folds=0,
    )  # fmt: skip
    return {"root": root, "folder": folder, "cohort": cohort}


def _hand_km(time_: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Product-limit estimate at each distinct time, by its definition."""
    times = np.unique(time_)
    surv, s = [], 1.0
    for t in times:
        at_risk = int((time_ >= t).sum())
        deaths = int(((time_ == t) & (event == 1)).sum())
        s *= 1.0 - deaths / at_risk
        surv.append(s)
    return times, np.asarray(surv)


def _km_lines(widget: Any) -> dict[str, Any]:
    ax = widget._figure.axes[0]  # [1]: the number-at-risk table
    return {ln.get_gid()[3:]: ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("km:")}


def _slide_layer(viewer: Any, **metadata: Any) -> Any:
    return viewer.add_image(np.zeros((8, 8), np.uint8), name="slide", metadata=metadata)


def test_cohort_widget_runs_and_shows_results(
    make_napari_viewer: Any, qtbot: Any, cohort_files: dict[str, Any], tmp_path: Path
) -> None:
    from napari_gbm.widgets._cohort import CohortWidget

    root, cohort = cohort_files["root"], cohort_files["cohort"]
    viewer = make_napari_viewer(show=True)
    widget = CohortWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Cohort & stratification")
    _slide_layer(viewer, slide_path=str(tmp_path / "P0003-S0.tif"))
    assert "load a cohort table" in widget._slide_risk.value

    widget._path.value = root / "slides.parquet"
    widget._clinical_path.value = root / "clinical.csv"
    assert widget.load()
    # survival columns and the default biomarkers are recognised by name
    assert (widget._id_col.value, widget._time_col.value, widget._event_col.value) == (
        "patient_id", "time_months", "event",
    )  # fmt: skip
    assert widget._covariates.value == [
        "positive_percent", "cell_density_per_mm2", "necrosis_fraction", "nucleus_area_um2_cv",
    ]  # fmt: skip
    assert widget._slide_risk.value.startswith("slide P0003-S0 -> patient P0003 (run")
    assert widget._out.value == root / "stratify"

    out = tmp_path / "strat"
    widget._out.value = out
    widget._group_by.value = "positive_percent"
    widget._cutoff.value = "tertiles"
    widget._covariates.value = ["positive_percent", "age", "mgmt_methylated"]
    widget._cv_folds.value = 3
    assert widget.run() is not None
    wait_done(qtbot, widget, 180)
    assert widget._run_btn.enabled and not widget._progress.visible

    metrics = json.loads((out / "metrics.json").read_text())
    risk = pd.read_csv(out / "risk.csv")
    hr = pd.read_csv(out / "cox_summary.csv")
    assert metrics["risk_groups"]["names"] == ["T1", "T2", "T3"]

    # one curve per tertile, each the product-limit estimate of that group's patients
    lines = _km_lines(widget)
    assert sorted(lines) == ["T1", "T2", "T3"]
    # the tertiles by hand: the patients' Ki-67 index pooled over their slides' cells
    s = cohort.slides
    pos = (s.positive_percent * s.n_cells).groupby(s.patient_id).sum()
    ki67 = pos / s.groupby("patient_id").n_cells.sum()  # cell-weighted mean
    cuts = np.quantile(ki67.to_numpy(), [1 / 3, 2 / 3])
    np.testing.assert_allclose(metrics["risk_groups"]["cuts"], cuts, rtol=1e-9)
    clin = cohort.clinical.set_index("patient_id")
    for g, name in enumerate(["T1", "T2", "T3"]):
        ids = ki67.index[np.searchsorted(cuts, ki67.to_numpy(), side="left") == g]
        assert set(risk.patient_id[risk.risk_group == name]) == set(ids)
        t_ref, s_ref = _hand_km(
            clin.loc[ids, "time_months"].to_numpy(), clin.loc[ids, "event"].to_numpy().astype(int)
        )
        x, y = lines[name].get_xdata(), lines[name].get_ydata()
        np.testing.assert_allclose(x, np.r_[0.0, t_ref], rtol=1e-12)
        np.testing.assert_allclose(y, np.r_[1.0, s_ref], rtol=1e-12)
        assert f"n={len(ids)}," in lines[name].get_label()
        # the number-at-risk table under the curves: patients still followed at each tick
        tab = widget._figure.axes[1]
        ticks = [v for v in widget._figure.axes[0].get_xticks() if v >= 0]
        row = sorted(
            (tx for tx in tab.texts if tx.get_position()[1] == 2 - g),
            key=lambda tx: tx.get_position()[0],
        )
        follow = clin.loc[ids, "time_months"].to_numpy()
        assert [int(tx.get_text()) for tx in row] == [int((follow >= v).sum()) for v in ticks]

    # the numbers in the dock are those of metrics.json and cox_summary.csv
    text = widget._summary.toPlainText()
    c_in = re.search(r"C-index \(in-sample, Harrell\): ([\d.]+)", text)
    c_cv = re.search(r"C-index \(CV, 3 folds\): ([\d.]+) ± ([\d.]+)", text)
    p_lr = re.search(r"log-rank p = ([\d.e+-]+)", text)
    assert c_in and c_cv and p_lr, text
    assert float(c_in.group(1)) == pytest.approx(metrics["c_index"], abs=5e-4)
    assert float(c_cv.group(1)) == pytest.approx(metrics["cv_c_index_mean"], abs=5e-4)
    assert float(p_lr.group(1)) == pytest.approx(metrics["logrank_p"], rel=5e-3)
    assert f"patients: {metrics['n']}, events: {metrics['n_events']}" in text
    ax = widget._figure.axes[0]
    legend = ax.get_legend()
    assert legend is not None
    assert legend.get_title().get_text() == f"log-rank p = {p_lr.group(1)}"
    assert ax.get_xlabel() == "time (months)"
    table = widget._hr_table
    assert table.rowCount() == len(hr) == 3
    for i, row in enumerate(hr.itertuples()):
        cells = [table.item(i, j) for j in range(5)]
        texts = [c.text() if c is not None else None for c in cells]
        if row.binary:  # yes / no: per unit
            assert texts[:2] == [row.covariate, f"{row.hazard_ratio:.3g}"]
            assert texts[3] == "yes vs no"
        else:  # a measurement: per standard deviation
            assert texts[:2] == [row.covariate, f"{row.hazard_ratio_per_sd:.3g}"]
            assert texts[3] == f"SD {row.sd:.3g}"

    # the open slide's patient and its group, as in risk.csv
    p3 = risk.set_index("patient_id").loc["P0003"]
    where = {"T1": "lowest of 3", "T2": "2 of 3 from the lowest", "T3": "highest of 3"}
    assert widget._slide_risk.value == (
        f"slide P0003-S0 -> patient P0003: risk group {p3.risk_group} "
        f"({where[p3.risk_group]} by positive %); cox risk score {p3.risk_score:.3g}"
    )

    # rendered: the viewer with the dock, and the dock's Kaplan-Meier figure
    viewer.window._qt_window.resize(1400, 1000)
    settle(0.5)
    shot = np.asarray(viewer.screenshot(canvas_only=False, flash=False))[..., :3]
    assert shot.shape[0] > 600 and shot.astype(float).std() > 15
    from PIL import Image

    Image.fromarray(shot).save(tmp_path / "viewer_cohort.png")
    widget._figure.savefig(tmp_path / "km_dock.png", dpi=120)
    km_png = np.asarray(Image.open(tmp_path / "km_dock.png").convert("RGB")).astype(float)
    assert km_png.std() > 20
    reds = (km_png[..., 0] > 180) & (km_png[..., 1] < 90) & (km_png[..., 2] < 90)
    assert reds.sum() > 100  # the second group's curve is drawn


def test_cohort_folder_shows_its_saved_run(
    make_napari_viewer: Any, cohort_files: dict[str, Any]
) -> None:
    from napari_gbm.widgets._cohort import CohortWidget

    folder = cohort_files["folder"]
    viewer = make_napari_viewer(show=False)
    widget = CohortWidget(viewer)
    _slide_layer(viewer, napari_gbm={"slide_id": "P0005-S1"})
    widget._source.value = "cohort output folder"
    widget._path.value = folder
    assert widget.load()
    metrics = json.loads((folder / "stratify" / "metrics.json").read_text())
    # the controls show the saved run's settings, the dock its results
    assert widget._cutoff.value == "quartiles"
    assert sorted(widget._covariates.value) == ["age", "positive_percent"]
    assert sorted(_km_lines(widget)) == ["Q1", "Q2", "Q3", "Q4"]
    assert f"C-index (in-sample, Harrell): {metrics['c_index']:.3f}" in (
        widget._summary.toPlainText()
    )
    assert "C-index (CV): not run" in widget._summary.toPlainText()
    risk = pd.read_csv(folder / "stratify" / "risk.csv").set_index("patient_id")
    assert (
        f"slide P0005-S1 -> patient P0005: risk group {risk.loc['P0005', 'risk_group']} "
        in widget._slide_risk.value
    )
    # a new run from the dock goes next to the saved one, never over it
    assert widget._out.value == folder / "stratify-2"


def test_cohort_widget_bad_input_becomes_notifications(
    make_napari_viewer: Any, qtbot: Any, cohort_files: dict[str, Any], tmp_path: Path
) -> None:
    from napari.utils.notifications import notification_manager

    from napari_gbm.widgets._cohort import CohortWidget

    root, cohort = cohort_files["root"], cohort_files["cohort"]
    viewer = make_napari_viewer(show=False)
    widget = CohortWidget(viewer)
    before = len(notification_manager.records)

    def last() -> str:
        assert len(notification_manager.records) > before
        return str(notification_manager.records[-1].message)

    assert widget.run() is None
    assert "load a cohort table first" in last()
    # a binary file named .csv, and a text file that is no table
    (tmp_path / "garbage.csv").write_bytes(bytes(range(256)) * 20)
    widget._path.value = tmp_path / "garbage.csv"
    assert not widget.load()
    assert last().startswith("could not read the cohort table: ")
    assert "garbage.csv is not a text table" in last()
    (tmp_path / "words.csv").write_text("lorem ipsum dolor sit amet\n")
    widget._path.value = tmp_path / "words.csv"
    assert not widget.load()
    assert "words.csv has no rows under its header" in last()
    assert widget._status.value == last()
    (tmp_path / "one_column.csv").write_text("patient_id\nP1\nP2\n")
    widget._path.value = tmp_path / "one_column.csv"
    assert not widget.load()
    assert "one_column.csv has 2 rows and 1 column(s) ['patient_id']" in last()

    # the slide table alone has no survival columns: none is chosen, and Run says so
    widget._path.value = root / "slides.parquet"
    assert widget.load()
    assert widget._time_col.value is None and widget._event_col.value is None
    assert widget.run() is None
    assert "choose the time and event columns" in last()

    # bad survival data fails in the worker: a notification, no traceback, ready again
    clinical = cohort.clinical.copy()
    clinical.loc[4, "time_months"] = -2.0
    clinical.to_csv(tmp_path / "clinical_bad.csv", index=False)
    widget._clinical_path.value = tmp_path / "clinical_bad.csv"
    widget._out.value = tmp_path / "out"
    assert widget.load()
    widget._cv_folds.value = 0
    assert widget.run() is not None
    wait_done(qtbot, widget, 180)
    assert "stratification failed: time must be > 0; 1 subject(s)" in last()
    assert widget._run_btn.enabled
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_cohort_widget_reads_worded_events_and_categories(
    make_napari_viewer: Any, qtbot: Any, cohort_files: dict[str, Any], tmp_path: Path
) -> None:
    """Events written Dead / alive and IDH written Mutant / WT (issue 14): the dock offers
    the text column as a covariate and shows its hazard ratio against the reference."""
    from napari_gbm.io import read_csv
    from napari_gbm.widgets._cohort import CohortWidget

    root, cohort = cohort_files["root"], cohort_files["cohort"]
    clinical = cohort.clinical.astype({"event": object})
    clinical["event"] = np.where(cohort.clinical.event, " Dead", "alive")
    clinical["idh"] = np.where(clinical.pop("idh_mutant"), "Mutant", "WT")
    clinical.to_csv(tmp_path / "clinical_words.csv", index=False)
    viewer = make_napari_viewer(show=False)
    widget = CohortWidget(viewer)
    widget._path.value = root / "slides.parquet"
    widget._clinical_path.value = tmp_path / "clinical_words.csv"
    assert widget.load()
    assert widget._event_col.value == "event"
    assert "idh" in widget._covariates.choices and "idh" not in widget._group_by.choices
    widget._covariates.value = ["positive_percent", "idh"]
    widget._cv_folds.value = 0
    widget._out.value = tmp_path / "out"
    assert widget.run() is not None
    wait_done(qtbot, widget, 180)
    assert widget._results is not None, widget._status.value
    hr = read_csv(tmp_path / "out" / "cox_summary.csv")
    assert list(hr.covariate) == ["positive_percent", "idh=Mutant (vs WT)"]
    table = widget._hr_table
    texts = [table.item(1, j).text() for j in range(5)]
    assert texts[:2] == ["idh=Mutant (vs WT)", f"{hr.hazard_ratio[1]:.3g}"]
    assert texts[3] == "vs WT"
    # the curves count the deaths written as words
    assert sum(c.n_events for c in widget._results.curves) == int(cohort.clinical.event.sum())


def test_slide_to_patient_matching(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from napari_gbm.survival.results import patient_of_slide, read_results
    from napari_gbm.widgets._cohort import slide_ids_of_layer

    layer = SimpleNamespace(metadata={"slide_path": "/x/TCGA-02-0001-01Z-00-DX1.ome.tif"})
    ids = slide_ids_of_layer(layer)
    assert ids == ["TCGA-02-0001-01Z-00-DX1.ome", "TCGA-02-0001-01Z-00-DX1"]
    both = SimpleNamespace(metadata={"napari_gbm": {"slide_id": "S7"}, "slide_path": "/a/b.svs"})
    assert slide_ids_of_layer(both) == ["S7", "b"]
    assert slide_ids_of_layer(SimpleNamespace(metadata={})) == []
    # the slide table first, then the id itself, then a patient id + separator prefix
    assert patient_of_slide(["b"], {"b": "P2"}, {"b"}) == ("b", "P2", "slide table")
    assert patient_of_slide(["P10"], {}, {"P1", "P10"}) == ("P10", "P10", "patient id")
    assert patient_of_slide(ids, {}, {"TCGA-02-0001", "TCGA-02-00"}) == (
        ids[0], "TCGA-02-0001", "id prefix",
    )  # fmt: skip
    assert patient_of_slide(["P10-S0"], {}, {"P1"}) is None
    with pytest.raises(ValueError, match="no finished stratification"):
        read_results(tmp_path, pd.DataFrame({"patient_id": ["a"]}))
