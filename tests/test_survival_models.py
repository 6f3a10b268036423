"""MLP Cox and attention-MIL Cox models, patient-grouped cross-validation and safe
save/load, checked against a synthetic cohort whose survival model (and oracle risk) is
known, against the C-index of the oracle on the same folds, and with hand-made files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from napari_gbm.survival.concordance import concordance_index
from napari_gbm.survival.cv import CVResult, cross_validate, grouped_cv_splits
from napari_gbm.survival.mil import AttentionMILCoxModel
from napari_gbm.survival.nn import MLPCoxModel
from napari_gbm.survival.persist import load_model, save_model
from napari_gbm.synthetic.cohort import SyntheticCohort, make_synthetic_cohort

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PATIENT_FEATURES = [
    "positive_percent",
    "cell_density_per_mm2",
    "necrosis_fraction",
    "nucleus_area_um2_cv",
    "h_score",
    "age",
    "idh_mutant",
    "mgmt_methylated",
]
CLINICAL = ["age", "idh_mutant", "mgmt_methylated"]
TILE_FEATURES = [
    "n_cells",
    "cell_density_per_mm2",
    "positive_percent",
    "nucleus_area_um2_mean",
    "necrosis_fraction",
]
# Small, fast settings. Measured on this cohort design (tiles_per_slide=(8, 24)), seeds 0-5:
# oracle C minus cross-validated C = 0.016-0.052 for the MLP on slide means (it cannot see
# the tile-level hotspot effect), 0.005-0.021 for the MIL; this file uses seed 1.
MLP_KW: dict[str, Any] = {"hidden": (8,), "l2": 1e-2, "epochs": 50, "lr": 2e-2}
MIL_KW: dict[str, Any] = {"embed_dim": 8, "attention_dim": 4, "epochs": 60, "lr": 2e-2, "l2": 1e-2}


@pytest.fixture(scope="module")
def cohort() -> SyntheticCohort:
    return make_synthetic_cohort(400, tiles_per_slide=(8, 24), seed=1)


@pytest.fixture(scope="module")
def table(cohort: SyntheticCohort) -> pd.DataFrame:
    pt = cohort.patient_table()
    pt[PATIENT_FEATURES] = pt[PATIENT_FEATURES].astype(float)
    pt["oracle"] = cohort.oracle_risk
    return pt


@pytest.fixture(scope="module")
def bags(cohort: SyntheticCohort) -> list[np.ndarray]:
    return cohort.tile_bags(TILE_FEATURES)


class ColumnRisk:
    """A 'model' whose risk is one column of X: the oracle, scored by cross_validate on
    exactly the folds the fitted models get."""

    def __init__(self, column: str = "oracle") -> None:
        self.column = column

    def fit(self, X: pd.DataFrame, time: Any, event: Any) -> ColumnRisk:
        return self

    def predict_risk(self, X: pd.DataFrame) -> np.ndarray:
        return X[self.column].to_numpy(float)


def _cv_args(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        table["time_months"].to_numpy(float),
        table["event"].to_numpy(bool),
        table["patient_id"].to_numpy(),
    )


@pytest.fixture(scope="module")
def oracle_cv(table: pd.DataFrame) -> CVResult:
    t, e, pid = _cv_args(table)
    return cross_validate(ColumnRisk, table, t, e, pid, n_splits=5, seed=0)


# ------------------------------------------------------------------ cross-validated quality
def test_oracle_cv_equals_concordance_on_the_folds(
    table: pd.DataFrame, oracle_cv: CVResult
) -> None:
    t, e, pid = _cv_args(table)
    splits = grouped_cv_splits(pid, 5, 0, event=e)
    expected = [concordance_index(t[te], e[te], table["oracle"].to_numpy()[te]) for _, te in splits]
    np.testing.assert_allclose(oracle_cv.fold_c_index, expected, rtol=0, atol=1e-12)
    assert oracle_cv.mean == pytest.approx(np.mean(expected))
    assert oracle_cv.std == pytest.approx(np.std(expected, ddof=1))
    np.testing.assert_array_equal(oracle_cv.out_of_fold_risk, table["oracle"].to_numpy())
    assert 0.65 < oracle_cv.mean < 0.8  # the cohort's designed signal


def test_mlp_cv_c_index_near_oracle(table: pd.DataFrame, oracle_cv: CVResult) -> None:
    t, e, pid = _cv_args(table)
    res = cross_validate(
        lambda: MLPCoxModel(**MLP_KW), table[PATIENT_FEATURES], t, e, pid, n_splits=5, seed=0
    )
    assert len(res.fold_c_index) == 5
    assert res.mean > 0.62
    assert res.mean > oracle_cv.mean - 0.05, (res.mean, oracle_cv.mean)
    assert np.isfinite(res.out_of_fold_risk).all()
    r = np.corrcoef(res.out_of_fold_risk, table["oracle"])[0, 1]
    assert r > 0.6, r


def test_mil_cv_c_index_near_oracle(
    table: pd.DataFrame, bags: list[np.ndarray], oracle_cv: CVResult
) -> None:
    t, e, pid = _cv_args(table)
    res = cross_validate(
        lambda: AttentionMILCoxModel(**MIL_KW),
        bags,
        t,
        e,
        pid,
        n_splits=5,
        seed=0,
        covariates=table[CLINICAL].astype(float),
    )
    assert res.mean > 0.62
    assert res.mean > oracle_cv.mean - 0.05, (res.mean, oracle_cv.mean)
    r = np.corrcoef(res.out_of_fold_risk, table["oracle"])[0, 1]
    assert r > 0.6, r


def test_mil_learns_from_tiles_alone(
    cohort: SyntheticCohort, table: pd.DataFrame, bags: list[np.ndarray]
) -> None:
    """Without clinical covariates the risk can only come from the tiles: it must follow
    the tile-driven part of the oracle (Ki-67 and hotspot fraction)."""
    pts = cohort.patients
    beta = cohort.true_log_hr
    tile_part = sum(beta[k] * pts[k].to_numpy() for k in ("positive_percent", "hotspot_fraction"))
    t, e, _ = _cv_args(table)
    train, test = np.arange(300), np.arange(300, 400)
    model = AttentionMILCoxModel(**MIL_KW).fit([bags[i] for i in train], t[train], e[train])
    risk = model.predict_risk([bags[i] for i in test])
    assert concordance_index(t[test], e[test], risk) > 0.6  # measured 0.68 (truth: 0.71)
    assert np.corrcoef(risk, tile_part[test])[0, 1] > 0.8  # measured 0.93
    # attention points at the tiles that drive the hazard: the hotspots (measured: 1.75x
    # the weight of other tiles, in every patient with both kinds)
    hot = [g.is_hotspot.to_numpy() for _, g in cohort.tiles.groupby("patient_id", sort=False)]
    ratios = [
        model.attention(b)[h].mean() / model.attention(b)[~h].mean()
        for b, h in zip(bags, hot, strict=True)
        if h.any() and (~h).any()
    ]
    assert np.median(ratios) > 1.3
    assert np.mean(np.array(ratios) > 1) > 0.9


# ------------------------------------------------------------------ grouped splits
def slide_table(cohort: SyntheticCohort) -> pd.DataFrame:
    return cohort.slides.merge(cohort.clinical, on="patient_id", how="left")


def test_grouped_splits_keep_each_patient_in_one_fold(cohort: SyntheticCohort) -> None:
    slides = slide_table(cohort)
    assert slides.groupby("patient_id").size().max() > 1  # several slides per patient
    pid = slides["patient_id"].to_numpy()
    ev = slides["event"].to_numpy(bool)
    splits = grouped_cv_splits(pid, 5, seed=3, event=ev)
    tested = np.concatenate([te for _, te in splits])
    np.testing.assert_array_equal(np.sort(tested), np.arange(len(slides)))
    for train, test in splits:
        assert set(pid[train]).isdisjoint(pid[test])
        assert len(np.intersect1d(train, test)) == 0
        assert len(train) + len(test) == len(slides)
    # stratified: patients with an event are spread evenly (+-1) over the folds
    pat = slides.drop_duplicates("patient_id")
    per_fold = [pat[pat.patient_id.isin(set(pid[te]))]["event"].sum() for _, te in splits]
    assert max(per_fold) - min(per_fold) <= 1
    n_pat = [len(set(pid[te])) for _, te in splits]
    assert max(n_pat) - min(n_pat) <= 1
    # deterministic by seed, different with another seed
    again = grouped_cv_splits(pid, 5, seed=3, event=ev)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again, strict=True))
    other = grouped_cv_splits(pid, 5, seed=4, event=ev)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(splits, other, strict=True))


def test_cross_validate_slide_table_scores_patients(cohort: SyntheticCohort) -> None:
    """Slides of a patient stay together, and each fold's C-index is over patients, with
    their slides' risks averaged."""
    slides = slide_table(cohort)
    slides["noisy"] = cohort.patients.set_index("patient_id").loc[
        slides["patient_id"], "positive_percent"
    ].to_numpy() + np.random.default_rng(0).normal(0, 5, len(slides))
    t = slides["time_months"].to_numpy(float)
    e = slides["event"].to_numpy(bool)
    pid = slides["patient_id"].to_numpy()
    res = cross_validate(lambda: ColumnRisk("noisy"), slides, t, e, pid, n_splits=4, seed=2)
    assert (slides.assign(fold=res.fold).groupby("patient_id")["fold"].nunique() == 1).all()
    for k, c in enumerate(res.fold_c_index):
        part = slides[res.fold == k]
        per_patient = part.groupby("patient_id", sort=False).agg(
            time=("time_months", "first"), event=("event", "first"), risk=("noisy", "mean")
        )
        assert c == pytest.approx(
            concordance_index(per_patient.time, per_patient.event, per_patient.risk), abs=1e-12
        )
    # a real model on the slide table
    feats = ["positive_percent", "h_score", "age", "mgmt_methylated", "idh_mutant"]
    X = slides[feats].astype(float)
    fit = cross_validate(lambda: MLPCoxModel(**MLP_KW), X, t, e, pid, n_splits=4, seed=2)
    assert fit.mean > 0.6


def test_cross_validate_refuses_inconsistent_patient_outcome(cohort: SyntheticCohort) -> None:
    slides = slide_table(cohort)
    t = slides["time_months"].to_numpy(float).copy()
    multi = slides.groupby("patient_id").size()
    row = int(np.flatnonzero(slides["patient_id"].isin(multi[multi > 1].index))[0])
    t[row] += 1.0
    with pytest.raises(ValueError, match="different time or event"):
        cross_validate(
            ColumnRisk, slides.assign(oracle=0.0), t, slides["event"], slides["patient_id"]
        )
    with pytest.raises(ValueError, match="exceeds the number of patients"):
        grouped_cv_splits(["a", "a", "b"], n_splits=3)
    with pytest.raises(ValueError, match="n_splits"):
        grouped_cv_splits(["a", "b", "c"], n_splits=1)


# ------------------------------------------------------------------ determinism, MIL properties
def test_seeds_give_identical_models(table: pd.DataFrame, bags: list[np.ndarray]) -> None:
    t, e, _ = _cv_args(table)
    X = table[PATIENT_FEATURES]
    state = torch.get_rng_state()
    kw = {**MLP_KW, "epochs": 20}
    a = MLPCoxModel(**kw, seed=7).fit(X, t, e).predict_risk(X)
    b = MLPCoxModel(**kw, seed=7).fit(X, t, e).predict_risk(X)
    c = MLPCoxModel(**kw, seed=8).fit(X, t, e).predict_risk(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    sub = slice(0, 120)
    kw_mil = {**MIL_KW, "epochs": 20}
    m1 = AttentionMILCoxModel(**kw_mil, seed=3).fit(bags[sub], t[sub], e[sub])
    m2 = AttentionMILCoxModel(**kw_mil, seed=3).fit(bags[sub], t[sub], e[sub])
    m3 = AttentionMILCoxModel(**kw_mil, seed=4).fit(bags[sub], t[sub], e[sub])
    np.testing.assert_array_equal(m1.predict_risk(bags[sub]), m2.predict_risk(bags[sub]))
    assert not np.array_equal(m1.predict_risk(bags[sub]), m3.predict_risk(bags[sub]))
    # the caller's global RNG is left alone
    assert torch.equal(torch.get_rng_state(), state)


def test_early_stopping_keeps_best_epoch(table: pd.DataFrame) -> None:
    t, e, _ = _cv_args(table)
    model = MLPCoxModel(hidden=(8,), epochs=300, validation_fraction=0.2, patience=15, seed=1)
    model.fit(table[PATIENT_FEATURES], t, e)
    m = model.training_metrics_
    assert m["n_validation"] == pytest.approx(0.2 * len(t), abs=2)
    assert 1 <= m["best_epoch"] <= m["epochs_run"] <= 300
    assert m["epochs_run"] == 300 or m["epochs_run"] - m["best_epoch"] == 15


@pytest.fixture(scope="module")
def mil_fit(table: pd.DataFrame, bags: list[np.ndarray]) -> AttentionMILCoxModel:
    t, e, _ = _cv_args(table)
    return AttentionMILCoxModel(**MIL_KW).fit(bags, t, e, covariates=table[CLINICAL])


def test_mil_is_permutation_invariant_and_bags_independent(
    mil_fit: AttentionMILCoxModel, table: pd.DataFrame, bags: list[np.ndarray]
) -> None:
    cov = table[CLINICAL].iloc[:5]
    base = mil_fit.predict_risk(bags[:5], covariates=cov)
    rng = np.random.default_rng(0)
    perms = [rng.permutation(len(b)) for b in bags[:5]]
    shuffled = mil_fit.predict_risk([b[p] for b, p in zip(bags[:5], perms, strict=True)], cov)
    np.testing.assert_allclose(shuffled, base, rtol=0, atol=1e-5)
    # one bag alone scores as in a batch (packing does not mix bags)
    alone = mil_fit.predict_risk([bags[3]], covariates=cov.iloc[[3]])
    assert alone[0] == pytest.approx(base[3], abs=1e-5)
    w = mil_fit.attention(bags[3])
    assert w.shape == (len(bags[3]),)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0, abs=1e-6)
    w_perm = mil_fit.attention(bags[3][perms[3]])
    np.testing.assert_allclose(w_perm, w[perms[3]], atol=1e-6)
    # DataFrame bags are matched by column name
    df = pd.DataFrame(bags[3], columns=mil_fit.feature_names_)
    named = pd.DataFrame(bags[3], columns=TILE_FEATURES)[TILE_FEATURES[::-1]]
    assert mil_fit.feature_names_ == [f"x{i}" for i in range(5)]
    np.testing.assert_allclose(mil_fit.attention(df), w, atol=1e-12)
    with pytest.raises(ValueError, match="lacks the model's feature columns"):
        mil_fit.attention(named)


# ------------------------------------------------------------------ persistence
def test_save_load_round_trip(
    tmp_path: Path, table: pd.DataFrame, bags: list[np.ndarray], mil_fit: AttentionMILCoxModel
) -> None:
    t, e, _ = _cv_args(table)
    X = table[PATIENT_FEATURES]
    mlp = MLPCoxModel(**MLP_KW).fit(X, t, e)
    json_path = save_model(mlp, tmp_path / "mlp")
    assert json_path == tmp_path / "mlp" / "model.json"
    meta = json.loads(json_path.read_text())
    assert meta["model"] == "mlp_cox"
    assert meta["feature_names"] == PATIENT_FEATURES
    assert meta["hyperparameters"]["hidden"] == [8]
    np.testing.assert_array_equal(meta["scaling"]["mean"], mlp.mean_)
    assert "napari_gbm_version" in meta and "train_loss" in meta["training_metrics"]
    raw = torch.load(tmp_path / "mlp" / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in raw.values())
    back = load_model(tmp_path / "mlp")
    assert isinstance(back, MLPCoxModel)
    np.testing.assert_array_equal(back.predict_risk(X), mlp.predict_risk(X))
    # a .pt/.json path pair with another stem
    save_model(mil_fit, tmp_path / "other" / "mil.pt")
    assert (tmp_path / "other" / "mil.json").is_file()
    mil_back = load_model(tmp_path / "other" / "mil.json")
    assert isinstance(mil_back, AttentionMILCoxModel)
    cov = table[CLINICAL]
    np.testing.assert_array_equal(
        mil_back.predict_risk(bags, covariates=cov), mil_fit.predict_risk(bags, covariates=cov)
    )
    np.testing.assert_array_equal(mil_back.attention(bags[0]), mil_fit.attention(bags[0]))
    # no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "mlp").iterdir()) == ["model.json", "model.pt"]


def test_cox_model_round_trip(tmp_path: Path, table: pd.DataFrame) -> None:
    cox = pytest.importorskip("napari_gbm.survival.cox")
    t, e, _ = _cv_args(table)
    X = table[["positive_percent", "age", "mgmt_methylated"]].astype(float).iloc[:150]
    model = cox.CoxModel().fit(X, t[:150], e[:150])
    save_model(model, tmp_path)
    back = load_model(tmp_path)
    assert type(back) is cox.CoxModel
    np.testing.assert_array_equal(back.predict_risk(X), model.predict_risk(X))


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: arbitrary code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.marker,))


def _rehash(json_path: Path, pt_path: Path) -> None:
    """Point model.json at the crafted model.pt, as an attacker replacing both would."""
    import hashlib

    meta = json.loads(json_path.read_text())
    meta["weights_sha256"] = hashlib.sha256(pt_path.read_bytes()).hexdigest()
    json_path.write_text(json.dumps(meta))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_load_refuses_pickled_code(tmp_path: Path, table: pd.DataFrame, writer: str) -> None:
    t, e, _ = _cv_args(table)
    mlp = MLPCoxModel(hidden=(4,), epochs=5).fit(table[PATIENT_FEATURES], t, e)
    folder = tmp_path / "m"
    save_model(mlp, folder)
    # the payload is live: plain unpickling runs it
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()
    marker = tmp_path / "pwned"
    evil = {"net.0.weight": _Payload(marker)}
    if writer == "pickle":
        (folder / "model.pt").write_bytes(pickle.dumps(evil, protocol=2))
    else:
        torch.save(evil, folder / "model.pt")
    with pytest.raises(ValueError, match="does not match"):  # checksum first
        load_model(folder)
    _rehash(folder / "model.json", folder / "model.pt")
    with pytest.raises(ValueError, match="refusing to load"):
        load_model(folder)
    assert not marker.exists()


def test_load_checks_version_type_and_files(tmp_path: Path, table: pd.DataFrame) -> None:
    t, e, _ = _cv_args(table)
    X = table[PATIENT_FEATURES]
    mlp = MLPCoxModel(hidden=(4,), epochs=5).fit(X, t, e)
    json_path = save_model(mlp, tmp_path / "m")
    meta = json.loads(json_path.read_text())
    meta["napari_gbm_version"] = "0.0.1-old"
    json_path.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="saved by napari-gbm 0.0.1-old"):
        back = load_model(json_path)
    np.testing.assert_array_equal(back.predict_risk(X), mlp.predict_risk(X))
    meta["model"] = "random_forest"
    json_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown model type 'random_forest'"):
        load_model(json_path)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_model(tmp_path / "nothing")
    # tensors of the wrong shapes for the hyperparameters
    save_model(mlp, tmp_path / "w")
    meta_w = json.loads((tmp_path / "w" / "model.json").read_text())
    meta_w["hyperparameters"]["hidden"] = [5]
    (tmp_path / "w" / "model.json").write_text(json.dumps(meta_w))
    with pytest.raises(ValueError, match="shape"):
        load_model(tmp_path / "w")
    with pytest.raises(ValueError, match="no get_state"):
        save_model(object(), tmp_path / "x")


# ------------------------------------------------------------------ bad input
def test_bad_input_mlp(table: pd.DataFrame) -> None:
    t, e, _ = _cv_args(table)
    X = table[PATIENT_FEATURES]
    m = MLPCoxModel(hidden=(4,), epochs=5)
    with pytest.raises(ValueError, match="not fitted"):
        m.predict_risk(X)
    bad = X.copy()
    bad.iloc[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite.*cell_density_per_mm2"):
        m.fit(bad, t, e)
    with pytest.raises(ValueError, match="2-D"):
        m.fit(X.to_numpy()[:, 0], t, e)
    with pytest.raises(ValueError, match="one value per sample"):
        m.fit(X, t[:-1], e[:-1])
    few = np.zeros(len(t), bool)
    few[0] = True
    with pytest.raises(ValueError, match="at least 2 observed events"):
        m.fit(X, t, few)
    with pytest.raises(ValueError, match="0/1 or bool"):
        m.fit(X, t, np.full(len(t), 2))
    with pytest.raises(ValueError, match="non-numeric"):
        m.fit(X.assign(grade="IV"), t, e)
    m.fit(X, t, e)
    with pytest.raises(ValueError, match="lacks the model's feature columns"):
        m.predict_risk(X.drop(columns="age"))
    with pytest.raises(ValueError, match="7 features, the model was fitted on 8"):
        m.predict_risk(X.to_numpy()[:, :7])
    with pytest.raises(ValueError, match="ties"):
        MLPCoxModel(ties="exact")


def test_bad_input_mil(table: pd.DataFrame, bags: list[np.ndarray]) -> None:
    t, e, _ = _cv_args(table)
    m = AttentionMILCoxModel(embed_dim=4, attention_dim=2, epochs=3)
    sub = bags[:40]
    ts, es = t[:40], e[:40]
    with pytest.raises(ValueError, match="bag 2 is empty"):
        m.fit([*sub[:2], np.zeros((0, 5)), *sub[3:]], ts, es)
    nan_bag = sub[5].copy()
    nan_bag[1, 2] = np.nan
    with pytest.raises(ValueError, match="bag 5 has NaN"):
        m.fit([*sub[:5], nan_bag, *sub[6:]], ts, es)
    with pytest.raises(ValueError, match="bag 1 has 4 features"):
        m.fit([sub[0], sub[1][:, :4], *sub[2:]], ts, es)
    with pytest.raises(ValueError, match="bag 0 must be 2-D"):
        m.fit([np.ones((3, 4, 5)), *sub[1:]], ts, es)
    with pytest.raises(ValueError, match="got a single ndarray"):
        m.fit(np.stack([b[:5] for b in sub]), ts, es)
    with pytest.raises(ValueError, match="one value per sample"):
        m.fit(sub, t[:39], e[:39])
    few = np.zeros(40, bool)
    few[3] = True
    with pytest.raises(ValueError, match="at least 2 observed events"):
        m.fit(sub, ts, few)
    with pytest.raises(ValueError, match="covariates has 39 rows"):
        m.fit(sub, ts, es, covariates=table[CLINICAL].iloc[:39])
    m.fit(sub, ts, es)
    with pytest.raises(ValueError, match="fitted without covariates"):
        m.predict_risk(sub, covariates=table[CLINICAL].iloc[:40])
    with pytest.raises(ValueError, match="bag 0 has 6 features, the model was fitted on 5"):
        m.attention(np.ones((3, 6)))
