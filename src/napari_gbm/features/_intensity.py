"""Per-object intensity statistics, with HistomicsTK's and NumPy's exact definitions.

Every object's values are gathered (through the CSR pixel lists of
:func:`._morphology.group_runs`) into a small scratch buffer. Order statistics come from
selection there, not from a sort: quickselect (Hoare partition, median-of-three pivot)
finds the few ranks the median, IQR and MAD need, each later rank searching only between
the ranks already found, and the histogram bins each value directly against the same
edges NumPy computes. The values are exactly those of a sort (a rank's value does not
depend on how it was found), in a fraction of the time. Objects can be processed in
parallel (one scratch buffer per block of objects) with results identical to the serial
ones.

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


@numba.njit(cache=True, nogil=True)
def _no_exponent_all_ones(bits: np.ndarray, mask: np.unsignedinteger) -> bool:
    # NaN and infinities are the floats whose exponent bits are all ones; an integer
    # count per block vectorises, and a bad block stops the scan
    n = bits.size
    for block in range(0, n, 4096):
        bad = 0
        for i in range(block, min(block + 4096, n)):
            bad += (bits[i] & mask) == mask
        if bad:
            return False
    return True


def all_finite(flat: np.ndarray) -> bool:
    """No NaN or infinity in a contiguous 1-D float32 / float64 array (one pass, no
    full-size temporary)."""
    if flat.dtype == np.float64:
        return bool(_no_exponent_all_ones(flat.view(np.uint64), np.uint64(0x7FF0000000000000)))
    if flat.dtype == np.float32:
        return bool(_no_exponent_all_ones(flat.view(np.uint32), np.uint32(0x7F800000)))
    return bool(np.isfinite(flat).all())


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _insertion_sort(a: np.ndarray, lo: int, hi: int) -> None:
    for i in range(lo + 1, hi):
        v = a[i]
        j = i - 1
        while j >= lo and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@numba.njit(cache=True, nogil=True, error_model="numpy")
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


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _select(a: np.ndarray, lo: int, hi: int, k: int) -> None:
    """Rearrange ``a[lo:hi]`` so that ``a[k]`` holds the value of rank ``k - lo`` there,
    with ``a[lo:k] <= a[k] <= a[k + 1:hi]`` (introselect).

    The partition is Lomuto's without branches (a swap and a compare-add per value, no
    mispredicted jumps: about twice as fast as Hoare's on object-sized arrays). When the
    rank lies right of a pivot that split off less than an eighth of the range, the
    values equal to the pivot are gathered next to it in a second branch-free pass, so
    ties (OD images made from 8-bit RGB have few distinct values) keep it linear; after a
    depth limit the range is heap-sorted instead.
    """
    budget = 2 * int(np.log2(hi - lo + 1)) + 4
    while hi - lo > 16:
        if budget == 0:
            _heap_sort(a, lo, hi)
            return
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
        i = lo
        for j in range(lo, hi - 1):
            v = a[j]
            a[j] = a[i]
            a[i] = v
            i += int(v < pivot)
        a[hi - 1] = a[i]
        a[i] = pivot
        # a[lo:i] < pivot == a[i] <= a[i + 1:hi]
        if k < i:
            hi = i
        elif k == i:
            return
        elif 8 * (i - lo) >= hi - lo:  # balanced enough: go on right of the pivot
            lo = i + 1
        else:  # few values below the pivot: maybe many equal to it; gather those
            equal_end = i + 1
            for j in range(i + 1, hi):
                v = a[j]
                a[j] = a[equal_end]
                a[equal_end] = v
                equal_end += int(v <= pivot)
            if k < equal_end:  # a[i:equal_end] == pivot
                return
            lo = equal_end
    _insertion_sort(a, lo, hi)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _rank(a: np.ndarray, k: int, known: np.ndarray, n_known: np.ndarray) -> float:
    """The value of rank ``k`` in ``a`` (as ``np.sort(a)[k]``).

    ``known[:n_known[0]]`` lists the ranks found so far: each sits at its place with
    smaller values before and larger after, so rank ``k`` lies between the nearest known
    ranks on either side and only that range is searched. ``k`` is added to the list.
    """
    lo = 0
    hi = a.size
    for t in range(n_known[0]):
        p = known[t]
        if p == k:
            return a[k]
        if p < k:
            lo = max(lo, p + 1)
        else:
            hi = min(hi, p)
    if k == lo or k == hi - 1:  # the smallest / largest of the range: one scan
        best = k
        for t in range(lo, hi):
            if (k == lo and a[t] < a[best]) or (k != lo and a[t] > a[best]):
                best = t
        a[k], a[best] = a[best], a[k]
    else:
        _select(a, lo, hi, k)
    known[n_known[0]] = k
    n_known[0] += 1
    return a[k]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _median(a: np.ndarray, known: np.ndarray, n_known: np.ndarray) -> float:
    n = a.size
    return (_rank(a, (n - 1) // 2, known, n_known) + _rank(a, n // 2, known, n_known)) / 2.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _percentile(a: np.ndarray, q: float, known: np.ndarray, n_known: np.ndarray) -> float:
    # NumPy's "linear" method, including its lerp that is exact at both ends
    index = q * (a.size - 1)
    below = int(np.floor(index))
    above = min(below + 1, a.size - 1)
    t = index - below
    x_below = _rank(a, below, known, n_known)
    x_above = _rank(a, above, known, n_known)
    diff = x_above - x_below
    if t >= 0.5:
        return x_above - diff * (1.0 - t)
    return x_below + diff * t


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _histogram_energy_entropy(
    x: np.ndarray, lo: float, hi: float, counts: np.ndarray, edges: np.ndarray
) -> tuple:
    """Energy and entropy of ``np.histogram(x, bins=10)``; ``lo``, ``hi`` = min, max of x.

    NumPy's bins are equal divisions of [min, max] (widened by 0.5 when constant), and
    after its correction step a value lands in the bin whose ``linspace`` edges bracket it
    (``edges[b] <= v < edges[b + 1]``, the last bin closed): the bin is the number of
    inner edges ``<= v``. Each value gets a first guess from its position and is moved to
    that bin by comparing it with the edges computed as ``linspace`` computes them
    (``counts``: 10 integers, ``edges``: 11 floats of scratch).
    """
    n_bins = 10  # HistomicsTK's default
    n = x.size
    if lo == hi:
        lo -= 0.5
        hi += 0.5
    step = (hi - lo) / n_bins
    scale = n_bins / (hi - lo)
    for b in range(1, n_bins):
        edges[b] = b * step + lo
    edges[0] = -np.inf  # sentinels: bin 0 takes all below edge 1, the last all above
    edges[n_bins] = np.inf
    counts[:] = 0
    for v in x:
        b = min(max(int((v - lo) * scale), 0), n_bins - 1)
        while v < edges[b]:
            b -= 1
        while v >= edges[b + 1]:
            b += 1
        counts[b] += 1
    energy = 0.0
    entropy = 0.0
    for b in range(n_bins):
        if counts[b]:
            p = counts[b] / n
            energy += p * p
            entropy -= p * np.log(p)
    return energy, entropy


#: bits of ``needs`` in the kernels below
NEED_MEDIAN, NEED_IQR, NEED_MAD, NEED_HIST = 1, 2, 4, 8


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _intensity_one(
    image_flat: np.ndarray,
    pixels: np.ndarray,
    scratch: np.ndarray,
    deviations: np.ndarray,
    work: np.ndarray,
    edges: np.ndarray,
    out: np.ndarray,
    needs: int,
) -> None:
    """Fill ``out`` (13 fields) for one object; ``scratch`` and ``deviations`` hold at
    least its pixel count, ``work`` 20 integers, ``edges`` 11 floats.

    ``needs`` says which order statistics to compute (``NEED_*`` bits); the others are NaN.
    """
    n = pixels.size
    values = scratch[:n]
    total = 0.0
    lo = np.inf
    hi = -np.inf
    for t in range(n):
        v = float(image_flat[pixels[t]])
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
    out[5] = out[7] = out[8] = out[11] = out[12] = np.nan
    if needs & NEED_HIST:
        out[11], out[12] = _histogram_energy_entropy(values, lo, hi, work[10:20], edges)
    known = work[:6]  # ranks found in values (at most 6: median and quartiles)
    n_known = work[8:9]
    n_known[0] = 0
    if not needs & (NEED_MEDIAN | NEED_IQR | NEED_MAD):
        return
    median = _median(values, known, n_known)
    out[5] = median
    band_lo = 0.0
    band_hi = np.inf
    if needs & (NEED_IQR | NEED_MAD):
        q75 = _percentile(values, 0.75, known, n_known)
        q25 = _percentile(values, 0.25, known, n_known)
        out[7] = q75 - q25
        # half the values lie between the quartiles: the MAD is near these distances
        band_lo = min(median - q25, q75 - median)
        band_hi = max(median - q25, q75 - median)
    if needs & NEED_MAD:
        out[8] = _median_abs_deviation(values, median, band_lo, band_hi, deviations, work[6:10])


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _median_abs_deviation(
    values: np.ndarray,
    median: float,
    band_lo: float,
    band_hi: float,
    deviations: np.ndarray,
    work: np.ndarray,
) -> float:
    """Median of ``|x - median|``, as a sort would give it.

    Only the deviations in ``[band_lo, band_hi]`` are kept for the selection, counting
    those below: when the two middle ranks fall among the kept ones (checked), their
    values are those of the sorted deviations; otherwise all deviations are selected.
    """
    n = values.size
    n_below = 0
    n_kept = 0
    for t in range(n):  # branch-free compaction
        d = abs(values[t] - median)
        n_below += d < band_lo
        deviations[n_kept] = d
        n_kept += (d >= band_lo) & (d <= band_hi)
    known = work[:2]
    n_known = work[2:3]
    n_known[0] = 0
    first = (n - 1) // 2 - n_below
    if first < 0 or n // 2 - n_below >= n_kept:  # the band missed the middle: all of them
        for t in range(n):
            deviations[t] = abs(values[t] - median)
        return _median(deviations[:n], known, n_known)
    kept = deviations[:n_kept]
    second = n // 2 - n_below
    return (_rank(kept, first, known, n_known) + _rank(kept, second, known, n_known)) / 2.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _intensity_serial(
    image_flat: np.ndarray,
    order: np.ndarray,
    offsets: np.ndarray,
    out: np.ndarray,
    needs: int,
) -> None:
    # small scratch buffers, reused (they stay in cache, no page faults)
    size = np.diff(offsets).max()
    scratch = np.empty(size, np.float64)
    deviations = np.empty(size, np.float64)
    work = np.zeros(20, np.int64)
    edges = np.empty(11, np.float64)
    for i in range(offsets.size - 1):
        pixels = order[offsets[i] : offsets[i + 1]]
        _intensity_one(image_flat, pixels, scratch, deviations, work, edges, out[i], needs)


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _intensity_parallel(
    image_flat: np.ndarray,
    order: np.ndarray,
    offsets: np.ndarray,
    out: np.ndarray,
    needs: int,
    n_blocks: int,
) -> None:
    # contiguous blocks of objects, each with its own scratch buffers; an object's result
    # does not depend on its block, so any thread count gives the serial result
    n = offsets.size - 1
    size = np.diff(offsets).max()
    for block in numba.prange(n_blocks):
        scratch = np.empty(size, np.float64)
        deviations = np.empty(size, np.float64)
        work = np.zeros(20, np.int64)
        edges = np.empty(11, np.float64)
        for i in range(block * n // n_blocks, (block + 1) * n // n_blocks):
            pixels = order[offsets[i] : offsets[i + 1]]
            _intensity_one(image_flat, pixels, scratch, deviations, work, edges, out[i], needs)


def order_needs(stats: tuple[str, ...]) -> int:
    """The ``NEED_*`` bits of the order statistics among ``stats``."""
    needs = 0
    if "median" in stats:
        needs |= NEED_MEDIAN
    if "iqr" in stats:
        needs |= NEED_IQR
    if "mad" in stats:
        needs |= NEED_MAD
    if "hist_energy" in stats or "hist_entropy" in stats:
        needs |= NEED_HIST
    return needs


def intensity_features(
    image: np.ndarray,
    order: np.ndarray,
    offsets: np.ndarray,
    *,
    parallel: bool,
    stats: tuple[str, ...] = INTENSITY_FIELDS,
) -> np.ndarray:
    """Intensity statistics of every object.

    Parameters
    ----------
    image : (H, W) float32 or float64
        C-contiguous intensity image (values are widened to float64 as they are read).
    order, offsets : int
        Output of :func:`._morphology.group_runs`; every object has at least one pixel.
    parallel : bool
        Spread objects over numba's threads (the caller sets their number).
    stats : tuple of str
        The statistics wanted. Those of :data:`ORDER_FIELDS` not among them are not
        computed (NaN); the others always are (they cost one pass).

    Returns
    -------
    (n, 13) float64
        One column per :data:`INTENSITY_FIELDS` entry.
    """
    n = offsets.size - 1
    out = np.zeros((n, len(INTENSITY_FIELDS)), np.float64)
    needs = order_needs(stats)
    if n and parallel:
        n_blocks = min(n, 8 * numba.get_num_threads())
        _intensity_parallel(image.reshape(-1), order, offsets, out, needs, n_blocks)
    elif n:
        _intensity_serial(image.reshape(-1), order, offsets, out, needs)
    return out
