"""Pixel grouping and per-object shape kernels for a 2-D label image.

The label image is read twice in raster order: once to count pixels per label, once to
list every object's flat pixel indices contiguously (a CSR layout: ``order`` sliced by
``offsets``). Everything per object then works from its own slice, so objects can be
measured in any order or in parallel and each result is computed by the same sequence
of operations whatever the thread count (serial and parallel results are bit-identical).

Per object, one pass over its pixels gives area, bounding box, raw moments (exact integer
sums relative to the first pixel, so symmetric objects get an exactly zero covariance, as
the maths says) and the column extents of every row, from which :mod:`._caliper` gets the
convex area and the calipers. The perimeter is measured on a small mask of the object's
bounding box, as scikit-image measures it on ``regionprops``' ``image`` (neighbouring
objects count as outside). The label image itself is only read by the grouping kernels.
"""

from __future__ import annotations

import numba
import numpy as np

from napari_gbm.features._caliper import hull_features

#: Columns of the integer and float outputs of :func:`shape_features`.
SHAPE_INT_FIELDS = ("area", "row0", "col0", "row1", "col1", "convex_area")
SHAPE_FLOAT_FIELDS = (
    "centroid_row",
    "centroid_col",
    "var_row",
    "cov_row_col",
    "var_col",
    "perimeter",
    "max_caliper",
    "min_caliper",
)


@numba.njit(cache=True)
def value_range(flat: np.ndarray) -> tuple:
    """Minimum and maximum of a non-empty array in one pass (NumPy needs two)."""
    lo = flat[0]
    hi = flat[0]
    for v in flat:
        lo = min(lo, v)
        hi = max(hi, v)
    return lo, hi


@numba.njit(cache=True)
def count_pixels(labels_flat: np.ndarray, max_label: int) -> np.ndarray:
    """Pixel count of every label value ``0..max_label`` (any integer dtype, no copy)."""
    counts = np.zeros(max_label + 1, np.int64)
    for i in range(labels_flat.size):
        counts[labels_flat[i]] += 1
    return counts


@numba.njit(cache=True)
def group_pixels(
    labels_flat: np.ndarray, row_of: np.ndarray, offsets: np.ndarray, order: np.ndarray
) -> None:
    """Flat pixel indices grouped by object, raster order within each object.

    ``row_of[label]`` is the object index of a label value (-1 for background),
    ``offsets`` the cumulative pixel counts of the objects (``n_objects + 1``) and
    ``order`` the output (int32 when the image has fewer than 2**31 pixels: half the
    memory traffic of int64 for every later pass).
    """
    cursor = offsets[:-1].copy()
    # runs of equal labels (a nucleus row is ~20 px) cost one lookup and one cursor update
    n = labels_flat.size
    i = 0
    while i < n:
        label = labels_flat[i]
        end = i + 1
        while end < n and labels_flat[end] == label:
            end += 1
        row = row_of[label]
        if row >= 0:
            start = cursor[row]
            for t in range(end - i):
                order[start + t] = i + t
            cursor[row] = start + end - i
        i = end


@numba.njit(cache=True)
def _perimeter(rows: np.ndarray, cols: np.ndarray, h: int, w: int) -> float:
    """scikit-image's ``perimeter(image, 4)`` of one object, on its own bbox mask.

    ``rows``, ``cols`` are the object's pixels relative to its bbox (``h`` x ``w``).
    Border pixels are object pixels with a 4-neighbour outside the object (the image edge
    counts as outside, as in scikit-image's erosion with ``border_value=0``). Each border
    pixel gets the code 1 + 2 per border 4-neighbour + 10 per border diagonal neighbour,
    weighted 1 (codes 5, 7, 15, 17, 25, 27), sqrt(2) (21, 33) or (1 + sqrt(2)) / 2 (13, 23).
    """
    # the weight class of (border 4-neighbours, border diagonal neighbours); 0 = no weight
    weight_class = np.zeros((5, 5), np.int64)
    for sides, corners in ((2, 0), (3, 0), (2, 1), (3, 1), (2, 2), (3, 2)):
        weight_class[sides, corners] = 1
    weight_class[0, 2] = weight_class[1, 3] = 2
    weight_class[1, 1] = weight_class[1, 2] = 3
    # flat bbox mask with a one-pixel frame: 0 outside, 1 inside, 2 border
    stride = w + 2
    mask = np.zeros((h + 2) * stride, np.uint8)
    for t in range(rows.size):
        mask[(rows[t] + 1) * stride + cols[t] + 1] = 1
    for t in range(rows.size):
        p = (rows[t] + 1) * stride + cols[t] + 1
        if min(mask[p - stride], mask[p + stride], mask[p - 1], mask[p + 1]) == 0:
            mask[p] = 2
    counts = np.zeros(4, np.int64)  # exact counts per weight class, combined once
    for t in range(rows.size):
        p = (rows[t] + 1) * stride + cols[t] + 1
        if mask[p] != 2:
            continue
        sides = (
            int(mask[p - stride] == 2)
            + int(mask[p + stride] == 2)
            + int(mask[p - 1] == 2)
            + int(mask[p + 1] == 2)
        )
        corners = (
            int(mask[p - stride - 1] == 2)
            + int(mask[p - stride + 1] == 2)
            + int(mask[p + stride - 1] == 2)
            + int(mask[p + stride + 1] == 2)
        )
        counts[weight_class[sides, corners]] += 1
    return counts[1] + counts[2] * np.sqrt(2.0) + counts[3] * (1.0 + np.sqrt(2.0)) / 2.0


@numba.njit(cache=True)
def _shape_one(pixels: np.ndarray, width: int, out_int: np.ndarray, out_float: np.ndarray) -> None:
    n = pixels.size
    r_first = pixels[0] // width
    c_first = pixels[0] - r_first * width
    n_rows = pixels[-1] // width - r_first + 1
    row_lo = np.full(n_rows, np.iinfo(np.int64).max, np.int64)
    row_hi = np.full(n_rows, -1, np.int64)
    rows = np.empty(n, np.int64)
    cols = np.empty(n, np.int64)
    # exact integer moments relative to the first pixel
    s_r = 0
    s_c = 0
    s_rr = 0
    s_cc = 0
    s_rc = 0
    # pixels come in raster order: follow the row instead of dividing every index
    k = 0
    row_start = r_first * width
    for t in range(n):
        idx = pixels[t]
        while idx >= row_start + width:
            k += 1
            row_start += width
        c = idx - row_start
        rows[t] = k
        cols[t] = c
        row_lo[k] = min(row_lo[k], c)
        row_hi[k] = max(row_hi[k], c)
        dc = c - c_first
        s_r += k
        s_c += dc
        s_rr += k * k
        s_cc += dc * dc
        s_rc += k * dc
    col0 = row_lo.min()
    col1 = row_hi.max() + 1
    convex_area, max_caliper, min_caliper = hull_features(row_lo, row_hi)
    out_int[0] = n
    out_int[1] = r_first
    out_int[2] = col0
    out_int[3] = r_first + n_rows
    out_int[4] = col1
    out_int[5] = convex_area
    fr = float(s_r)
    fc = float(s_c)
    out_float[0] = r_first + fr / n
    out_float[1] = c_first + fc / n
    out_float[2] = (float(s_rr) - fr * fr / n) / n
    out_float[3] = (float(s_rc) - fr * fc / n) / n
    out_float[4] = (float(s_cc) - fc * fc / n) / n
    out_float[5] = _perimeter(rows, cols - col0, n_rows, col1 - col0)
    out_float[6] = max_caliper
    out_float[7] = min_caliper


@numba.njit(cache=True)
def _shape_serial(
    width: int,
    order: np.ndarray,
    offsets: np.ndarray,
    out_int: np.ndarray,
    out_float: np.ndarray,
) -> None:
    for i in range(offsets.size - 1):
        _shape_one(order[offsets[i] : offsets[i + 1]], width, out_int[i], out_float[i])


@numba.njit(cache=True, parallel=True)
def _shape_parallel(
    width: int,
    order: np.ndarray,
    offsets: np.ndarray,
    out_int: np.ndarray,
    out_float: np.ndarray,
) -> None:
    for i in numba.prange(offsets.size - 1):
        _shape_one(order[offsets[i] : offsets[i + 1]], width, out_int[i], out_float[i])


def shape_features(
    width: int, order: np.ndarray, offsets: np.ndarray, *, parallel: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Raw shape measurements of every object.

    Parameters
    ----------
    width : int
        Width of the label image (to turn flat indices into rows and columns).
    order, offsets : int64
        Output of :func:`group_pixels`; every object must have at least one pixel.
    parallel : bool
        Spread objects over numba's threads (the caller sets their number).

    Returns
    -------
    out_int : (n, 6) int64
        :data:`SHAPE_INT_FIELDS`: area, bbox (half-open, rows then columns), convex area.
    out_float : (n, 8) float64
        :data:`SHAPE_FLOAT_FIELDS`: centroid, population (co)variances of the pixel
        coordinates, perimeter, max and min caliper (pixels).
    """
    n = offsets.size - 1
    out_int = np.zeros((n, len(SHAPE_INT_FIELDS)), np.int64)
    out_float = np.zeros((n, len(SHAPE_FLOAT_FIELDS)), np.float64)
    if n:
        kernel = _shape_parallel if parallel else _shape_serial
        kernel(width, order, offsets, out_int, out_float)
    return out_int, out_float
