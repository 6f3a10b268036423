"""Nucleus detection and cell expansion on one RGB tile (QuPath-style watershed).

Pipeline (every length in µm, converted with the tile's ``mpp``):

1. colour deconvolution (:func:`napari_gbm.detect.stain.deconvolve`) into stain OD images;
2. detection image: hematoxylin, plus DAB when the stains have one (``"nuclear"``), so
   brown Ki-67-positive nuclei are found as well as blue negative ones;
3. optional median filter; background subtraction by a grey opening with a square of
   half-side ``background_radius_um`` (QuPath uses opening *by reconstruction*, which can
   propagate across a whole tile; a plain opening is strictly local, see below); pixels
   whose background exceeds ``max_background_od`` are excluded;
4. Gaussian smoothing (``sigma_um``, :func:`contrast_image`); foreground where the
   smoothed image exceeds the threshold *and* its Laplacian is negative (inside a blob, QuPath's LoG
   criterion, which puts boundaries at the inflection points and cuts thin bridges);
   holes smaller than ``max_area_um2`` are filled;
5. split by shape: watershed of the distance transform from its local maxima, then
   basins are merged unless the neck between them is narrower than
   ``split_neck_ratio`` of the smaller object's width and deeper than ``split_depth_um``
   (h-maxima dynamics, like ImageJ's / QuPath's EDM split);
6. objects outside ``min_area_um2`` - ``max_area_um2``, or whose smoothed contrast never
   reaches the peak threshold (hysteresis), are removed;
7. cells: each nucleus grown by ``cell_expansion_um`` into unclaimed pixels, every
   pixel going to its nearest nucleus (Voronoi-limited, like QuPath).

With ``NucleusParams(detector="learned")`` steps 2-6 are replaced by the shipped network
(:mod:`napari_gbm.detect.learned`); deconvolution and the cells (step 7) stay the same.

Thresholds: with the slide's calibration (:mod:`napari_gbm.detect.calibration`, what ``analyze``
uses) they are multiples of the slide's counterstain level (``threshold_rel``,
``peak_rel``); without one, the fixed ``threshold_od`` / ``peak_threshold_od``.

Tile independence: no step uses a statistic of the tile (no Otsu of the tile): the
thresholds are the same for every tile of a slide and every filter has a bounded support,
so a pixel's result depends only on its neighbourhood within :func:`halo_um` (plus the
extent of the connected foreground clump it belongs to). Tiles read with that overlap and
an ownership rule (an object belongs to the tile holding its centroid) give the same
objects whatever the tiling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from . import _kernels as K
from .nucleus_params import DETECTION_CHOICES, NucleusParams
from .stain import HE, StainVectors, optical_density

if TYPE_CHECKING:
    from .calibration import SlideCalibration

__all__ = [
    "Segmentation",
    "contrast_image",
    "deconvolve_tile",
    "filter_objects",
    "prepare_rgb",
    "segment_nuclei",
    "watershed_clumps",
]


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Result of :func:`segment_nuclei` on one tile.

    Attributes
    ----------
    nuclei : ndarray of int32, shape (h, w)
        Nucleus labels, 0 background, ids ``1..n``.
    cells : ndarray of int32, shape (h, w)
        Cell labels with the same ids; every cell contains its nucleus.
    stains : dict of str to ndarray of float32, shape (h, w)
        Stain concentration images (OD units), for intensity features.
    params : NucleusParams
        The detection parameters used.
    stain_vectors : StainVectors
        The stain vectors used (the calibration's when one was given).
    mpp : float
        Pixel size the tile was processed at (µm / px).
    """

    nuclei: npt.NDArray[np.int32]
    cells: npt.NDArray[np.int32]
    stains: dict[str, npt.NDArray[np.float32]]
    params: NucleusParams
    stain_vectors: StainVectors
    mpp: float

    @property
    def n_nuclei(self) -> int:
        """Number of nuclei."""
        return int(self.nuclei.max(initial=0))


def prepare_rgb(image: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Check and convert an image to RGB uint8 (h, w, 3).

    Parameters
    ----------
    image : array_like, shape (h, w, 3) or (h, w, 4)
        uint8 RGB or RGBA; RGBA is composited on white.

    Returns
    -------
    ndarray of uint8, shape (h, w, 3)
        C-contiguous.

    Raises
    ------
    ValueError
        For grey (2-D) images, other channel counts and dtypes other than uint8 (a 16-bit
        image has no single right scaling: convert it first, e.g.
        ``(img // 257).astype(np.uint8)``).
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        raise ValueError(
            "expected an RGB image (h, w, 3); got a 2-D grey image, which cannot be "
            "colour-deconvolved"
        )
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB(A) image of shape (h, w, 3|4), got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 RGB, got dtype {arr.dtype}; scale it to 0-255 first "
            "(16-bit: (img // 257).astype(np.uint8))"
        )
    if arr.shape[2] == 4:
        alpha = arr[..., 3:].astype(np.float32) / 255.0
        comp = arr[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.rint(comp).astype(np.uint8)
    return np.ascontiguousarray(arr)


def deconvolve_tile(rgb: npt.NDArray[np.uint8], stains: StainVectors) -> npt.NDArray[np.float32]:
    """Stain concentrations of an RGB uint8 tile.

    Uses a 256-entry OD table per channel: the same values as
    :func:`napari_gbm.detect.stain.deconvolve`.

    Parameters
    ----------
    rgb : ndarray of uint8, shape (h, w, 3)
        The tile (see :func:`prepare_rgb`).
    stains : StainVectors
        Stain vectors and white point.

    Returns
    -------
    ndarray of float32, shape (3, h, w)
        One concentration image per stain, in ``stains.names`` order, OD units.
    """
    grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)
    lut = optical_density(grey, stains.background)[:, 0, :]
    out = np.empty((3, *rgb.shape[:2]), np.float32)
    K.deconvolve_lut(rgb, lut, stains.inverse.astype(np.float32), out)
    return out


def _detection_image(
    rgb: npt.NDArray[np.uint8], conc: npt.NDArray[np.float32], stains: StainVectors, det: str
) -> npt.NDArray[np.float32]:
    if det == "od_sum":
        return optical_density(rgb, stains.background).sum(axis=2, dtype=np.float32)
    if det == "nuclear":
        img = conc[0].copy()
        if "dab" in stains.names:
            img += np.maximum(conc[stains.index("dab")], 0)
        return img
    if det in stains.names:
        return conc[stains.index(det)].copy()
    raise ValueError(f"detection must be one of {(*DETECTION_CHOICES, *stains.names)}, got {det!r}")


def _disk(radius_px: float) -> npt.NDArray[np.bool_]:
    r = math.floor(radius_px)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return np.asarray(xx * xx + yy * yy <= radius_px * radius_px)


def contrast_image(
    det: npt.NDArray[np.float32], mpp: float, p: NucleusParams
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_] | None]:
    """The image detection thresholds, and where detection may take place.

    `det` median-filtered (optional), minus its background (grey opening with a square of
    half-side ``p.background_radius_um``), Gaussian-smoothed (``p.sigma_um``).

    Parameters
    ----------
    det : ndarray of float32, shape (h, w)
        Detection image, OD units (e.g. hematoxylin concentration).
    mpp : float
        Pixel size, µm/px; converts the µm parameters to pixels.
    p : NucleusParams
        Detection parameters.

    Returns
    -------
    smooth : ndarray of float32, shape (h, w)
        The background-subtracted, smoothed contrast, OD units.
    valid : ndarray of bool, shape (h, w), or None
        Where the background is at most ``p.max_background_od``; None when there is no
        background subtraction (radius under half a pixel).
    """
    if p.median_radius_um > 0:
        det = ndi.median_filter(det, footprint=_disk(p.median_radius_um / mpp))
    r_px = round(p.background_radius_um / mpp)
    valid = None
    if r_px > 0:
        bg = ndi.maximum_filter(ndi.minimum_filter(det, size=2 * r_px + 1), size=2 * r_px + 1)
        det = det - bg
        valid = bg <= p.max_background_od
    sigma_px = p.sigma_um / mpp
    smooth = ndi.gaussian_filter(det, sigma_px) if sigma_px > 0 else det
    return smooth, valid


def _foreground(
    det: npt.NDArray[np.float32], mpp: float, p: NucleusParams, threshold_od: float
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32]]:
    """Foreground mask and the smoothed background-subtracted detection image."""
    smooth, valid = contrast_image(det, mpp, p)
    mask = smooth > threshold_od
    mask &= ndi.laplace(smooth) < 0
    if valid is not None:
        mask &= valid
    # Fill holes no bigger than a nucleus (vesicular chromatin): bounded, so tile-local.
    holes, n_holes = ndi.label(~mask)
    if n_holes:
        size = np.bincount(holes.ravel())
        small = size <= p.max_area_um2 / mpp**2
        small[0] = False
        mask |= small[holes]
    return mask, smooth


def watershed_clumps(
    height: npt.NDArray[np.float32], markers: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int64]:
    """Marker watershed flooded clump by clump (translation-invariant tie-breaking)."""
    clumps, _ = ndi.label(mask, structure=np.ones((3, 3)))
    seeds = np.flatnonzero(markers)
    seeds = seeds[np.argsort(clumps.ravel()[seeds], kind="stable")]
    group = clumps.ravel()[seeds]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1], True]).astype(np.int64)
    labels = np.zeros(mask.shape, np.int64)
    if seeds.size:
        K.watershed_groups(height, markers, mask, seeds, starts, labels)
    return labels


def _split(mask: npt.NDArray[np.bool_], mpp: float, p: NucleusParams) -> npt.NDArray[np.int64]:
    """Label the mask, splitting touching nuclei by their distance transform."""
    if not p.split_by_shape:
        labels, _ = ndi.label(mask, structure=np.ones((3, 3)))
        return labels.astype(np.int64)
    dist2 = np.empty(mask.shape)
    nearest = np.empty(mask.shape, np.int64)
    K.edt_nearest(~mask, dist2, nearest)
    dist = np.sqrt(dist2).astype(np.float32)
    peaks = mask & (dist >= ndi.maximum_filter(dist, size=3))
    markers, n = ndi.label(peaks, structure=np.ones((3, 3)))
    if n == 0:
        return np.zeros(mask.shape, np.int64)
    labels = watershed_clumps(-dist, markers.astype(np.int64), mask)
    a, b, saddle = K.region_saddles(labels, dist, n)
    _, peak, _ = K.label_stats(markers, dist, n)
    peak[0] = 0.0
    # Ties broken by label (raster order of the maxima), which a shift of the tile keeps.
    order = np.lexsort((b, a, -saddle))
    root = K.merge_shallow_regions(
        a, b, saddle, order, peak, p.split_depth_um / mpp, p.split_neck_ratio
    )
    return np.asarray(root[labels])


def filter_objects(
    labels: npt.NDArray[np.int64],
    smooth: npt.NDArray[np.float32],
    mpp: float,
    p: NucleusParams,
    peak_threshold_od: float,
) -> npt.NDArray[np.int32]:
    """Drop objects by area and peak contrast; renumber 1..n in raster order."""
    n = int(labels.max(initial=0))
    count, peak, first = K.label_stats(labels, smooth, n)
    area_um2 = count * mpp**2
    keep = (area_um2 >= p.min_area_um2) & (area_um2 <= p.max_area_um2)
    keep &= peak >= peak_threshold_od
    keep[0] = False
    # Raster order of first pixels, so ids do not depend on watershed internals.
    order = np.flatnonzero(keep)
    order = order[np.argsort(first[order], kind="stable")]
    new_id = np.zeros(n + 1, np.int32)
    new_id[order] = np.arange(1, order.size + 1, dtype=np.int32)
    return new_id[labels]


def expand_cells(nuclei: npt.NDArray[np.int32], distance_px: float) -> npt.NDArray[np.int32]:
    """Grow labels by `distance_px`; each new pixel joins its nearest nucleus.

    Equivalent to :func:`skimage.segmentation.expand_labels` (exact Euclidean distance;
    ties may resolve differently).

    Parameters
    ----------
    nuclei : ndarray of int32, shape (h, w)
        Nucleus labels, 0 background.
    distance_px : float
        Largest growth, pixels of `nuclei`; <= 0 returns a copy of `nuclei`.

    Returns
    -------
    ndarray of int32, shape (h, w)
        Cell labels with the nuclei's ids.
    """
    if distance_px <= 0 or not nuclei.any():
        return nuclei.copy()
    dist2 = np.empty(nuclei.shape)
    nearest = np.empty(nuclei.shape, np.int64)
    K.edt_nearest(nuclei > 0, dist2, nearest)
    cells = nuclei.ravel()[nearest.ravel()].reshape(nuclei.shape)
    cells[dist2 > distance_px * distance_px] = 0
    return cells.astype(np.int32)


def segment_nuclei(
    rgb: npt.ArrayLike,
    mpp: float,
    stains: StainVectors = HE,
    params: NucleusParams = NucleusParams(),
    calibration: SlideCalibration | None = None,
    *,
    origin: tuple[int, int] = (0, 0),
    n_threads: int = 1,
) -> Segmentation:
    """Detect nuclei and cells in one RGB tile.

    Parameters
    ----------
    rgb : array_like of uint8, shape (h, w, 3) or (h, w, 4)
        The tile at pixel size `mpp`; RGBA is composited on white.
    mpp : float
        Pixel size in µm / px; every parameter in µm is converted with it.
    stains : StainVectors, default HE
        Stain vectors (:data:`~napari_gbm.detect.stain.HE`,
        :data:`~napari_gbm.detect.stain.HDAB` or estimated per slide). Ignored when
        `calibration` is given.
    params : NucleusParams, default NucleusParams()
        Detection parameters (lengths in µm, areas in µm², thresholds in OD).
    calibration : SlideCalibration, optional
        The slide's calibration (:func:`napari_gbm.detect.calibration.calibrate_slide`): its
        stain vectors and white point are used, and the thresholds follow its
        counterstain level (``params.threshold_rel``, ``params.peak_rel``). Without
        it the fixed ``threshold_od`` / ``peak_threshold_od`` apply. Pass the *slide's*
        calibration to every tile: a tile's own would break tile independence.
    origin : tuple of int, default (0, 0)
        ``(x, y)`` of the tile's first pixel in the slide's pixel grid at `mpp`. Only the
        learned detector (``params.detector == "learned"``) uses it: its network must see
        the same pixel grid in every tile (:mod:`napari_gbm.detect.learned`).
    n_threads : int, default 1
        Torch threads of the learned detector.

    Returns
    -------
    Segmentation
        Nucleus and cell labels (ids 1..n in raster order of their first pixel), the
        stain images and the parameters used. An empty or blank tile gives n = 0.

    Raises
    ------
    ValueError
        If `rgb` is not uint8 RGB(A) (see :func:`prepare_rgb`), `mpp` is not a finite
        positive number, or ``params.detection`` names no detection image of the stains.
    TypeError
        If `params` is not a :class:`NucleusParams`.

    Examples
    --------
    >>> seg = segment_nuclei(np.full((64, 64, 3), 255, np.uint8), mpp=0.5)
    >>> seg.n_nuclei
    0
    """
    img = prepare_rgb(rgb)
    if not (isinstance(mpp, (int, float, np.floating)) and math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"mpp must be a finite number > 0, got {mpp!r}")
    if not isinstance(params, NucleusParams):
        raise TypeError(f"params must be NucleusParams, got {type(params).__name__}")
    mpp = float(mpp)
    if calibration is not None:
        stains = calibration.stains
    threshold_od, peak_od = params.thresholds(
        calibration.level_od if calibration is not None else None
    )
    conc = deconvolve_tile(img, stains)
    det = _detection_image(img, conc, stains, params.detection)
    stain_images = {name: conc[i] for i, name in enumerate(stains.names)}
    if img.shape[0] == 0 or img.shape[1] == 0:
        empty = np.zeros(img.shape[:2], np.int32)
        return Segmentation(empty, empty.copy(), stain_images, params, stains, mpp)
    if params.detector == "learned":
        from .learned import learned_nuclei

        nuclei = learned_nuclei(img, mpp, params, origin, n_threads)
    else:
        mask, smooth = _foreground(det, mpp, params, threshold_od)
        labels = _split(mask, mpp, params)
        nuclei = filter_objects(labels, smooth, mpp, params, peak_od)
    cells = expand_cells(nuclei, params.cell_expansion_um / mpp)
    return Segmentation(nuclei, cells, stain_images, params, stains, mpp)
