"""Overlay of truth and detections on an image, drawn with :mod:`skimage.draw`.

Legend (marker size ``MARKER_UM`` = 1.5 µm, at least 2 px):

- predictions: circles, **green** when matched to a truth, **red** when not (false
  positive); a double ring when the detector graded the nucleus Ki-67 positive;
- truths: **yellow** when missed (false negative), **cyan** when matched; a cross for a
  negative or ungraded truth, a filled dot for a Ki-67 positive one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from skimage.draw import circle_perimeter, disk

__all__ = ["COLOURS", "MARKER_UM", "draw_overlay"]

MARKER_UM = 1.5
COLOURS = {
    "matched_pred": (0, 220, 0),
    "false_positive": (255, 0, 0),
    "missed_true": (255, 230, 0),
    "matched_true": (0, 230, 255),
}


def _circle(img: np.ndarray, x: float, y: float, r: float, colour: tuple[int, int, int]) -> None:
    rr, cc = circle_perimeter(round(y), round(x), max(1, round(r)), shape=img.shape[:2])
    img[rr, cc] = colour


def _cross(img: np.ndarray, x: float, y: float, r: float, colour: tuple[int, int, int]) -> None:
    h, w = img.shape[:2]
    cx, cy, a = round(x), round(y), max(1, round(r))
    if 0 <= cy < h:
        img[cy, max(0, cx - a) : min(w, cx + a + 1)] = colour
    if 0 <= cx < w:
        img[max(0, cy - a) : min(h, cy + a + 1), cx] = colour


def _dot(img: np.ndarray, x: float, y: float, r: float, colour: tuple[int, int, int]) -> None:
    rr, cc = disk((y, x), max(1.0, r), shape=img.shape[:2])
    img[rr, cc] = colour


def draw_overlay(
    rgb: npt.ArrayLike,
    mpp: float,
    pred_xy: npt.ArrayLike,
    pred_matched: npt.ArrayLike,
    true_xy: npt.ArrayLike,
    true_matched: npt.ArrayLike,
    *,
    pred_positive: npt.ArrayLike | None = None,
    true_positive: npt.ArrayLike | None = None,
) -> npt.NDArray[np.uint8]:
    """A copy of `rgb` with the truths and predictions drawn (see the module docstring).

    Parameters
    ----------
    rgb : array_like, shape (h, w, 3 or 4)
        uint8 image; an alpha channel is dropped.
    mpp : float
        Pixel size, µm/px: markers are ``MARKER_UM`` (1.5 µm) in radius, at least 2 px.
    pred_xy, true_xy : array_like, shape (n, 2) and (m, 2)
        Point coordinates ``(x, y)``, pixels.
    pred_matched, true_matched : array_like of bool
        Whether each point is matched.
    pred_positive : array_like of bool, optional
        Whether each prediction was graded positive; None draws none as positive.
    true_positive : array_like of int, optional
        Class of each truth (1 positive); None draws none as positive.

    Returns
    -------
    ndarray of uint8, shape (h, w, 3)
        The annotated copy.
    """
    img = np.array(np.asarray(rgb)[..., :3], dtype=np.uint8, copy=True)
    r = max(2.0, MARKER_UM / mpp)
    t_xy = np.asarray(true_xy, np.float64).reshape(-1, 2)
    t_m = np.asarray(true_matched, bool).ravel()
    t_pos = (
        np.zeros(len(t_xy), bool)
        if true_positive is None
        else np.asarray(true_positive).ravel() == 1
    )
    for (x, y), m, pos in zip(t_xy, t_m, t_pos, strict=True):
        colour = COLOURS["matched_true" if m else "missed_true"]
        if pos:
            _dot(img, x, y, r / 2, colour)
        else:
            _cross(img, x, y, r, colour)
    p_xy = np.asarray(pred_xy, np.float64).reshape(-1, 2)
    p_m = np.asarray(pred_matched, bool).ravel()
    p_pos = np.zeros(len(p_xy), bool) if pred_positive is None else np.asarray(pred_positive, bool)
    for (x, y), m, pos in zip(p_xy, p_m, p_pos, strict=True):
        colour = COLOURS["matched_pred" if m else "false_positive"]
        _circle(img, x, y, r, colour)
        if pos:
            _circle(img, x, y, r + 1, colour)
    return img
