"""Nucleus, cell and cytoplasm measurements in the project's cell-table names.

A cell detection gives two label images with shared ids: nucleus ``i`` lies in cell ``i``.
The cytoplasm of cell ``i`` is every pixel of cell ``i`` that is not nucleus ``i``.
Everything is computed by :mod:`.measure` (same kernels, same definitions); this module
only decides which objects are measured on which image and prefixes the columns.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from napari_gbm.features._labels import (
    validate_images,
    validate_labels,
    validate_mpp,
    validate_threads,
)
from napari_gbm.features.measure import measure_validated

__all__ = ["measure_compartments"]

#: measure_cells columns (µm mode) kept per compartment, as ``<compartment>_<name>``: one naming
#: (noun first, unit last) from measure_cells to the cell table
MORPHOLOGY_COLUMNS = (
    "area_um2",
    "perimeter_um",
    "circularity",
    "eccentricity",
    "solidity",
    "major_axis_um",
    "minor_axis_um",
    "orientation_rad",
    "max_caliper_um",
    "min_caliper_um",
    "extent",
    "equivalent_diameter_um",
)
#: intensity statistics reported per compartment and stain (QuPath's set plus median)
INTENSITY_STATS = ("mean", "std", "min", "max", "sum", "median", "range")


def measure_compartments(
    nuclei: ArrayLike,
    cells: ArrayLike,
    images: Mapping[str, ArrayLike],
    *,
    mpp: float,
    n_threads: int = 1,
) -> pd.DataFrame:
    """Per-cell table: nucleus and cell morphology, stain OD per compartment.

    Parameters
    ----------
    nuclei, cells : array_like of int, shape (H, W)
        Label images with shared ids (cell ``i`` contains nucleus ``i``), 0 = background.
    images : mapping of str to array_like, shape (H, W)
        Stain optical density images (OD units), e.g.
        ``{"hematoxylin": ..., "dab": ...}``.
    mpp : float
        Pixel size of the label images, µm/px (required).
    n_threads : int, default 1
        Threads for the per-object kernels; results do not depend on it.

    Returns
    -------
    pandas.DataFrame
        One row per nucleus label, increasing. Columns: ``label``, ``centroid_x_px``,
        ``centroid_y_px`` (of the nucleus); for ``C`` in ``nucleus``, ``cell``:
        ``C_area_um2``, ``C_perimeter_um``, ``C_circularity``, ``C_eccentricity``,
        ``C_solidity``, ``C_major_axis_um``, ``C_minor_axis_um``, ``C_orientation_rad``,
        ``C_max_caliper_um``, ``C_min_caliper_um``, ``C_extent``,
        ``C_equivalent_diameter_um``; for ``C`` in ``nucleus``, ``cell``, ``cytoplasm``
        and each stain ``S``: ``C_S_od_mean``, ``_std``, ``_min``, ``_max``, ``_sum``,
        ``_median``, ``_range``; ``nucleus_cell_area_ratio``. Cell columns are NaN for a
        nucleus without a cell of its id, cytoplasm columns NaN when the cell has no pixel
        outside its nucleus. Cells without a nucleus are not reported.

    Raises
    ------
    ValueError
        For invalid label images or images (see ``measure_cells``), label images of
        different shapes, or an invalid mpp.
    """
    nuc = validate_labels(nuclei, "nuclei")
    cel = validate_labels(cells, "cells")
    if nuc.shape != cel.shape:
        raise ValueError(f"nuclei have shape {nuc.shape} but cells have shape {cel.shape}")
    stains = validate_images(images, nuc.shape)
    pixel_size = validate_mpp(mpp)
    if pixel_size is None:
        raise ValueError("mpp (µm per pixel) is required for the cell table")
    threads = validate_threads(n_threads)

    cytoplasm = np.where(nuc == cel, 0, cel)
    tables = {
        "nucleus": measure_validated(nuc, stains, pixel_size, threads, stats=INTENSITY_STATS),
        "cell": measure_validated(cel, stains, pixel_size, threads, stats=INTENSITY_STATS),
        "cytoplasm": measure_validated(
            cytoplasm, stains, pixel_size, threads, morphology=False, stats=INTENSITY_STATS
        ),
    }
    nucleus_table = tables["nucleus"]
    index = pd.Index(nucleus_table["label"].to_numpy(), name="label")
    columns: dict[str, np.ndarray] = {
        "label": index.to_numpy(),
        "centroid_x_px": nucleus_table["centroid_x_px"].to_numpy(),
        "centroid_y_px": nucleus_table["centroid_y_px"].to_numpy(),
    }
    aligned = {
        name: table.set_index("label").reindex(index).astype(np.float64)
        for name, table in tables.items()
    }
    for compartment in ("nucleus", "cell"):
        for name in MORPHOLOGY_COLUMNS:
            columns[f"{compartment}_{name}"] = aligned[compartment][name].to_numpy()
    for compartment in ("nucleus", "cell", "cytoplasm"):
        for stain in stains:
            for stat in INTENSITY_STATS:
                values = aligned[compartment][f"{stain}_{stat}"].to_numpy()
                columns[f"{compartment}_{stain}_od_{stat}"] = values
    with np.errstate(divide="ignore", invalid="ignore"):
        columns["nucleus_cell_area_ratio"] = (
            aligned["nucleus"]["area_um2"].to_numpy() / aligned["cell"]["area_um2"].to_numpy()
        )
    return pd.DataFrame(columns)
