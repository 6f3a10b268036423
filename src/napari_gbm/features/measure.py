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

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from napari_gbm.features._intensity import (
    INTENSITY_FIELDS,
    all_finite,
    intensity_features,
)
from napari_gbm.features._morphology import (
    group_runs,
    label_runs,
    run_pixel_counts,
    shape_features,
    value_range,
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
    """``area`` -> ``area_px`` / ``area_um2``, ``perimeter`` -> ``perimeter_px`` / ``_um``."""
    if not kind:
        return base
    if mpp is None:
        return f"{base}_px"
    return f"{base}_um2" if kind == "area" else f"{base}_um"


def table_schema(
    mpp: float | None, image_names: list[str], stats: tuple[str, ...] = INTENSITY_FIELDS
) -> dict[str, np.dtype]:
    """Column names and dtypes of :func:`measure_cells`' table, in order."""
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


def validate_labels(labels: ArrayLike, what: str = "labels") -> np.ndarray:
    """A 2-D, non-negative integer label image (as an int64-compatible array)."""
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D label image, got {arr.ndim} dimensions")
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"{what} must have an integer dtype (0 = background), got {arr.dtype}; "
            "convert masks or float images with .astype(np.int32) after labelling"
        )
    if arr.size:
        lo, hi = value_range(arr.reshape(-1))
        if lo < 0:
            raise ValueError(f"{what} must be non-negative (0 = background), min is {lo}")
        if hi > np.iinfo(np.int64).max:
            raise ValueError(f"{what} values above 2**63 - 1 are not supported")
    return arr


def validate_images(
    images: Mapping[str, ArrayLike] | None, shape: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Intensity images as C-contiguous float32 or float64 (other types become float64),
    finite, checked against the label image's shape."""
    if images is None:
        return {}
    if not isinstance(images, Mapping):
        raise ValueError(f"images must be a dict name -> 2-D array, got {type(images).__name__}")
    out = {}
    for name, image in images.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"image names must be non-empty strings, got {name!r}")
        arr = np.asarray(image)
        if arr.ndim != 2:
            raise ValueError(f"image {name!r} must be 2-D, got {arr.ndim} dimensions")
        if arr.shape != shape:
            raise ValueError(f"image {name!r} has shape {arr.shape}, labels have shape {shape}")
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"image {name!r} must be real-valued, got dtype {arr.dtype}")
        if arr.dtype in (np.float32, np.float64):
            # kept as it is (no float64 copy: the kernels widen each value as they read it)
            arr = np.ascontiguousarray(arr)
            if not all_finite(arr.reshape(-1)):
                raise ValueError(f"image {name!r} contains NaN or infinite values")
        else:  # integers and booleans: exact in float64, and always finite
            arr = np.ascontiguousarray(arr, dtype=np.float64)
        out[name] = arr
    return out


def validate_mpp(mpp: float | None) -> float | None:
    if mpp is None:
        return None
    value = float(mpp)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"mpp (µm per pixel) must be a positive number, got {mpp!r}")
    return value


def validate_stats(stats: Iterable[str] | None) -> tuple[str, ...]:
    """Requested intensity statistics in table order (all of them for None)."""
    if stats is None:
        return INTENSITY_FIELDS
    requested = [stats] if isinstance(stats, str) else list(stats)
    unknown = sorted(set(requested) - set(INTENSITY_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown intensity statistics {unknown}; choose from {list(INTENSITY_FIELDS)}"
        )
    return tuple(field for field in INTENSITY_FIELDS if field in requested)


def validate_threads(n_threads: int) -> int:
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)):
        raise ValueError(f"n_threads must be an integer >= 1, got {n_threads!r}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    return int(n_threads)


@contextmanager
def numba_threads(n_threads: int) -> Iterator[bool]:
    """Run numba's parallel kernels on ``n_threads`` threads; yields whether to use them."""
    if n_threads == 1:
        yield False
        return
    previous = numba.get_num_threads()
    max_threads = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    numba.set_num_threads(min(n_threads, max_threads))
    try:
        yield True
    finally:
        numba.set_num_threads(previous)


# --- computation ------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupedLabels:
    """Objects of a label image, pixels grouped per object (see ``_morphology``)."""

    width: int  # of the label image: flat pixel index = row * width + column
    label_values: np.ndarray  # (n,) int64, the label of each object, increasing
    order: np.ndarray  # flat pixel indices, grouped by object
    offsets: np.ndarray  # (n + 1,) int64

    @property
    def n_objects(self) -> int:
        return int(self.label_values.size)


def group_labels(labels: np.ndarray) -> GroupedLabels:
    """List each object's pixels of a validated label image (one pass over the image)."""
    flat = labels.reshape(-1)
    starts, lengths, values = label_runs(flat)
    if values.size == 0:
        label_values = np.zeros(0, np.int64)
        rows = np.zeros(0, np.int64)
    else:
        max_label = int(values.max())
        if max_label <= max(values.size, 1 << 16):  # a lookup table from label to object
            present = np.zeros(max_label + 1, np.bool_)
            present[values] = True
            label_values = np.flatnonzero(present).astype(np.int64)
            row_of = np.cumsum(present, dtype=np.int64) - 1
            rows = row_of[values]
        else:  # huge sparse label values: number the runs' labels by sorting them
            label_values, rows = np.unique(values, return_inverse=True)
            rows = rows.reshape(-1).astype(np.int64)
    counts = run_pixel_counts(lengths, rows, label_values.size)
    offsets = np.zeros(label_values.size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    order = np.empty(offsets[-1], np.int32 if flat.size < 2**31 else np.int64)
    group_runs(starts, lengths, rows, offsets, order)
    return GroupedLabels(labels.shape[1], label_values, order, offsets)


def morphology_columns(
    grouped: GroupedLabels, mpp: float | None, parallel: bool
) -> dict[str, np.ndarray]:
    """Position and morphology columns (see :func:`measure_cells`)."""
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
    """``<image>_<statistic>`` columns for every (validated) image."""
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
    """:func:`measure_cells` on validated inputs; ``morphology=False`` keeps only
    ``label`` and the intensity columns."""
    schema = table_schema(mpp, list(images), stats)
    grouped = group_labels(labels)
    columns: dict[str, np.ndarray] = {"label": grouped.label_values}
    with numba_threads(n_threads) as parallel:
        if morphology:
            columns.update(morphology_columns(grouped, mpp, parallel))
        columns.update(intensity_columns(grouped, images, parallel, stats))
    names = [name for name in schema if name in columns]
    return pd.DataFrame({name: np.asarray(columns[name], dtype=schema[name]) for name in names})
