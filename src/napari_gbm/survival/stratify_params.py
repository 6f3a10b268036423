"""The parameters of a stratification (:func:`napari_gbm.survival.stratify.run_stratify`).

:class:`StratifyParams` holds each choice with its default and help text, written once:
``napari-gbm stratify`` builds its flags from them, the Cohort dock and the cohort runner
pass the same names. Importing this module is light (no torch, numba or matplotlib).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CUTOFFS", "DEFAULT_COVARIATES", "MODELS", "TIES", "StratifyParams"]

#: covariates used when none are named: the slide biomarkers GBM studies report
DEFAULT_COVARIATES = (
    "positive_percent",
    "cell_density_per_mm2",
    "necrosis_fraction",
    "nucleus_area_um2_cv",
)
CUTOFFS = ("median", "tertiles", "quartiles", "optimal", "manual")
MODELS = ("cox", "mlp", "mil")
#: handling of tied event times (= ``survival._loss.TIES``; that module loads torch)
TIES = ("efron", "breslow")


def _param(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class StratifyParams:
    """The choices of a stratification, with their defaults (written once, here: the CLI
    builds its flags from them; :meth:`help` gives each one's text). Sequences are stored
    as tuples; a model or cut-off outside :data:`MODELS` / :data:`CUTOFFS` is a
    ValueError.

    Parameters
    ----------
    time_col : str
        Follow-up time column (numbers, one unit for every patient).
    event_col : str
        Event column (1/0, yes/no, true/false, dead/alive: event / censored).
    covariates : sequence of str, optional
        Covariate columns. Default: the biomarkers of :data:`DEFAULT_COVARIATES` the table
        has; for ``model="mil"``: none (the tiles alone).
    model : {"cox", "mlp", "mil"}
        The survival model (module docstring).
    ties : {"efron", "breslow"}
        Handling of tied event times.
    id_col : str
        Patient id column.
    cutoff : {"median", "tertiles", "quartiles", "optimal", "manual"}
        How risk groups are cut.
    cuts : sequence of float, optional
        The cut values, for ``cutoff="manual"``.
    group_by : str, optional
        Cut this column into groups instead of the model's risk.
    l2 : float
        Ridge penalty of the linear Cox model.
    cv_folds : int
        Patient-grouped cross-validation folds (0: none).
    seed : int
        Seeds the networks and the cross-validation folds.
    dropna : bool
        Leave out patients with missing values (or without tiles, for MIL) instead of
        stopping.
    time_unit : str
        Unit of the time column (accepted for callers that pass it; no output uses it).
    tile_features : sequence of str, optional
        MIL: the tile table's feature columns. Default: the per-tile biomarkers of
        :data:`~napari_gbm.survival.bags.DEFAULT_TILE_FEATURES` the table has.
    """

    time_col: str = field(metadata={"help": "follow-up time column"})
    event_col: str = field(
        metadata={"help": "event column (1/0, yes/no, true/false, dead/alive: event / censored)"}
    )
    covariates: Sequence[str] | None = _param(
        None, "covariate columns (default: the biomarkers; with --model mil: none)"
    )
    model: str = _param(
        "cox", "survival model: cox, mlp (neural network), mil (attention over the tiles)"
    )
    ties: str = _param("efron", "tied event times")
    id_col: str = _param("patient_id", "patient id column")
    cutoff: str = _param(
        "median", "how risk groups are cut (optimal: maximally selected log-rank, corrected p)"
    )
    cuts: Sequence[float] | None = _param(None, "cut values for the manual cut-off")
    group_by: str | None = _param(None, "cut this column into groups instead of the risk")
    l2: float = _param(0.0, "ridge penalty of the Cox model")
    cv_folds: int = _param(5, "patient-grouped CV folds (0: none)")
    seed: int = _param(0, "seed of the networks and the CV folds")
    dropna: bool = _param(False, "leave out patients with missing values")
    time_unit: str = _param("months", "unit of the time column")
    tile_features: Sequence[str] | None = _param(
        None, "per-tile features of the MIL bags (default: the tile biomarkers)"
    )

    def __post_init__(self) -> None:
        for name in ("covariates", "cuts", "tile_features"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.cutoff not in CUTOFFS:
            raise ValueError(f"cutoff must be one of {CUTOFFS}, got {self.cutoff!r}")

    @staticmethod
    def help(name: str) -> str:
        """The help text of parameter ``name``."""
        return str(_FIELDS[name].metadata["help"])

    @staticmethod
    def default(name: str) -> Any:
        """The default of parameter ``name`` (time and event columns have none)."""
        return _FIELDS[name].default


_FIELDS = {f.name: f for f in dataclasses.fields(StratifyParams)}
