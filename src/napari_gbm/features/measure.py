"""Per-object morphology and intensity table of a 2-D label image: :func:`measure_cells`.

Definitions follow ``skimage.measure.regionprops`` (which HistomicsTK's
``compute_morphometry_features`` wraps) and HistomicsTK's ``compute_intensity_features``:

- area, centroid, bbox, extent, equivalent diameter (``sqrt(4 A / pi)``), convex area and
  solidity (scikit-image's rasterised convex hull, reproduced exactly), perimeter
  (scikit-image's 4-connectivity weighted border-pixel count), major/minor axis length
  (``4 sqrt(eigenvalue)`` of the inertia tensor), eccentricity, orientation (angle between
  the row axis and the major axis, in [-pi/2, pi/2], scikit-image's convention);
- max_caliper = scikit-image's ``feret_diameter_max``; min_caliper = the smallest width of
  the same point set (the rasterised hull's boundary edge midpoints), QuPath's "Min caliper"
  measured on scikit-image's outline rather than on QuPath's traced pixel-corner polygon;
- circularity = 4 pi area / perimeter² (QuPath, HistomicsTK), minor_major_axis_ratio
  (HistomicsTK);
- intensity statistics: see :mod:`._intensity`.

Deliberate differences (all for objects where the reference is undefined or odd):
circularity is NaN when the perimeter is 0 (single pixels and 2x1 dominoes, whose
scikit-image perimeter is 0; HistomicsTK divides by 1 instead); skewness and kurtosis are
NaN for constant values (current SciPy). As in the references a single pixel has
eccentricity 0, orientation -pi/4, axis lengths 0 and minor_major_axis_ratio 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from napari_gbm.features._intensity import (
    INTENSITY_FIELDS,
    intensity_features,
)
from napari_gbm.features._labels import (
    GroupedLabels,
    group_labels,
    numba_threads,
    validate_images,
    validate_labels,
    validate_mpp,
    validate_stats,
    validate_threads,
)
from napari_gbm.features._morphology import (
    shape_features,
)

__all__ = ["measure_cells"]

#: Morphology columns in table order, with their unit kind ("area", "length" or "").
MORPHOLOGY_COLUMNS = (
    ("area", "area"),
    ("perimeter", "length"),
    ("circularity", ""),
    ("eccentricity", ""),
    ("solidity", ""),
    ("major_axis", "length"),
    ("minor_axis", "length"),
    ("minor_major_axis_ratio", ""),
    ("orientation_rad", ""),
    ("max_caliper", "length"),
    ("min_caliper", "length"),
    ("extent", ""),
    ("equivalent_diameter", "length"),
    ("convex_area", "area"),
)
POSITION_COLUMNS = (
    "centroid_x_px",
    "centroid_y_px",
    "bbox_x0_px",
    "bbox_y0_px",
    "bbox_x1_px",
    "bbox_y1_px",
)


def column_name(base: str, kind: str, mpp: float | None) -> str:
    """The table column of a morphology measurement, with its unit suffix.

    ``area`` -> ``area_px`` / ``area_um2``, ``perimeter`` -> ``perimeter_px`` /
    ``perimeter_um``.

    Parameters
    ----------
    base : str
        The measurement's name (``"area"``).
    kind : str
        Its unit kind, as in :data:`MORPHOLOGY_COLUMNS`: ``"area"``, ``"length"`` or ``""``
        (unitless: `base` is returned as it is).
    mpp : float or None
        Pixel size, µm/px; None: the measurement is in pixels.

    Returns
    -------
    str
        `base` plus ``_px`` without `mpp`, else ``_um2`` for an area and ``_um`` for a
        length.
    """
    if not kind:
        return base
    if mpp is None:
        return f"{base}_px"
    return f"{base}_um2" if kind == "area" else f"{base}_um"


def table_schema(
    mpp: float | None, image_names: list[str], stats: tuple[str, ...] = INTENSITY_FIELDS
) -> dict[str, np.dtype]:
    """Column names and dtypes of :func:`measure_cells`' table, in order.

    Parameters
    ----------
    mpp : float or None
        Pixel size, µm/px; decides the unit suffixes (:func:`column_name`).
    image_names : list of str
        The intensity images, in order.
    stats : tuple of str, default INTENSITY_FIELDS
        The intensity statistics reported per image, in table order.

    Returns
    -------
    dict of str to numpy.dtype
        ``label``, the position columns (int64 bbox, float64 centroids), the morphology
        columns and ``<image>_<statistic>`` per image and statistic (float64).
    """
    schema: dict[str, np.dtype] = {"label": np.dtype(np.int64)}
    for name in POSITION_COLUMNS:
        schema[name] = np.dtype(np.int64 if name.startswith("bbox") else np.float64)
    for base, kind in MORPHOLOGY_COLUMNS:
        schema[column_name(base, kind, mpp)] = np.dtype(np.float64)
    for image_name in image_names:
        for field in stats:
            schema[f"{image_name}_{field}"] = np.dtype(np.float64)
    return schema


# --- validation -------------------------------------------------------------------------


def morphology_columns(
    grouped: GroupedLabels, mpp: float | None, parallel: bool
) -> dict[str, np.ndarray]:
    """Position and morphology columns (see :func:`measure_cells`).

    Parameters
    ----------
    grouped : GroupedLabels
        The objects.
    mpp : float or None
        Pixel size, µm/px: lengths in µm and areas in µm²; None: both in px.
    parallel : bool
        Whether to run numba's parallel kernel (see :func:`numba_threads`).

    Returns
    -------
    dict of str to numpy.ndarray
        One value per object: the position columns (centroids and half-open bbox, px)
        and the morphology columns named by :func:`column_name`.
    """
    out_int, out_float = shape_features(
        grouped.width, grouped.order, grouped.offsets, parallel=parallel
    )
    area = out_int[:, 0].astype(np.float64)
    row0, col0, row1, col1 = out_int[:, 1], out_int[:, 2], out_int[:, 3], out_int[:, 4]
    convex_area = out_int[:, 5].astype(np.float64)
    var_row, cov, var_col = out_float[:, 2], out_float[:, 3], out_float[:, 4]
    perimeter = out_float[:, 5]
    # scikit-image's inertia tensor [[a, b], [b, c]] and its eigenvalues l1 >= l2 >= 0
    a, b, c = var_col, -cov, var_row
    l1 = (a + c) / 2 + np.hypot((a - c) / 2, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        # det / l1 rather than (a + c) / 2 - root: no cancellation for thin objects
        l2 = np.clip(np.where(l1 > 0, (a * c - b * b) / l1, 0.0), 0.0, None)
        eccentricity = np.where(l1 > 0, np.sqrt(1 - l2 / l1), 0.0)
        circularity = np.where(perimeter > 0, 4 * np.pi * area / perimeter**2, np.nan)
    major = 4 * np.sqrt(l1)
    minor = 4 * np.sqrt(l2)
    orientation = np.where(
        a - c == 0, np.where(b < 0, np.pi / 4, -np.pi / 4), 0.5 * np.arctan2(-2 * b, c - a)
    )
    length = 1.0 if mpp is None else mpp
    values = {
        "area": area * length**2,
        "perimeter": perimeter * length,
        "circularity": circularity,
        "eccentricity": eccentricity,
        "solidity": area / np.maximum(convex_area, 1),
        "major_axis": major * length,
        "minor_axis": minor * length,
        "minor_major_axis_ratio": np.divide(minor, major, out=np.ones_like(major), where=major > 0),
        "orientation_rad": orientation,
        "max_caliper": out_float[:, 6] * length,
        "min_caliper": out_float[:, 7] * length,
        "extent": area / ((row1 - row0) * (col1 - col0)),
        "equivalent_diameter": np.sqrt(4 * area / np.pi) * length,
        "convex_area": convex_area * length**2,
    }
    columns = {
        "centroid_x_px": out_float[:, 1],
        "centroid_y_px": out_float[:, 0],
        "bbox_x0_px": col0,
        "bbox_y0_px": row0,
        "bbox_x1_px": col1,
        "bbox_y1_px": row1,
    }
    for base, kind in MORPHOLOGY_COLUMNS:
        columns[column_name(base, kind, mpp)] = values[base]
    return columns


def intensity_columns(
    grouped: GroupedLabels,
    images: dict[str, np.ndarray],
    parallel: bool,
    stats: tuple[str, ...] = INTENSITY_FIELDS,
) -> dict[str, np.ndarray]:
    """``<image>_<statistic>`` columns for every (validated) image.

    Parameters
    ----------
    grouped : GroupedLabels
        The objects.
    images : dict of str to (H, W) numpy.ndarray
        Intensity images checked by :func:`validate_images` (e.g. stain OD).
    parallel : bool
        Whether to run numba's parallel kernel (see :func:`numba_threads`).
    stats : tuple of str, default INTENSITY_FIELDS
        The statistics to compute (checked by :func:`validate_stats`).

    Returns
    -------
    dict of str to numpy.ndarray
        One value per object for each image and statistic, images in the given order
        and statistics in ``INTENSITY_FIELDS``' order; intensities in the images' units.
    """
    columns = {}
    for name, image in images.items():
        values = intensity_features(
            image, grouped.order, grouped.offsets, parallel=parallel, stats=stats
        )
        for k, field in enumerate(INTENSITY_FIELDS):
            if field in stats:
                columns[f"{name}_{field}"] = values[:, k]
    return columns


def measure_cells(
    labels: ArrayLike,
    images: Mapping[str, ArrayLike] | None = None,
    *,
    mpp: float | None = None,
    n_threads: int = 1,
    intensity_stats: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Morphology and intensity features of every object in a label image.

    Parameters
    ----------
    labels : (H, W) array of int
        Label image, 0 = background; label numbers need not be consecutive.
    images : dict of str to (H, W) array, optional
        Intensity images (e.g. stain optical densities), measured under each object.
    mpp : float, optional
        Pixel size in µm. Lengths are then in µm (``_um``) and areas in µm² (``_um2``);
        without it both are in pixels (``_px``). Centroids and bbox are always pixels.
    n_threads : int
        Threads for the per-object kernels. Results do not depend on it.
    intensity_stats : iterable of str, optional
        The intensity statistics to report (default: all, see below). Leaving out
        ``median``, ``iqr``, ``mad``, ``hist_energy`` and ``hist_entropy`` skips their
        per-object selections and binning, most of the intensity cost.

    Returns
    -------
    pandas.DataFrame
        One row per label present, in increasing label order (zero rows, same columns,
        for an image without objects). Columns: ``label``; ``centroid_x_px``,
        ``centroid_y_px`` (x = column); ``bbox_x0_px``, ``bbox_y0_px``, ``bbox_x1_px``,
        ``bbox_y1_px`` (half-open, like regionprops' bbox); ``area``, ``perimeter``,
        ``circularity``, ``eccentricity``, ``solidity``, ``major_axis``,
        ``minor_axis``, ``minor_major_axis_ratio``, ``orientation_rad``,
        ``max_caliper``, ``min_caliper``, ``extent``, ``equivalent_diameter``,
        ``convex_area`` (lengths and areas with their unit suffix); per image ``N``:
        ``N_mean``, ``N_std``, ``N_min``, ``N_max``, ``N_sum``, ``N_median``, ``N_range``,
        ``N_iqr``, ``N_mad``, ``N_skewness``, ``N_kurtosis``, ``N_hist_energy``,
        ``N_hist_entropy``. Definitions are in the module docstring.

    Raises
    ------
    ValueError
        If labels are not a 2-D non-negative integer array, an image is not 2-D, real,
        finite and of the labels' shape, or mpp / n_threads are invalid.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((6, 6), np.int32)
    >>> labels[1:4, 1:4] = 7
    >>> table = measure_cells(labels, {"dab": labels * 0.1}, mpp=0.5)
    >>> table[["label", "area_um2", "dab_mean"]].to_dict("records")
    [{'label': 7, 'area_um2': 2.25, 'dab_mean': 0.7000000000000001}]
    """
    arr = validate_labels(labels)
    validated = validate_images(images, arr.shape)
    return measure_validated(
        arr,
        validated,
        validate_mpp(mpp),
        validate_threads(n_threads),
        stats=validate_stats(intensity_stats),
    )


def measure_validated(
    labels: np.ndarray,
    images: dict[str, np.ndarray],
    mpp: float | None,
    n_threads: int,
    *,
    morphology: bool = True,
    stats: tuple[str, ...] = INTENSITY_FIELDS,
) -> pd.DataFrame:
    """:func:`measure_cells` on validated inputs.

    Parameters
    ----------
    labels : (H, W) numpy.ndarray of int
        Label image checked by :func:`validate_labels`, 0 = background.
    images : dict of str to (H, W) numpy.ndarray
        Intensity images checked by :func:`validate_images`.
    mpp : float or None
        Pixel size, µm/px, checked by :func:`validate_mpp`; None: lengths and areas in
        px.
    n_threads : int
        Threads for the kernels, checked by :func:`validate_threads`.
    morphology : bool, default True
        False keeps only ``label`` and the intensity columns.
    stats : tuple of str, default INTENSITY_FIELDS
        The intensity statistics, checked by :func:`validate_stats`.

    Returns
    -------
    pandas.DataFrame
        :func:`measure_cells`' table (less the position and morphology columns for
        ``morphology=False``), columns in :func:`table_schema`'s order and dtypes.
    """
    schema = table_schema(mpp, list(images), stats)
    grouped = group_labels(labels)
    columns: dict[str, np.ndarray] = {"label": grouped.label_values}
    with numba_threads(n_threads) as parallel:
        if morphology:
            columns.update(morphology_columns(grouped, mpp, parallel))
        columns.update(intensity_columns(grouped, images, parallel, stats))
    names = [name for name in schema if name in columns]
    return pd.DataFrame({name: np.asarray(columns[name], dtype=schema[name]) for name in names})
