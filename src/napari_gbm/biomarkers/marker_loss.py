"""Loss of a nuclear marker (ATRX): the negative share of tumour nuclei, read only where
the internal controls stay positive.

ATRX is kept in the nuclei of normal cells and lost in tumour nuclei with an ATRX
mutation. A slide is read as the fraction of tumour nuclei that are negative, and the stain
is checked on the internal controls, nuclei that are not tumour (endothelial cells,
lymphocytes, neurons, glia), which must stay positive: when they are mostly negative the
stain failed and loss cannot be called. There is no cell-type classifier, so controls are
told from tumour nuclei by shape alone (:class:`InternalControlParams`), a transparent
proxy; ``docs/MARKERS.md`` says what it gets wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "LOSS_KEYS",
    "MARKER_CELL_COLUMNS",
    "InternalControlParams",
    "internal_controls",
    "loss_summary",
]

#: the cell-table columns a loss reading needs besides ``positive_class``
MARKER_CELL_COLUMNS = ("nucleus_area_um2", "nucleus_major_axis_um", "nucleus_minor_axis_um")
#: summary entries of a loss marker (None for other markers)
LOSS_KEYS = (
    "loss_fraction",
    "loss_callable",
    "n_tumour_nuclei_graded",
    "n_tumour_nuclei_negative",
    "n_internal_control",
    "n_internal_control_positive",
    "internal_control_positive_fraction",
)


@dataclass(frozen=True)
class InternalControlParams:
    """Which nuclei count as internal controls of a loss marker: non-tumour nuclei, told by
    shape alone (a proxy; there is no cell-type classifier).

    Parameters
    ----------
    endothelial_min_elongation : float, default 2.5
        Endothelial nuclei are long and thin: major / minor axis at least this.
    endothelial_max_minor_axis_um : float, default 4.0
        ... and a minor axis of at most this, µm.
    lymphocyte_max_area_um2 : float, default 30.0
        Lymphocyte nuclei are small and round (about 5-7 µm across): area below this, µm².
    lymphocyte_max_elongation : float, default 1.5
        ... and major / minor axis below this.
    min_controls : int, default 20
        With fewer graded controls the stain is not checked (a warning says so).
    min_control_positive_fraction : float, default 0.5
        Controls less often positive than this mean the stain failed: loss is not called.
    """

    endothelial_min_elongation: float = 2.5
    endothelial_max_minor_axis_um: float = 4.0
    lymphocyte_max_area_um2: float = 30.0
    lymphocyte_max_elongation: float = 1.5
    min_controls: int = 20
    min_control_positive_fraction: float = 0.5


def internal_controls(
    cells: pd.DataFrame, params: InternalControlParams | None = None
) -> np.ndarray:
    """Which cells are internal controls: elongated thin (endothelial) or small round
    (lymphocyte-like) nuclei.

    Parameters
    ----------
    cells : pandas.DataFrame
        The cell table, at least :data:`MARKER_CELL_COLUMNS` (µm, µm²).
    params : InternalControlParams, optional
        None uses the defaults.

    Returns
    -------
    numpy.ndarray of bool
        One entry per row; False where a measurement is missing.

    Raises
    ------
    ValueError
        If a column of :data:`MARKER_CELL_COLUMNS` is missing.
    """
    p = params or InternalControlParams()
    missing = [c for c in MARKER_CELL_COLUMNS if c not in cells.columns]
    if missing:
        raise ValueError(f"internal controls need the cell-table columns {missing}")
    area = cells["nucleus_area_um2"].to_numpy(np.float64)
    major = cells["nucleus_major_axis_um"].to_numpy(np.float64)
    minor = cells["nucleus_minor_axis_um"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        elongation = np.where(minor > 0, major / minor, np.inf)
    endothelial = (elongation >= p.endothelial_min_elongation) & (
        minor <= p.endothelial_max_minor_axis_um
    )
    lymphocyte = (area < p.lymphocyte_max_area_um2) & (elongation < p.lymphocyte_max_elongation)
    return np.asarray(endothelial | lymphocyte)


def loss_summary(
    cells: pd.DataFrame, params: InternalControlParams | None = None, *, marker: str = "ATRX"
) -> tuple[dict[str, Any], list[str]]:
    """Loss of a nuclear marker: the negative share of tumour nuclei, checked on internal
    controls.

    Parameters
    ----------
    cells : pandas.DataFrame
        The cell table: ``positive_class`` (-1 not graded, 0 negative, 1-3 positive) and
        :data:`MARKER_CELL_COLUMNS`.
    params : InternalControlParams, optional
        None uses the defaults.
    marker : str, default "ATRX"
        The marker's name, for the warnings.

    Returns
    -------
    entries : dict
        :data:`LOSS_KEYS`: ``loss_fraction`` = negative / graded tumour nuclei (None with
        none graded); ``loss_callable``: whether enough controls were graded and enough of
        them are positive; the counts; ``internal_control_positive_fraction`` (None with no
        control).
    warnings : list of str
        Why loss cannot be called, if it cannot.

    Raises
    ------
    ValueError
        If a needed column is missing.
    """
    p = params or InternalControlParams()
    if "positive_class" not in cells.columns:
        raise ValueError("a loss reading needs the cell-table column 'positive_class'")
    cls = cells["positive_class"].to_numpy()
    graded = cls >= 0
    control = internal_controls(cells, p) & graded
    tumour = graded & ~control
    n_tumour = int(tumour.sum())
    n_negative = int((tumour & (cls == 0)).sum())
    n_control = int(control.sum())
    n_control_pos = int((control & (cls > 0)).sum())
    control_fraction = n_control_pos / n_control if n_control else None
    warnings = []
    if n_control < p.min_controls:
        warnings.append(
            f"{marker} loss: {n_control} internal-control nuclei graded (endothelial or "
            f"lymphocyte-like; fewer than {p.min_controls}): the stain cannot be checked, "
            "so loss cannot be called"
        )
    elif control_fraction is not None and control_fraction < p.min_control_positive_fraction:
        warnings.append(
            f"{marker} loss: only {100 * control_fraction:.0f} % of {n_control} "
            "internal-control nuclei are positive: the stain seems to have failed, so loss "
            "cannot be called"
        )
    entries = {
        "loss_fraction": n_negative / n_tumour if n_tumour else None,
        "loss_callable": bool(n_tumour) and not warnings,
        "n_tumour_nuclei_graded": n_tumour,
        "n_tumour_nuclei_negative": n_negative,
        "n_internal_control": n_control,
        "n_internal_control_positive": n_control_pos,
        "internal_control_positive_fraction": control_fraction,
    }
    return entries, warnings
