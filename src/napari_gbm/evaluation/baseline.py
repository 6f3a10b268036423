"""A plain scikit-image nucleus detector: the baseline every evaluation runs beside ours.

"Hematoxylin by colour deconvolution, Gaussian σ 1 µm, Otsu threshold of the image,
distance-transform peaks and watershed", with every length in µm converted with the
image's pixel size:

1. :func:`skimage.color.rgb2hed` (Ruifrok's H / E / DAB vectors). The detection image is
   the hematoxylin channel; for ``hdab`` it is hematoxylin + DAB (both clipped at 0 by
   scikit-image), so brown Ki-67-positive nuclei are found as well as blue ones;
2. Gaussian smoothing, σ = ``sigma_um``;
3. foreground: above the Otsu threshold of the whole smoothed image (an image-dependent
   threshold, unlike our detector's fixed OD threshold);
4. holes smaller than ``max_area_um2`` filled, objects under ``min_area_um2`` removed;
5. Euclidean distance transform; its local maxima at least ``peak_distance_um`` apart
   (about a nucleus radius) within each connected component (8-connected) are markers;
   watershed of the negated distance from them, inside the foreground;
6. objects outside ``min_area_um2`` - ``max_area_um2`` dropped.

Ki-67 (``hdab`` only): scikit-image's stain values are decimal optical density divided by
6 (``log(I) / log(1e-6)``; checked against :func:`napari_gbm.detect.stain.deconvolve` with
``HDAB``, which agrees on pure DAB colours to 0.5 %), so DAB OD = 6 x the ``rgb2hed`` DAB
channel. A nucleus is positive when its mean DAB OD is at least ``positive_dab_od`` (0.2,
QuPath's 1+ threshold): a fixed, image-independent rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi
from skimage.color import rgb2hed
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from napari_gbm.evaluation.detections import Detections
from napari_gbm.evaluation.metrics import label_centroids
from napari_gbm.masks import fill_small_holes
from napari_gbm.wsi.slide import Slide

__all__ = ["SKIMAGE_OD_FACTOR", "BaselineParams", "detect_skimage", "segment_baseline"]

#: scikit-image's stain concentrations times this are decimal OD: -log10(1e-6)
SKIMAGE_OD_FACTOR = 6.0


@dataclass(frozen=True)
class BaselineParams:
    """Parameters of the baseline (see the module docstring for the steps).

    Parameters
    ----------
    sigma_um : float, default 1.0
        σ of the Gaussian smoothing of the detection image, µm.
    peak_distance_um : float, default 2.5
        Least distance between two watershed markers, µm (about a nucleus radius).
    min_area_um2 : float, default 10.0
        Smaller objects are dropped, µm².
    max_area_um2 : float, default 400.0
        Larger objects are dropped and smaller holes filled, µm².
    positive_dab_od : float, default 0.2
        A nucleus is positive (``hdab`` only) when its mean DAB optical density reaches this
        (OD units; QuPath's 1+ threshold).
    """

    sigma_um: float = 1.0
    peak_distance_um: float = 2.5
    min_area_um2: float = 10.0
    max_area_um2: float = 400.0
    positive_dab_od: float = 0.2


def _area_filter(labels: np.ndarray, lo_px: float, hi_px: float) -> np.ndarray:
    """Labels relabelled 1..n, keeping objects of ``lo_px`` to ``hi_px`` pixels."""
    area = np.bincount(labels.ravel())
    keep = (area >= lo_px) & (area <= hi_px)
    keep[0] = False
    new = np.zeros(area.size, np.int32)
    new[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new[labels]


def segment_baseline(
    rgb: npt.ArrayLike, mpp: float, stain: str = "he", params: BaselineParams | None = None
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_] | None]:
    """Nuclei of an RGB image by the baseline (see the module docstring).

    Parameters
    ----------
    rgb : array_like, shape (h, w, 3 or 4)
        The image (uint8 RGB; an alpha channel is ignored).
    mpp : float
        Pixel size, µm/px; converts every length and area of `params` to pixels.
    stain : {"he", "hdab"}, default "he"
        ``he`` detects on hematoxylin; ``hdab`` on hematoxylin + DAB and grades positivity.
    params : BaselineParams, optional
        None uses ``BaselineParams()``.

    Returns
    -------
    labels : ndarray of int32, shape (h, w)
        Instance labels 1..n (0 = background).
    positive : ndarray of bool, shape (n,), or None
        Per label ``k`` (at index ``k - 1``): mean DAB OD >= ``positive_dab_od``; None
        for ``he``.

    Raises
    ------
    ValueError
        If `stain` is neither ``he`` nor ``hdab``.
    """
    params = params or BaselineParams()
    if stain not in ("he", "hdab"):
        raise ValueError(f"stain must be 'he' or 'hdab', got {stain!r}")
    px_area = mpp * mpp
    hed = rgb2hed(np.asarray(rgb)[..., :3])
    detect = hed[..., 0] + hed[..., 2] if stain == "hdab" else hed[..., 0]
    smooth = ndi.gaussian_filter(detect, params.sigma_um / mpp)
    empty = np.zeros(smooth.shape, np.int32)
    if not float(smooth.max()) > float(smooth.min()):
        return empty, (np.zeros(0, bool) if stain == "hdab" else None)
    mask = smooth > threshold_otsu(smooth)
    mask = fill_small_holes(mask, params.max_area_um2 / px_area)
    components, _ = ndi.label(mask, structure=np.ones((3, 3), bool))
    components = _area_filter(components, params.min_area_um2 / px_area, np.inf)
    mask = components > 0
    dist = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(
        dist,
        min_distance=max(1, round(params.peak_distance_um / mpp)),
        labels=components,
        exclude_border=False,
    )
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    labels = watershed(-dist, markers, mask=mask).astype(np.int32)
    labels = _area_filter(labels, params.min_area_um2 / px_area, params.max_area_um2 / px_area)
    if stain != "hdab":
        return labels, None
    n = int(labels.max())
    dab_od = SKIMAGE_OD_FACTOR * hed[..., 2]
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    total = np.bincount(labels.ravel(), weights=dab_od.ravel(), minlength=n + 1)[1:]
    mean = total / np.maximum(area, 1)
    return labels, mean >= params.positive_dab_od


def detect_skimage(path: Path, mpp: float, stain: str) -> Detections:
    """The baseline as a detector of :mod:`napari_gbm.evaluation.detectors`.

    Reads the whole image at level 0 and runs :func:`segment_baseline` with the default
    parameters.

    Parameters
    ----------
    path : pathlib.Path
        Image file, opened with :class:`~napari_gbm.wsi.slide.Slide`.
    mpp : float
        Pixel size, µm/px (overrides the file's).
    stain : {"he", "hdab"}
        Stain of the image.

    Returns
    -------
    Detections
        Label centroids in level-0 pixels, positivity (None for ``he``) and the label image.
    """
    with Slide(path, mpp=mpp) as slide:
        w, h = slide.dimensions
        rgb = slide.read_region((0, 0), 0, (w, h))
    labels, positive = segment_baseline(rgb, mpp, stain)
    _, xy = label_centroids(labels)
    return Detections(xy[:, 0], xy[:, 1], positive, labels)
