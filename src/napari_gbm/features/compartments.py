"""Nucleus, cell, cytoplasm and membrane measurements in the project's cell-table names.

A cell detection gives two label images with shared ids: nucleus ``i`` lies in cell ``i``.
The compartments of cell ``i`` (QuPath's four, ``ObjectMeasurements.Compartments``):

- nucleus: nucleus ``i``;
- cell: every pixel of cell ``i``;
- cytoplasm: every pixel of cell ``i`` that is not nucleus ``i``;
- membrane: a ring at the cell boundary, the pixels of cell ``i`` within
  ``membrane_width_um`` of its boundary, less nucleus ``i``. The boundary pixels are
  QuPath's membrane: cell pixels with a 4-neighbour of another label (background or another
  cell; the image edge is no boundary, as in ``skimage.segmentation.find_boundaries``). A
  pixel is in the ring when the Euclidean distance from its centre to the nearest boundary
  pixel's centre is less than the width in pixels, so a straight edge gives a ring
  ``ceil(width / mpp)`` pixels deep. QuPath's ring is one pixel wide and keeps nucleus
  pixels; ours is wider (a membrane stain such as EGFR is a brown band of 1-2 µm at 0.5
  µm/px, not one pixel) and leaves the nucleus out (a nucleus touching the boundary would
  dilute the ring with counterstain).

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
from napari_gbm.features._morphology import boundary_ring, disk_offsets
from napari_gbm.features.measure import measure_validated

__all__ = ["COMPARTMENTS", "MEMBRANE_WIDTH_UM", "measure_compartments", "membrane_labels"]

#: the compartments with stain intensities, in the cell table's order (QuPath's)
COMPARTMENTS = ("nucleus", "cytoplasm", "cell", "membrane")
#: width of the membrane ring, µm (3 px at 0.5 µm/px, 6 at 0.25): a membrane stain is a
#: brown band of about 1-2 µm; our choice, see the module docstring
MEMBRANE_WIDTH_UM = 1.5

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
    membrane_width_um: float = MEMBRANE_WIDTH_UM,
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
    membrane_width_um : float, default MEMBRANE_WIDTH_UM (1.5)
        Width of the membrane ring, µm (see :func:`membrane_labels`).

    Returns
    -------
    pandas.DataFrame
        One row per nucleus label, increasing. Columns: ``label``, ``centroid_x_px``,
        ``centroid_y_px`` (of the nucleus); for ``C`` in ``nucleus``, ``cell``:
        ``C_area_um2``, ``C_perimeter_um``, ``C_circularity``, ``C_eccentricity``,
        ``C_solidity``, ``C_major_axis_um``, ``C_minor_axis_um``, ``C_orientation_rad``,
        ``C_max_caliper_um``, ``C_min_caliper_um``, ``C_extent``,
        ``C_equivalent_diameter_um``; for ``C`` in ``nucleus``, ``cytoplasm``,
        ``membrane``, ``cell`` and each stain ``S``: ``C_S_od_mean``, ``_std``, ``_min``,
        ``_max``, ``_sum``, ``_median``, ``_range``; ``nucleus_cell_area_ratio``. Cell
        columns are NaN for a nucleus without a cell of its id, cytoplasm (membrane) columns
        NaN when the cell has no pixel outside its nucleus (in its ring). Cells without a
        nucleus are not reported.

    Raises
    ------
    ValueError
        For invalid label images or images (see ``measure_cells``), label images of
        different shapes, or an invalid mpp or membrane width.
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
    membrane = _membrane(nuc, cel, membrane_width_um, pixel_size)
    tables = {
        "nucleus": measure_validated(nuc, stains, pixel_size, threads, stats=INTENSITY_STATS),
        "cell": measure_validated(cel, stains, pixel_size, threads, stats=INTENSITY_STATS),
        "cytoplasm": measure_validated(
            cytoplasm, stains, pixel_size, threads, morphology=False, stats=INTENSITY_STATS
        ),
        "membrane": measure_validated(
            membrane, stains, pixel_size, threads, morphology=False, stats=INTENSITY_STATS
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
    for compartment in ("nucleus", "cell", "cytoplasm", "membrane"):
        for stain in stains:
            for stat in INTENSITY_STATS:
                values = aligned[compartment][f"{stain}_{stat}"].to_numpy()
                columns[f"{compartment}_{stain}_od_{stat}"] = values
    with np.errstate(divide="ignore", invalid="ignore"):
        columns["nucleus_cell_area_ratio"] = (
            aligned["nucleus"]["area_um2"].to_numpy() / aligned["cell"]["area_um2"].to_numpy()
        )
    return pd.DataFrame(columns)


def membrane_labels(
    nuclei: ArrayLike, cells: ArrayLike, *, mpp: float, width_um: float = MEMBRANE_WIDTH_UM
) -> np.ndarray:
    """The membrane ring of each cell, as a label image.

    Parameters
    ----------
    nuclei, cells : array_like of int, shape (H, W)
        Label images with shared ids (cell ``i`` contains nucleus ``i``), 0 = background.
    mpp : float
        Pixel size, µm/px.
    width_um : float, default MEMBRANE_WIDTH_UM (1.5)
        Width of the ring, µm.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as `cells`: ``i`` on the pixels of cell ``i`` whose centre lies
        less than ``width_um / mpp`` pixels from the centre of a boundary pixel of the
        cell (a cell pixel with a 4-neighbour of another label; see the module docstring),
        and not on nucleus ``i``; 0 elsewhere.

    Raises
    ------
    ValueError
        For invalid label images, label images of different shapes, or an invalid mpp or
        width.
    """
    nuc = validate_labels(nuclei, "nuclei")
    cel = validate_labels(cells, "cells")
    if nuc.shape != cel.shape:
        raise ValueError(f"nuclei have shape {nuc.shape} but cells have shape {cel.shape}")
    pixel_size = validate_mpp(mpp)
    if pixel_size is None:
        raise ValueError("mpp (µm per pixel) is required for the membrane width")
    return _membrane(nuc, cel, width_um, pixel_size)


def _membrane(nuc: np.ndarray, cel: np.ndarray, width_um: float, mpp: float) -> np.ndarray:
    """Cell pixels closer than ``width_um / mpp`` pixels to a boundary pixel of their cell,
    less their nucleus (:func:`._morphology.boundary_ring`).

    This is also every cell pixel closer than `width_px` to *any* boundary pixel: the
    nearest boundary pixel to a pixel ``p`` of cell ``i`` is one of cell ``i``'s. Let ``q``
    be the pixel of another label nearest to ``p``, at distance ``D``; its 4-neighbour one
    step towards ``p`` is nearer than ``D``, so it belongs to cell ``i`` and, next to
    ``q``, is a boundary pixel of ``i``; a boundary pixel of another cell is not of label
    ``i``, so at least ``D`` away. (The tests check the ring against a distance transform
    of all boundary pixels.)
    """
    width = float(width_um)
    if not (np.isfinite(width) and width > 0):
        raise ValueError(f"the membrane width must be a positive number of µm, got {width_um}")
    dy, dx = disk_offsets(width / mpp)
    return np.asarray(boundary_ring(nuc, cel, dy, dx))
