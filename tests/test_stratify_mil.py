"""`napari-gbm stratify --model mil`: attention-MIL Cox over each patient's tiles, read from a
cohort output folder (slides.parquet + slides/<slide_id>/tiles.parquet) or a tile table.

The cohort folder is built from the synthetic cohort generator (no images): its survival
depends on the tiles (the Ki-67 index and the fraction of hotspot tiles), so a model of the
tiles must find it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_gbm.cli import main
from napari_gbm.survival.bags import cohort_tiles, tile_bags
from napari_gbm.survival.concordance import concordance_index
from napari_gbm.survival.persist import load_model
from napari_gbm.survival.stratify import run_stratify
from napari_gbm.survival.stratify_params import StratifyParams
from napari_gbm.synthetic.cohort import SyntheticCohort, make_synthetic_cohort

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SURVIVAL = ["--time", "time_months", "--event", "event"]
#: the default tile features (survival.bags.DEFAULT_TILE_FEATURES) the generator's tiles have
FEATURES = [
    "cell_density_per_mm2",
    "positive_percent",
    "nucleus_area_um2_mean",
    "necrosis_fraction",
]


@pytest.fixture(scope="module")
def synthetic() -> SyntheticCohort:
    return make_synthetic_cohort(n_patients=160, tiles_per_slide=(8, 16), seed=0)


def write_cohort_folder(c: SyntheticCohort, folder: Path) -> Path:
    """What `napari-gbm cohort` writes, from the generator's tables: slides.parquet,
    patients.parquet and each slide's tiles.parquet (tile ids 0..n-1, a region class, and
    a background tile without values that the bags must leave out)."""
    folder.mkdir(parents=True)
    c.slides.merge(c.clinical, on="patient_id").to_parquet(folder / "slides.parquet")
    c.patient_table().to_parquet(folder / "patients.parquet")
    for slide_id, t in c.tiles.groupby("slide_id", sort=False):
        t = t.drop(columns=["patient_id", "slide_id", "is_hotspot"]).reset_index(drop=True)
        t["region_class"] = 1
        background = dict.fromkeys(t.columns, np.nan) | {"region_class": 0, "n_cells": 0}
        t = pd.concat([t, pd.DataFrame([background])], ignore_index=True)
        t["tile_id"] = np.arange(len(t))
        (folder / "slides" / str(slide_id)).mkdir(parents=True)
        t.to_parquet(folder / "slides" / str(slide_id) / "tiles.parquet")
    return folder


@pytest.fixture(scope="module")
def cohort_dir(synthetic: SyntheticCohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cohort_folder(synthetic, tmp_path_factory.mktemp("mil") / "cohort")


@pytest.fixture(scope="module")
def runs(cohort_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same cohort stratified by MIL (tiles alone) and by Cox on the Ki-67 index."""
    base = tmp_path_factory.mktemp("runs")
    mil, cox = base / "mil", base / "cox"
    common = [str(cohort_dir), *SURVIVAL, "--cv-folds", "3"]
    assert main(["stratify", *common, "--model", "mil", "--out", str(mil)]) == 0
    assert main(["stratify", *common, "--covariates", "positive_percent", "--out", str(cox)]) == 0
    return {"mil": mil, "cox": cox}


def test_mil_from_a_cohort_folder_writes_every_output(
    runs: dict[str, Path], synthetic: SyntheticCohort
) -> None:
    out = runs["mil"]
    files = ["cox_summary.csv", "risk.csv", "metrics.json", "km.png", "forest.png", "report.md"]
    for name in [*files, "model/model.pt", "model/model.json", "tile_attention.parquet"]:
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == "mil" and m["tile_features"] == FEATURES
    assert m["n"] == len(synthetic.clinical) and m["covariates"] == []
    assert m["n_tiles"] == len(synthetic.tiles)  # the background tiles are not in the bags
    assert m["cv_folds"] == 3 and m["risk_groups"]["by"] == "mil risk score"
    assert "Bags: " in (out / "report.md").read_text()
    # cox_summary.csv describes the linear model on each patient's mean tile features
    summary = pd.read_csv(out / "cox_summary.csv")
    assert list(summary.covariate) == [f"{f} (tile mean)" for f in FEATURES]
    # a patient's attention weights sum to 1, one per tissue tile
    att = pd.read_parquet(out / "tile_attention.parquet")
    assert list(att.columns) == ["patient_id", "slide_id", "tile_id", "attention"]
    assert len(att) == m["n_tiles"]
    np.testing.assert_allclose(att.groupby("patient_id").attention.sum(), 1.0, atol=1e-5)


def test_saved_mil_model_predicts_the_written_risk(runs: dict[str, Path], cohort_dir: Path) -> None:
    risk = pd.read_csv(runs["mil"] / "risk.csv")
    bags = tile_bags(cohort_tiles(cohort_dir)).bags(risk.patient_id.tolist())
    model = load_model(runs["mil"] / "model")
    np.testing.assert_allclose(model.predict_risk(bags), risk.risk_score, rtol=1e-6)


def test_mil_risk_follows_the_tiles(runs: dict[str, Path], synthetic: SyntheticCohort) -> None:
    """Survival depends on the tiles: the MIL risk finds it, cross-validated, about as well
    as Cox on the slide Ki-67 index and in the same direction. Measured (seed 0): MIL CV
    C-index 0.709 (in-sample 0.771), Cox 0.710 (0.713), oracle 0.777; Spearman 0.80
    between the two risks. Seeds 0-4 of this design: MIL CV 0.64-0.73, Cox 0.65-0.73."""
    mil = json.loads((runs["mil"] / "metrics.json").read_text())
    cox = json.loads((runs["cox"] / "metrics.json").read_text())
    clin = synthetic.clinical
    oracle = concordance_index(clin.time_months, clin.event, synthetic.oracle_risk)
    assert mil["cv_c_index_mean"] > 0.62, mil["cv_c_index_mean"]
    assert mil["cv_c_index_mean"] > cox["cv_c_index_mean"] - 0.05, (mil, cox)
    assert mil["cv_c_index_mean"] > oracle - 0.1, (mil["cv_c_index_mean"], oracle)
    assert mil["logrank_p"] < 1e-3
    r_mil = pd.read_csv(runs["mil"] / "risk.csv").set_index("patient_id").risk_score
    r_cox = pd.read_csv(runs["cox"] / "risk.csv").set_index("patient_id").risk_score
    rho = r_mil.corr(r_cox.loc[r_mil.index], method="spearman")
    assert rho > 0.6, rho


def test_mil_from_a_tile_table_with_covariates(synthetic: SyntheticCohort, tmp_path: Path) -> None:
    """A patients CSV, a tile CSV (--tiles) and a patient covariate next to the tiles."""
    patients, tiles = tmp_path / "patients.csv", tmp_path / "tiles.csv"
    synthetic.patient_table().to_csv(patients, index=False)
    synthetic.tiles.to_csv(tiles, index=False)
    out = tmp_path / "out"
    argv = ["stratify", str(patients), *SURVIVAL, "--model", "mil", "--tiles", str(tiles),
            "--tile-features", "positive_percent,necrosis_fraction", "--covariates", "age",
            "--cv-folds", "0", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["tile_features"] == ["positive_percent", "necrosis_fraction"]
    assert m["covariates"] == ["age"]
    assert load_model(out / "model").covariate_names_ == ["age"]
    summary = pd.read_csv(out / "cox_summary.csv").set_index("covariate")
    assert summary.loc["positive_percent (tile mean)", "coef"] > 0  # true Ki-67 effect: HR > 1


def test_run_stratify_takes_params_and_overrides(
    synthetic: SyntheticCohort, tmp_path: Path
) -> None:
    params = StratifyParams(time_col="time_months", event_col="event", model="mil", cv_folds=0)
    table = synthetic.patient_table()
    a = run_stratify(table, tmp_path / "a", params, tiles=synthetic.tiles, seed=1)
    fields = {k: getattr(params, k) for k in ("time_col", "event_col", "model", "cv_folds")}
    b = run_stratify(table, tmp_path / "b", tiles=synthetic.tiles, **fields, seed=1)
    assert a["c_index"] == b["c_index"]
    with pytest.raises(TypeError, match="nope"):
        run_stratify(table, tmp_path / "c", params, tiles=synthetic.tiles, nope=1)


# ------------------------------------------------------------------ bad input, said clearly
def test_mil_needs_tiles(synthetic: SyntheticCohort, tmp_path: Path, capsys) -> None:
    patients = tmp_path / "patients.csv"
    synthetic.patient_table().to_csv(patients, index=False)
    out = tmp_path / "out"
    assert main(["stratify", str(patients), *SURVIVAL, "--model", "mil", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--model mil learns from each patient's tiles" in err
    assert "output folder of `napari-gbm cohort`" in err and "--tiles" in err
    assert not (out / "metrics.json").exists()
    # --tiles with another model is a mistake, not silently ignored
    argv = ["stratify", str(patients), *SURVIVAL, "--tiles", str(patients), "--out", str(out)]
    assert main(argv) == 2
    assert "--tiles and --tile-features are for --model mil" in capsys.readouterr().err
    with pytest.raises(ValueError, match="tile table"):
        run_stratify(
            synthetic.patient_table(), out, time_col="time_months", event_col="event", model="mil"
        )


def test_bad_tile_tables_are_named(synthetic: SyntheticCohort, tmp_path: Path) -> None:
    table = synthetic.patient_table()
    kw = {"time_col": "time_months", "event_col": "event", "model": "mil", "cv_folds": 0}
    few = synthetic.tiles[~synthetic.tiles.patient_id.isin(["P0003", "P0007"])]
    with pytest.raises(ValueError, match=r"2 of 160 patients have no tissue tile.*P0003.*--dropna"):
        run_stratify(table, tmp_path / "a", tiles=few, **kw)
    m = run_stratify(table, tmp_path / "a", tiles=few, dropna=True, **kw)
    assert m["n"] == 158 and any("without tiles" in n for n in m["notes"])
    with pytest.raises(ValueError, match=r"no patient id column 'patient_id'.*tile_id"):
        run_stratify(table, tmp_path / "b", tiles=synthetic.tiles.drop(columns="patient_id"), **kw)
    with pytest.raises(ValueError, match=r"no tile feature column\(s\) \['ki67'\]"):
        run_stratify(table, tmp_path / "c", tiles=synthetic.tiles, tile_features=["ki67"], **kw)
    none = synthetic.tiles[["patient_id", "slide_id", "n_cells"]]
    with pytest.raises(ValueError, match=r"none of the per-tile biomarkers.*--tile-features"):
        run_stratify(table, tmp_path / "d", tiles=none, **kw)


def test_unfinished_cohort_folder_is_named(
    synthetic: SyntheticCohort, tmp_path: Path, capsys
) -> None:
    folder = write_cohort_folder(synthetic, tmp_path / "cohort")
    first = synthetic.slides.slide_id.iloc[0]
    (folder / "slides" / first / "tiles.parquet").unlink()
    out = tmp_path / "out"
    assert main(["stratify", str(folder), *SURVIVAL, "--model", "mil", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "1 slide(s) without a tile table" in err and first in err
    with pytest.raises(ValueError, match=r"no slides\.parquet"):
        cohort_tiles(tmp_path)


def test_cohort_run_stratifies_with_mil(
    cohort_dir: Path, synthetic: SyntheticCohort, runs: dict[str, Path]
) -> None:
    """`napari-gbm cohort --model mil`: the cohort's table stage hands run_stratify the tiles
    of the slides it analysed (``slides.parquet`` -> ``slides/<id>/tiles.parquet``), so the
    risks are those of `napari-gbm stratify DIR --model mil` on the finished folder."""
    from napari_gbm.cli import build_parser
    from napari_gbm.cohort import Cohort, CohortSlide
    from napari_gbm.cohort.tables import CohortResult, _stratify

    args = build_parser().parse_args(["cohort", "m.csv", "--out", "o", "--model", "mil"])
    assert args.model == "mil"
    clinical = synthetic.clinical.set_index("patient_id")
    slides = tuple(
        CohortSlide(
            slide_id=str(r.slide_id),
            path=cohort_dir / f"{r.slide_id}.svs",
            patient_id=str(r.patient_id),
            clinical={
                "time_months": float(clinical.loc[r.patient_id, "time_months"]),
                "event": bool(clinical.loc[r.patient_id, "event"]),
            },
        )
        for r in synthetic.slides.itertuples()
    )
    cohort = Cohort(slides, ("time_months", "event"), cohort_dir / "manifest.csv")
    patients = pd.read_parquet(cohort_dir / "patients.parquet")
    result = CohortResult(
        out=cohort_dir,
        slides=pd.read_parquet(cohort_dir / "slides.parquet"),
        failures=pd.DataFrame(),
        patients=patients,
        n_analysed=len(slides),
        n_skipped=0,
        n_failed=0,
        elapsed_s=0.0,
    )
    metrics = _stratify(cohort, result, cohort_dir, None, None, None, "mil")
    assert metrics is not None and metrics["model"] == "mil"
    assert metrics["n"] == len(patients) and metrics["n_tiles"] == len(synthetic.tiles)
    assert (cohort_dir / "stratify" / "tile_attention.parquet").is_file()
    mine = pd.read_csv(cohort_dir / "stratify" / "risk.csv").set_index("patient_id")
    theirs = pd.read_csv(runs["mil"] / "risk.csv").set_index("patient_id")
    np.testing.assert_allclose(mine.risk_score, theirs.risk_score.loc[mine.index], rtol=1e-5)
