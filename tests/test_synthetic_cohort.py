"""The synthetic cohort: tables consistent with each other, GBM-like ranges, and survival
that follows the stated model (true hazard ratios recovered by scikit-survival's Cox fit,
median survival and censoring as designed)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from napari_gbm.synthetic import make_synthetic_cohort
from napari_gbm.synthetic.cohort import HAZARD_COVARIATES, SyntheticCohort

SLIDE_COLUMNS = [
    "slide_id",
    "patient_id",
    "positive_percent",
    "cell_density_per_mm2",
    "necrosis_fraction",
    "nucleus_area_um2_cv",
    "h_score",
]
TILE_COLUMNS = [
    "slide_id",
    "tile_id",
    "n_cells",
    "cell_density_per_mm2",
    "positive_percent",
    "nucleus_area_um2_mean",
    "necrosis_fraction",
]
CLINICAL_COLUMNS = ["patient_id", "time_months", "event", "age", "idh_mutant", "mgmt_methylated"]


@pytest.fixture(scope="module")
def cohort() -> SyntheticCohort:
    return make_synthetic_cohort(300, seed=5)


@pytest.fixture(scope="module")
def big() -> SyntheticCohort:
    return make_synthetic_cohort(4000, slides_per_patient=(1, 2), tiles_per_slide=(5, 10), seed=11)


def test_columns_and_structure(cohort: SyntheticCohort) -> None:
    assert set(SLIDE_COLUMNS) <= set(cohort.slides.columns)
    assert set(TILE_COLUMNS) <= set(cohort.tiles.columns)
    assert list(cohort.clinical.columns) == CLINICAL_COLUMNS
    assert len(cohort.clinical) == 300 and cohort.clinical.patient_id.is_unique
    assert cohort.slides.slide_id.is_unique and cohort.tiles.tile_id.is_unique
    per_patient = cohort.slides.groupby("patient_id").size()
    assert per_patient.between(1, 3).all() and set(per_patient) == {1, 2, 3}
    per_slide = cohort.tiles.groupby("slide_id").size()
    assert per_slide.between(20, 60).all()
    np.testing.assert_array_equal(
        per_slide.loc[cohort.slides.slide_id].to_numpy(), cohort.slides.n_tiles.to_numpy()
    )
    # tiles know their patient through their slide
    owner = cohort.slides.set_index("slide_id").patient_id
    assert (owner.loc[cohort.tiles.slide_id].to_numpy() == cohort.tiles.patient_id).all()
    assert cohort.clinical.event.dtype == bool
    assert cohort.oracle_risk.shape == (300,)
    bags = cohort.tile_bags()
    assert len(bags) == 300 and all(b.shape[1] == 5 for b in bags)
    assert sum(len(b) for b in bags) == len(cohort.tiles)
    table = cohort.patient_table()
    assert list(table.patient_id) == list(cohort.clinical.patient_id)


def test_deterministic_by_seed() -> None:
    a = make_synthetic_cohort(50, seed=3)
    b = make_synthetic_cohort(50, seed=3)
    c = make_synthetic_cohort(50, seed=4)
    for name in ("slides", "tiles", "clinical", "patients"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.oracle_risk, b.oracle_risk)
    assert a.true_log_hr == b.true_log_hr
    assert not np.array_equal(a.clinical.time_months, c.clinical.time_months)


def test_slide_table_is_the_aggregate_of_its_tiles(cohort: SyntheticCohort) -> None:
    tiles = cohort.tiles
    area_mm2 = cohort.params["tile_area_mm2"]
    np.testing.assert_allclose(tiles.cell_density_per_mm2 * area_mm2, tiles.n_cells)
    np.testing.assert_allclose(tiles.positive_percent, 100 * tiles.n_positive / tiles.n_cells)
    slides = cohort.slides.set_index("slide_id")
    rows = []
    for sid, g in tiles.groupby("slide_id"):
        n = g.n_cells.to_numpy(float)
        m = g.nucleus_area_um2_mean.to_numpy()
        s = g.nucleus_area_um2_std.to_numpy()
        mean = np.sum(n * m) / n.sum()
        var = np.sum(n * (s**2 + (m - mean) ** 2)) / n.sum()  # law of total variance
        rows.append(
            {
                "slide_id": sid,
                "positive_percent": 100 * g.n_positive.sum() / g.n_cells.sum(),
                "cell_density_per_mm2": g.cell_density_per_mm2.mean(),
                "necrosis_fraction": g.necrosis_fraction.mean(),
                "nucleus_area_um2_cv": math.sqrt(var) / mean,
                "n_cells": g.n_cells.sum(),
            }
        )
    expected = pd.DataFrame(rows).set_index("slide_id").loc[slides.index]
    for col in expected.columns:
        np.testing.assert_allclose(slides[col], expected[col], rtol=1e-10, err_msg=col)
    # H-score = positive % x mean grade of positives, the grade within 1+ .. 3+
    grade = slides.h_score / slides.positive_percent
    assert grade.between(1.0, 3.0).all()


def test_gbm_like_ranges(cohort: SyntheticCohort) -> None:
    s = cohort.slides
    q = s.positive_percent.quantile([0.02, 0.98])
    assert q.iloc[0] > 4 and q.iloc[1] < 65
    assert s.cell_density_per_mm2.between(2000, 6000).all()
    assert s.necrosis_fraction.between(0, 0.5).all()
    assert s.nucleus_area_um2_cv.between(0.2, 0.8).all()
    assert s.h_score.between(0, 300).all()
    c = cohort.clinical
    assert c.age.between(20, 90).all() and 55 < c.age.median() < 70
    assert 0.3 < c.mgmt_methylated.mean() < 0.5
    assert c.idh_mutant.mean() < 0.15
    # hotspot tiles are high-proliferation tiles
    t = cohort.tiles
    gap = t[t.is_hotspot].positive_percent.mean() - t[~t.is_hotspot].positive_percent.mean()
    assert gap > 20


def test_patient_covariates_and_oracle(cohort: SyntheticCohort) -> None:
    per_slide = cohort.tiles.groupby("slide_id").is_hotspot.mean()
    slides = cohort.slides.assign(hot=per_slide.loc[cohort.slides.slide_id].to_numpy())
    means = slides.groupby("patient_id")[["positive_percent", "hot"]].mean()
    pts = cohort.patients.set_index("patient_id")
    np.testing.assert_allclose(pts.positive_percent, means.loc[pts.index, "positive_percent"])
    np.testing.assert_allclose(pts.hotspot_fraction, means.loc[pts.index, "hot"])
    table = cohort.patient_table().set_index("patient_id")
    np.testing.assert_allclose(table.positive_percent, pts.positive_percent)
    # the oracle is the stated linear predictor, centred
    eta = sum(
        cohort.true_log_hr[k] * (pts[k].to_numpy() - pts[k].mean()) for k in HAZARD_COVARIATES
    )
    np.testing.assert_allclose(cohort.oracle_risk, eta, atol=1e-12)
    # Ki-67 HR per cohort SD is the GBM pooled 1.73; MGMT and IDH protective
    sd = pts.positive_percent.std(ddof=1)
    assert math.exp(cohort.true_log_hr["positive_percent"] * sd) == pytest.approx(1.73)
    assert cohort.true_log_hr["mgmt_methylated"] < 0 and cohort.true_log_hr["idh_mutant"] < 0
    assert cohort.true_log_hr["age"] > 0 and cohort.true_log_hr["hotspot_fraction"] > 0


def test_survival_follows_the_stated_model(big: SyntheticCohort) -> None:
    c = big.clinical
    t = c.time_months.to_numpy()
    e = c.event.to_numpy(bool)
    assert (t > 0).all()
    censored = 1 - e.mean()
    assert 0.2 <= censored <= 0.3, censored
    # the true (uncensored) median is the designed one; Kaplan-Meier recovers it
    true_time = big.patients.true_time_months.to_numpy()
    assert np.median(true_time) == pytest.approx(15.5, abs=0.8)
    km_t, km_s = kaplan_meier_estimator(e, t)
    assert km_t[np.argmax(km_s <= 0.5)] == pytest.approx(15.5, abs=1.0)
    # the theoretical marginal median is exactly the requested one
    k, scale = big.params["shape"], big.params["scale_months"]
    s_med = np.mean(np.exp(-((15.5 / scale) ** k) * np.exp(big.oracle_risk)))
    assert s_med == pytest.approx(0.5, abs=1e-9)
    # scikit-survival's Cox fit recovers the true log hazard ratios
    X = big.patients[list(HAZARD_COVARIATES)].to_numpy(float)
    fit = CoxPHSurvivalAnalysis(ties="efron").fit(X, Surv.from_arrays(e, t))
    # errors per cohort SD for continuous covariates, per unit for 0/1 ones; tolerances
    # about 3.5 standard errors at ~2,900 events
    sd = X.std(axis=0)
    tol = {"mgmt_methylated": 0.15, "idh_mutant": 0.3}
    for j, name in enumerate(HAZARD_COVARIATES):
        binary = name in tol
        err = abs(fit.coef_[j] - big.true_log_hr[name]) * (1.0 if binary else sd[j])
        assert err < tol.get(name, 0.08), (name, fit.coef_[j], big.true_log_hr[name])
    # the oracle orders survival (Harrell's C well above chance)
    c_oracle = concordance_index_censored(e, t, big.oracle_risk)[0]
    assert 0.68 < c_oracle < 0.8


def test_hotspot_effect_is_beyond_mean_ki67(big: SyntheticCohort) -> None:
    """The tile-level effect: given the mean Ki-67, the hotspot fraction still predicts."""
    c = big.clinical
    cols = ["positive_percent", "hotspot_fraction"]
    X = big.patients[cols].to_numpy(float)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y = Surv.from_arrays(c.event.to_numpy(bool), c.time_months.to_numpy())
    fit = CoxPHSurvivalAnalysis().fit(X, y)
    assert fit.coef_[1] > 0.25  # per SD; true log(1.6) = 0.47 (Ki-67 and hotspots correlate)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="n_patients"):
        make_synthetic_cohort(3)
    with pytest.raises(ValueError, match="slides_per_patient"):
        make_synthetic_cohort(20, slides_per_patient=(2, 1))
    with pytest.raises(ValueError, match="tiles_per_slide"):
        make_synthetic_cohort(20, tiles_per_slide=(0, 5))
    with pytest.raises(ValueError, match="median_survival_months"):
        make_synthetic_cohort(20, median_survival_months=-1)
    with pytest.raises(ValueError, match="dropout_per_month"):
        make_synthetic_cohort(20, dropout_per_month=float("nan"))
