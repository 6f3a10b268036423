"""Detectors by name: what ``napari-gbm evaluate --detector NAME`` runs.

A detector is a callable ``(image_path, mpp, stain) -> Detections`` (see
:class:`~napari_gbm.evaluation.detections.Detections`). Built in:

- ``classical`` (also ``napari-gbm``): our pipeline with the calibrated watershed, exactly
  as ``analyze`` runs it (:func:`detect_napari_gbm`);
- ``learned``: the same pipeline with the shipped network (:func:`detect_learned`,
  ``analyze --detector learned``);
- ``skimage``: the plain scikit-image baseline (:mod:`napari_gbm.evaluation.baseline`).

Others can be added with :func:`register_detector`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_gbm.detect.cells import CellParams
from napari_gbm.detect.nucleus_params import NucleusParams
from napari_gbm.detect.region import analyze_region
from napari_gbm.evaluation.baseline import detect_skimage
from napari_gbm.evaluation.detections import Detections
from napari_gbm.wsi.slide import Slide

__all__ = [
    "DETECTORS",
    "Detector",
    "detect_learned",
    "detect_napari_gbm",
    "get_detector",
    "register_detector",
]

Detector = Callable[[Path, float, str], Detections]


def detect_napari_gbm(
    path: Path, mpp: float, stain: str, detector: str = "classical"
) -> Detections:
    """Our detector on one image, as ``analyze`` runs it.

    The whole image is one region (:func:`napari_gbm.detect.region.analyze_region`, texture
    features off); cells are positive at ``positive_class >= 1``; nucleus outlines are brought
    to the image's full resolution.

    Parameters
    ----------
    path : pathlib.Path
        Image file, opened with :class:`~napari_gbm.wsi.slide.Slide`.
    mpp : float
        Pixel size, µm/px (overrides the file's).
    stain : str
        Stain of the image (``CellParams.stain``, e.g. ``"he"`` or ``"hdab"``).
    detector : {"classical", "learned"}, default "classical"
        ``NucleusParams.detector``.

    Returns
    -------
    Detections
        Cell centroids in level-0 pixels; positivity, None when no cell is graded (e.g.
        H&E); the nucleus label image at level 0, when the region has one.
    """
    with Slide(path, mpp=mpp) as slide:
        w, h = slide.dimensions
        params = CellParams(stain=stain, texture=False, nucleus=NucleusParams(detector=detector))
        region = analyze_region(slide, (0, 0, w, h), params, outlines=True)
    grade = region.cells["positive_class"].to_numpy()
    labels = None
    if region.nuclei is not None:
        labels = to_image_grid(region.nuclei, region.origin, region.downsample, (h, w))
    return Detections(
        region.cells["centroid_x_px"].to_numpy(),
        region.cells["centroid_y_px"].to_numpy(),
        grade >= 1 if (grade >= 0).any() else None,
        labels,
    )


def detect_learned(path: Path, mpp: float, stain: str) -> Detections:
    """:func:`detect_napari_gbm` with the learned detector (``--detector learned``)."""
    return detect_napari_gbm(path, mpp, stain, detector="learned")


def to_image_grid(
    labels: np.ndarray,
    origin: tuple[float, float],
    downsample: float,
    shape: tuple[int, int],
) -> np.ndarray:
    """Resample a label image onto the level-0 pixel grid (nearest neighbour).

    Parameters
    ----------
    labels : numpy.ndarray, 2-D
        Label image at `downsample` level-0 px per pixel.
    origin : tuple of float
        Level-0 ``(x, y)`` of the top-left corner of `labels`, pixels.
    downsample : float
        Level-0 pixels per pixel of `labels`.
    shape : tuple of int
        ``(height, width)`` of the output, level-0 pixels.

    Returns
    -------
    numpy.ndarray
        Of `shape` and the dtype of `labels`; each pixel takes the label under its centre, 0
        outside `labels`.
    """
    h, w = shape
    rows = np.floor((np.arange(h) + 0.5 - origin[1]) / downsample).astype(np.int64)
    cols = np.floor((np.arange(w) + 0.5 - origin[0]) / downsample).astype(np.int64)
    ok_r = (rows >= 0) & (rows < labels.shape[0])
    ok_c = (cols >= 0) & (cols < labels.shape[1])
    out = np.zeros(shape, labels.dtype)
    out[np.ix_(ok_r, ok_c)] = labels[np.ix_(rows[ok_r], cols[ok_c])]
    return out


DETECTORS: dict[str, Detector] = {
    "classical": detect_napari_gbm,
    "napari-gbm": detect_napari_gbm,
    "learned": detect_learned,
    "skimage": detect_skimage,
}


def register_detector(name: str, detector: Detector) -> None:
    """Make `detector` available as `name`, replacing one of that name.

    Parameters
    ----------
    name : str
        Name for ``napari-gbm evaluate --detector``.
    detector : Detector
        Callable ``(image_path, mpp, stain) -> Detections``.

    Raises
    ------
    ValueError
        If `name` is empty or not a string.
    """
    if not name or not isinstance(name, str):
        raise ValueError("a detector needs a non-empty name")
    DETECTORS[name] = detector


def get_detector(name: str) -> Detector:
    """The detector called `name`.

    Parameters
    ----------
    name : str
        A name in :data:`DETECTORS`.

    Returns
    -------
    Detector
        Callable ``(image_path, mpp, stain) -> Detections``.

    Raises
    ------
    ValueError
        If no detector has that name (the message lists the names).
    """
    try:
        return DETECTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown detector {name!r}; detectors are {', '.join(sorted(DETECTORS))}"
        ) from None
