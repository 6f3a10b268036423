"""CoxModel and the shared Cox loss against a brute-force partial likelihood written here,
lifelines' numbers (tests/data/lifelines_reference.json) and scikit-survival run live."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sksurv.linear_model import CoxPHSurvivalAnalysis

from napari_gbm.survival._loss import cox_partial_log_likelihood, cox_partial_nll
from napari_gbm.survival.concordance import concordance_index
from napari_gbm.survival.cox import SUMMARY_COLUMNS, CoxFitError, CoxModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
COVARIATES = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


@pytest.fixture(scope="module")
def rossi_fit(rossi: pd.DataFrame) -> CoxModel:
    return CoxModel().fit(rossi[COVARIATES], rossi["week"], rossi["arrest"])


def brute_log_likelihood(
    beta: np.ndarray, X: np.ndarray, time: np.ndarray, event: np.ndarray, ties: str
) -> float:
    """The partial log-likelihood summed event time by event time, straight from the
    definitions (Breslow 1974; Efron 1977)."""
    eta = X @ beta
    ll = 0.0
    for s in np.unique(time[event]):
        dead = np.flatnonzero((time == s) & event)
        risk_sum = np.exp(eta[time >= s]).sum()
        d = dead.size
        ll += eta[dead].sum()
        if ties == "breslow":
            ll -= d * np.log(risk_sum)
        else:
            dead_sum = np.exp(eta[dead]).sum()
            ll -= sum(np.log(risk_sum - k / d * dead_sum) for k in range(d))
    return float(ll)


def numeric_hessian(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    p = x.size
    hess = np.empty((p, p))
    eye = np.eye(p) * h
    for i in range(p):
        for j in range(p):
            hess[i, j] = (
                f(x + eye[i] + eye[j])
                - f(x + eye[i] - eye[j])
                - f(x - eye[i] + eye[j])
                + f(x - eye[i] - eye[j])
            ) / (4 * h * h)
    return hess


def tied_data(seed: int, n: int = 300, p: int = 4) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Covariates with an effect, integer times (many ties), about 40 % censored."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"f{j}" for j in range(p)])
    X["f0"] = (X["f0"] > 0).astype(float)  # one binary covariate
    lin = X.to_numpy() @ np.linspace(0.8, -0.4, p)
    time = np.ceil(rng.exponential(size=n) * np.exp(-lin) * 6)
    event = rng.random(n) < 0.6
    return X, time, event


def sksurv_y(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    y = np.empty(len(time), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event, time
    return y


# ---------------------------------------------------------------- the shared loss


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_loss_matches_brute_force(ties: str) -> None:
    X, time, event = tied_data(1, n=80, p=3)
    x = X.to_numpy()
    rng = np.random.default_rng(2)
    for _ in range(3):
        beta = rng.normal(size=3)
        ours = cox_partial_log_likelihood(
            torch.from_numpy(x @ beta), torch.from_numpy(time), torch.from_numpy(event), ties
        )
        assert float(ours) == pytest.approx(
            brute_log_likelihood(beta, x, time, event, ties), rel=1e-12
        )
    nll = cox_partial_nll(
        torch.from_numpy(x @ beta), torch.from_numpy(time), torch.from_numpy(event), ties
    )
    assert float(nll) == pytest.approx(
        -brute_log_likelihood(beta, x, time, event, ties) / event.sum(), rel=1e-12
    )


# ---------------------------------------------------------------- lifelines


def test_efron_fit_matches_lifelines(rossi_fit: CoxModel, lifelines_ref: dict) -> None:
    r = lifelines_ref["cox_efron"]
    m = rossi_fit
    assert m.feature_names_ == r["covariates"] == COVARIATES
    np.testing.assert_allclose(m.coef_, r["coef"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(m.se_, r["se"], rtol=1e-6)
    np.testing.assert_allclose(m.z_, r["z"], rtol=1e-6)
    np.testing.assert_allclose(m.p_values_, r["p"], rtol=1e-5)
    np.testing.assert_allclose(m.covariance_, r["covariance"], rtol=1e-6, atol=1e-12)
    assert m.log_likelihood_ == pytest.approx(r["log_likelihood"], abs=1e-9)
    assert m.log_likelihood_null_ == pytest.approx(r["log_likelihood_null"], abs=1e-9)
    assert m.concordance_index_ == pytest.approx(r["concordance_index"], abs=1e-12)
    s = m.summary()
    np.testing.assert_allclose(s["hazard_ratio"], r["hazard_ratio"], rtol=1e-6)
    np.testing.assert_allclose(s["ci_lower"], r["hr_ci_lower"], rtol=1e-6)
    np.testing.assert_allclose(s["ci_upper"], r["hr_ci_upper"], rtol=1e-6)


def test_penalised_fit_matches_lifelines_penalizer(
    rossi: pd.DataFrame, lifelines_ref: dict
) -> None:
    # lifelines' penalizer c adds n c / 2 ||beta_std||^2: l2 = n c on standardised covariates
    r = lifelines_ref["cox_efron_penalized"]
    m = CoxModel().fit(
        rossi[COVARIATES], rossi["week"], rossi["arrest"], l2=len(rossi) * r["penalizer"]
    )
    np.testing.assert_allclose(m.coef_, r["coef"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(m.se_, r["se"], rtol=1e-6)
    np.testing.assert_allclose(m.p_values_, r["p"], rtol=1e-5)


# ---------------------------------------------------------------- scikit-survival


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("l2", [0.0, 5.0])
def test_fit_matches_sksurv_on_rossi(rossi: pd.DataFrame, ties: str, l2: float) -> None:
    X = rossi[COVARIATES]
    y = sksurv_y(rossi["week"].to_numpy(float), rossi["arrest"].to_numpy().astype(bool))
    sk = CoxPHSurvivalAnalysis(alpha=l2, ties=ties, tol=1e-14, n_iter=200).fit(X, y)
    m = CoxModel().fit(X, rossi["week"], rossi["arrest"], ties=ties, l2=l2, standardize=False)
    np.testing.assert_allclose(m.coef_, sk.coef_, rtol=1e-8)
    # sksurv's risk is uncentred: ours differs by a constant
    diff = m.predict_risk(X) - sk.predict(X)
    assert np.ptp(diff) < 1e-10


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_fit_matches_sksurv_with_many_ties(seed: int, ties: str) -> None:
    X, time, event = tied_data(seed)
    assert len(np.unique(time[event])) < event.sum() / 3  # heavily tied
    y = sksurv_y(time, event)
    sk = CoxPHSurvivalAnalysis(ties=ties, tol=1e-14, n_iter=200).fit(X, y)
    m = CoxModel().fit(X, time, event, ties=ties)
    np.testing.assert_allclose(m.coef_, sk.coef_, rtol=1e-8)
    # standardised penalty = sksurv's penalty on the standardised matrix (ddof = 1)
    Xs = (X - X.mean()) / X.std(ddof=1)
    sk_std = CoxPHSurvivalAnalysis(alpha=3.0, ties=ties, tol=1e-14, n_iter=200).fit(Xs, y)
    m_std = CoxModel().fit(X, time, event, ties=ties, l2=3.0, standardize=True)
    np.testing.assert_allclose(m_std.coef_ * X.std(ddof=1).to_numpy(), sk_std.coef_, rtol=1e-8)
    assert m.concordance_index_ == pytest.approx(concordance_index(time, event, sk.predict(X)))


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_standard_errors_are_the_inverse_observed_information(ties: str) -> None:
    # independent of lifelines (Efron only): the numeric Hessian of the brute-force
    # partial likelihood at our optimum
    X, time, event = tied_data(7, n=120, p=3)
    m = CoxModel().fit(X, time, event, ties=ties)
    x = X.to_numpy()

    def nll(b: np.ndarray) -> float:
        return -brute_log_likelihood(b, x, time, event, ties)

    cov = np.linalg.inv(numeric_hessian(nll, m.coef_))
    np.testing.assert_allclose(m.covariance_, cov, rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(m.se_, np.sqrt(np.diag(cov)), rtol=1e-5)
    assert m.log_likelihood_ == pytest.approx(-nll(m.coef_), rel=1e-12)


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("l2", [0.0, 2.0])
def test_invariant_to_covariate_scaling(l2: float) -> None:
    X, time, event = tied_data(3)
    factors = np.array([1.0, 1000.0, 1e-3, -7.0])
    m = CoxModel().fit(X, time, event, l2=l2)
    m2 = CoxModel().fit(X * factors, time, event, l2=l2)
    np.testing.assert_allclose(m2.coef_ * factors, m.coef_, rtol=1e-8)
    np.testing.assert_allclose(m2.se_ * np.abs(factors), m.se_, rtol=1e-7)
    np.testing.assert_allclose(m2.p_values_, m.p_values_, rtol=1e-7)
    np.testing.assert_allclose(m2.predict_risk(X * factors), m.predict_risk(X), atol=1e-9)
    assert m2.log_likelihood_ == pytest.approx(m.log_likelihood_, rel=1e-12)


def test_summary_columns_and_intervals(rossi_fit: CoxModel) -> None:
    s = rossi_fit.summary()
    assert tuple(s.columns) == SUMMARY_COLUMNS
    assert list(s.columns[:6]) == ["covariate", "coef", "hazard_ratio", "ci_lower", "ci_upper", "p"]
    assert (s["ci_lower"] < s["hazard_ratio"]).all() and (s["hazard_ratio"] < s["ci_upper"]).all()
    # the 95 % interval excludes 1 exactly when p < 0.05
    excludes = (s["ci_lower"] > 1) | (s["ci_upper"] < 1)
    assert (excludes == (s["p"] < 0.05)).all()
    s90 = rossi_fit.summary(alpha=0.1)
    assert (s90["ci_lower"] > s["ci_lower"]).all()


def test_hazard_ratio_per_sd_is_that_of_the_standardised_covariates(rossi: pd.DataFrame) -> None:
    """Per SD: exactly the hazard ratios (and intervals) of a model fitted on the
    covariates divided by their standard deviations; per unit they can read 1.000."""
    X, time, event = rossi[COVARIATES], rossi["week"], rossi["arrest"]
    s = CoxModel().fit(X, time, event).summary()
    sd = np.asarray(X, dtype=np.float64).std(axis=0, ddof=1)
    np.testing.assert_allclose(s["sd"], sd, rtol=1e-12)
    z = CoxModel().fit(np.asarray(X, dtype=np.float64) / sd, time, event).summary()
    for per_sd, ref in (
        ("hazard_ratio_per_sd", "hazard_ratio"),
        ("ci_lower_per_sd", "ci_lower"),
        ("ci_upper_per_sd", "ci_upper"),
    ):
        np.testing.assert_allclose(s[per_sd], z[ref], rtol=1e-7)
    # a density in cells per mm² (SD in the thousands): per unit it prints as 1
    dense = np.asarray(X, dtype=np.float64) * np.array([1000.0] + [1.0] * (sd.size - 1))
    d = CoxModel().fit(dense, time, event).summary()
    assert f"{d['hazard_ratio'][0]:.3g}" == "1"
    np.testing.assert_allclose(d["hazard_ratio_per_sd"], s["hazard_ratio_per_sd"], rtol=1e-7)


def test_predict_risk_by_column_name(rossi: pd.DataFrame, rossi_fit: CoxModel) -> None:
    X = rossi[COVARIATES]
    shuffled = rossi[["arrest", *reversed(COVARIATES)]]
    np.testing.assert_array_equal(rossi_fit.predict_risk(shuffled), rossi_fit.predict_risk(X))
    np.testing.assert_allclose(
        rossi_fit.predict_risk(X.to_numpy()), (X - X.mean()).to_numpy() @ rossi_fit.coef_
    )
    assert rossi_fit.predict_risk(X.iloc[:1]).shape == (1,)  # one subject: constant columns
    with pytest.raises(ValueError, match=r"lacks the covariate column\(s\) \['prio'\]"):
        rossi_fit.predict_risk(X.drop(columns="prio"))
    with pytest.raises(ValueError, match="NaN"):
        rossi_fit.predict_risk(X.assign(age=np.nan))
    with pytest.raises(ValueError, match=r"\['prio'\] appear more than once"):
        rossi_fit.predict_risk(pd.concat([X, X[["prio"]]], axis=1))


def test_deterministic(rossi: pd.DataFrame, rossi_fit: CoxModel) -> None:
    again = CoxModel().fit(rossi[COVARIATES], rossi["week"], rossi["arrest"])
    np.testing.assert_array_equal(again.coef_, rossi_fit.coef_)
    np.testing.assert_array_equal(again.covariance_, rossi_fit.covariance_)


def test_state_round_trip(rossi: pd.DataFrame, rossi_fit: CoxModel, tmp_path: Path) -> None:
    tensors, meta = rossi_fit.get_state()
    assert meta["model"] == "cox" and meta["feature_names"] == COVARIATES
    assert meta["n"] == 432 and meta["n_events"] == 114 and meta["ties"] == "efron"
    assert all(t.dtype == torch.float64 for t in tensors.values())
    torch.save(tensors, tmp_path / "w.pt")
    (tmp_path / "m.json").write_text(json.dumps(meta))
    loaded = CoxModel.from_state(
        torch.load(tmp_path / "w.pt", weights_only=True),
        json.loads((tmp_path / "m.json").read_text()),
    )
    X = rossi[COVARIATES]
    np.testing.assert_array_equal(loaded.predict_risk(X), rossi_fit.predict_risk(X))
    pd.testing.assert_frame_equal(loaded.summary(), rossi_fit.summary())
    assert loaded.concordance_index_ == rossi_fit.concordance_index_
    with pytest.raises(ValueError, match="not a Cox model"):
        CoxModel.from_state(tensors, {**meta, "model": "mlp_cox"})
    with pytest.raises(ValueError, match="shape"):
        CoxModel.from_state({**tensors, "coef": tensors["coef"][:3]}, meta)
    with pytest.raises(RuntimeError, match="not fitted"):
        CoxModel().predict_risk(X)


# ---------------------------------------------------------------- bad input


def _small() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"ki67": rng.random(30), "age": rng.normal(60, 10, 30)})
    return X, rng.integers(1, 20, 30).astype(float), rng.random(30) < 0.6


def test_bad_input_errors() -> None:
    X, time, event = _small()
    ev1 = np.zeros(30, bool)
    ev1[3] = True
    with pytest.raises(ValueError, match="only 1 event"):
        CoxModel().fit(X, time, ev1)
    ev2 = ev1.copy()
    ev2[4] = True
    with pytest.raises(ValueError, match=r"2 events for 2 covariates.*covariates \+ 1 = 3"):
        CoxModel().fit(X, time, ev2)
    with pytest.raises(ValueError, match=r"\['grade'\] are constant"):
        CoxModel().fit(X.assign(grade=4.0), time, event)
    bad = X.copy()
    bad.loc[[2, 5, 7], "age"] = np.nan
    with pytest.raises(ValueError, match="'age': 3"):
        CoxModel().fit(bad, time, event)
    with pytest.raises(ValueError, match="time has 1 NaN"):
        CoxModel().fit(X, np.where(np.arange(30) == 0, np.nan, time), event)
    with pytest.raises(ValueError, match="time must be > 0"):
        CoxModel().fit(X, np.where(np.arange(30) == 0, 0.0, time), event)
    with pytest.raises(ValueError, match="event must be 0/1"):
        CoxModel().fit(X, time, np.where(event, 2, 0))
    with pytest.raises(ValueError, match="different lengths"):
        CoxModel().fit(X, time, event[:-1])
    with pytest.raises(ValueError, match="29 rows but there are 30"):
        CoxModel().fit(X.iloc[:-1], time, event)
    with pytest.raises(ValueError, match="ties"):
        CoxModel().fit(X, time, event, ties="exact")
    with pytest.raises(ValueError, match="l2"):
        CoxModel().fit(X, time, event, l2=-1.0)
    with pytest.raises(ValueError, match="numeric"):
        CoxModel().fit(X.assign(site="a"), time, event)


def test_collinear_covariates_are_named() -> None:
    X, time, event = _small()
    with pytest.raises(CoxFitError, match="collinear") as info:
        CoxModel().fit(X.assign(both=X["ki67"] * 2 + X["age"]), time, event)
    assert "'both'" in str(info.value) and "'ki67'" in str(info.value)


def test_separation_is_refused_and_named() -> None:
    rng = np.random.default_rng(4)
    n = 80
    time = rng.permutation(np.arange(1, n + 1)).astype(float)
    event = np.ones(n, bool)
    X = pd.DataFrame({"noise": rng.normal(size=n), "early": (time <= 30).astype(float)})
    with pytest.raises(CoxFitError, match=r"\['early'\].*separate"):
        CoxModel().fit(X, time, event)
    # a ridge penalty makes the optimum finite
    m = CoxModel().fit(X, time, event, l2=1.0)
    assert np.isfinite(m.coef_).all() and m.coef_[1] > 1
    # one subject out of place: a large but finite effect, fitted without complaint
    time2 = time.copy()
    i, j = np.flatnonzero(time == 5)[0], np.flatnonzero(time == 70)[0]
    time2[i], time2[j] = time[j], time[i]
    m = CoxModel().fit(X, time2, event)
    assert 1 < m.coef_[1] < 10 and m.se_[1] < 1


def test_non_convergence_is_an_error(rossi: pd.DataFrame) -> None:
    with pytest.raises(CoxFitError, match="did not converge in 1 Newton"):
        CoxModel().fit(rossi[COVARIATES], rossi["week"], rossi["arrest"], max_iter=1)
