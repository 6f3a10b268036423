"""Area-based IHC positivity: the DAB-positive fraction of tissue (a positive pixel count).

Each tissue pixel is graded by its DAB optical density (OD, colour deconvolution), at the
same 1+/2+/3+ thresholds that grade cells (:class:`~napari_gbm.biomarkers.ihc.PositivityParams`):

- *negative*: DAB OD below ``thresholds[0]``;
- *weak*: ``thresholds[0] <= OD < thresholds[1]``;
- *moderate*: ``thresholds[1] <= OD < thresholds[2]``;
- *strong*: ``OD >= thresholds[2]``.

What the references compute, and what is taken from them:

- **QuPath**, "Positive pixel count" (``qupath.imagej.detect.tissue.PositivePixelCounterIJ``,
  QuPath 0.2-0.5): hematoxylin and DAB OD by colour deconvolution of the image read at
  ``downsampleFactor`` (default 4), a Gaussian blur of ``gaussianSigmaMicrons`` (2 µm); a
  pixel is *positive* when DAB OD >= ``thresholdStain2`` (0.3 OD), else *negative* when
  hematoxylin OD >= ``thresholdStain1`` (0.1 OD), else unstained. It reports "Positive % of
  stained pixels" (positive / (positive + negative)), "Positive % of total ROI area", the
  positive and negative areas (µm²) and the mean DAB OD of the positive pixels. It has one
  DAB threshold; the weak/moderate/strong split is ours, at QuPath's cell thresholds 0.2 /
  0.4 / 0.6 OD. Our ``positive_pixel_stained_fraction`` and
  ``positive_pixel_dab_od_mean`` are its first and last measurements (with its 0.1 OD
  hematoxylin threshold), ``positive_pixel_fraction`` its "Positive % of total ROI area"
  / 100 with the tissue as the ROI. Instead of the blur, pixels are area-averaged to
  ``resolution_um`` (2 µm/px by default, about QuPath's downsample 4 of a 0.5 µm/px scan).
- **HistomicsTK**, ``histomicstk.segmentation.positive_pixel_count`` (``count_image``,
  ``count_slide``): pixels in HSI space, positive when the hue is within ``hue_width / 2``
  of ``hue_value`` and saturation >= ``saturation_minimum`` and ``intensity_lower_limit <=
  I < intensity_upper_limit``; weak when ``I >= intensity_weak_threshold``, strong when
  ``I < intensity_strong_threshold``, else plain positive (the CLI's defaults: hue 0.83,
  width 0.15, saturation 0.05, intensity 0.05-0.95, weak 0.65, strong 0.35). It reports
  the number of weak / plain / strong pixels, their ratios to all pixels (or to a mask:
  ``RatioWeakToPixels``, ``RatioStrongToPixels``, ``RatioTotalToPixels``) and strong to
  all positive (``RatioStrongToTotal``), and mean HSI intensities. We keep its three
  classes and its ratios (to tissue pixels), but grade DAB OD, not HSI intensity.

Neither reference defines a pixel H-score, so none is reported.

The deconvolution itself lives in :mod:`napari_gbm.detect.stain`, a later stage than
``biomarkers``; callers pass it in as ``unmix`` (e.g. ``functools.partial(deconvolve,
stains=HDAB)``), so every DAB OD in the project comes from one function.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_gbm.wsi.slide import Slide
from napari_gbm.wsi.tissue import TissueMask, TissueParams, tissue_mask_from_rgb

__all__ = [
    "PositivePixelParams",
    "SlidePositivePixels",
    "Unmix",
    "positive_pixel_count",
    "positive_pixel_summary",
    "slide_positive_pixels",
]

#: RGB image (h, w, 3) → stain OD images by name; must give ``"dab"`` and ``"hematoxylin"``
Unmix = Callable[[np.ndarray], Mapping[str, np.ndarray]]

_COUNTS = ("n_tissue", "n_negative", "n_weak", "n_moderate", "n_strong", "n_stained")
_FRACTIONS = (
    "negative_fraction",
    "weak_fraction",
    "moderate_fraction",
    "strong_fraction",
    "positive_fraction",
    "moderate_or_strong_fraction",
    "strong_of_positive",
    "stained_fraction",
    "dab_od_mean",
)


@dataclass(frozen=True)
class PositivePixelParams:
    """Parameters of the positive pixel count.

    Parameters
    ----------
    thresholds : tuple of 3 float, default (0.2, 0.4, 0.6)
        DAB OD at which a pixel becomes weak, moderate, strong: QuPath's 1+/2+/3+ cell
        thresholds (:class:`~napari_gbm.biomarkers.ihc.PositivityParams`), OD units.
    hematoxylin_threshold : float, default 0.1
        Hematoxylin OD at which a DAB-negative pixel counts as stained (QuPath's
        ``thresholdStain1``), for ``stained_fraction``, OD units.
    resolution_um : float, default 2.0
        Pixel size the slide is counted at, µm/px (a coarser stored level is never read;
        level 0 only in chunks when it is the only one fine enough).
    tile_px : int, default 1024
        Side of the tiles the slide is streamed in, pixels at `resolution_um`.

    Raises
    ------
    ValueError
        If the thresholds are not three finite increasing values, or `resolution_um`,
        `tile_px` or `hematoxylin_threshold` is not positive.
    """

    thresholds: tuple[float, float, float] = (0.2, 0.4, 0.6)
    hematoxylin_threshold: float = 0.1
    resolution_um: float = 2.0
    tile_px: int = 1024

    def __post_init__(self) -> None:
        t = tuple(float(v) for v in self.thresholds)
        if len(t) != 3 or not all(math.isfinite(v) for v in t) or not t[0] < t[1] < t[2]:
            raise ValueError(f"give three increasing DAB OD thresholds, got {self.thresholds}")
        object.__setattr__(self, "thresholds", t)
        if not self.resolution_um > 0 or not self.hematoxylin_threshold > 0:
            raise ValueError("resolution_um and hematoxylin_threshold must be positive")
        if int(self.tile_px) < 16:
            raise ValueError(f"tile_px must be at least 16, got {self.tile_px}")


def _classes(
    rgb: np.ndarray, tissue: np.ndarray, params: PositivePixelParams, unmix: Unmix
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel grade (-1 off tissue, 0-3), stained mask and DAB OD."""
    stains = unmix(rgb)
    dab = np.asarray(stains["dab"], np.float64)
    grade = np.searchsorted(np.asarray(params.thresholds), dab, side="right").astype(np.int8)
    grade[~tissue] = -1
    stained = tissue & ((grade > 0) | (stains["hematoxylin"] >= params.hematoxylin_threshold))
    return grade, stained, dab


def _tally(grade: np.ndarray, stained: np.ndarray, dab: np.ndarray) -> dict[str, float]:
    per_class = np.bincount(grade.ravel() + 1, minlength=5)
    return {
        "n_tissue": int(per_class[1:].sum()),
        "n_negative": int(per_class[1]),
        "n_weak": int(per_class[2]),
        "n_moderate": int(per_class[3]),
        "n_strong": int(per_class[4]),
        "n_stained": int(stained.sum()),
        "sum_positive_dab_od": float(dab[grade > 0].sum()),
    }


def _with_fractions(counts: Mapping[str, float]) -> dict[str, Any]:
    n = counts["n_tissue"]
    pos = counts["n_weak"] + counts["n_moderate"] + counts["n_strong"]
    out: dict[str, Any] = {k: int(counts[k]) for k in _COUNTS}
    for name in ("negative", "weak", "moderate", "strong"):
        out[f"{name}_fraction"] = counts[f"n_{name}"] / n if n else None
    out["positive_fraction"] = pos / n if n else None
    out["moderate_or_strong_fraction"] = (
        (counts["n_moderate"] + counts["n_strong"]) / n if n else None
    )
    out["strong_of_positive"] = counts["n_strong"] / pos if pos else None
    out["stained_fraction"] = pos / counts["n_stained"] if counts["n_stained"] else None
    out["dab_od_mean"] = counts["sum_positive_dab_od"] / pos if pos else None
    return out


def positive_pixel_count(
    rgb: np.ndarray,
    tissue_mask: np.ndarray | None = None,
    params: PositivePixelParams | None = None,
    *,
    unmix: Unmix,
) -> dict[str, Any]:
    """Count negative / weak / moderate / strong DAB pixels of tissue in an RGB image.

    Parameters
    ----------
    rgb : numpy.ndarray, shape (h, w, 3)
        The image, RGB 0-255, at ``params.resolution_um`` when `tissue_mask` is None.
    tissue_mask : numpy.ndarray of bool, shape (h, w), optional
        The pixels that are tissue; None finds them with
        :func:`~napari_gbm.wsi.tissue.tissue_mask_from_rgb` (default ``TissueParams``).
    params : PositivePixelParams, optional
        None uses ``PositivePixelParams()``.
    unmix : callable
        ``unmix(rgb)`` gives the ``"dab"`` and ``"hematoxylin"`` OD images, e.g.
        ``functools.partial(napari_gbm.detect.stain.deconvolve, stains=HDAB)``.

    Returns
    -------
    dict
        ``n_tissue``, ``n_negative``, ``n_weak``, ``n_moderate``, ``n_strong`` (pixels;
        the classes are exclusive), ``n_stained`` (positive or hematoxylin-stained);
        ``negative_fraction`` ... ``strong_fraction`` (of tissue pixels),
        ``positive_fraction`` (weak or above), ``moderate_or_strong_fraction``,
        ``strong_of_positive``, ``stained_fraction`` (positive / stained, QuPath's
        "Positive %") and ``dab_od_mean`` (mean DAB OD of positive pixels); None where
        the denominator is 0.

    Raises
    ------
    ValueError
        If `rgb` is not (h, w, 3) or `tissue_mask` has another shape.
    """
    params = params or PositivePixelParams()
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) RGB image, got shape {rgb.shape}")
    if tissue_mask is None:
        tissue_mask = tissue_mask_from_rgb(rgb, params.resolution_um, TissueParams())[0]
    tissue = np.asarray(tissue_mask, bool)
    if tissue.shape != rgb.shape[:2]:
        raise ValueError(f"tissue_mask has shape {tissue.shape}, the image {rgb.shape[:2]}")
    return _with_fractions(_tally(*_classes(rgb, tissue, params, unmix)))


@dataclass
class SlidePositivePixels:
    """A slide's positive pixel count, as :func:`slide_positive_pixels` returns it.

    Attributes
    ----------
    counts : dict
        What :func:`positive_pixel_count` returns, over the whole slide.
    positive_fraction_map : numpy.ndarray of float64
        Positive (weak or above) fraction of the tissue pixels in each ``bin_um`` bin; NaN
        where a bin has no tissue. Bin (i, j) covers x in [j, j+1) * bin_um, y in
        [i, i+1) * bin_um (the grid of :class:`~napari_gbm.biomarkers.spatial.GridMaps`).
    bin_um : float
        Side of a map bin, µm.
    pixel_um : float
        The pixel size counted at, µm/px.
    """

    counts: dict[str, Any]
    positive_fraction_map: np.ndarray
    bin_um: float
    pixel_um: float

    def summary(self) -> dict[str, Any]:
        """``positive_pixel_*`` keys for ``summary.json`` (see :func:`positive_pixel_summary`)."""
        return positive_pixel_summary(self)


def slide_positive_pixels(
    slide: Slide,
    tissue: TissueMask | None,
    unmix: Unmix,
    bin_um: float,
    params: PositivePixelParams | None = None,
) -> SlidePositivePixels:
    """Positive pixel count of a whole slide, streamed tile by tile at ``resolution_um``.

    Memory stays bounded: each tile of ``tile_px`` pixels is read with
    :meth:`~napari_gbm.wsi.slide.Slide.read_downsampled` (the coarsest level fine enough,
    area-averaged), graded and tallied, and only the counts and the map are kept.

    Parameters
    ----------
    slide : Slide
        The slide; it must have a pixel size.
    tissue : TissueMask or None
        The tissue mask; None finds tissue in each tile (see :func:`positive_pixel_count`).
    unmix : callable
        ``unmix(rgb)`` gives the ``"dab"`` and ``"hematoxylin"`` OD images.
    bin_um : float
        Side of a bin of the positive-fraction map, µm.
    params : PositivePixelParams, optional
        None uses ``PositivePixelParams()``.

    Returns
    -------
    SlidePositivePixels

    Raises
    ------
    SlideError
        If the slide has no pixel size.
    ValueError
        If `bin_um` is not positive.
    """
    params = params or PositivePixelParams()
    if not bin_um > 0:
        raise ValueError(f"bin_um must be positive, got {bin_um}")
    mpp = slide.require_mpp()
    w0, h0 = slide.dimensions
    ds = max(1.0, params.resolution_um / mpp)  # level-0 px per counted px
    pixel_um = ds * mpp
    ow, oh = max(1, math.ceil(w0 / ds)), max(1, math.ceil(h0 / ds))
    shape = (max(1, math.ceil(h0 * mpp / bin_um)), max(1, math.ceil(w0 * mpp / bin_um)))
    tissue_bins = np.zeros(shape[0] * shape[1], np.int64)
    positive_bins = np.zeros_like(tissue_bins)
    totals = dict.fromkeys((*_COUNTS, "sum_positive_dab_od"), 0.0)
    t = int(params.tile_px)
    for oy in range(0, oh, t):
        for ox in range(0, ow, t):
            tw, th = min(t, ow - ox), min(t, oh - oy)
            rgb = slide.read_downsampled((ox * ds, oy * ds, tw * ds, th * ds), (tw, th))
            cols, rows = np.arange(ox, ox + tw) + 0.5, np.arange(oy, oy + th) + 0.5
            if tissue is None:
                mask = tissue_mask_from_rgb(rgb, pixel_um, TissueParams())[0]
            else:
                mask = tissue.on_grid(ox, oy, (th, tw), ds)
            if not mask.any():
                continue
            grade, stained, dab = _classes(rgb, mask, params, unmix)
            for k, v in _tally(grade, stained, dab).items():
                totals[k] += v
            bi = np.minimum((rows * pixel_um // bin_um).astype(np.int64), shape[0] - 1)
            bj = np.minimum((cols * pixel_um // bin_um).astype(np.int64), shape[1] - 1)
            flat = (bi[:, None] * shape[1] + bj[None, :]).ravel()
            size = shape[0] * shape[1]
            tissue_bins += np.bincount(flat, weights=mask.ravel(), minlength=size).astype(np.int64)
            pos = (grade > 0).ravel()
            positive_bins += np.bincount(flat, weights=pos, minlength=size).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        fmap = np.where(tissue_bins > 0, positive_bins / tissue_bins, np.nan).reshape(shape)
    return SlidePositivePixels(_with_fractions(totals), fmap, float(bin_um), pixel_um)


def positive_pixel_summary(result: SlidePositivePixels | None) -> dict[str, Any]:
    """The ``positive_pixel_*`` entries of ``summary.json``.

    Parameters
    ----------
    result : SlidePositivePixels or None
        The slide's count; None for a slide without DAB (H&E): every entry is then None,
        as the cell IHC scores are.

    Returns
    -------
    dict
        ``positive_pixel_<name>`` for each fraction of :func:`positive_pixel_count`
        (``positive_fraction`` as ``positive_pixel_fraction``, the headline value) and
        ``positive_pixel_tissue_area_mm2``, ``positive_pixel_positive_area_mm2`` and
        ``positive_pixel_resolution_um``.
    """
    fractions = {
        k: "positive_pixel_fraction" if k == "positive_fraction" else f"positive_pixel_{k}"
        for k in _FRACTIONS
    }
    extras = ("tissue_area_mm2", "positive_area_mm2", "resolution_um")
    if result is None:
        return {
            **dict.fromkeys(fractions.values()),
            **{f"positive_pixel_{k}": None for k in extras},
        }
    c = result.counts
    px_mm2 = result.pixel_um**2 / 1e6
    n_pos = c["n_weak"] + c["n_moderate"] + c["n_strong"]
    out = {key: c[k] for k, key in fractions.items()}
    out["positive_pixel_tissue_area_mm2"] = c["n_tissue"] * px_mm2
    out["positive_pixel_positive_area_mm2"] = n_pos * px_mm2
    out["positive_pixel_resolution_um"] = result.pixel_um
    return out
