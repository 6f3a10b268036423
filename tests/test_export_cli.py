"""``napari-gbm export`` on a real analysis folder and a real cohort folder: every format read
back with its own library (pandas, json, anndata in .venv-omics), QuPath's GeoJSON shape,
cohorts per slide and combined, and bad input refused in one line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest

from napari_gbm.cli import main
from napari_gbm.cohort import run_cohort
from napari_gbm.detect.cells import CellParams
from napari_gbm.export.naming import column_names
from napari_gbm.io import read_parquet_metadata
from napari_gbm.pipeline import AnalyzeParams, analyze_slide
from test_export_anndata import read_with_anndata  # anndata itself, in .venv-omics

distributed = pytest.importorskip("distributed")

PARAMS = AnalyzeParams(cells=CellParams(stain="hdab", texture=False))
COHORT_SLIDES = ("s1", "s2")
GRADES = {0: "Negative", 1: "1+", 2: "2+", 3: "3+"}


# --- fixtures: one analysis folder, one cohort folder (two slides, one failure) ---


@pytest.fixture(scope="module")
def analysis(synthetic_ki67: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Ki-67 analysis folder, as tests/test_biomarkers.py's ki67_run makes it."""
    out = tmp_path_factory.mktemp("export-analysis") / "ki67"
    analyze_slide(synthetic_ki67, out, PARAMS)
    return out


@pytest.fixture(scope="module")
def cells(analysis: Path) -> pd.DataFrame:
    return pd.read_parquet(analysis / "cells.parquet")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two small Ki-67 slides of two patients on a local dask cluster, and a damaged file
    that the run records as a failure."""
    from napari_gbm.synthetic import make_synthetic_slide

    slides = tmp_path_factory.mktemp("export-cohort-slides")
    for i, name in enumerate(COHORT_SLIDES):
        make_synthetic_slide(
            slides / f"{name}.tif", size_px=(1024, 1024), stain="hdab", seed=21 + i
        )
    (slides / "broken.svs").write_bytes((slides / "s1.tif").read_bytes()[:5000])
    out = tmp_path_factory.mktemp("export-cohort") / "cohort"
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        result = run_cohort(slides, out, PARAMS, client=client)
    assert result.n_analysed == len(COHORT_SLIDES) and result.n_failed == 1
    yield out


def _export(*args: Any) -> int:
    return main(["export", *map(str, args)])


def _one_line_error(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("napari-gbm export: error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])


# --- an analysis folder, each format ---


@pytest.mark.parametrize(
    ("to", "names"), [("parquet", None), ("csv", "qupath"), ("tsv", "histomicstk")]
)
def test_tables_hold_the_cells_under_the_chosen_names(
    to: str, names: str | None, analysis: Path, cells: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / f"cells.{to}"
    assert _export(analysis, "--to", to, "--out", out, *(["--names", names] if names else [])) == 0
    if to == "parquet":
        back = pd.read_parquet(out)
        meta = read_parquet_metadata(out)
    else:
        back = pd.read_csv(out, sep="," if to == "csv" else "\t")
        meta = json.loads(Path(f"{out}.json").read_text(encoding="utf-8"))
    mapping = column_names(list(cells.columns), names or "napari_gbm")
    assert list(back.columns) == [mapping[c] for c in cells.columns]
    if names == "qupath":
        assert "Nucleus: Area µm^2" in back.columns and "Image" in back.columns
    back.columns = list(cells.columns)
    pd.testing.assert_frame_equal(back, cells, check_dtype=False, rtol=1e-6)
    assert meta["slide_id"] == cells["slide_id"].iloc[0] and meta["slide"]["mpp"] == 0.5
    assert meta["export"]["naming"] == {None: "napari_gbm"}.get(names, names)
    assert meta["export"]["rows"] == len(cells)
    assert not list(tmp_path.glob(".*.tmp"))


def test_geojson_is_a_qupath_cell_collection(
    analysis: Path, cells: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cells.geojson"
    assert _export(analysis, "--to", "geojson", "--out", out) == 0
    assert "moment ellipse" in capsys.readouterr().err  # no outlines in an analysis folder
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == len(cells)
    assert doc["napari_gbm"]["slide_id"] == cells["slide_id"].iloc[0]
    measured = [
        c
        for c in cells.columns
        if pd.api.types.is_numeric_dtype(cells[c])
        and c not in ("positive_class", "centroid_x_px", "centroid_y_px")
        and c not in ("centroid_x_um", "centroid_y_um")
    ]
    qupath = column_names(measured, "qupath")
    classes: dict[str, int] = {}
    for feature in doc["features"]:
        props = feature["properties"]
        assert feature["type"] == "Feature" and props["objectType"] == "cell"
        assert feature["geometry"]["type"] == "Polygon"
        assert feature["nucleusGeometry"]["type"] == "Polygon"
        assert set(props["measurements"]) <= set(qupath.values())
        name = props.get("classification", {}).get("name", "unclassified")
        classes[name] = classes.get(name, 0) + 1
    # every numeric column under QuPath's name; a value JSON cannot hold (NaN) is left out
    first = cells.iloc[0]
    finite = {qupath[c] for c in measured if np.isfinite(float(first[c]))}
    assert set(doc["features"][0]["properties"]["measurements"]) == finite
    assert len(finite) > 60
    assert "Nucleus: Area µm^2" in qupath.values()
    expected = cells["positive_class"].map(GRADES).fillna("unclassified").value_counts()
    assert classes == expected.to_dict()
    # the nucleus polygon sits on the cell's centroid (level-0 px, QuPath's corner origin)
    ring = np.array(doc["features"][0]["nucleusGeometry"]["coordinates"][0])
    centre = cells[["centroid_x_px", "centroid_y_px"]].iloc[0].to_numpy() + 0.5
    assert np.allclose(ring[:-1].mean(axis=0), centre, atol=0.05)


def test_anndata_holds_cells_features_and_positions(
    analysis: Path, cells: pd.DataFrame, tmp_path: Path
) -> None:
    """Read back with h5py and with anndata itself."""
    out = tmp_path / "cells.h5ad"
    assert _export(analysis, "--to", "anndata", "--out", out) == 0
    with h5py.File(out, "r") as f:
        assert f.attrs["encoding-type"] == "anndata"
        assert f["X"].shape[0] == len(cells) and f["X"].dtype == np.float32
        np.testing.assert_array_equal(f["obs/cell_id"][:], cells["cell_id"].to_numpy())
        spatial = cells[["centroid_x_um", "centroid_y_um"]].to_numpy()
        np.testing.assert_allclose(f["obsm/spatial"][:], spatial)
    adata, arrays = read_with_anndata(out)
    assert adata["shape"][0] == len(cells) and "nucleus_area_um2" in adata["var_names"]
    assert adata["obs"]["positive_class"]["categories"] == ["Negative", "1+", "2+", "3+"]
    np.testing.assert_allclose(arrays["obsm_spatial"], spatial)
    assert adata["uns"]["slide_id"] == cells["slide_id"].iloc[0]


def test_out_folder_gets_the_slide_id_and_a_file_is_replaced(
    analysis: Path, cells: pd.DataFrame, tmp_path: Path
) -> None:
    assert _export(analysis, "--to", "parquet", "--out", tmp_path) == 0
    written = tmp_path / f"{cells['slide_id'].iloc[0]}.parquet"
    assert len(pd.read_parquet(written)) == len(cells)
    target = tmp_path / "old.csv"
    target.write_text("stale\n")
    assert _export(analysis, "--to", "csv", "--out", target) == 0
    assert len(pd.read_csv(target)) == len(cells)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [written.name, "old.csv", "old.csv.json"]
    )


# --- a cohort folder ---


def test_cohort_exports_one_file_per_slide(
    cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "per-slide"
    assert _export(cohort, "--to", "geojson", "--out", out) == 0
    err = capsys.readouterr().err
    assert "1 slide(s) of the cohort failed" in err and "moment ellipse" in err
    assert sorted(p.name for p in out.iterdir()) == [f"{s}.geojson" for s in COHORT_SLIDES]
    for slide in COHORT_SLIDES:
        n = len(pd.read_parquet(cohort / "slides" / slide / "cells.parquet"))
        doc = json.loads((out / f"{slide}.geojson").read_text(encoding="utf-8"))
        assert len(doc["features"]) == n and doc["napari_gbm"]["slide_id"] == slide
        assert all(f["properties"]["objectType"] == "cell" for f in doc["features"])


def test_cohort_combined_table_and_anndata(cohort: Path, tmp_path: Path) -> None:
    per_slide = {s: pd.read_parquet(cohort / "slides" / s / "cells.parquet") for s in COHORT_SLIDES}
    patients = pd.read_parquet(cohort / "slides.parquet").set_index("slide_id")["patient_id"]
    out = tmp_path / "cohort.parquet"
    assert _export(cohort, "--to", "parquet", "--combine", "--out", out) == 0
    combined = pd.read_parquet(out)
    assert list(combined.columns[:3]) == ["cell_id", "slide_id", "patient_id"]
    assert combined["slide_id"].value_counts().to_dict() == {
        s: len(c) for s, c in per_slide.items()
    }
    for slide, part in combined.groupby("slide_id"):
        assert (part["patient_id"] == patients[slide]).all()
        pd.testing.assert_frame_equal(
            part.drop(columns="patient_id").reset_index(drop=True), per_slide[str(slide)]
        )
    assert set(read_parquet_metadata(out)["slides"]) == set(COHORT_SLIDES)

    assert _export(cohort, "--to", "anndata", "--combine", "--out", tmp_path) == 0
    adata, _ = read_with_anndata(tmp_path / "cells.h5ad")
    assert adata["shape"][0] == len(combined)
    assert adata["obs"]["slide_id"]["values"] == combined["slide_id"].tolist()
    assert adata["obs"]["patient_id"]["values"] == combined["patient_id"].tolist()
    assert set(adata["uns"]["slides"]) == set(COHORT_SLIDES)


# --- bad input: exit 2, one line, nothing written ---


@pytest.mark.parametrize("left", ["cells.parquet", ".cells-1234"])
def test_incomplete_analysis_is_refused(
    left: str, analysis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Interrupted after the cell table, or while streaming it (its temporary folder)."""
    broken = tmp_path / "interrupted"
    broken.mkdir()
    if left == "cells.parquet":
        shutil.copy(analysis / "cells.parquet", broken / "cells.parquet")
    else:
        (broken / left).mkdir()
    out = tmp_path / "out.csv"
    assert _export(broken, "--to", "csv", "--out", out) == 2
    _one_line_error(capsys.readouterr().err, "incomplete analysis", "summary.json", "analyze")
    assert not out.exists()


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("a file", ["is a file, not a folder"]),
        ("missing", ["does not exist"]),
        ("empty folder", ["neither an analysis folder", "nor a cohort folder"]),
        ("wrong extension", ["ending in .csv"]),
        ("onto cells.parquet", ["would replace a file"]),
        ("histomicstk geojson", ["HistomicsTK"]),
    ],
)
def test_bad_input_is_one_line(
    case: str,
    words: list[str],
    analysis: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, to, out, extra = analysis, "csv", tmp_path / "out.csv", []
    if case == "a file":
        source = analysis / "summary.json"
    elif case == "missing":
        source = tmp_path / "nowhere"
    elif case == "empty folder":
        source = tmp_path / "empty"
        source.mkdir()
    elif case == "wrong extension":
        out = tmp_path / "out.txt"
    elif case == "onto cells.parquet":
        to, out = "parquet", analysis / "cells.parquet"
    elif case == "histomicstk geojson":
        to, out, extra = "geojson", tmp_path / "out.geojson", ["--names", "histomicstk"]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert _export(source, "--to", to, "--out", out, *extra) == 2
    _one_line_error(capsys.readouterr().err, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unknown_names_and_format_exit_2(analysis: Path, tmp_path: Path, capsys: Any) -> None:
    for args in (["--names", "cellprofiler"], ["--to", "xlsx"]):
        argv = ["--to", "csv", "--out", tmp_path / "o.csv", *args]
        with pytest.raises(SystemExit) as e:
            _export(analysis, *argv)
        assert e.value.code == 2
        assert "invalid choice" in capsys.readouterr().err.splitlines()[-1]
    assert not list(tmp_path.iterdir())


def test_cohort_refusals(cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _export(cohort, "--to", "geojson", "--combine", "--out", tmp_path / "a.geojson") == 2
    _one_line_error(capsys.readouterr().err, "one GeoJSON per slide")
    afile = tmp_path / "results"
    afile.write_text("")
    assert _export(cohort, "--to", "csv", "--out", afile) == 2
    _one_line_error(capsys.readouterr().err, "one file per slide in a folder")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(cohort / "slides", unfinished / "slides")
    assert _export(unfinished, "--to", "csv", "--out", tmp_path / "o") == 2
    _one_line_error(capsys.readouterr().err, "no slides.parquet", "run the same napari-gbm cohort")
    assert not (tmp_path / "o").exists() and not (tmp_path / "a.geojson").exists()
