"""Per-object intensity statistics, with HistomicsTK's and NumPy's exact definitions.

Every object's values are gathered (through the CSR pixel lists of
:func:`._morphology.group_pixels`) into a small scratch buffer and sorted there, so order
statistics need no per-object Python, and objects can be processed in parallel (one
scratch buffer per block of objects) with results identical to the serial ones.

Definitions (``x`` = the object's pixel values, ``n`` of them):

- mean, std (population, ``ddof=0`` like ``np.std``, scikit-image and HistomicsTK), min,
  max, sum, range = max - min;
- median (``np.median``), iqr = 75th - 25th percentile with NumPy's default "linear" method
  (``scipy.stats.iqr``), mad = median of ``|x - median|`` (HistomicsTK's, unscaled);
- skewness and kurtosis as ``scipy.stats.skew`` / ``kurtosis`` (biased, Fisher): NaN when
  all values are equal (the current SciPy result; HistomicsTK's docstring still says 0 and
  -3, from older SciPy) or so close (spread below ~1e-150) that the variance squared
  underflows;
- hist_energy = sum p², hist_entropy = -sum p ln p of ``np.histogram(x, bins=10)``
  (HistomicsTK's defaults).
"""

from __future__ import annotations

import numba
import numpy as np

INTENSITY_FIELDS = (
    "mean",
    "std",
    "min",
    "max",
    "sum",
    "median",
    "range",
    "iqr",
    "mad",
    "skewness",
    "kurtosis",
    "hist_energy",
    "hist_entropy",
)
#: the fields that need each object's values sorted
ORDER_FIELDS = ("median", "iqr", "mad", "hist_energy", "hist_entropy")


@numba.njit(cache=True, error_model="numpy")
def all_finite(flat: np.ndarray) -> bool:
    """No NaN or infinity (one pass, stops early, no full-size temporary)."""
    for v in flat:  # noqa: SIM110 (a generator would not compile in numba)
        if not np.isfinite(v):
            return False
    return True


@numba.njit(cache=True, error_model="numpy")
def _insertion_sort(a: np.ndarray, lo: int, hi: int) -> None:
    for i in range(lo + 1, hi):
        v = a[i]
        j = i - 1
        while j >= lo and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@numba.njit(cache=True, error_model="numpy")
def _heap_sort(a: np.ndarray, lo: int, hi: int) -> None:
    n = hi - lo
    for start in range(n // 2 - 1, -n, -1):
        # heapify while start >= 0, then pop the maximum to the end
        if start < 0:
            end = n + start
            a[lo], a[lo + end] = a[lo + end], a[lo]
            root, size = 0, end
        else:
            root, size = start, n
        while 2 * root + 1 < size:
            child = 2 * root + 1
            if child + 1 < size and a[lo + child] < a[lo + child + 1]:
                child += 1
            if not a[lo + root] < a[lo + child]:
                break
            a[lo + root], a[lo + child] = a[lo + child], a[lo + root]
            root = child


@numba.njit(cache=True, error_model="numpy")
def sort_finite(a: np.ndarray) -> None:
    """Sort finite floats in place: introsort with a branchless Lomuto partition.

    About twice as fast as numba's ``ndarray.sort`` on object-sized arrays (no NaN-aware
    comparisons, no mispredicted branches in the partition loop). Runs of a repeated
    pivot are gathered in one linear pass (pdqsort's trick), so constant or few-valued
    data stay O(n log n); a depth limit hands pathological ranges to heapsort.
    """
    stack = np.empty((64, 3), np.int64)  # smaller side first: depth <= log2(n)
    stack[0, 0], stack[0, 1], stack[0, 2] = 0, a.size, 2 * int(np.log2(a.size + 1)) + 2
    top = 1
    while top > 0:
        top -= 1
        lo, hi, budget = stack[top, 0], stack[top, 1], stack[top, 2]
        while hi - lo > 16:
            if budget == 0:
                _heap_sort(a, lo, hi)
                lo = hi
                break
            budget -= 1
            mid = (lo + hi) >> 1  # median of three goes to hi - 1 as the pivot
            if a[mid] < a[lo]:
                a[mid], a[lo] = a[lo], a[mid]
            if a[hi - 1] < a[mid]:
                a[hi - 1], a[mid] = a[mid], a[hi - 1]
                if a[mid] < a[lo]:
                    a[mid], a[lo] = a[lo], a[mid]
            a[mid], a[hi - 1] = a[hi - 1], a[mid]
            pivot = a[hi - 1]
            if lo > 0 and not a[lo - 1] < pivot:
                # a[lo - 1], an earlier pivot <= all of a[lo:hi], equals this one:
                # everything <= pivot is equal to it and already in place
                i = lo
                for j in range(lo, hi):
                    v = a[j]
                    a[j] = a[i]
                    a[i] = v
                    i += int(v <= pivot)
                lo = i
                continue
            i = lo
            for j in range(lo, hi - 1):
                v = a[j]
                a[j] = a[i]
                a[i] = v
                i += int(v < pivot)
            a[hi - 1] = a[i]
            a[i] = pivot
            if i - lo < hi - i - 1:
                stack[top, 0], stack[top, 1], stack[top, 2] = i + 1, hi, budget
                hi = i
            else:
                stack[top, 0], stack[top, 1], stack[top, 2] = lo, i, budget
                lo = i + 1
            top += 1
        _insertion_sort(a, lo, hi)


@numba.njit(cache=True, error_model="numpy")
def _percentile(x: np.ndarray, q: float) -> float:
    # NumPy's "linear" method, including its lerp that is exact at both ends
    index = q * (x.size - 1)
    below = int(np.floor(index))
    above = min(below + 1, x.size - 1)
    t = index - below
    diff = x[above] - x[below]
    if t >= 0.5:
        return x[above] - diff * (1.0 - t)
    return x[below] + diff * t


@numba.njit(cache=True, error_model="numpy")
def _median_abs_deviation(x: np.ndarray, median: float) -> float:
    """Median of ``|x - median|`` for sorted ``x`` by merging the two monotone halves."""
    n = x.size
    right = np.searchsorted(x, median)  # x[right:] >= median, increasing deviations
    left = right - 1  # x[:right] < median, deviations increase going left
    want_lo = (n - 1) // 2
    want_hi = n // 2
    lo_val = 0.0
    value = 0.0
    for k in range(want_hi + 1):
        if left < 0 or (right < n and x[right] - median <= median - x[left]):
            value = x[right] - median
            right += 1
        else:
            value = median - x[left]
            left -= 1
        if k == want_lo:
            lo_val = value
    return (lo_val + value) / 2.0


@numba.njit(cache=True, error_model="numpy")
def _histogram_energy_entropy(x: np.ndarray) -> tuple:
    """Energy and entropy of ``np.histogram(x, bins=10)`` for sorted ``x``.

    NumPy's bins are equal divisions of [min, max] (widened by 0.5 when constant), and
    after its correction step a value lands in the bin whose ``linspace`` edges bracket it
    (``edges[b] <= v < edges[b + 1]``, the last bin closed). On sorted values those counts
    are differences of ``searchsorted`` positions: no per-value work.
    """
    n_bins = 10  # HistomicsTK's default
    n = x.size
    lo = x[0]
    hi = x[-1]
    if lo == hi:
        lo -= 0.5
        hi += 0.5
    step = (hi - lo) / n_bins
    energy = 0.0
    entropy = 0.0
    below = 0  # values left of the current bin
    for b in range(n_bins):
        # edges as np.linspace computes them (the last one is exactly hi)
        upper = n if b == n_bins - 1 else np.searchsorted(x, (b + 1) * step + lo)
        count = upper - below
        below = upper
        if count:
            p = count / n
            energy += p * p
            entropy -= p * np.log(p)
    return energy, entropy


@numba.njit(cache=True, error_model="numpy")
def _intensity_one(
    image_flat: np.ndarray,
    pixels: np.ndarray,
    scratch: np.ndarray,
    out: np.ndarray,
    order_stats: bool,
) -> None:
    """Fill ``out`` (13 fields) for one object; ``scratch`` holds at least its pixel count.

    Without ``order_stats`` the sort is skipped and the fields that need it are NaN.
    """
    n = pixels.size
    values = scratch[:n]
    total = 0.0
    lo = np.inf
    hi = -np.inf
    for t in range(n):
        v = image_flat[pixels[t]]
        values[t] = v
        total += v
        lo = min(lo, v)
        hi = max(hi, v)
    mean = total / n
    m2 = 0.0
    m3 = 0.0
    m4 = 0.0
    for v in values:
        d = v - mean
        d2 = d * d
        m2 += d2
        m3 += d2 * d
        m4 += d2 * d2
    m2 /= n
    m3 /= n
    m4 /= n
    out[0] = mean
    out[1] = np.sqrt(m2)
    out[2] = lo
    out[3] = hi
    out[4] = total
    out[6] = hi - lo
    # SciPy's test for "all values equal" (relative to float64 resolution)
    # (and m2² may underflow for values near 1e-100: NaN rather than 0 / 0)
    if m2 <= (1e-15 * mean) ** 2 or m2 * m2 == 0.0:
        out[9] = np.nan
        out[10] = np.nan
    else:
        out[9] = m3 / m2**1.5
        out[10] = m4 / (m2 * m2) - 3.0
    if not order_stats:
        out[5] = out[7] = out[8] = out[11] = out[12] = np.nan
        return
    sort_finite(values)
    median = (values[(n - 1) // 2] + values[n // 2]) / 2.0
    out[5] = median
    out[7] = _percentile(values, 0.75) - _percentile(values, 0.25)
    out[8] = _median_abs_deviation(values, median)
    out[11], out[12] = _histogram_energy_entropy(values)


@numba.njit(cache=True, error_model="numpy")
def _intensity_serial(
    image_flat: np.ndarray,
    order: np.ndarray,
    offsets: np.ndarray,
    out: np.ndarray,
    order_stats: bool,
) -> None:
    # one small scratch buffer, reused (stays in cache, no page faults)
    scratch = np.empty(np.diff(offsets).max(), np.float64)
    for i in range(offsets.size - 1):
        pixels = order[offsets[i] : offsets[i + 1]]
        _intensity_one(image_flat, pixels, scratch, out[i], order_stats)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _intensity_parallel(
    image_flat: np.ndarray,
    order: np.ndarray,
    offsets: np.ndarray,
    out: np.ndarray,
    order_stats: bool,
    n_blocks: int,
) -> None:
    # contiguous blocks of objects, each with its own scratch buffer; an object's result
    # does not depend on its block, so any thread count gives the serial result
    n = offsets.size - 1
    size = np.diff(offsets).max()
    for block in numba.prange(n_blocks):
        scratch = np.empty(size, np.float64)
        for i in range(block * n // n_blocks, (block + 1) * n // n_blocks):
            pixels = order[offsets[i] : offsets[i + 1]]
            _intensity_one(image_flat, pixels, scratch, out[i], order_stats)


def intensity_features(
    image: np.ndarray,
    order: np.ndarray,
    offsets: np.ndarray,
    *,
    parallel: bool,
    order_stats: bool = True,
) -> np.ndarray:
    """Intensity statistics of every object.

    Parameters
    ----------
    image : (H, W) float64
        C-contiguous intensity image.
    order, offsets : int64
        Output of :func:`._morphology.group_pixels`; every object has at least one pixel.
    parallel : bool
        Spread objects over numba's threads (the caller sets their number).
    order_stats : bool
        Compute the statistics that need sorted values (:data:`ORDER_FIELDS`); the sort
        is most of the cost. Their columns are NaN otherwise.

    Returns
    -------
    (n, 13) float64
        One column per :data:`INTENSITY_FIELDS` entry.
    """
    n = offsets.size - 1
    out = np.zeros((n, len(INTENSITY_FIELDS)), np.float64)
    if n and parallel:
        n_blocks = min(n, 8 * numba.get_num_threads())
        _intensity_parallel(image.reshape(-1), order, offsets, out, order_stats, n_blocks)
    elif n:
        _intensity_serial(image.reshape(-1), order, offsets, out, order_stats)
    return out
