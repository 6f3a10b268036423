"""The cell table contract: column names, dtypes and units, and the empty table.

One row per cell. Names are noun first, unit last, compartment prefixed (``nucleus_``,
``cell_``, ``cytoplasm_``, ``membrane_``: see :mod:`napari_gbm.features.compartments`);
level-0 pixel coordinates use x = column. Stain columns
depend on the stains of the slide (``hematoxylin`` and ``eosin`` for H&E,
``hematoxylin`` and ``dab`` for H-DAB); their values are optical densities (OD) from
colour deconvolution.

Measurements are stored as float32 (7 significant digits is beyond any measurement's
precision, and it halves the memory of a whole-slide table); coordinates as float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from napari_gbm.features.compartments import COMPARTMENTS
from napari_gbm.features.neighbourhood import NEIGHBOURHOOD_COLUMNS

__all__ = ["Column", "cell_table_columns", "conform_cell_table", "empty_cell_table"]

MORPHOLOGY = {
    "area_um2": "µm²",
    "perimeter_um": "µm",
    "circularity": "",
    "eccentricity": "",
    "solidity": "",
    "major_axis_um": "µm",
    "minor_axis_um": "µm",
    "orientation_rad": "rad",
    "max_caliper_um": "µm",
    "min_caliper_um": "µm",
    "extent": "",
    "equivalent_diameter_um": "µm",
}
INTENSITY_STATS = ("mean", "std", "min", "max", "sum", "median", "range")
HARALICK = (
    "asm", "contrast", "correlation", "sum_of_squares", "idm", "sum_average", "sum_variance",
    "sum_entropy", "entropy", "difference_variance", "difference_entropy", "imc1", "imc2",
)  # fmt: skip


@dataclass(frozen=True)
class Column:
    """One column of the cell table.

    Attributes
    ----------
    name : str
        Column name.
    dtype : str
        pandas dtype name (``"float32"``, ``"int64"``, ``"str"`` ...).
    unit : str, default ""
        Unit (``"µm"``, ``"µm²"``, ``"px"`` for level-0 pixels, ``"OD"``, ``"1/mm²"``,
        ``"rad"``); empty for counts, ids and dimensionless values.
    """

    name: str
    dtype: str
    unit: str = ""


def cell_table_columns(stains: Sequence[str] = ("hematoxylin", "eosin")) -> list[Column]:
    """All columns of the cell table, in order.

    Parameters
    ----------
    stains : sequence of str, default ("hematoxylin", "eosin")
        The slide's stains (``("hematoxylin", "dab")`` for H-DAB); each gets its OD
        intensity columns per compartment.

    Returns
    -------
    list of Column
        Ids and coordinates, nucleus and cell morphology, nucleus / cytoplasm / cell /
        membrane OD intensities per stain, ``nucleus_cell_area_ratio``, nucleus Haralick texture,
        neighbourhood features and ``positive_class``.
    """
    cols = [
        Column("cell_id", "int64"),
        Column("slide_id", "str"),
        Column("tile_id", "int64"),
        Column("centroid_x_px", "float64", "px"),
        Column("centroid_y_px", "float64", "px"),
        Column("centroid_x_um", "float64", "µm"),
        Column("centroid_y_um", "float64", "µm"),
    ]
    for comp in ("nucleus", "cell"):
        cols += [Column(f"{comp}_{name}", "float32", unit) for name, unit in MORPHOLOGY.items()]
    for comp in COMPARTMENTS:
        for stain in stains:
            cols += [Column(f"{comp}_{stain}_od_{s}", "float32", "OD") for s in INTENSITY_STATS]
    cols.append(Column("nucleus_cell_area_ratio", "float32"))
    for feat in HARALICK:
        cols += [Column(f"nucleus_haralick_{feat}_{agg}", "float32") for agg in ("mean", "range")]
    units = {"delaunay_neighbours": "", "density_per_mm2": "1/mm²"}
    cols += [Column(n, t, units.get(n, "µm")) for n, t in NEIGHBOURHOOD_COLUMNS.items()]
    # DAB grade (napari_gbm.biomarkers.ihc): -1 not graded (no DAB), 0 negative, 1-3 = 1+..3+
    cols.append(Column("positive_class", "int8"))
    return cols


def empty_cell_table(stains: Sequence[str] = ("hematoxylin", "eosin")) -> pd.DataFrame:
    """A zero-row cell table with every column and its dtype.

    Parameters
    ----------
    stains : sequence of str, default ("hematoxylin", "eosin")
        The slide's stains (see :func:`cell_table_columns`).

    Returns
    -------
    pandas.DataFrame
        No rows; the columns of :func:`cell_table_columns`.
    """
    return pd.DataFrame({c.name: pd.Series(dtype=c.dtype) for c in cell_table_columns(stains)})


def conform_cell_table(
    df: pd.DataFrame, stains: Sequence[str] = ("hematoxylin", "eosin")
) -> pd.DataFrame:
    """Order and cast `df` to the schema; extra columns are kept at the end.

    Parameters
    ----------
    df : pandas.DataFrame
        A cell table with at least every column of :func:`cell_table_columns`.
    stains : sequence of str, default ("hematoxylin", "eosin")
        The slide's stains (see :func:`cell_table_columns`).

    Returns
    -------
    pandas.DataFrame
        A new frame: the schema's columns in order, cast to their dtypes, then the extra
        columns.

    Raises
    ------
    ValueError
        Naming the missing columns, if any.
    """
    cols = cell_table_columns(stains)
    missing = [c.name for c in cols if c.name not in df.columns]
    if missing:
        raise ValueError(
            f"the cell table lacks {len(missing)} columns: {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}; it has {list(df.columns)[:12]} ..."
        )
    known = {c.name for c in cols}
    extra = [c for c in df.columns if c not in known]
    out = df[[c.name for c in cols] + extra]  # a new frame already: no extra copy
    for c in cols:
        if str(out[c.name].dtype) != c.dtype:
            out[c.name] = out[c.name].astype(c.dtype)
    return out
