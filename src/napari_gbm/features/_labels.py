"""Checked inputs and grouped pixels of a label image: what every feature kernel starts from.

:func:`validate_labels`, :func:`validate_images`, :func:`validate_mpp`,
:func:`validate_stats`, :func:`validate_threads` turn user input into arrays and numbers
the Numba kernels can trust (or a ``ValueError`` saying what is wrong);
:func:`group_labels` sorts the pixels by label once (:class:`GroupedLabels`), and
:func:`numba_threads` runs the kernels on a set number of threads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import ArrayLike

from napari_gbm.features._intensity import (
    INTENSITY_FIELDS,
    all_finite,
)
from napari_gbm.features._morphology import (
    group_runs,
    label_runs,
    run_pixel_counts,
    value_range,
)


def validate_labels(labels: ArrayLike, what: str = "labels") -> np.ndarray:
    """Check a label image.

    Parameters
    ----------
    labels : (H, W) array_like of int
        The label image, 0 = background.
    what : str, default "labels"
        Its name, for messages.

    Returns
    -------
    numpy.ndarray
        `labels` as an array (not copied when it is one), 2-D, integer, non-negative and
        int64-compatible.

    Raises
    ------
    ValueError
        If `labels` is not 2-D, not of an integer dtype, has negative values or values
        above ``2**63 - 1``.
    """
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
    """Check intensity images against the label image.

    Parameters
    ----------
    images : dict of str to (H, W) array_like, or None
        Intensity images by name (e.g. stain optical densities, OD).
    shape : tuple of int
        The label image's shape ``(H, W)``.

    Returns
    -------
    dict of str to numpy.ndarray
        The images, in the given order, as C-contiguous float32 or float64 (integer and
        boolean images become float64), all finite; empty for None.

    Raises
    ------
    ValueError
        If `images` is not a mapping, a name is not a non-empty string, or an image is
        not 2-D, not of `shape`, not real-valued, or holds NaN or infinite values.
    """
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
    """Check a pixel size.

    Parameters
    ----------
    mpp : float or None
        Pixel size, µm/px; None: measurements in pixels.

    Returns
    -------
    float or None
        `mpp` as a float, or None.

    Raises
    ------
    ValueError
        If `mpp` is not a positive finite number.
    """
    if mpp is None:
        return None
    value = float(mpp)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"mpp (µm per pixel) must be a positive number, got {mpp!r}")
    return value


def validate_stats(stats: Iterable[str] | None) -> tuple[str, ...]:
    """Check the requested intensity statistics.

    Parameters
    ----------
    stats : iterable of str, str or None
        Names from ``INTENSITY_FIELDS`` (a single string is one name); None: all.

    Returns
    -------
    tuple of str
        The requested statistics in table order (``INTENSITY_FIELDS``' order), each once.

    Raises
    ------
    ValueError
        If a name is not one of ``INTENSITY_FIELDS``.
    """
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
    """Check a thread count.

    Parameters
    ----------
    n_threads : int
        Threads for the per-object kernels.

    Returns
    -------
    int
        `n_threads` as a Python int.

    Raises
    ------
    ValueError
        If `n_threads` is not an integer (booleans included) or is below 1.
    """
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)):
        raise ValueError(f"n_threads must be an integer >= 1, got {n_threads!r}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    return int(n_threads)


@contextmanager
def numba_threads(n_threads: int) -> Iterator[bool]:
    """Run numba's parallel kernels on ``n_threads`` threads within the block.

    numba's thread count is set to `n_threads` (at most ``NUMBA_NUM_THREADS``) and
    restored on exit; with one thread it is left alone.

    Parameters
    ----------
    n_threads : int
        Threads for the kernels, >= 1.

    Yields
    ------
    bool
        Whether to run the parallel kernels (False for one thread).
    """
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
    """Objects of a label image, pixels grouped per object (see ``_morphology``).

    Attributes
    ----------
    width : int
        Width of the label image, px: flat pixel index = row * width + column.
    label_values : numpy.ndarray of int64, shape (n,)
        The label of each object, increasing.
    order : numpy.ndarray of int32 or int64
        Flat pixel indices, grouped by object (int64 for images of 2**31 pixels or more).
    offsets : numpy.ndarray of int64, shape (n + 1,)
        Object ``i``'s pixels are ``order[offsets[i]:offsets[i + 1]]``.
    """

    width: int  # of the label image: flat pixel index = row * width + column
    label_values: np.ndarray  # (n,) int64, the label of each object, increasing
    order: np.ndarray  # flat pixel indices, grouped by object
    offsets: np.ndarray  # (n + 1,) int64

    @property
    def n_objects(self) -> int:
        return int(self.label_values.size)


def group_labels(labels: np.ndarray) -> GroupedLabels:
    """List each object's pixels of a validated label image (one pass over the image).

    Parameters
    ----------
    labels : (H, W) numpy.ndarray of int
        A label image checked by :func:`validate_labels`, 0 = background.

    Returns
    -------
    GroupedLabels
        Every label present, in increasing order, with its pixels.
    """
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
