"""IHC scoring: per-cell DAB grades and the scores pathologists read from them.

Formulas as QuPath computes them (REFERENCE.md, "IHC scoring formulas"): with n0 negative
cells and n1, n2, n3 cells at 1+, 2+, 3+ (N = n0 + n1 + n2 + n3, P = n1 + n2 + n3):

- positive % (the Ki-67 labelling index) = 100 P / N;
- H-score (0-300) = 100 (n1 + 2 n2 + 3 n3) / N;
- Allred = proportion score (0 none, 1 < 1 %, 2 1-10 %, 3 10-33 %, 4 33-66 %, 5 >= 2/3)
  + intensity score of the positives' mean grade m = (n1 + 2 n2 + 3 n3) / P (1 if m <= 5/3,
  2 if m <= 7/3, else 3); 0 when nothing is positive, otherwise 2-8.

With a single threshold there are no grades: cells are 0 (negative) or 1 (positive),
positive % is defined, H-score and Allred are not (``None``).

What is graded is one cell-table column, named by a compartment and a statistic as QuPath's
positive cell detection names its "score compartment" (``Nucleus: DAB OD mean``,
``Cytoplasm: DAB OD max``, ``Cell: DAB OD mean`` ...), plus the membrane ring of
:mod:`napari_gbm.features.compartments`: ``<compartment>_dab_od_<statistic>``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "NOT_APPLICABLE",
    "POSITIVE_CLASS_NAMES",
    "POSITIVITY_COMPARTMENTS",
    "POSITIVITY_STATISTICS",
    "PositivityParams",
    "allred_score",
    "ihc_scores",
    "positive_class",
]

#: ``positive_class`` of a cell that was not graded (no DAB stain, e.g. an H&E slide).
NOT_APPLICABLE = -1
POSITIVE_CLASS_NAMES = {-1: "not graded", 0: "negative", 1: "1+", 2: "2+", 3: "3+"}
#: compartments a cell can be graded in: ``features.compartments.COMPARTMENTS`` (written
#: again here, tested equal: that module loads Numba, the CLI's --help must not)
POSITIVITY_COMPARTMENTS = ("nucleus", "cytoplasm", "cell", "membrane")
#: statistics of a compartment's DAB OD a cell can be graded on (QuPath's two)
POSITIVITY_STATISTICS = ("mean", "max")
_DAB_COLUMN = re.compile(
    rf"^({'|'.join(POSITIVITY_COMPARTMENTS)})_dab_od_({'|'.join(POSITIVITY_STATISTICS)})$"
)


@dataclass(frozen=True)
class PositivityParams:
    """Which measurement grades a cell, and where the grade boundaries lie.

    The graded column is given either by `compartment` and `statistic` (the column is then
    ``<compartment>_dab_od_<statistic>``) or by `column` itself; with none of them, the
    nucleus DAB OD mean. After construction all three are set and agree: `column` is always
    the graded column, `compartment` and `statistic` are read from it (None for a column
    that is no compartment's DAB OD mean or max, e.g. ``nucleus_hematoxylin_od_mean``).

    Parameters
    ----------
    column : str, default "" (derived: "nucleus_dab_od_mean")
        Cell-table column whose value is graded, in its units (OD for the DAB columns);
        empty: ``<compartment>_dab_od_<statistic>``.
    thresholds : tuple of float, default (0.2, 0.4, 0.6)
        Three increasing values give grades 0/1+/2+/3+ (QuPath's default 0.2 / 0.4 / 0.6
        on nucleus DAB OD mean); one value gives negative / positive. In the units of
        `column`; stored as a tuple of float.
    compartment : {"nucleus", "cytoplasm", "cell", "membrane"}, optional
        Where the DAB is measured (:mod:`napari_gbm.features.compartments`); default
        ``"nucleus"`` when `column` is not given either.
    statistic : {"mean", "max"}, optional
        Mean or maximum DAB OD of the compartment's pixels; default ``"mean"`` when
        `column` is not given either.

    Raises
    ------
    ValueError
        If not one or three thresholds are given, or they are not finite and strictly
        increasing; for an unknown compartment or statistic; if `column` is given with a
        `compartment` or `statistic` it does not name.
    """

    column: str = ""
    thresholds: tuple[float, ...] = (0.2, 0.4, 0.6)
    compartment: str | None = None
    statistic: str | None = None

    def __post_init__(self) -> None:
        t = tuple(float(v) for v in self.thresholds)
        if len(t) not in (1, 3):
            raise ValueError(
                f"give one positivity threshold or three (1+/2+/3+), got {len(t)}: {t}"
            )
        if any(not np.isfinite(v) for v in t) or any(b <= a for a, b in itertools.pairwise(t)):
            raise ValueError(f"positivity thresholds must be finite and increasing, got {t}")
        object.__setattr__(self, "thresholds", t)
        if self.compartment is not None and self.compartment not in POSITIVITY_COMPARTMENTS:
            raise ValueError(
                f"compartment must be one of {', '.join(POSITIVITY_COMPARTMENTS)}, "
                f"got {self.compartment!r}"
            )
        if self.statistic is not None and self.statistic not in POSITIVITY_STATISTICS:
            raise ValueError(
                f"statistic must be one of {', '.join(POSITIVITY_STATISTICS)}, "
                f"got {self.statistic!r}"
            )
        if not self.column:
            compartment = self.compartment or "nucleus"
            statistic = self.statistic or "mean"
            object.__setattr__(self, "column", f"{compartment}_dab_od_{statistic}")
        named = _DAB_COLUMN.match(self.column)
        read = named.groups() if named else (None, None)
        for given, found, what in zip(
            (self.compartment, self.statistic), read, ("compartment", "statistic"), strict=True
        ):
            if given is not None and given != found:
                raise ValueError(
                    f"column {self.column!r} does not name the {what} {given!r}: give the column, "
                    "or the compartment and statistic, not both"
                )
        object.__setattr__(self, "compartment", read[0])
        object.__setattr__(self, "statistic", read[1])

    @property
    def graded(self) -> bool:
        """Whether there are grades 1+/2+/3+ (three thresholds), not just positive."""
        return len(self.thresholds) == 3


def positive_class(values: Any, thresholds: Sequence[float] = (0.2, 0.4, 0.6)) -> np.ndarray:
    """Grade of each cell: the number of thresholds its value reaches (``>=``).

    Parameters
    ----------
    values : array_like
        The graded measurement of each cell (e.g. nucleus DAB OD mean); NaN for a cell
        without that measurement.
    thresholds : sequence of float, default (0.2, 0.4, 0.6)
        One or three increasing thresholds, validated as in :class:`PositivityParams`.

    Returns
    -------
    numpy.ndarray of int8
        Same shape as `values`: 0 to ``len(thresholds)``, and :data:`NOT_APPLICABLE` (-1)
        where the value is NaN.

    Raises
    ------
    ValueError
        If the thresholds are invalid (see :class:`PositivityParams`).
    """
    v = np.asarray(values, dtype=np.float64)
    t = np.asarray(PositivityParams(thresholds=tuple(thresholds)).thresholds)
    grade = np.searchsorted(t, v, side="right").astype(np.int8)
    grade[np.isnan(v)] = NOT_APPLICABLE
    return grade


def allred_score(positive_fraction: float, mean_grade: float) -> tuple[int, int, int]:
    """Allred proportion, intensity and total score.

    Parameters
    ----------
    positive_fraction : float
        Fraction of graded cells that are positive, 0-1.
    mean_grade : float
        Mean grade of the positive cells, 1-3 (ignored when `positive_fraction` is 0).

    Returns
    -------
    tuple of int
        ``(proportion, intensity, total)``: proportion 0-5 (see the module docstring),
        intensity 1-3 (1 if the mean grade <= 5/3, 2 if <= 7/3, else 3) and their sum 2-8;
        ``(0, 0, 0)`` when nothing is positive.

    Raises
    ------
    ValueError
        If `positive_fraction` lies outside [0, 1].
    """
    p = float(positive_fraction)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"positive fraction must lie in [0, 1], got {p}")
    if p == 0.0:
        return 0, 0, 0
    proportion = 1 if p < 0.01 else 2 if p <= 0.10 else 3 if p <= 1 / 3 else 4 if p < 2 / 3 else 5
    intensity = 1 if mean_grade <= 5 / 3 else 2 if mean_grade <= 7 / 3 else 3
    return proportion, intensity, proportion + intensity


def ihc_scores(classes: Any, *, graded: bool = True) -> dict[str, Any]:
    """Counts and scores of a set of cells from their ``positive_class``.

    Cells with class :data:`NOT_APPLICABLE` are left out. With no graded cell, every score
    is None (never 0: an H&E slide has no Ki-67 index, not an index of zero).

    Parameters
    ----------
    classes : array_like of int
        Per-cell grades from :func:`positive_class` (-1, 0, 1, 2, 3).
    graded : bool, default True
        Whether the classes are grades 0-3 (three thresholds). False (one threshold, classes
        0/1) leaves the H-score and Allred scores None.

    Returns
    -------
    dict
        ``n_graded``, ``n_negative``, ``n_1plus``, ``n_2plus``, ``n_3plus``,
        ``n_positive`` (int); ``positive_percent`` (0-100), ``h_score`` (0-300),
        ``allred_proportion``, ``allred_intensity`` and ``allred_score`` (see
        :func:`allred_score`), None where undefined.
    """
    c = np.asarray(classes)
    c = c[c >= 0]
    counts = np.bincount(c.astype(np.int64), minlength=4)[:4] if c.size else np.zeros(4, int)
    n = int(counts.sum())
    n_pos = int(counts[1:].sum())
    out: dict[str, Any] = {
        "n_graded": n,
        "n_negative": int(counts[0]),
        "n_1plus": int(counts[1]),
        "n_2plus": int(counts[2]),
        "n_3plus": int(counts[3]),
        "n_positive": n_pos,
        "positive_percent": None,
        "h_score": None,
        "allred_proportion": None,
        "allred_intensity": None,
        "allred_score": None,
    }
    if n == 0:
        return out
    out["positive_percent"] = 100.0 * n_pos / n
    if graded:
        weighted = int(counts[1] + 2 * counts[2] + 3 * counts[3])
        out["h_score"] = 100.0 * weighted / n
        mean_grade = weighted / n_pos if n_pos else 0.0
        prop, inten, total = allred_score(n_pos / n, mean_grade)
        out.update(allred_proportion=prop, allred_intensity=inten, allred_score=total)
    return out
