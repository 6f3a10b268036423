"""Risk groups and the optimal cut-off: fixed quantiles by hand, the maximally selected
log-rank statistic against the plain log-rank test, the p-value corrections against
published values, and their behaviour on data with and without a true cut."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from napari_gbm.survival.cutoff import (
    optimal_cutoff,
    p_altman,
    p_lausen_schumacher,
    risk_groups,
)
from napari_gbm.survival.logrank import logrank_test

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


def cohort(seed: int, n: int, hr: float, cut: float = 0.6) -> tuple[np.ndarray, ...]:
    """Uniform score; hazard ``hr`` times higher above ``cut``; ~25 % censored."""
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    time = rng.exponential(size=n) / np.where(score > cut, hr, 1.0)
    censor = rng.exponential(size=n) * 3.0
    return score, np.minimum(time, censor) + 1e-6, time <= censor


# ---------------------------------------------------------------- fixed cuts


def test_median_tertiles_quartiles_by_hand() -> None:
    score = np.arange(1.0, 13.0)  # 1 .. 12
    med = risk_groups(score, "median")
    assert med.cuts.tolist() == [6.5] and med.names == ("low", "high")
    assert med.labels.tolist() == [0] * 6 + [1] * 6
    ter = risk_groups(score, "tertiles")
    # np.quantile (linear): 1 + 11/3 and 1 + 22/3
    np.testing.assert_allclose(ter.cuts, [1 + 11 / 3, 1 + 22 / 3])
    assert ter.names == ("T1", "T2", "T3") and ter.counts.tolist() == [4, 4, 4]
    qua = risk_groups(score, "quartiles")
    assert qua.names == ("Q1", "Q2", "Q3", "Q4") and qua.counts.tolist() == [3, 3, 3, 3]
    assert qua.label_names.tolist()[:4] == ["Q1", "Q1", "Q1", "Q2"]


def test_cut_value_goes_to_the_lower_group() -> None:
    groups = risk_groups([1.0, 2.0, 2.0, 3.0, 5.0], "manual", cuts=[2.0, 4.0])
    assert groups.labels.tolist() == [0, 0, 0, 1, 2]
    assert groups.names == ("G1", "G2", "G3")
    named = risk_groups([1.0, 2.0, 3.0], "manual", cuts=[2.5], names=["Ki-67 low", "Ki-67 high"])
    assert named.label_names.tolist() == ["Ki-67 low", "Ki-67 low", "Ki-67 high"]


def test_tertiles_reproduce_the_lifelines_reference_split() -> None:
    rossi = pd.read_csv(DATA / "rossi.csv")
    with open(DATA / "lifelines_reference.json", encoding="utf-8") as fh:
        r = json.load(fh)["logrank_prio_tertiles"]
    groups = risk_groups(rossi["prio"], "tertiles")
    np.testing.assert_allclose(groups.cuts, r["cuts"])
    assert groups.labels.tolist() == r["groups"]


def test_bad_cut_requests() -> None:
    with pytest.raises(ValueError, match="empty"):
        risk_groups([1.0, 1.0, 1.0, 2.0], "tertiles")  # both tertile cuts are 1
    with pytest.raises(ValueError, match="empty"):
        risk_groups([1.0, 2.0, 3.0], "manual", cuts=[10.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        risk_groups([1.0, 2.0, 3.0], "manual", cuts=[2.0, 1.5])
    with pytest.raises(ValueError, match="needs cuts"):
        risk_groups([1.0, 2.0, 3.0], "manual")
    with pytest.raises(ValueError, match="needs time= and event="):
        risk_groups([1.0, 2.0, 3.0], "optimal")
    with pytest.raises(ValueError, match="method must be one of"):
        risk_groups([1.0, 2.0, 3.0], "deciles")
    with pytest.raises(ValueError, match="score has 1 NaN"):
        risk_groups([1.0, np.nan, 3.0], "median")
    with pytest.raises(ValueError, match="min_prop"):
        optimal_cutoff([1.0, 2.0, 3.0], [1, 2, 3], [1, 1, 1], min_prop=0.6, max_prop=0.4)
    with pytest.raises(ValueError, match="no candidate cut"):
        optimal_cutoff([0.0] * 10 + [1.0], np.arange(1.0, 12.0), [1] * 11)  # 10/11 tied


# ---------------------------------------------------------------- optimal cut


def test_candidate_statistics_are_log_rank_tests() -> None:
    score, time, event = cohort(1, 150, hr=2.0)
    time = np.ceil(time * 10)  # tied times
    oc = optimal_cutoff(score, time, event)
    cand = oc.candidates
    # cuts: distinct scores with 10 % .. 90 % of subjects at or below them
    frac = cand["n_low"] / 150
    assert frac.min() >= 0.1 and frac.max() <= 0.9 and len(cand) == 121
    for i in (0, 17, 60, len(cand) - 1):
        c = cand.iloc[i]
        lr = logrank_test(time, event, score > c["cut"])
        assert c["chi2"] == pytest.approx(lr.statistic, rel=1e-10)
        assert c["p"] == pytest.approx(lr.p_value, rel=1e-8)
        assert c["n_high"] == (score > c["cut"]).sum()
    best = int(cand["statistic"].idxmax())
    assert oc.cut == cand["cut"].iloc[best] and oc.statistic == cand["statistic"].max()
    assert oc.p_value == pytest.approx(stats.chi2.sf(oc.statistic**2, 1), rel=1e-12)


def test_optimal_finds_a_true_cut() -> None:
    score, time, event = cohort(2, 600, hr=3.0, cut=0.6)
    groups = risk_groups(score, "optimal", time=time, event=event)
    oc = groups.optimal
    assert oc is not None
    assert abs(oc.cut - 0.6) < 0.03
    assert groups.names == ("low", "high")
    assert groups.labels.tolist() == (score > oc.cut).astype(int).tolist()
    assert oc.p_value < 1e-10 and oc.p_value <= oc.p_lausen <= 1e-6
    assert oc.p_value <= oc.p_altman


def test_corrected_p_is_never_below_raw_p() -> None:
    for seed in range(10):
        score, time, event = cohort(10 + seed, 120, hr=1.0 + 0.3 * seed)
        oc = optimal_cutoff(score, time, event)
        assert oc.p_value <= oc.p_lausen <= 1.0
        assert oc.p_value <= oc.p_altman <= 1.0


def test_corrected_p_roughly_uniform_on_null_data() -> None:
    raw, lausen, altman = [], [], []
    for seed in range(40):
        score, time, event = cohort(100 + seed, 200, hr=1.0)
        oc = optimal_cutoff(score, time, event)
        raw.append(oc.p_value)
        lausen.append(oc.p_lausen)
        altman.append(oc.p_altman)
    raw_a, lausen_a, altman_a = np.array(raw), np.array(lausen), np.array(altman)
    # raw minimal p: far too many "significant" cuts (about 40 % at 5 %)
    assert (raw_a < 0.05).mean() > 0.2
    # corrected: about 5 % below 0.05 (at most 4 of 40), mean near 1/2
    for corrected in (lausen_a, altman_a):
        assert (corrected < 0.05).sum() <= 4
        assert 0.35 < corrected.mean() < 0.7
        assert stats.kstest(corrected, "uniform").pvalue > 0.01


# ---------------------------------------------------------------- the corrections


def test_lausen_schumacher_matches_r_maxstat() -> None:
    # R: sapply(seq(0.5, 5, by = 0.5), maxstat::pLausen92, minprop = 0.1, maxprop = 0.9),
    # as quoted in the test suite of the ranger package (imbs-hl/ranger)
    expected = [
        1.0,
        0.967882898076573,
        0.819678995766699,
        0.463872768757117,
        0.189802453892004,
        0.0578438845691903,
        0.0133240079314344,
        0.00233924318507284,
        0.00031467775847682,
        3.25492795226314e-05,
    ]
    got = [p_lausen_schumacher(b) for b in np.arange(0.5, 5.01, 0.5)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # a narrower allowed range means fewer cuts tried: a smaller correction
    assert p_lausen_schumacher(3.0, 0.25, 0.75) < p_lausen_schumacher(3.0, 0.1, 0.9)


def test_altman_matches_published_examples() -> None:
    # Altman, Br J Cancer 1998;78:556-7: reported 0.0224 and 0.0028 correspond to 0.29, 0.06
    assert p_altman(0.0224) == pytest.approx(0.29, abs=0.005)
    assert p_altman(0.0028) == pytest.approx(0.06, abs=0.005)
    # "P = 0.002 corresponds to a genuine P = 0.05"
    assert p_altman(0.002) == pytest.approx(0.05, abs=0.01)
    # the formula written out
    p = 0.01
    assert p_altman(p) == pytest.approx(-1.63 * p * (1 + 2.35 * np.log(p)), rel=1e-14)
    assert p_altman(p, min_prop=0.05) == pytest.approx(-3.13 * p * (1 + 1.65 * np.log(p)))
    assert np.isnan(p_altman(p, min_prop=0.2))
    # past the formula's maximum (p ~ 0.24) it would fall again: 1 instead
    assert p_altman(0.3) == 1.0 and p_altman(0.9) == 1.0 and p_altman(0.0) == 0.0


def test_altman_approximates_lausen_in_its_range() -> None:
    for p in np.geomspace(1e-4, 0.1, 12):
        b = stats.norm.isf(p / 2)
        assert p_altman(p) == pytest.approx(p_lausen_schumacher(b), rel=0.05)


def test_altman_range_flag() -> None:
    score, time, event = cohort(3, 400, hr=1.6)
    oc = optimal_cutoff(score, time, event)
    assert oc.altman_in_range == (1e-4 <= oc.p_value <= 0.1)
    asym = optimal_cutoff(score, time, event, min_prop=0.2, max_prop=0.9)
    assert np.isnan(asym.p_altman) and not asym.altman_in_range


def test_maxstat_kernel_without_jit() -> None:
    # the Numba kernel run as plain Python gives the same statistics
    code = (
        "import sys\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_survival_cutoff import cohort\n"
        "from napari_gbm.survival.cutoff import optimal_cutoff\n"
        "s, t, e = cohort(5, 90, hr=2.0)\n"
        "print(*optimal_cutoff(s, t, e).candidates['chi2'].tolist())\n"
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    assert proc.returncode == 0, proc.stderr
    score, time, event = cohort(5, 90, hr=2.0)
    expected = optimal_cutoff(score, time, event).candidates["chi2"].to_numpy()
    np.testing.assert_allclose([float(v) for v in proc.stdout.split()], expected, rtol=1e-12)
