"""Per-object Haralick texture features from grey-level co-occurrence matrices (GLCM),
computed as HistomicsTK 1.4's ``compute_haralick_features`` does, in Numba.

One row per label, columns ``label`` then ``{prefix}haralick_<feature>_mean`` and
``{prefix}haralick_<feature>_range`` (mean and range over the offsets) for the 13
features in :data:`HARALICK_FEATURES`. Kernels live in :mod:`._glcm`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numba
import numpy as np
import pandas as pd

from napari_gbm.features import _glcm

__all__ = ["DEFAULT_OFFSETS", "HARALICK_FEATURES", "haralick_columns", "haralick_features"]

#: Feature names in HistomicsTK's order (``Haralick.ASM`` ... ``Haralick.IMC2``).
HARALICK_FEATURES: tuple[str, ...] = (
    "asm",
    "contrast",
    "correlation",
    "sum_of_squares",
    "idm",
    "sum_average",
    "sum_variance",
    "sum_entropy",
    "entropy",
    "difference_variance",
    "difference_entropy",
    "imc1",
    "imc2",
)

#: HistomicsTK's default 2-D offsets ``(drow, dcol)``: 0°, 90°, 135° and 45° at distance 1.
DEFAULT_OFFSETS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (1, -1))

# label tables above this many entries (and sparser than 1 label per 8 pixels) are
# built from np.unique instead of a dense array indexed by label value
_DENSE_LABELS_MAX = 1 << 20


def haralick_columns(prefix: str = "") -> list[str]:
    """Feature column names of :func:`haralick_features`, in output order.

    Parameters
    ----------
    prefix : str, default ""
        Prepended to every name (e.g. ``"nucleus_"``).

    Returns
    -------
    list of str
        ``{prefix}haralick_<feature>_mean`` and ``..._range`` for each feature of
        :data:`HARALICK_FEATURES`, without ``label``.
    """
    return [
        f"{prefix}haralick_{name}_{stat}"
        for name in HARALICK_FEATURES
        for stat in ("mean", "range")
    ]


def haralick_features(
    labels: np.ndarray,
    image: np.ndarray,
    *,
    levels: int = 32,
    grey_limits: tuple[float, float] = (0, 255),
    offsets: Sequence[Sequence[int]] | np.ndarray = DEFAULT_OFFSETS,
    symmetric: bool = True,
    normalize: bool = True,
    n_threads: int = 1,
    prefix: str = "",
) -> pd.DataFrame:
    r"""Haralick texture features of every labelled object, as HistomicsTK computes them.

    Parameters
    ----------
    labels : ndarray of int, shape (H, W)
        Label image; 0 is background, any non-negative labels (gaps allowed).
    image : ndarray of int or float, shape (H, W)
        Intensity image (e.g. uint8 haematoxylin channel).
    levels : int
        Number of grey levels, 2 to 256 (HistomicsTK: 32).
    grey_limits : (float, float)
        Intensities mapped to the first and the last level (HistomicsTK: 0, 255).
    offsets : array of int, shape (m, 2)
        Pixel-pair offsets ``(drow, dcol)``; default HistomicsTK's 0°, 90°, 135°, 45°.
    symmetric : bool
        Count each pair both ways (GLCM + GLCM\ :sup:`T`), as HistomicsTK.
    normalize : bool
        Divide each GLCM by its sum (when the sum is not 0), as HistomicsTK.
    n_threads : int
        Numba threads (at most ``numba.config.NUMBA_NUM_THREADS``); the results do not
        depend on it.
    prefix : str
        Prepended to every feature column name.

    Returns
    -------
    pandas.DataFrame
        One row per label present, in increasing label order: ``label`` (int64), then
        float64 ``{prefix}haralick_<feature>_mean`` and ``..._range`` for ``<feature>`` in
        asm, contrast, correlation, sum_of_squares, idm, sum_average, sum_variance,
        sum_entropy, entropy, difference_variance, difference_entropy, imc1, imc2 (mean and
        max - min over the offsets). No labels: zero rows with the same columns.

    Raises
    ------
    ValueError
        If `labels` is not a 2-D non-negative integer array, `image` differs from it in
        shape, is not integer or float, or holds NaN or inf, or `levels`, `grey_limits`,
        `offsets` or `n_threads` is invalid.

    Notes
    -----
    **Quantisation**: level ``= round((x - lo) / (hi - lo) * (levels - 1))`` (half to even,
    as ``np.round``), clipped to ``0..levels-1`` (HistomicsTK does not clip and fails on
    values outside the limits).

    **Pixel pairs** (HistomicsTK's choice, kept for compatibility): a pair counts when
    both pixels lie in the object's window, rows ``min_row .. max_row + 1`` and columns
    ``min_col .. max_col + 1`` (the bounding box plus one row below and one column to the
    right, clipped to the image), whatever their labels; background and neighbouring
    objects inside the window count too, not only the object's own mask.

    **Features** of the normalised GLCM :math:`p(i, j)`, levels :math:`i, j = 0..L-1`,
    marginals :math:`p_x, p_y`, :math:`p_{x+y}(k)` (:math:`k = 0..2L-2`),
    :math:`p_{x-y}(k) = \sum_{|i-j|=k} p(i,j)` and :math:`H(q) = -\sum q \log_2(q + 10^{-5})`
    (HistomicsTK's guard against log 0):
    asm :math:`\sum p^2`; contrast :math:`\sum k^2 p_{x-y}(k)`;
    correlation :math:`(\sum ij\,p - \mu_x^2) / \sigma_x^2` with :math:`\mu_x, \sigma_x^2`
    the mean and variance of :math:`p_x`; sum_of_squares :math:`\sigma_x^2`;
    idm :math:`\sum p / (1 + (i-j)^2)`; sum_average :math:`\mu_s = \sum k\,p_{x+y}(k)`;
    sum_variance :math:`\sum k^2 p_{x+y}(k) - \mu_s^2`; sum_entropy :math:`H(p_{x+y})`;
    entropy :math:`H_{xy} = H(p)`; difference_variance: the variance of the :math:`L`
    values :math:`p_{x-y}(0..L-1)` (``np.var``, not the variance of the distribution);
    difference_entropy :math:`H(p_{x-y})`; imc1 :math:`(H_{xy} - H_{xy1}) / \max(H_x, H_y)`;
    imc2 :math:`\sqrt{\max(0, 1 - e^{-2 (H_{xy2} - H_{xy})})}`, with
    :math:`H_{xy1} = -\sum p \log_2(p_x p_y + 10^{-5})` and :math:`H_{xy2} = H(p_x p_y)`.
    Correlation and sum_of_squares use :math:`p_x` only, which assumes a symmetric GLCM;
    with ``symmetric=False`` they are HistomicsTK's formulas applied as they stand (a
    :math:`p_x` with one level then gives an infinite correlation).

    **Degenerate objects**, as HistomicsTK 1.4 (not errors): when a window has a single
    grey level, correlation is NaN (0/0), sum_of_squares, contrast, sum_variance and imc2
    are 0, asm and idm are 1, imc1 is 0 and the entropies are
    :math:`-\log_2(1 + 10^{-5}) \approx -1.44 \cdot 10^{-5}`. An offset with no pair in
    the window (a window one pixel wide or high, i.e. an object of that size on the last
    row or column) gives an all-zero GLCM: correlation and imc1 are NaN, and so are their
    mean and range.

    **Differences from HistomicsTK**: HistomicsTK casts the window to uint8 before
    quantising (truncating float images, wrapping values above 255); here the intensities
    are quantised as given, so uint8 images give identical results and float images give
    what the formula says.

    Memory: one uint8 quantised copy of the image, a 32-byte bounding box per label and
    one ``levels x levels`` scratch GLCM per worker block; objects are computed one at a
    time over their window, never as a (labels x offsets x L x L) array.

    Examples
    --------
    >>> labels = np.zeros((8, 8), np.int32); labels[2:6, 2:6] = 1
    >>> image = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    >>> df = haralick_features(labels, image)
    >>> list(df.columns[:3])
    ['label', 'haralick_asm_mean', 'haralick_asm_range']
    """
    lab, img = _check_images(labels, image)
    n_levels = _check_levels(levels)
    lo, hi = _check_grey_limits(grey_limits)
    offs = _check_offsets(offsets)
    if not isinstance(n_threads, numbers.Integral) or isinstance(n_threads, bool):
        raise ValueError(f"n_threads must be an integer >= 1, got {n_threads!r}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    if not isinstance(prefix, str):
        raise ValueError(f"prefix must be a string, got {type(prefix).__name__}")

    label_values, bboxes = _object_bboxes(lab)
    columns = haralick_columns(prefix)
    n = label_values.size
    if n == 0:
        out = np.empty((0, len(columns)), np.float64)
    else:
        n_rows, n_cols = lab.shape
        # HistomicsTK takes im[min_row:max_row + 1, min_col:max_col + 1] with skimage's
        # exclusive stops: one extra row and column, clipped by slicing at the image edge
        windows = bboxes.copy()
        windows[:, 2] = np.minimum(bboxes[:, 2] + 1, n_rows)
        windows[:, 3] = np.minimum(bboxes[:, 3] + 1, n_cols)
        q = _glcm.quantise(img, lo, hi, n_levels)
        threads = int(min(n_threads, numba.config.NUMBA_NUM_THREADS))
        n_blocks = 1 if threads == 1 else min(n, 16 * threads)
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            out = _glcm.haralick_per_object(
                q,
                windows,
                offs,
                n_levels,
                len(HARALICK_FEATURES),
                bool(symmetric),
                bool(normalize),
                n_blocks,
            )
        finally:
            numba.set_num_threads(previous)
    df = pd.DataFrame(out, columns=columns)
    df.insert(0, "label", label_values.astype(np.int64))
    return df


def _check_images(labels: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lab = np.asarray(labels)
    img = np.asarray(image)
    if lab.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {lab.shape}")
    if img.shape != lab.shape:
        raise ValueError(f"image shape {img.shape} differs from labels shape {lab.shape}")
    if lab.dtype == np.bool_ or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be an integer array, got dtype {lab.dtype}")
    if img.dtype == np.bool_ or not (
        np.issubdtype(img.dtype, np.integer) or np.issubdtype(img.dtype, np.floating)
    ):
        raise ValueError(f"image must be an integer or float array, got dtype {img.dtype}")
    if lab.size and lab.min() < 0:
        raise ValueError("labels must be non-negative (0 is background)")
    if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).all():
        raise ValueError("image contains NaN or infinite values")
    return lab, img


def _check_levels(levels: int) -> int:
    if not isinstance(levels, numbers.Integral) or isinstance(levels, bool):
        raise ValueError(f"levels must be an integer, got {levels!r}")
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be between 2 and 256, got {levels}")
    return int(levels)


def _check_grey_limits(grey_limits: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in grey_limits)
    except (TypeError, ValueError):
        raise ValueError(f"grey_limits must be two numbers, got {grey_limits!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"grey_limits must be finite with low < high, got {grey_limits!r}")
    return lo, hi


def _check_offsets(offsets: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    offs = np.asarray(offsets)
    if offs.ndim != 2 or offs.shape[1] != 2 or offs.shape[0] == 0:
        raise ValueError(f"offsets must have shape (m, 2) with m >= 1, got {offs.shape}")
    if offs.dtype == np.bool_ or not np.issubdtype(offs.dtype, np.integer):
        raise ValueError(f"offsets must be integers (drow, dcol), got dtype {offs.dtype}")
    return np.ascontiguousarray(offs, dtype=np.int64)


def _object_bboxes(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted label values present (excluding 0) and their (n, 4) int64 bounding boxes."""
    if lab.size == 0:
        return np.empty(0, np.int64), np.empty((0, 4), np.int64)
    max_label = int(lab.max())
    if max_label <= max(_DENSE_LABELS_MAX, lab.size // 8):
        bbox = _glcm.label_bboxes(lab, max_label)
        values = np.flatnonzero(bbox[:, 2] >= 0)
        return values.astype(np.int64), np.ascontiguousarray(bbox[values])
    # sparse, large label values: relabel 1..n through np.unique first
    uniq, inverse = np.unique(lab, return_inverse=True)
    inverse = inverse.reshape(lab.shape)
    if uniq[0] == 0:
        uniq = uniq[1:]
    else:
        inverse += 1
    bbox = _glcm.label_bboxes(inverse, uniq.size)
    return uniq.astype(np.int64), np.ascontiguousarray(bbox[1:])
