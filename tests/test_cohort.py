"""The cohort runner on a real dask LocalCluster with worker processes: outputs equal to
single-slide analyses, a corrupt and a missing slide recorded as failures, a worker killed
mid-slide, a client killed mid-run and resumed, manifest errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from napari_gbm.cli import main
from napari_gbm.cohort import (
    FAILURE_COLUMNS,
    CohortProgress,
    CohortResult,
    WorkerEnvironmentError,
    check_workers,
    flatten_summary,
    params_from_dict,
    read_cohort_input,
    run_cohort,
)
from napari_gbm.detect.cells import CellParams
from napari_gbm.pipeline import AnalyzeParams, analyze_slide
from napari_gbm.wsi.tiling import TilingParams

distributed = pytest.importorskip("distributed")

PARAMS = AnalyzeParams(cells=CellParams(stain="hdab", texture=False))
GOOD = ("s1", "s2", "s3")
#: summary entries that measure time, not the slide
TIMING = ("elapsed_s",)


# --- fixtures: three small synthetic Ki-67 slides, a truncated copy, a manifest ---


@pytest.fixture(scope="module")
def slide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from napari_gbm.synthetic import make_synthetic_slide

    d = tmp_path_factory.mktemp("cohort-slides")
    for i, name in enumerate(GOOD):
        make_synthetic_slide(d / f"{name}.tif", size_px=(1024, 1024), stain="hdab", seed=11 + i)
    data = (d / "s1.tif").read_bytes()
    (d / "corrupt.svs").write_bytes(data[: len(data) // 2])  # a copy cut half-way
    return d


@pytest.fixture(scope="module")
def manifest(slide_dir: Path) -> Path:
    """Relative paths; two slides of one patient; a clinical column; a missing file."""
    rows = [
        ("s1.tif", "P1", 61),
        ("s2.tif", "P1", 61),
        ("s3.tif", "P2", 70),
        ("corrupt.svs", "P3", 55),
        ("missing.svs", "P4", 48),
    ]
    path = slide_dir / "manifest.csv"
    pd.DataFrame(rows, columns=["slide_path", "patient_id", "age_years"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def reference(slide_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each good slide analysed alone, in this process, with the same parameters."""
    out = tmp_path_factory.mktemp("cohort-reference")
    for name in GOOD:
        analyze_slide(slide_dir / f"{name}.tif", out / name, PARAMS, slide_id=name)
    return {name: out / name for name in GOOD}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def first_run(
    manifest: Path, client: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CohortResult, list[CohortProgress]]:
    seen: list[CohortProgress] = []
    out = tmp_path_factory.mktemp("cohort-run") / "out"
    result = run_cohort(manifest, out, PARAMS, client=client, progress=seen.append)
    return result, seen


def _summary(folder: Path) -> dict[str, Any]:
    summary = json.loads((folder / "summary.json").read_text())
    for key in TIMING:
        summary.pop(key)
    summary["input"].pop("path_from_output")  # where the output folder is, not what is in it
    return summary


def _assert_slide_equal(folder: Path, ref: Path) -> None:
    """Same cells with the same values, same tiles, same slide biomarkers."""
    pd.testing.assert_frame_equal(
        pd.read_parquet(folder / "cells.parquet"), pd.read_parquet(ref / "cells.parquet")
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(folder / "tiles.parquet"), pd.read_parquet(ref / "tiles.parquet")
    )
    assert _summary(folder) == _summary(ref)


def _without_timing(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=list(TIMING)).reset_index(drop=True)


# --- the integration test ---


def test_cohort_equals_single_slide_analyses(
    first_run: tuple[CohortResult, list[CohortProgress]],
    reference: dict[str, Path],
    slide_dir: Path,
) -> None:
    result, seen = first_run
    out = result.out
    # the corrupt and the missing slide are failures with their reasons; the others finished
    failures = pd.read_csv(out / "failures.csv", keep_default_na=False)
    assert list(failures.columns) == list(FAILURE_COLUMNS)
    reasons = dict(zip(failures.slide_id, failures.error_type, strict=True))
    assert reasons == {"corrupt": "SlideError", "missing": "FileNotFoundError"}
    messages = dict(zip(failures.slide_id, failures.message, strict=True))
    assert "truncated" in messages["corrupt"] and "corrupt.svs" in messages["corrupt"]
    assert "does not exist" in messages["missing"]
    assert (failures.patient_id == ["P3", "P4"]).all()
    assert failures.traceback[0]  # where it happened, for the corrupt file
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "failures.parquet"), failures, check_dtype=False
    )
    assert (result.n_analysed, result.n_skipped, result.n_failed) == (3, 0, 2)

    for name in GOOD:
        _assert_slide_equal(out / "slides" / name, reference[name])
    assert not (out / "slides" / "corrupt" / "summary.json").exists()

    # one row per analysed slide, in manifest order, = the slide's own summary flattened
    slides = pd.read_parquet(out / "slides.parquet")
    assert list(slides.slide_id) == list(GOOD)
    assert list(slides.patient_id) == ["P1", "P1", "P2"]
    assert list(slides.age_years) == [61, 61, 70]
    assert list(slides.path) == [str(slide_dir / f"{n}.tif") for n in GOOD]
    for row, name in zip(slides.to_dict("records"), GOOD, strict=True):
        expected = flatten_summary(json.loads((reference[name] / "summary.json").read_text()))
        for key, value in expected.items():
            if key in TIMING:
                continue
            got = row[key]
            assert got == value or (value is None and pd.isna(got)), key
    assert "heterogeneity_positive_percent_cv" in slides.columns
    assert slides.n_cells.sum() > 1000

    # progress: one call per slide, cells counted
    assert [p.done for p in seen] == [1, 2, 3, 4, 5]
    last = seen[-1]
    assert (last.total, last.analysed, last.failed) == (5, 3, 2)
    assert last.n_cells == slides.n_cells.sum()

    # the run is recorded, the log names every slide
    record = json.loads((out / "cohort.json").read_text())
    assert (record["n_slides"], record["n_analysed"], record["n_failed"]) == (5, 3, 2)
    assert params_from_dict(record["parameters"]).to_dict() == PARAMS.to_dict()
    log = (out / "cohort.log").read_text()
    for name in (*GOOD, "corrupt", "missing"):
        assert f"{name} " in log


def test_patients_table(first_run: tuple[CohortResult, list[CohortProgress]]) -> None:
    pytest.importorskip("napari_gbm.survival.patients")
    from napari_gbm.survival.patients import aggregate_patients

    result, _ = first_run
    patients = pd.read_parquet(result.out / "patients.parquet")
    slides = pd.read_parquet(result.out / "slides.parquet")
    assert sorted(patients.patient_id) == ["P1", "P2"]  # P3 and P4 have no analysed slide
    expected = aggregate_patients(slides.drop(columns=["age_years"]), id_col="patient_id")
    got = patients.set_index("patient_id").sort_index()
    for col in expected.columns:
        if col == "patient_id":
            continue
        pd.testing.assert_series_equal(
            got[col], expected.set_index("patient_id").sort_index()[col], check_names=False
        )
    assert got.loc["P1", "age_years"] == 61 and got.loc["P2", "age_years"] == 70
    # by hand: P1 pools slides s1 and s2
    s12 = slides[slides.patient_id == "P1"]
    assert got.loc["P1", "n_cells"] == s12.n_cells.sum()
    assert got.loc["P1", "positive_percent"] == pytest.approx(
        100 * s12.n_positive.sum() / s12.n_graded.sum()
    )
    assert got.loc["P1", "cell_density_per_mm2"] == pytest.approx(
        s12.n_cells.sum() / s12.analysed_tissue_area_mm2.sum()
    )
    # the manifest has clinical columns but no survival columns: said, not stratified
    assert result.stratify is None
    assert any("no stratification" in note for note in result.notes)


def test_tables_and_stratification_of_a_larger_cohort(tmp_path: Path) -> None:
    """The table stage on 60 synthetic patients (slide summaries from the synthetic cohort
    generator, no images): slides -> patients -> clinical join -> stratification."""
    pytest.importorskip("napari_gbm.survival.stratify")
    from napari_gbm.cohort import Cohort, CohortSlide
    from napari_gbm.cohort.tables import _stratify, _write_tables
    from napari_gbm.synthetic import make_synthetic_cohort

    syn = make_synthetic_cohort(n_patients=60, seed=3)
    clinical = syn.clinical.set_index("patient_id")
    slides = []
    outcomes = {}
    for row in syn.slides.to_dict("records"):
        pid = row["patient_id"]
        c = clinical.loc[pid]
        slides.append(
            CohortSlide(
                slide_id=row["slide_id"],
                path=tmp_path / f"{row['slide_id']}.svs",
                patient_id=pid,
                clinical={
                    "time_months": float(c.time_months),
                    "event": bool(c.event),
                    "age": float(c.age),
                    "h_score": 100.0,  # clinical, named like a biomarker
                },
            )
        )
        summary = {k: v for k, v in row.items() if k not in ("patient_id", "n_tiles")}
        outcomes[row["slide_id"]] = {"status": "skipped", "summary": summary}
    cohort = Cohort(tuple(slides), ("time_months", "event", "age", "h_score"), tmp_path / "m.csv")
    result = _write_tables(cohort, tmp_path, PARAMS, outcomes, time.perf_counter())
    assert len(result.slides) == len(syn.slides) and result.patients is not None
    assert len(result.patients) == 60
    # the biomarker keeps its name; the clinical column of the same name is renamed
    assert list(result.slides.h_score) == list(syn.slides.h_score)
    assert (result.slides.h_score_clinical == 100.0).all()
    assert (result.patients.h_score_clinical == 100.0).all()
    patients = pd.read_parquet(tmp_path / "patients.parquet").set_index("patient_id")
    pd.testing.assert_series_equal(
        patients.time_months.sort_index(),
        clinical.time_months.sort_index(),
        check_names=False,
        check_index_type=False,
    )
    metrics = _stratify(cohort, result, tmp_path, None, None, ["positive_percent", "age"], "cox")
    assert metrics is not None and (tmp_path / "stratify" / "metrics.json").is_file()
    assert metrics["n"] == 60


# --- faults: a worker dies mid-slide; the client dies mid-run ---


def _worker_pids(client: Any) -> dict[str, int]:
    return dict(client.run(os.getpid))


def test_worker_killed_mid_slide_is_retried(
    manifest: Path, client: Any, reference: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    box: dict[str, Any] = {}
    run = threading.Thread(
        target=lambda: box.setdefault("result", run_cohort(manifest, out, PARAMS, client=client))
    )
    pids = _worker_pids(client)
    run.start()
    killed: tuple[str, list[str]] | None = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and run.is_alive():
        for address, keys in client.processing().items():
            prefix = "napari-gbm-slide-"
            slides = [k[len(prefix) :].rsplit("-", 1)[0] for k in map(str, keys)]
            slides = [s for s in slides if s in GOOD]
            if slides and not (out / "slides" / slides[0] / "summary.json").exists():
                os.kill(pids[address], signal.SIGKILL)  # the worker dies mid-slide
                killed = (address, slides)
                break
        time.sleep(0.05)
    run.join(timeout=300)
    assert killed is not None, "no slide was seen running"
    result: CohortResult = box["result"]
    assert (result.n_analysed, result.n_failed) == (3, 2)
    for name in GOOD:
        _assert_slide_equal(out / "slides" / name, reference[name])
    # the slide the dead worker was running finished on another worker
    log = (out / "cohort.log").read_text().splitlines()
    finished = next(line for line in log if f" {killed[1][0]} analysed on " in line)
    assert killed[0] not in finished
    assert not list((out / "slides").glob("*/.*.tmp"))


def test_killed_client_resumes_to_the_same_outputs(
    manifest: Path,
    client: Any,
    reference: dict[str, Path],
    first_run: tuple[CohortResult, list[CohortProgress]],
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "napari_gbm.cli", "cohort", str(manifest), "--out", str(out)]
    cmd += ["--workers", "1", "--stain", "hdab", "--no-texture"]
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 180
        while not list((out / "slides").glob("*/summary.json")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the cohort run ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the client, its local cluster and workers
        proc.wait()
    done = [p.parent.name for p in (out / "slides").glob("*/summary.json")]
    assert len(done) >= 1
    assert not (out / "slides.parquet").exists() and not (out / "cohort.json").exists()
    todo = [n for n in GOOD if n not in done]
    assert todo, "the killed run finished every slide; kill it sooner"
    # one slide left half-written: tables there, no summary.json
    half = out / "slides" / todo[-1]
    half.mkdir(parents=True, exist_ok=True)
    for name in ("cells.parquet", "tiles.parquet"):
        shutil.copy(reference[done[0]] / name, half / name)
    stamps = {
        p: p.stat().st_mtime_ns for n in done for p in (out / "slides" / n).iterdir() if p.is_file()
    }

    # re-run on the running cluster (--scheduler): skips what is done, redoes the rest
    argv = ["cohort", str(manifest), "--out", str(out), "--stain", "hdab", "--no-texture"]
    assert main([*argv, "--scheduler", client.scheduler.address]) == 1  # 2 slides failed
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # complete slides not rewritten
    for name in GOOD:
        _assert_slide_equal(out / "slides" / name, reference[name])
    first, _ = first_run
    pd.testing.assert_frame_equal(
        _without_timing(pd.read_parquet(out / "slides.parquet")),
        _without_timing(pd.read_parquet(first.out / "slides.parquet")),
    )
    cols = ["slide_id", "patient_id", "path", "error_type", "message"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "failures.parquet")[cols],
        pd.read_parquet(first.out / "failures.parquet")[cols],
    )
    log = (out / "cohort.log").read_text()
    assert all(f"{n} skipped" in log for n in done)
    assert f"{todo[-1]} analysed" in log


def test_changed_parameters_are_not_skipped(
    first_run: tuple[CohortResult, list[CohortProgress]], slide_dir: Path
) -> None:
    """A complete folder made with other parameters is analysed again, not reused."""
    from napari_gbm.cohort import analyze_task

    result, _ = first_run
    folder = result.out / "slides" / "s3"
    path = str(slide_dir / "s3.tif")
    same = analyze_task(path, str(folder), PARAMS.to_dict(), None, "s3")
    assert same["status"] == "skipped"
    other = AnalyzeParams(cells=CellParams(stain="he", texture=False))
    from napari_gbm.cohort.task import _previous_summary

    assert _previous_summary(folder, path, other.to_dict(), None, "s3") is None
    assert _previous_summary(folder, path, PARAMS.to_dict(), 0.25, "s3") is None


# --- the workers' environment ---


def test_check_workers_names_mismatched_versions(client: Any) -> None:
    versions = check_workers(client)
    assert len(versions) == 2
    with pytest.raises(WorkerEnvironmentError) as info:
        check_workers(client, expected_version="0.0.0")
    msg = str(info.value)
    assert "2 of 2 worker(s)" in msg and "not 0.0.0" in msg
    assert all(address in msg for address in versions)


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
def test_check_workers_refuses_a_worker_without_napari_gbm(tmp_path: Path) -> None:
    preload = tmp_path / "hide_napari_gbm.py"
    preload.write_text("import sys\nsys.modules['napari_gbm'] = None  # import fails\n")
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            preload=[str(preload)],
        ) as cluster,
        distributed.Client(cluster) as c,
        pytest.raises(WorkerEnvironmentError, match="cannot import napari_gbm"),
    ):
        check_workers(c)


# --- input: manifests, folders, parameters ---


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_manifest_errors_are_clear(tmp_path: Path, slide_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"lacks the column.*slide_path, patient_id"):
        read_cohort_input(_write(tmp_path / "a.csv", "path,patient\nx.svs,P1\n"))
    with pytest.raises(ValueError, match=r"lacks the column.*patient_id"):
        read_cohort_input(_write(tmp_path / "b.csv", "slide_path,age\nx.svs,3\n"))
    dup = f"slide_path,patient_id\n{slide_dir}/s1.tif,P1\n{slide_dir}/./s1.tif,P2\n"
    with pytest.raises(ValueError, match=r"more than once: .*s1.tif on rows 1, 2"):
        read_cohort_input(_write(tmp_path / "c.csv", dup))
    with pytest.raises(ValueError, match=r"patient_id is empty on row\(s\) 2"):
        read_cohort_input(_write(tmp_path / "d.csv", "slide_path,patient_id\na.svs,P1\nb.svs,\n"))
    with pytest.raises(ValueError, match=r"stain must be 'he' or 'hdab'.*'ki67'"):
        read_cohort_input(_write(tmp_path / "e.csv", "slide_path,patient_id,stain\na.svs,P,ki67\n"))
    with pytest.raises(ValueError, match="mpp must be a positive number"):
        read_cohort_input(_write(tmp_path / "f.csv", "slide_path,patient_id,mpp\na.svs,P,-1\n"))
    conflict = "slide_path,patient_id,age\na.svs,P1,60\nb.svs,P1,61\n"
    with pytest.raises(ValueError, match=r"'age' has different values.*P1"):
        read_cohort_input(_write(tmp_path / "g.csv", conflict))
    with pytest.raises(ValueError, match=r"share an output folder.*add a slide_id column"):
        read_cohort_input(
            _write(tmp_path / "h.csv", "slide_path,patient_id\na/x.svs,P\nb/x.svs,Q\n")
        )
    with pytest.raises(ValueError, match="has no rows"):
        read_cohort_input(_write(tmp_path / "i.csv", "slide_path,patient_id\n"))
    with pytest.raises(ValueError, match="clash"):
        read_cohort_input(_write(tmp_path / "j.csv", "slide_path,patient_id,path\na.svs,P,x\n"))
    # the CLI reports them in one line, exit status 2, before any cluster starts
    assert main(["cohort", str(tmp_path / "a.csv"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_manifest_fields(tmp_path: Path) -> None:
    text = (
        "slide_path,patient_id,slide_id,mpp,stain,age,grade\n"
        "sub/a.svs,P1,,0.25,HDAB,60,4\n"
        "/abs/b.tif,P1,bee,,,60,\n"
        "c.svs,P2,,,he,,3\n"
    )
    cohort = read_cohort_input(_write(tmp_path / "m.csv", text))
    a, b, c = cohort.slides
    assert a.path == tmp_path / "sub" / "a.svs" and a.slide_id == "a"
    assert (a.mpp, a.stain, b.mpp, b.stain, c.stain) == (0.25, "hdab", None, None, "he")
    assert b.slide_id == "bee" and b.path == Path("/abs/b.tif")
    assert cohort.clinical_columns == ("age", "grade")
    clinical = cohort.clinical_table()
    assert list(clinical.patient_id) == ["P1", "P2"]
    assert clinical.age.iloc[0] == 60 and pd.isna(clinical.age.iloc[1])


def test_folder_input(tmp_path: Path) -> None:
    for name in ("b.svs", "a.tif", "a.regions.png", "notes.txt", ".a.tif.123.tmp"):
        (tmp_path / name).write_bytes(b"x")
    cohort = read_cohort_input(tmp_path)
    assert [s.slide_id for s in cohort.slides] == ["a", "b"]
    assert [s.patient_id for s in cohort.slides] == ["a", "b"]
    (tmp_path / "a.svs").write_bytes(b"x")
    with pytest.raises(ValueError, match="share an output folder"):
        read_cohort_input(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no slides in"):
        read_cohort_input(tmp_path / "empty")


def test_params_travel_as_a_dict() -> None:
    explicit = AnalyzeParams(
        cells=CellParams(stain="hdab", texture=False),
        tiling=TilingParams(tile_size_px=512, overlap_px=100, offset_px=(3, 5)),
    )
    assert params_from_dict(explicit.to_dict()) == explicit
    # through JSON (tuples come back as lists), as summary.json stores them
    assert params_from_dict(json.loads(json.dumps(explicit.to_dict()))) == explicit
    assert params_from_dict(PARAMS.to_dict()).to_dict() == PARAMS.to_dict()
    with pytest.raises(ValueError, match=r"unknown parameters.cells entries colour"):
        params_from_dict({"cells": {"colour": "red"}})
