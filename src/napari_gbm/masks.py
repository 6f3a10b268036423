"""Operations on boolean masks shared by the stages (tissue, vessels, the evaluation
baseline): one definition of what a "small hole" is."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["fill_small_holes"]


def fill_small_holes(mask: np.ndarray, max_px: float) -> np.ndarray:
    """``mask`` with its holes of fewer than ``max_px`` pixels filled.

    A hole is a connected (4-connected) region of False pixels that does not touch the
    image border, as in ``scipy.ndimage.binary_fill_holes``; larger holes stay open.

    Parameters
    ----------
    mask : numpy.ndarray of bool, 2-D
        The mask.
    max_px : float
        Holes with fewer pixels than this are filled.

    Returns
    -------
    numpy.ndarray of bool
        A new mask; `mask` itself is not changed.
    """
    mask = np.asarray(mask, bool)
    holes = ndimage.binary_fill_holes(mask) & ~mask
    lab, n = ndimage.label(holes)
    if n == 0:
        return mask.copy()
    small = np.bincount(lab.ravel()) < max_px
    small[0] = False
    return mask | small[lab]
