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
- :func:`run_stratify`, :class:`StratifyParams` (``stratify``, ``stratify_params``: the
  ``napari-gbm stratify`` job; ``table_input`` reads its tables, ``bags`` the tile bags of
  the MIL model, ``stratify_report`` writes its outputs; ``patients`` joins slides to
  patients)
- :class:`MLPCoxModel` (``nn``), :class:`AttentionMILCoxModel` (``mil``),
  :func:`cross_validate` (``cv``), :func:`save_model` / :func:`load_model` (``persist``)
- :func:`read_results` (``results``: a stratify folder read back for display)
- :func:`cox_partial_log_likelihood`, :func:`cox_partial_nll` (``_loss``, the shared loss)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_gbm._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
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
        "run_stratify": "stratify",
        "StratifyParams": "stratify_params",
        "MLPCoxModel": "nn",
        "AttentionMILCoxModel": "mil",
        "TileBags": "bags",
        "tile_bags": "bags",
        "load_tile_table": "bags",
        "cohort_tiles": "bags",
        "load_table": "table_input",
        "event_indicator": "table_input",
        "numeric_values": "table_input",
        "reported_hazard_ratios": "stratify_report",
        "cross_validate": "cv",
        "save_model": "persist",
        "load_model": "persist",
        "aggregate_patients": "patients",
        "join_clinical": "patients",
        "read_results": "results",
        "CohortResults": "results",
    },
)

if TYPE_CHECKING:
    from napari_gbm.survival._loss import cox_partial_log_likelihood, cox_partial_nll
    from napari_gbm.survival.bags import TileBags, cohort_tiles, load_tile_table, tile_bags
    from napari_gbm.survival.concordance import concordance_index
    from napari_gbm.survival.cox import CoxFitError, CoxModel
    from napari_gbm.survival.cutoff import (
        OptimalCut,
        RiskGroups,
        optimal_cutoff,
        p_altman,
        p_lausen_schumacher,
        risk_groups,
    )
    from napari_gbm.survival.cv import cross_validate
    from napari_gbm.survival.km import kaplan_meier, median_survival
    from napari_gbm.survival.logrank import LogRankResult, logrank_test
    from napari_gbm.survival.mil import AttentionMILCoxModel
    from napari_gbm.survival.nn import MLPCoxModel
    from napari_gbm.survival.patients import aggregate_patients, join_clinical
    from napari_gbm.survival.persist import load_model, save_model
    from napari_gbm.survival.plots import forest_plot, km_plot
    from napari_gbm.survival.results import CohortResults, read_results
    from napari_gbm.survival.stratify import run_stratify
    from napari_gbm.survival.stratify_params import StratifyParams
    from napari_gbm.survival.stratify_report import reported_hazard_ratios
    from napari_gbm.survival.table_input import event_indicator, load_table, numeric_values
