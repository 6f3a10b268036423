"""Survival statistics: Kaplan-Meier, log-rank, C-index, Cox regression, risk groups, plots.

Checked against lifelines and scikit-survival (see tests/test_survival_*.py). Importing this
package is light: each name loads its module (torch for Cox, numba for the C-index and the
optimal cut, matplotlib for plots) on first use.

- :func:`kaplan_meier`, :func:`median_survival` (``km``)
- :func:`logrank_test`, :class:`LogRankResult` (``logrank``)
- :func:`concordance_index` (``concordance``)
- :class:`CoxModel`, :class:`CoxFitError` (``cox``)
- :func:`risk_groups`, :func:`optimal_cutoff`, :class:`RiskGroups`, :class:`OptimalCut`,
  :func:`p_lausen_schumacher`, :func:`p_altman` (``cutoff``)
- :func:`km_plot`, :func:`forest_plot` (``plots``)
- :func:`cox_partial_log_likelihood`, :func:`cox_partial_nll` (``_loss``, the shared loss)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "kaplan_meier": "km",
    "median_survival": "km",
    "logrank_test": "logrank",
    "LogRankResult": "logrank",
    "concordance_index": "concordance",
    "CoxModel": "cox",
    "CoxFitError": "cox",
    "risk_groups": "cutoff",
    "optimal_cutoff": "cutoff",
    "RiskGroups": "cutoff",
    "OptimalCut": "cutoff",
    "p_lausen_schumacher": "cutoff",
    "p_altman": "cutoff",
    "km_plot": "plots",
    "forest_plot": "plots",
    "cox_partial_log_likelihood": "_loss",
    "cox_partial_nll": "_loss",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_gbm.survival' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"napari_gbm.survival.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
