"""Write the lifelines reference numbers the survival tests compare against.

lifelines cannot live in the project venv (it needs pandas < 3), so this script runs in a
throwaway venv of its own::

    python3 -m venv /tmp/llvenv && /tmp/llvenv/bin/pip install lifelines
    /tmp/llvenv/bin/python scripts/make_lifelines_reference.py

It writes

- ``tests/data/rossi.csv``: lifelines' ``load_rossi()`` (Rossi et al. 1980 recidivism
  data, 432 rows: week, arrest, fin, age, race, wexp, mar, paro, prio);
- ``tests/data/lifelines_reference.json``: lifelines' results on that table, with the
  versions that made them.

It imports nothing from napari_gbm, so the reference stays independent of the code it
checks. Breslow ties: lifelines' CoxPHFitter has Efron ties only (its
``baseline_estimation_method="breslow"`` is the baseline hazard, not the ties), so the
Breslow fit is checked against scikit-survival in the tests instead.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import lifelines
import numpy as np
import pandas as pd
import scipy
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.datasets import load_rossi
from lifelines.statistics import logrank_test, multivariate_logrank_test
from lifelines.utils import concordance_index

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"

# lifelines stops Newton-Raphson when the Newton decrement is < 1e-7 or the relative change
# in log-likelihood is < 1e-9 (and returns the point before its last step), which leaves
# coefficients ~1e-5 from the optimum of a penalised fit. The reference is fitted tighter.
FIT_OPTIONS = {"precision": 1e-12, "r_precision": 1e-15}

# a fixed risk score (not a fit) for the C-index reference: continuous, with a few ties
RISK_WEIGHTS = {"prio": 0.09, "age": -0.06, "fin": -0.4, "wexp": -0.2}


def cox_block(cph: CoxPHFitter) -> dict:
    s = cph.summary
    return {
        "covariates": list(s.index),
        "coef": s["coef"].tolist(),
        "se": s["se(coef)"].tolist(),
        "z": s["z"].tolist(),
        "p": s["p"].tolist(),
        "hazard_ratio": s["exp(coef)"].tolist(),
        "hr_ci_lower": s["exp(coef) lower 95%"].tolist(),
        "hr_ci_upper": s["exp(coef) upper 95%"].tolist(),
        "covariance": cph.variance_matrix_.to_numpy().tolist(),
        "log_likelihood": float(cph.log_likelihood_),
        "concordance_index": float(cph.concordance_index_),
    }


def main() -> None:
    rossi = load_rossi()
    assert rossi.shape == (432, 9), rossi.shape
    DATA.mkdir(parents=True, exist_ok=True)
    rossi.to_csv(DATA / "rossi.csv", index=False)

    ref: dict = {
        "made_by": "scripts/make_lifelines_reference.py",
        "versions": {
            "lifelines": lifelines.__version__,
            "pandas": pd.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "python": platform.python_version(),
        },
        "data": "tests/data/rossi.csv (lifelines.datasets.load_rossi)",
        "duration": "week",
        "event": "arrest",
        "cox_fit_options": FIT_OPTIONS,
    }

    # Cox, Efron ties (lifelines' only ties method), no penalty, all other columns
    cph = CoxPHFitter().fit(rossi, duration_col="week", event_col="arrest", fit_options=FIT_OPTIONS)
    ref["cox_efron"] = cox_block(cph)
    ref["cox_efron"]["log_likelihood_null"] = float(cph._ll_null_)
    ref["cox_breslow"] = (
        "not offered by lifelines (Efron ties only); covered by scikit-survival in the tests"
    )

    # Penalised: lifelines adds n * penalizer / 2 * ||beta||^2 on covariates standardised
    # by their (ddof=1) standard deviation
    penalizer = 0.1
    cph_pen = CoxPHFitter(penalizer=penalizer).fit(
        rossi, duration_col="week", event_col="arrest", fit_options=FIT_OPTIONS
    )
    ref["cox_efron_penalized"] = cox_block(cph_pen)
    ref["cox_efron_penalized"]["penalizer"] = penalizer

    # Kaplan-Meier of the whole cohort (Greenwood, log(-log) interval, alpha 0.05)
    km = KaplanMeierFitter(alpha=0.05).fit(rossi["week"], rossi["arrest"])
    ci = km.confidence_interval_
    ref["kaplan_meier"] = {
        "timeline": km.survival_function_.index.to_numpy(dtype=float).tolist(),
        "survival": km.survival_function_.iloc[:, 0].tolist(),
        "ci_lower": ci.iloc[:, 0].tolist(),
        "ci_upper": ci.iloc[:, 1].tolist(),
        "n_at_risk": km.event_table["at_risk"].tolist(),
        "n_events": km.event_table["observed"].tolist(),
        "n_censored": km.event_table["censored"].tolist(),
        "median_survival": float(km.median_survival_time_),
    }
    # subgroups whose survival reaches one half: prio >= 10 (median 50 weeks), and
    # age <= 19, where the estimate is exactly 1/2 in exact arithmetic (lifelines' float
    # product gives 0.5000000000000002 and so reports an infinite median)
    for name, query in (
        ("kaplan_meier_prio_ge_10", "prio >= 10"),
        ("kaplan_meier_age_le_19", "age <= 19"),
    ):
        sub = rossi.query(query)
        km_sub = KaplanMeierFitter().fit(sub["week"], sub["arrest"])
        ref[name] = {
            "query": query,
            "timeline": km_sub.survival_function_.index.to_numpy(dtype=float).tolist(),
            "survival": km_sub.survival_function_.iloc[:, 0].tolist(),
            "median_survival": float(km_sub.median_survival_time_),
        }

    # two-group log-rank: financial aid
    fin = rossi["fin"] == 1
    lr = logrank_test(
        rossi.loc[~fin, "week"],
        rossi.loc[fin, "week"],
        event_observed_A=rossi.loc[~fin, "arrest"],
        event_observed_B=rossi.loc[fin, "arrest"],
    )
    ref["logrank_fin"] = {
        "groups": "fin == 0 vs fin == 1",
        "statistic": float(lr.test_statistic),
        "p_value": float(lr.p_value),
        "df": 1,
    }

    # three groups: prio tertiles. Cuts are np.quantile(prio, [1/3, 2/3]) (linear
    # interpolation); a subject's group is the number of cuts strictly below its prio.
    prio = rossi["prio"].to_numpy(dtype=float)
    cuts = np.quantile(prio, [1 / 3, 2 / 3])
    groups = np.searchsorted(cuts, prio, side="left")
    mlr = multivariate_logrank_test(rossi["week"], groups, rossi["arrest"])
    ref["logrank_prio_tertiles"] = {
        "rule": "cuts = np.quantile(prio, [1/3, 2/3]); group = np.searchsorted(cuts, prio, 'left')",
        "cuts": cuts.tolist(),
        "groups": groups.tolist(),
        "statistic": float(mlr.test_statistic),
        "p_value": float(mlr.p_value),
        "df": int(mlr.degrees_of_freedom),
    }

    # C-index of fixed risk scores (higher risk = shorter survival: lifelines wants
    # scores that grow with survival, hence the minus sign)
    risk = sum(w * rossi[c].to_numpy(dtype=float) for c, w in RISK_WEIGHTS.items())
    ref["concordance"] = {
        "risk_weights": RISK_WEIGHTS,
        "risk": np.asarray(risk).tolist(),
        "c_index": float(concordance_index(rossi["week"], -risk, rossi["arrest"])),
        "c_index_prio": float(concordance_index(rossi["week"], -rossi["prio"], rossi["arrest"])),
    }

    with open(DATA / "lifelines_reference.json", "w", encoding="utf-8") as fh:
        json.dump(ref, fh, indent=1)
        fh.write("\n")
    print(f"wrote {DATA / 'rossi.csv'} and {DATA / 'lifelines_reference.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
