"""The stratify job: the contract of its outputs, agreement with lifelines on rossi, and
recovery of a known survival model on the synthetic cohort."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_gbm.survival.stratify import run_stratify
from napari_gbm.survival.table_input import load_table

DATA = Path(__file__).parent / "data"
ROSSI_COVARIATES = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


@pytest.fixture(scope="module")
def rossi(rossi):
    """rossi with a patient id per row."""
    df = rossi.copy()
    df.insert(0, "patient_id", [f"R{i:03d}" for i in range(len(df))])
    return df


@pytest.fixture(scope="module")
def rossi_run(rossi, tmp_path_factory):
    out = tmp_path_factory.mktemp("strat") / "rossi"
    metrics = run_stratify(
        rossi, out, time_col="week", event_col="arrest", covariates=ROSSI_COVARIATES
    )
    return out, metrics


def test_rossi_cox_summary_matches_lifelines(rossi_run, lifelines_ref):
    out, _ = rossi_run
    ref = lifelines_ref["cox_efron"]
    summary = pd.read_csv(out / "cox_summary.csv")
    assert list(summary.columns[:6]) == [
        "covariate",
        "coef",
        "hazard_ratio",
        "ci_lower",
        "ci_upper",
        "p",
    ]
    got = summary.set_index("covariate").loc[ref["covariates"]]
    np.testing.assert_allclose(got["coef"], ref["coef"], atol=1e-4)
    np.testing.assert_allclose(got["p"], ref["p"], atol=1e-4)
    np.testing.assert_allclose(got["ci_lower"], ref["hr_ci_lower"], rtol=1e-4)
    np.testing.assert_allclose(got["ci_upper"], ref["hr_ci_upper"], rtol=1e-4)


def test_rossi_metrics_match_lifelines_and_sksurv(rossi_run, rossi, lifelines_ref):
    from sksurv.compare import compare_survival

    out, m = rossi_run
    assert m["c_index"] == pytest.approx(lifelines_ref["cox_efron"]["concordance_index"], abs=1e-6)
    assert m["n"] == len(rossi) and m["n_events"] == int(rossi["arrest"].sum())
    risk = pd.read_csv(out / "risk.csv")
    assert list(risk.columns) == ["patient_id", "risk_score", "risk_group", "risk_group_label"]
    assert (risk["risk_group_label"] == (risk["risk_score"] > np.median(risk["risk_score"]))).all()
    y = np.array(
        list(zip(rossi["arrest"].astype(bool), rossi["week"].astype(float), strict=True)),
        dtype=[("e", bool), ("t", float)],
    )
    chi2, p = compare_survival(y, risk["risk_group_label"].to_numpy())
    assert m["logrank_statistic"] == pytest.approx(chi2, rel=1e-6)
    assert m["logrank_p"] == pytest.approx(p, rel=1e-6)
    for name in ("km.png", "forest.png", "report.md", "model/model.pt", "model/model.json"):
        assert (out / name).is_file(), name


def test_saved_model_predicts_the_same_risk(rossi_run, rossi):
    from napari_gbm.survival.persist import load_model

    out, _ = rossi_run
    model = load_model(out / "model")
    risk = pd.read_csv(out / "risk.csv")["risk_score"].to_numpy()
    np.testing.assert_allclose(model.predict_risk(rossi[ROSSI_COVARIATES]), risk, rtol=1e-9)


@pytest.mark.slow
def test_synthetic_cohort_effects_are_recovered(tmp_path):
    from napari_gbm.survival import concordance_index
    from napari_gbm.synthetic.cohort import make_synthetic_cohort

    c = make_synthetic_cohort(n_patients=400, seed=3)
    covs = ["positive_percent", "age", "mgmt_methylated", "idh_mutant"]
    m = run_stratify(
        c.slides,
        tmp_path,
        time_col="time_months",
        event_col="event",
        clinical=c.clinical,
        covariates=covs,
        cv_folds=3,
    )
    summary = pd.read_csv(tmp_path / "cox_summary.csv").set_index("covariate")
    for cov in covs:  # the direction of every true effect
        assert np.sign(summary.loc[cov, "coef"]) == np.sign(c.true_log_hr[cov]), cov
    clin = c.clinical.set_index("patient_id")
    oracle = concordance_index(
        clin["time_months"], clin["event"], pd.Series(c.oracle_risk, index=clin.index)
    )
    assert m["c_index"] > 0.6
    assert abs(m["cv_c_index_mean"] - oracle) < 0.06
    assert m["logrank_p"] < 1e-3
    assert any("aggregated" in n for n in m["notes"])
    # what people read: yes/no covariates per unit (present vs absent), the others per SD
    assert summary["binary"].to_dict() == {
        "positive_percent": False,
        "age": False,
        "mgmt_methylated": True,
        "idh_mutant": True,
    }
    report = (tmp_path / "report.md").read_text()
    ki67 = summary.loc["positive_percent"]
    assert (
        f"| positive_percent | {ki67.hazard_ratio_per_sd:.3g} | "
        f"{ki67.ci_lower_per_sd:.3g}-{ki67.ci_upper_per_sd:.3g} | SD {ki67.sd:.3g} |"
    ) in report
    mgmt = summary.loc["mgmt_methylated"]
    assert f"| mgmt_methylated | {mgmt.hazard_ratio:.3g} | " in report and "| yes vs no |" in report
    # the true Ki-67 effect is a hazard ratio of 1.73 per SD (synthetic cohort's model)
    assert 1.3 < ki67.hazard_ratio_per_sd < 2.6


def test_optimal_cutoff_on_a_biomarker(rossi, tmp_path):
    m = run_stratify(
        rossi,
        tmp_path,
        time_col="week",
        event_col="arrest",
        covariates=["prio", "age"],
        group_by="prio",
        cutoff="optimal",
        cv_folds=0,
    )
    opt = m["risk_groups"]["optimal"]
    assert opt["p_lausen_schumacher"] >= opt["p_raw"]
    assert m["risk_groups"]["by"] == "prio"
    assert sum(m["risk_groups"]["counts"]) == len(rossi)


def test_bad_input_is_named(rossi, tmp_path):
    with pytest.raises(ValueError, match=r"no column\(s\) \['weeks'\]"):
        run_stratify(rossi, tmp_path, time_col="weeks", event_col="arrest", covariates=["age"])
    with pytest.raises(ValueError, match="no column"):
        run_stratify(rossi, tmp_path, time_col="week", event_col="arrest", covariates=["IDH"])
    nan = rossi.copy()
    nan.loc[3, "age"] = np.nan
    with pytest.raises(ValueError, match=r"missing values .*dropna"):
        run_stratify(nan, tmp_path, time_col="week", event_col="arrest", covariates=["age"])
    m = run_stratify(
        nan,
        tmp_path,
        time_col="week",
        event_col="arrest",
        covariates=["age"],
        dropna=True,
        cv_folds=0,
    )
    assert m["n"] == len(rossi) - 1
    dup = pd.concat([rossi, rossi.iloc[:2]])
    with pytest.raises(ValueError, match="repeated"):
        run_stratify(dup, tmp_path, time_col="week", event_col="arrest", covariates=["age"])
    neg = rossi.copy()
    neg.loc[0, "week"] = -1
    with pytest.raises(ValueError, match="time"):
        run_stratify(neg, tmp_path, time_col="week", event_col="arrest", covariates=["age"])
    few = rossi.iloc[:30].copy()
    few["arrest"] = 0
    few.loc[few.index[0], "arrest"] = 1
    with pytest.raises(ValueError, match="event"):
        run_stratify(few, tmp_path, time_col="week", event_col="arrest", covariates=["age"])
    const = rossi.assign(k=1.0)
    with pytest.raises(ValueError, match=r"'k'|k "):
        run_stratify(const, tmp_path, time_col="week", event_col="arrest", covariates=["k"])
    assert (
        not (tmp_path / "metrics.json").exists()
        or json.loads((tmp_path / "metrics.json").read_text())["n"] == len(rossi) - 1
    )


def test_load_table_formats(rossi, tmp_path):
    rossi.to_parquet(tmp_path / "t.parquet")
    rossi.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    assert load_table(tmp_path / "t.parquet").equals(rossi)
    assert load_table(tmp_path / "t.tsv").shape == rossi.shape
    with pytest.raises(ValueError, match="csv"):
        (tmp_path / "t.xlsx").write_text("x")
        load_table(tmp_path / "t.xlsx")
    with pytest.raises(ValueError, match=r"patients\.parquet"):
        load_table(tmp_path)


def test_cli_contract(rossi, tmp_path, capsys):
    from napari_gbm.cli import main

    table = tmp_path / "rossi.csv"
    rossi.to_csv(table, index=False)
    out = tmp_path / "out"
    args = ["stratify", str(table), "--time", "week", "--event", "arrest", "--out", str(out)]
    rc = main(
        [*args, "--covariates", ",".join(ROSSI_COVARIATES), "--ties", "breslow", "--cv-folds", "0"]
    )
    assert rc == 0
    for name in ("cox_summary.csv", "metrics.json", "risk.csv", "km.png", "forest.png"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert {"c_index", "n", "n_events", "logrank_p"} <= set(m) and m["ties"] == "breslow"
    assert "C-index" in capsys.readouterr().out
    assert main([*args, "--covariates", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main([*args, "--cutoff", "manual"]) == 2
