"""Kaplan-Meier, log-rank and C-index against hand calculations, lifelines' numbers
(tests/data/lifelines_reference.json, made by scripts/make_lifelines_reference.py) and
scikit-survival run live."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sksurv.compare import compare_survival
from sksurv.metrics import concordance_index_censored
from sksurv.nonparametric import kaplan_meier_estimator

from napari_gbm.survival.concordance import concordance_counts, concordance_index
from napari_gbm.survival.km import KM_COLUMNS, at_risk_counts, kaplan_meier, median_survival
from napari_gbm.survival.logrank import logrank_test

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
Z95 = stats.norm.isf(0.025)


def _ties_data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer times (many ties) with about 40 % censoring."""
    rng = np.random.default_rng(seed)
    return rng.integers(1, 15, n).astype(float), rng.random(n) < 0.6


def _sksurv_y(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    y = np.empty(time.size, dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event, time
    return y


# ---------------------------------------------------------------- Kaplan-Meier


def test_km_hand_example() -> None:
    # times 1 2 2 3 4, events 1 1 0 1 0
    km = kaplan_meier([1, 2, 2, 3, 4], [1, 1, 0, 1, 0])
    assert tuple(km.columns) == KM_COLUMNS
    assert km["time"].tolist() == [1, 2, 3, 4]
    assert km["n_at_risk"].tolist() == [5, 4, 2, 1]
    assert km["n_events"].tolist() == [1, 1, 1, 0]
    assert km["n_censored"].tolist() == [0, 1, 0, 1]
    # S: 4/5, 4/5 * 3/4, * 1/2, unchanged
    np.testing.assert_allclose(km["survival"], [0.8, 0.6, 0.3, 0.3], rtol=1e-15)
    # Greenwood sums: 1/(5*4), + 1/(4*3), + 1/(2*1)
    var = np.array([1 / 20, 1 / 20 + 1 / 12, 1 / 20 + 1 / 12 + 1 / 2, 1 / 20 + 1 / 12 + 1 / 2])
    s = np.array([0.8, 0.6, 0.3, 0.3])
    # log(-log) interval: S ** exp(-+ z sd(log S) / log S)
    lower = s ** np.exp(-Z95 * np.sqrt(var) / np.log(s))
    upper = s ** np.exp(Z95 * np.sqrt(var) / np.log(s))
    np.testing.assert_allclose(km["ci_lower"], lower, rtol=1e-13)
    np.testing.assert_allclose(km["ci_upper"], upper, rtol=1e-13)
    assert km["ci_lower"].iloc[0] == pytest.approx(0.20380, abs=1e-5)  # worked by hand
    assert km["ci_upper"].iloc[0] == pytest.approx(0.96918, abs=1e-5)
    assert median_survival(km) == 3.0


def test_km_all_die_and_no_events() -> None:
    km = kaplan_meier([1, 2, 3], [1, 1, 1])
    np.testing.assert_allclose(km["survival"], [2 / 3, 1 / 3, 0.0])
    assert km["ci_lower"].iloc[-1] == 0.0 and km["ci_upper"].iloc[-1] == 0.0
    km = kaplan_meier([1, 2, 3], [0, 0, 0])
    assert (km["survival"] == 1).all() and (km["ci_lower"] == 1).all()
    assert median_survival(km) == math.inf


def test_km_matches_lifelines_on_rossi(rossi: pd.DataFrame, lifelines_ref: dict) -> None:
    km = kaplan_meier(rossi["week"], rossi["arrest"])
    r = lifelines_ref["kaplan_meier"]
    timeline = np.asarray(r["timeline"])
    keep = timeline > 0  # lifelines adds a t = 0 row; ours starts at the first time
    np.testing.assert_array_equal(km["time"], timeline[keep])
    for ours, theirs in (
        ("survival", "survival"),
        ("ci_lower", "ci_lower"),
        ("ci_upper", "ci_upper"),
    ):
        np.testing.assert_allclose(km[ours], np.asarray(r[theirs])[keep], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(km["n_at_risk"], np.asarray(r["n_at_risk"])[keep])
    np.testing.assert_array_equal(km["n_events"], np.asarray(r["n_events"])[keep])
    np.testing.assert_array_equal(km["n_censored"], np.asarray(r["n_censored"])[keep])
    assert median_survival(km) == r["median_survival"] == math.inf


def test_km_median_matches_lifelines(rossi: pd.DataFrame, lifelines_ref: dict) -> None:
    r = lifelines_ref["kaplan_meier_prio_ge_10"]
    sub = rossi.query(r["query"])
    km = kaplan_meier(sub["week"], sub["arrest"])
    np.testing.assert_allclose(
        km["survival"], np.asarray(r["survival"])[np.asarray(r["timeline"]) > 0], atol=1e-12
    )
    assert median_survival(km) == r["median_survival"] == 50.0


def test_km_median_at_exactly_one_half(rossi: pd.DataFrame, lifelines_ref: dict) -> None:
    # S reaches exactly 1/2 at week 50 for age <= 19 (33 of 66 arrested by then, no
    # censoring before); lifelines' float product is 0.5000000000000002 and it reports
    # an infinite median. We report 50, the first time S(t) <= 1/2.
    r = lifelines_ref["kaplan_meier_age_le_19"]
    sub = rossi.query(r["query"])
    assert ((sub["week"] <= 50) & (sub["arrest"] == 1)).sum() == 33 and len(sub) == 66
    assert ((sub["week"] < 52) & (sub["arrest"] == 0)).sum() == 0
    km = kaplan_meier(sub["week"], sub["arrest"])
    assert r["median_survival"] == math.inf
    assert median_survival(km) == 50.0


@pytest.mark.parametrize("seed", range(6))
def test_km_matches_sksurv_with_ties(seed: int) -> None:
    time, event = _ties_data(seed, 40 + 30 * seed)
    km = kaplan_meier(time, event)
    t_sk, s_sk, ci = kaplan_meier_estimator(event, time, conf_type="log-log")
    np.testing.assert_array_equal(km["time"], t_sk)
    np.testing.assert_allclose(km["survival"], s_sk, rtol=0, atol=1e-12)
    np.testing.assert_allclose(km["ci_lower"], ci[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(km["ci_upper"], ci[1], rtol=0, atol=1e-12)


def test_km_alpha_and_at_risk() -> None:
    time, event = _ties_data(11, 80)
    wide = kaplan_meier(time, event, alpha=0.01)
    narrow = kaplan_meier(time, event, alpha=0.2)
    inside = (wide["survival"] > 0) & (wide["survival"] < 1)
    assert (wide["ci_lower"][inside] < narrow["ci_lower"][inside]).all()
    assert (wide["ci_upper"][inside] > narrow["ci_upper"][inside]).all()
    km = kaplan_meier(time, event)
    np.testing.assert_array_equal(at_risk_counts(time, km["time"]), km["n_at_risk"])
    assert at_risk_counts(time, [0.0, 100.0]).tolist() == [80, 0]


# ---------------------------------------------------------------- log-rank


def test_logrank_hand_example() -> None:
    # A: times 1, 3 (events); B: 2 (event), 4 (censored), 5 (event)
    # event times 1, 2, 3, 5 with (n, n_A) = (5, 2), (4, 1), (3, 1), (1, 0)
    # E_A = 2/5 + 1/4 + 1/3 = 59/60, O_A = 2, U = 61/60
    # V = 1 * 2/5 * 3/5 + 1 * 1/4 * 3/4 + 1 * 1/3 * 2/3 + 0 = 2339/3600
    res = logrank_test([1, 3, 2, 4, 5], [1, 1, 1, 0, 1], ["A", "A", "B", "B", "B"])
    assert res.statistic == pytest.approx(3721 / 2339, rel=1e-13)
    assert res.df == 1
    assert res.p_value == pytest.approx(stats.chi2.sf(3721 / 2339, 1), rel=1e-12)
    table = res.table.set_index("group")
    assert table.loc["A", "observed"] == 2 and table.loc["A", "expected"] == pytest.approx(59 / 60)
    assert table["n"].tolist() == [2, 3]


def test_logrank_two_groups_matches_lifelines(rossi: pd.DataFrame, lifelines_ref: dict) -> None:
    r = lifelines_ref["logrank_fin"]
    res = logrank_test(rossi["week"], rossi["arrest"], rossi["fin"])
    assert res.statistic == pytest.approx(r["statistic"], rel=1e-10)
    assert res.p_value == pytest.approx(r["p_value"], rel=1e-10)
    assert res.df == 1


def test_logrank_three_groups_matches_lifelines(rossi: pd.DataFrame, lifelines_ref: dict) -> None:
    r = lifelines_ref["logrank_prio_tertiles"]
    res = logrank_test(rossi["week"], rossi["arrest"], r["groups"])
    assert res.statistic == pytest.approx(r["statistic"], rel=1e-10)
    assert res.p_value == pytest.approx(r["p_value"], rel=1e-10)
    assert res.df == r["df"] == 2


@pytest.mark.parametrize("seed", range(8))
def test_logrank_matches_sksurv(seed: int) -> None:
    time, event = _ties_data(100 + seed, 30 + 25 * seed)
    k = 2 + seed % 4
    groups = np.random.default_rng(seed).integers(0, k, time.size)
    res = logrank_test(time, event, groups)
    chisq, pval = compare_survival(_sksurv_y(time, event), groups)
    assert res.statistic == pytest.approx(chisq, rel=1e-10, abs=1e-12)
    assert res.p_value == pytest.approx(pval, rel=1e-9, abs=1e-14)
    assert res.df == len(np.unique(groups)) - 1


def test_logrank_labels_and_order_do_not_matter() -> None:
    time, event = _ties_data(3, 90)
    groups = np.random.default_rng(3).integers(0, 3, 90)
    names = np.array(["x", "y", "z"])[groups]
    a = logrank_test(time, event, groups)
    b = logrank_test(time, event, pd.Series(names))
    perm = np.random.default_rng(4).permutation(90)
    c = logrank_test(time[perm], event[perm], names[perm])
    assert a.statistic == pytest.approx(b.statistic, rel=1e-12)
    assert a.statistic == pytest.approx(c.statistic, rel=1e-12)


# ---------------------------------------------------------------- C-index


def test_cindex_hand_example() -> None:
    # subjects: (time, event, risk)
    # 1: (1, 1, 4)  2: (2, 1, 1)  3: (3, 0, 3)  4: (4, 1, 1)  5: (2, 0, 0)  6: (4, 1, 10)
    # comparable: 1-2 c, 1-3 c, 1-4 c, 1-5 c, 1-6 d, 2-3 d, 2-4 tied risk, 2-5 c (event
    # before censoring at the same time), 2-6 d; 4-6 both events at 4: not comparable
    time = [1, 2, 3, 4, 2, 4]
    event = [1, 1, 0, 1, 0, 1]
    risk = [4, 1, 3, 1, 0, 10]
    assert concordance_counts(time, event, risk) == (5, 1, 9)
    assert concordance_index(time, event, risk) == pytest.approx(5.5 / 9, rel=1e-15)


def test_cindex_matches_lifelines(rossi: pd.DataFrame, lifelines_ref: dict) -> None:
    r = lifelines_ref["concordance"]
    # lifelines counts exact ties only: tied_tol=0
    c = concordance_index(rossi["week"], rossi["arrest"], r["risk"], tied_tol=0.0)
    assert c == pytest.approx(r["c_index"], abs=1e-12)
    c = concordance_index(rossi["week"], rossi["arrest"], rossi["prio"], tied_tol=0.0)
    assert c == pytest.approx(r["c_index_prio"], abs=1e-12)


def test_cindex_tolerance_matches_sksurv_on_near_ties(
    rossi: pd.DataFrame, lifelines_ref: dict
) -> None:
    # the reference risk has pairs equal in exact arithmetic that differ by ~1e-16 as
    # floats: scikit-survival (tied_tol 1e-8, our default) calls them ties, lifelines not
    risk = np.asarray(lifelines_ref["concordance"]["risk"])
    event = rossi["arrest"].to_numpy().astype(bool)
    time = rossi["week"].to_numpy(dtype=float)
    ours = concordance_index(time, event, risk)
    theirs = concordance_index_censored(event, time, risk)[0]
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert ours != pytest.approx(lifelines_ref["concordance"]["c_index"], abs=1e-6)


@pytest.mark.parametrize("seed", range(8))
def test_cindex_matches_sksurv_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    time, event = _ties_data(200 + seed, 20 + 40 * seed)
    risk = rng.integers(0, 6, time.size).astype(float)  # many tied risks
    con, tie, pairs = concordance_counts(time, event, risk)
    c_sk, con_sk, dis_sk, tie_sk, _ = concordance_index_censored(event, time, risk)
    assert (con, tie, pairs) == (con_sk, tie_sk, con_sk + dis_sk + tie_sk)
    assert concordance_index(time, event, risk) == pytest.approx(c_sk, abs=1e-14)


def test_cindex_large_n_against_vectorised_brute_force() -> None:
    rng = np.random.default_rng(5)
    n = 10_000
    time = rng.integers(1, 400, n).astype(float)
    event = rng.random(n) < 0.5
    risk = np.round(rng.normal(size=n), 2)
    con, tie, pairs = concordance_counts(time, event, risk, tied_tol=0.0)
    # brute force in blocks of events: comparable j: t_j > t_i, or t_j == t_i censored
    b_con = b_tie = b_pairs = 0
    ev = np.flatnonzero(event)
    for block in np.array_split(ev, 50):
        ti, ri = time[block, None], risk[block, None]
        comp = (time[None, :] > ti) | ((time[None, :] == ti) & ~event[None, :])
        b_pairs += int(comp.sum())
        b_con += int((comp & (risk[None, :] < ri)).sum())
        b_tie += int((comp & (risk[None, :] == ri)).sum())
    assert (con, tie, pairs) == (b_con, b_tie, b_pairs)


def test_cindex_reversed_risk_sums_to_one() -> None:
    rng = np.random.default_rng(9)
    time = rng.exponential(size=300) + 0.01  # no tied times
    event = rng.random(300) < 0.7
    risk = rng.normal(size=300)  # no tied risks
    c = concordance_index(time, event, risk)
    assert c + concordance_index(time, event, -risk) == pytest.approx(1.0, abs=1e-14)
    # and risk = -time orders every comparable pair correctly
    assert concordance_index(time, event, -time) == 1.0
    assert concordance_index(time, event, np.zeros(300)) == 0.5


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("time", "event", "match"),
    [
        ([1, 2, np.nan], [1, 0, 1], "time has 1 NaN"),
        ([1, 2, 3], [1, np.nan, 1], "event has 1 NaN"),
        ([1, 0, 3], [1, 0, 1], "time must be > 0"),
        ([1, -2, 3], [1, 0, 1], "time must be > 0"),
        ([1, 2, 3], [1, 2, 1], "event must be 0/1"),
        ([1, 2, 3], [1, 0], "different lengths"),
        (["a", "b"], [1, 0], "time must be numeric"),
        ([1, 2, np.inf], [1, 0, 1], "infinite"),
    ],
)
def test_bad_survival_input(time: list, event: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        kaplan_meier(time, event)


def test_bad_input_logrank_and_cindex() -> None:
    with pytest.raises(ValueError, match="at least 2 groups"):
        logrank_test([1, 2, 3], [1, 1, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="missing label"):
        logrank_test([1, 2, 3], [1, 1, 0], pd.Series(["a", None, "b"]))
    with pytest.raises(ValueError, match="3 subjects"):
        logrank_test([1, 2, 3], [1, 1, 0], [0, 1])
    with pytest.raises(ValueError, match="no events"):
        logrank_test([1, 2, 3], [0, 0, 0], [0, 1, 1])
    with pytest.raises(ValueError, match="risk has 1 NaN"):
        concordance_index([1, 2, 3], [1, 1, 0], [0.1, np.nan, 0.3])
    with pytest.raises(ValueError, match="no comparable pairs"):
        concordance_index([1, 2, 3], [0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="alpha"):
        kaplan_meier([1, 2], [1, 0], alpha=1.5)
    with pytest.raises(ValueError, match="missing"):
        median_survival(pd.DataFrame({"time": [1.0]}))


def test_package_import_is_light_and_gui_free() -> None:
    code = (
        "import sys\n"
        "import napari_gbm\n"
        "before = set(sys.modules)\n"
        "import napari_gbm.survival as s\n"
        "heavy = sorted(m for m in set(sys.modules) - before\n"
        "               if m.split('.')[0] in ('torch', 'numba', 'matplotlib', 'sksurv'))\n"
        "assert not heavy, heavy\n"
        "for name in s.__all__:\n"
        "    getattr(s, name)\n"
        "gui = ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'vispy')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in gui)\n"
        "assert not bad, bad\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cindex_kernel_without_jit() -> None:
    # the Numba kernel run as plain Python gives the same counts
    code = (
        "import numpy as np\n"
        "from napari_gbm.survival.concordance import concordance_counts\n"
        "rng = np.random.default_rng(3)\n"
        "t = rng.integers(1, 30, 400).astype(float); e = rng.random(400) < 0.6\n"
        "r = np.round(rng.normal(size=400), 1)\n"
        "print(*concordance_counts(t, e, r))\n"
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    assert proc.returncode == 0, proc.stderr
    rng = np.random.default_rng(3)
    t = rng.integers(1, 30, 400).astype(float)
    e = rng.random(400) < 0.6
    r = np.round(rng.normal(size=400), 1)
    assert tuple(int(v) for v in proc.stdout.split()) == concordance_counts(t, e, r)
