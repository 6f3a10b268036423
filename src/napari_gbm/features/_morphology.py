"""Pixel grouping and per-object shape kernels for a 2-D label image.

The label image is read as runs of equal non-zero labels (:func:`label_runs`; glass and
other background cost about one memory read per pixel); every object's flat pixel
indices are then listed contiguously from the runs (a CSR layout: ``order`` sliced by
``offsets``), so later passes touch object pixels only. Everything per object then works
from its own slice, so objects can be measured in any order or in parallel and each
result is computed by the same sequence of operations whatever the thread count (serial
and parallel results are bit-identical).

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


@numba.njit(cache=True, nogil=True)
def value_range(flat: np.ndarray) -> tuple:
    """Minimum and maximum of a non-empty array in one pass (NumPy needs two)."""
    lo = flat[0]
    hi = flat[0]
    for v in flat:
        lo = min(lo, v)
        hi = max(hi, v)
    return lo, hi


#: pixels per block of the run scan: blocks without a label change are skipped when filling
RUN_BLOCK = 4096


@numba.njit(cache=True, nogil=True)
def _count_runs(labels_flat: np.ndarray, changes: np.ndarray) -> int:
    """Number of runs of non-zero labels; ``changes[b]``: whether block ``b`` holds a
    label change."""
    n = labels_flat.size
    n_runs = 0
    previous = labels_flat[0]
    for b in range(changes.size):
        n_changes = 0
        for i in range(max(b * RUN_BLOCK, 1), min((b + 1) * RUN_BLOCK, n)):
            value = labels_flat[i]
            if value != previous:
                n_runs += previous != 0
                previous = value
                n_changes += 1
        changes[b] = n_changes > 0
    return n_runs + (previous != 0)


@numba.njit(cache=True, nogil=True)
def _fill_runs(
    labels_flat: np.ndarray,
    changes: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    values: np.ndarray,
) -> None:
    n = labels_flat.size
    n_runs = 0
    previous = labels_flat[0]
    start = 0
    for b in range(changes.size):
        if not changes[b]:  # the same label throughout: nothing starts or ends here
            continue
        for i in range(max(b * RUN_BLOCK, 1), min((b + 1) * RUN_BLOCK, n)):
            value = labels_flat[i]
            if value != previous:
                if previous != 0:
                    starts[n_runs] = start
                    lengths[n_runs] = i - start
                    values[n_runs] = previous
                    n_runs += 1
                previous = value
                start = i
    if previous != 0:
        starts[n_runs] = start
        lengths[n_runs] = n - start
        values[n_runs] = previous


def label_runs(labels_flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal non-zero labels in raster order: ``(starts, lengths, values)``, int64.

    Two passes: a count of runs that notes the blocks of pixels where the label changes,
    then a fill that visits only those blocks (a nucleus row, ~20 px, is one
    run). Background costs about one memory read per pixel.
    """
    if labels_flat.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), empty.copy()
    changes = np.zeros(-(-labels_flat.size // RUN_BLOCK), np.bool_)
    n_runs = _count_runs(labels_flat, changes)
    starts = np.empty(n_runs, np.int64)
    lengths = np.empty(n_runs, np.int64)
    values = np.empty(n_runs, np.int64)
    _fill_runs(labels_flat, changes, starts, lengths, values)
    return starts, lengths, values


@numba.njit(cache=True, nogil=True)
def run_pixel_counts(lengths: np.ndarray, rows: np.ndarray, n_objects: int) -> np.ndarray:
    """Pixels per object from its runs (``rows[r]`` is run ``r``'s object index)."""
    counts = np.zeros(n_objects, np.int64)
    for r in range(lengths.size):
        counts[rows[r]] += lengths[r]
    return counts


@numba.njit(cache=True, nogil=True)
def group_runs(
    starts: np.ndarray,
    lengths: np.ndarray,
    rows: np.ndarray,
    offsets: np.ndarray,
    order: np.ndarray,
) -> None:
    """Flat pixel indices grouped by object, raster order within each object.

    ``rows[r]`` is the object index of run ``r`` (runs in raster order), ``offsets`` the
    cumulative pixel counts of the objects (``n_objects + 1``) and ``order`` the output
    (int32 when the image has fewer than 2**31 pixels: half the memory traffic of int64
    for every later pass).
    """
    cursor = offsets[:-1].copy()
    for r in range(starts.size):
        row = rows[r]
        start = cursor[row]
        first = starts[r]
        for t in range(lengths[r]):
            order[start + t] = first + t
        cursor[row] = start + lengths[r]


#: weight class of a border pixel by (border 4-neighbours, border diagonal neighbours):
#: 1 (weight 1), 2 (sqrt(2)), 3 ((1 + sqrt(2)) / 2), 0 (no weight); scikit-image's codes
#: 5, 7, 15, 17, 25, 27 / 21, 33 / 13, 23 (1 + 2 per side + 10 per corner)
_WEIGHT_CLASS = np.zeros((5, 5), np.int64)
for _sides, _corners in ((2, 0), (3, 0), (2, 1), (3, 1), (2, 2), (3, 2)):
    _WEIGHT_CLASS[_sides, _corners] = 1
_WEIGHT_CLASS[0, 2] = _WEIGHT_CLASS[1, 3] = 2
_WEIGHT_CLASS[1, 1] = _WEIGHT_CLASS[1, 2] = 3
#: the widest bounding box whose rows fit in the bits of an int64 with a 1-bit frame
_BIT_ROWS_MAX_WIDTH = 61


@numba.njit(cache=True, nogil=True)
def _weighted_length(n1: int, n2: int, n3: int) -> float:
    return n1 + n2 * np.sqrt(2.0) + n3 * (1.0 + np.sqrt(2.0)) / 2.0


@numba.njit(cache=True, nogil=True)
def _count4(a: int, b: int, c: int, d: int) -> tuple:
    """Bit-sliced sum of four 1-bit planes: bits 0, 1, 2 of a + b + c + d, per bit."""
    x1 = a ^ b
    y1 = a & b
    x2 = c ^ d
    y2 = c & d
    t = x1 & x2
    return x1 ^ x2, y1 ^ y2 ^ t, (y1 & y2) | (t & (y1 | y2))


@numba.njit(cache=True, nogil=True)
def _bit_count(x: int) -> int:
    count = 0
    while x:
        x &= x - 1
        count += 1
    return count


@numba.njit(cache=True, nogil=True)
def _perimeter_bit_rows(rows: np.ndarray, cols: np.ndarray, h: int) -> float:
    """:func:`_perimeter` for a bounding box at most :data:`_BIT_ROWS_MAX_WIDTH` wide:
    each row is an int64 bit mask, and the border and the neighbour counts of all its
    pixels come from a few word operations (bit-sliced adders), not pixel by pixel."""
    mask = np.zeros(h + 2, np.int64)  # rows 0 and h + 1, and bit 0, are the empty frame
    for t in range(rows.size):
        mask[rows[t] + 1] |= 1 << (cols[t] + 1)
    border = np.zeros(h + 2, np.int64)
    for k in range(1, h + 1):
        m = mask[k]
        inner = m & mask[k - 1] & mask[k + 1] & (m << 1) & (m >> 1)
        border[k] = m & ~inner
    n1 = 0
    n2 = 0
    n3 = 0
    for k in range(1, h + 1):
        b = border[k]
        if b == 0:
            continue
        up = border[k - 1]
        down = border[k + 1]
        s0, s1, s2 = _count4(up, down, b << 1, b >> 1)  # border 4-neighbours
        c0, c1, c2 = _count4(up << 1, up >> 1, down << 1, down >> 1)  # diagonal ones
        sides0 = ~s2 & ~s1 & ~s0
        sides1 = ~s2 & ~s1 & s0
        sides23 = ~s2 & s1
        corners1 = ~c2 & ~c1 & c0
        corners2 = ~c2 & c1 & ~c0
        corners3 = ~c2 & c1 & c0
        corners012 = ~(c2 | (c1 & c0))
        n1 += _bit_count(b & sides23 & corners012)
        n2 += _bit_count(b & ((sides0 & corners2) | (sides1 & corners3)))
        n3 += _bit_count(b & sides1 & (corners1 | corners2))
    return _weighted_length(n1, n2, n3)


@numba.njit(cache=True, nogil=True)
def _perimeter(rows: np.ndarray, cols: np.ndarray, h: int, w: int) -> float:
    """scikit-image's ``perimeter(image, 4)`` of one object, on its own bbox mask.

    ``rows``, ``cols`` are the object's pixels relative to its bbox (``h`` x ``w``).
    Border pixels are object pixels with a 4-neighbour outside the object (the image edge
    counts as outside, as in scikit-image's erosion with ``border_value=0``). Each border
    pixel gets the code 1 + 2 per border 4-neighbour + 10 per border diagonal neighbour,
    weighted 1 (codes 5, 7, 15, 17, 25, 27), sqrt(2) (21, 33) or (1 + sqrt(2)) / 2 (13, 23).
    The weights are summed as exact counts per class, so both ways give the same number.
    """
    if w <= _BIT_ROWS_MAX_WIDTH:
        return _perimeter_bit_rows(rows, cols, h)
    # flat bbox mask with a one-pixel frame: 0 outside, 1 inside, 2 border
    n = rows.size
    stride = w + 2
    mask = np.zeros((h + 2) * stride, np.uint8)
    position = np.empty(n, np.int64)
    for t in range(n):
        p = (rows[t] + 1) * stride + cols[t] + 1
        position[t] = p
        mask[p] = 1
    n_border = 0  # border pixels' positions, gathered in front of the others
    for t in range(n):
        p = position[t]
        position[n_border] = p
        n_border += (mask[p - stride] & mask[p + stride] & mask[p - 1] & mask[p + 1]) == 0
    for t in range(n_border):
        mask[position[t]] = 2
    counts = np.zeros(4, np.int64)
    for t in range(n_border):
        p = position[t]
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
        counts[_WEIGHT_CLASS[sides, corners]] += 1
    return _weighted_length(counts[1], counts[2], counts[3])


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def _shape_serial(
    width: int,
    order: np.ndarray,
    offsets: np.ndarray,
    out_int: np.ndarray,
    out_float: np.ndarray,
) -> None:
    for i in range(offsets.size - 1):
        _shape_one(order[offsets[i] : offsets[i + 1]], width, out_int[i], out_float[i])


@numba.njit(cache=True, nogil=True, parallel=True)
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


def disk_offsets(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets ``(dy, dx)`` with ``dy² + dx² < radius²``, as int64 arrays."""
    reach = max(int(np.ceil(radius)) - 1, 0)
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    inside = dy * dy + dx * dx < radius * radius
    return dy[inside].astype(np.int64), dx[inside].astype(np.int64)


@numba.njit(cache=True, nogil=True)
def boundary_ring(
    nuclei: np.ndarray, cells: np.ndarray, dy: np.ndarray, dx: np.ndarray
) -> np.ndarray:
    """Label image of each cell's pixels near its boundary, less its nucleus.

    A boundary pixel is a cell pixel with a 4-neighbour of another label (the image edge
    is none). Every pixel of the same cell at an offset ``(dy[k], dx[k])`` from a boundary
    pixel, and not on the cell's nucleus, gets the cell's label; everything else 0. With
    the offsets of :func:`disk_offsets` this is the set of cell pixels closer than the
    radius to a boundary pixel of their own cell (``features.compartments``).
    """
    h, w = cells.shape
    out = np.zeros_like(cells)
    for y in range(h):
        for x in range(w):
            c = cells[y, x]
            if c == 0:
                continue
            if not (
                (y > 0 and cells[y - 1, x] != c)
                or (y < h - 1 and cells[y + 1, x] != c)
                or (x > 0 and cells[y, x - 1] != c)
                or (x < w - 1 and cells[y, x + 1] != c)
            ):
                continue
            for k in range(dy.size):
                yy = y + dy[k]
                xx = x + dx[k]
                if 0 <= yy < h and 0 <= xx < w and cells[yy, xx] == c and nuclei[yy, xx] != c:
                    out[yy, xx] = c
    return out
