"""Tissue detection at low resolution, with every parameter in µm.

The slide is read once at about ``resolution_um`` µm/px from the coarsest pyramid level
that is fine enough (never level 0 of a pyramid), then:

1. a Gaussian smoothing of ``smooth_um``, then the optical density (OD) summed over the
   channels, ``sum -log10(I / 255)``: tissue absorbs light (eosin, hematoxylin, DAB),
   glass hardly does;
2. the glass level is the mode of the OD histogram below 0.2 (slides differ: white,
   grey or tinted backgrounds); tissue is ``glass_margin_od`` above it (the cut is kept
   inside ``od_bounds``);
3. faint pixels must also be coloured (saturation above ``min_saturation``): a grey scan
   area or a shadow is not tissue, pale eosin or hematoxylin is; pixels more than
   ``colourless_margin_od`` above the glass count whatever their colour (pale grey
   necrosis on an IHC slide is tissue);
4. black borders and scanner shadows are excluded: pixels dark in every channel with
   little colour (``max(RGB) < dark_max``, saturation < 0.25);
5. holes enclosed by tissue and smaller than ``max_hole_um2`` are filled (1 mm², the
   ``maxHoleAreaMicrons`` QuPath's simple tissue detection is usually run with): pale
   necrosis, lumens and tears belong to the section; objects smaller than
   ``min_object_um2`` are dropped as debris.

The result, :class:`TissueMask`, knows its own scale, so tile fractions and areas come out
in level-0 pixels and µm² without the caller tracking levels.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_gbm.masks import fill_small_holes
from napari_gbm.wsi.slide import Slide

__all__ = [
    "DEFAULT_ASSUMED_MPP",
    "TissueMask",
    "TissueParams",
    "detect_tissue",
    "tissue_mask_from_rgb",
]

#: Pixel size assumed (with a warning) when a slide does not record one: 20x scans.
DEFAULT_ASSUMED_MPP = 0.5


@dataclass(frozen=True)
class TissueParams:
    """Parameters of tissue detection (see the module docstring for the steps).

    Parameters
    ----------
    resolution_um : float, default 8.0
        Pixel size the slide is read at, µm/px (finer for small images: at least ~1024
        mask pixels on the long side); a stored level up to 2x coarser is used as it is.
    smooth_um : float, default 2.0
        σ of the Gaussian smoothing, µm.
    od_bounds : tuple of float, default (0.04, 0.2)
        ``(low, high)`` bounds of the tissue threshold, OD summed over the channels.
    glass_margin_od : float, default 0.05
        Tissue lies this far above the glass level, OD sum.
    min_saturation : float, default 0.04
        Faint pixels must be more saturated than this ((max - min) / max of RGB, 0-1).
    colourless_margin_od : float, default 0.12
        Pixels this far above the glass level (OD sum) are tissue whatever their colour.
    dark_max : int, default 60
        Pixels with every channel below this (RGB 0-255) and little colour are black
        borders or shadows, not tissue.
    min_object_um2 : float, default 2500.0
        Smaller objects are dropped as debris, µm².
    max_hole_um2 : float, default 1,000,000 (1 mm²)
        Holes enclosed by tissue and smaller than this are filled, µm²; 0 fills none.

    Raises
    ------
    ValueError
        If `resolution_um` is not positive, `od_bounds` is not ``0 <= low <= high``, or
        `smooth_um`, `min_object_um2` or `max_hole_um2` is negative.
    """

    resolution_um: float = 8.0
    smooth_um: float = 2.0
    od_bounds: tuple[float, float] = (0.04, 0.2)
    glass_margin_od: float = 0.05
    min_saturation: float = 0.04
    colourless_margin_od: float = 0.12
    dark_max: int = 60
    min_object_um2: float = 2500.0
    max_hole_um2: float = 1_000_000.0

    def __post_init__(self) -> None:
        if not self.resolution_um > 0:
            raise ValueError(f"resolution_um must be positive, got {self.resolution_um}")
        lo, hi = self.od_bounds
        if not 0 <= lo <= hi:
            raise ValueError(f"od_bounds must satisfy 0 <= low <= high, got {self.od_bounds}")
        if self.smooth_um < 0 or self.min_object_um2 < 0 or self.max_hole_um2 < 0:
            raise ValueError("smooth_um, min_object_um2 and max_hole_um2 must be >= 0")


@dataclass(frozen=True)
class TissueMask:
    """A boolean tissue mask with its scale.

    ``mask[r, c]`` covers level-0 pixels ``[c * downsample, (c + 1) * downsample)`` in x
    and likewise in y.

    Attributes
    ----------
    mask : ndarray of bool, shape (rows, cols)
        Tissue; the last row and column may reach past the slide edge.
    downsample : float
        Level-0 pixels per mask pixel.
    mpp : float
        The slide's level-0 pixel size, µm/px (assumed when `mpp_assumed`).
    mpp_assumed : bool
        Whether the slide recorded no pixel size and :data:`DEFAULT_ASSUMED_MPP` was used.
    threshold_od : float
        The OD-sum threshold used.
    slide_dimensions : tuple of int
        Level-0 ``(width, height)``, pixels.
    params : TissueParams
        The parameters used.
    """

    mask: np.ndarray
    downsample: float
    mpp: float
    mpp_assumed: bool
    threshold_od: float
    slide_dimensions: tuple[int, int]
    params: TissueParams = field(default_factory=TissueParams)

    @property
    def mask_mpp(self) -> float:
        """µm per mask pixel."""
        return self.mpp * self.downsample

    @property
    def tissue_fraction(self) -> float:
        """Fraction of the slide area that is tissue (the last mask row and column may
        reach past the slide edge; only the part on the slide counts)."""
        w, h = self.slide_dimensions
        return float(self.fraction_in_boxes(np.array([[0.0, 0.0, w, h]]))[0])

    @property
    def tissue_area_um2(self) -> float:
        w, h = self.slide_dimensions
        return self.tissue_fraction * w * h * self.mpp**2

    @property
    def tissue_area_mm2(self) -> float:
        return self.tissue_area_um2 / 1e6

    def on_grid(self, x0: int, y0: int, shape: tuple[int, int], ds: float) -> np.ndarray:
        """The mask on a window of a grid of ``ds`` level-0 pixels per pixel (a slide read
        at a lower resolution): ``shape`` (rows, cols) grid pixels from grid pixel
        ``(x0, y0)``, each taking the mask pixel under its centre; False off the mask (a
        window may reach past the slide).

        Parameters
        ----------
        x0, y0 : int
            The window's first column and row, grid pixels (may be negative).
        shape : tuple of int
            ``(rows, cols)`` of the window.
        ds : float
            Level-0 pixels per grid pixel.

        Returns
        -------
        numpy.ndarray of bool, shape `shape`
        """
        rows = np.floor((np.arange(shape[0]) + y0 + 0.5) * ds / self.downsample).astype(int)
        cols = np.floor((np.arange(shape[1]) + x0 + 0.5) * ds / self.downsample).astype(int)
        h, w = self.mask.shape
        r_in, c_in = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
        out = self.mask[np.ix_(np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1))]
        return out & r_in[:, None] & c_in[None, :]

    def sampled(self, height: int, width: int) -> np.ndarray:
        """The mask on a ``height`` x ``width`` grid covering the slide (nearest mask
        pixel to each grid pixel's centre): to overlay or select on a thumbnail."""
        w0, h0 = self.slide_dimensions
        ys = ((np.arange(height) + 0.5) * h0 / height / self.downsample).astype(int)
        xs = ((np.arange(width) + 0.5) * w0 / width / self.downsample).astype(int)
        ys = np.minimum(ys, self.mask.shape[0] - 1)
        xs = np.minimum(xs, self.mask.shape[1] - 1)
        return self.mask[np.ix_(ys, xs)]

    def on_tissue(self, x_px: np.ndarray, y_px: np.ndarray, margin_um: float = 16.0) -> np.ndarray:
        """Whether level-0 points (x, y) lie on tissue, or within ``margin_um`` of it.

        The mask is coarse (8 µm pixels by default): a nucleus on the tissue edge can sit
        in a mask pixel called glass, so the mask is grown by ``margin_um`` first (two mask
        pixels by default). What remains outside is glass, a black scanner border, a pen
        mark or debris the detector excluded."""
        grow = math.ceil(margin_um / self.mask_mpp) if margin_um > 0 else 0
        rows = np.floor(np.asarray(y_px, np.float64) / self.downsample).astype(np.int64)
        cols = np.floor(np.asarray(x_px, np.float64) / self.downsample).astype(np.int64)
        h, w = self.mask.shape
        inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        out = np.zeros(rows.shape, bool)
        if not inside.any():
            return out
        r, c = rows[inside], cols[inside]
        # grow only the window around the points (called once per tile: growing the whole
        # mask of a large slide took 0.2 s each time); the window's margin of ``grow``
        # pixels makes the result inside it exact
        r0, r1 = max(int(r.min()) - grow, 0), min(int(r.max()) + grow + 1, h)
        c0, c1 = max(int(c.min()) - grow, 0), min(int(c.max()) + grow + 1, w)
        window = self.mask[r0:r1, c0:c1]
        if grow:
            window = ndi.binary_dilation(window, iterations=grow)
        out[inside] = window[r - r0, c - c0]
        return out

    def fraction_in_boxes(self, boxes_l0: np.ndarray) -> np.ndarray:
        """Tissue fraction inside level-0 boxes ``(x0, y0, x1, y1)`` (rows of an (n, 4)
        array), by area, with partial mask pixels weighted by their overlap; area outside
        the slide counts as non-tissue."""
        boxes = np.asarray(boxes_l0, dtype=np.float64).reshape(-1, 4)
        if boxes.shape[0] == 0:
            return np.zeros(0)
        # Integral image of the mask, sampled at fractional positions by bilinear
        # interpolation of the cumulative sum: exact for axis-aligned boxes.
        m = self.mask.astype(np.float64)
        integral = np.zeros((m.shape[0] + 1, m.shape[1] + 1))
        integral[1:, 1:] = m.cumsum(0).cumsum(1)
        b = boxes / self.downsample

        def at(y: np.ndarray, x: np.ndarray) -> np.ndarray:
            y = np.clip(y, 0, m.shape[0])
            x = np.clip(x, 0, m.shape[1])
            coords = np.vstack([y, x])
            return ndi.map_coordinates(integral, coords, order=1, mode="nearest")

        total = (
            at(b[:, 3], b[:, 2])
            - at(b[:, 1], b[:, 2])
            - at(b[:, 3], b[:, 0])
            + at(b[:, 1], b[:, 0])
        )
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(area > 0, total / area, 0.0)
        return np.clip(frac, 0.0, 1.0)

    def summary(self) -> dict[str, Any]:
        return {
            "tissue_fraction": self.tissue_fraction,
            "tissue_area_mm2": self.tissue_area_mm2,
            "threshold_od": self.threshold_od,
            "mask_mpp": self.mask_mpp,
            "mask_shape": list(self.mask.shape),
            "mpp_assumed": self.mpp_assumed,
            "params": {
                "resolution_um": self.params.resolution_um,
                "smooth_um": self.params.smooth_um,
                "od_bounds": list(self.params.od_bounds),
                "glass_margin_od": self.params.glass_margin_od,
                "min_saturation": self.params.min_saturation,
                "colourless_margin_od": self.params.colourless_margin_od,
                "dark_max": self.params.dark_max,
                "min_object_um2": self.params.min_object_um2,
                "max_hole_um2": self.params.max_hole_um2,
            },
        }


def detect_tissue(slide: Slide, params: TissueParams | None = None) -> TissueMask:
    """Detect tissue on a slide at low resolution.

    If the slide has no pixel size, :data:`DEFAULT_ASSUMED_MPP` is assumed with a warning
    (areas and the debris size are then approximate, and no object larger than 0.05 % of
    the image is dropped as debris); the mask says so (``mpp_assumed``).

    Parameters
    ----------
    slide : Slide
        The slide.
    params : TissueParams, optional
        None uses ``TissueParams()``.

    Returns
    -------
    TissueMask
        The mask at about ``params.resolution_um`` µm/px.
    """
    params = params or TissueParams()
    mpp = slide.mpp
    assumed = mpp is None
    if mpp is None:
        warnings.warn(
            f"{slide.mpp_message}. Tissue detection assumes {DEFAULT_ASSUMED_MPP} µm/px.",
            stacklevel=2,
        )
        mpp = DEFAULT_ASSUMED_MPP
    w, h = slide.dimensions
    # Small images get a finer mask (at least ~1024 px on the long side).
    resolution_um = min(params.resolution_um, max(w, h) * mpp / 1024)
    target_ds = max(1.0, resolution_um / mpp)
    # A stored level up to 2x coarser than asked is used as it is: reading it is what
    # makes detection fast on a whole slide (8 µm asked, a 16 µm level read).
    level = slide.best_level_for_downsample(2 * target_ds)
    level_ds = slide.level_downsamples[level]
    downsample = level_ds if level_ds >= target_ds else target_ds
    ow, oh = max(1, math.ceil(w / downsample)), max(1, math.ceil(h / downsample))
    # The box is the mask's footprint, a hair past the slide edge; outside reads white.
    rgb = slide.read_downsampled((0, 0, ow * downsample, oh * downsample), (ow, oh))
    # Without a known scale, debris is judged against the image too: no object larger than
    # 0.05 % of the image is dropped (a lone fragment on a low-magnification image stays).
    relative_cap = 0.0005 * ow * oh if assumed else None
    mask, threshold = tissue_mask_from_rgb(
        rgb, mpp * downsample, params, max_min_object_px=relative_cap
    )
    return TissueMask(mask, downsample, mpp, assumed, threshold, (w, h), params)


def tissue_mask_from_rgb(
    rgb: np.ndarray,
    pixel_um: float,
    params: TissueParams | None = None,
    *,
    max_min_object_px: float | None = None,
) -> tuple[np.ndarray, float]:
    """Tissue mask of a low-resolution RGB image.

    Parameters
    ----------
    rgb : numpy.ndarray, shape (h, w, 3)
        The image, RGB 0-255.
    pixel_um : float
        Pixel size of `rgb`, µm/px.
    params : TissueParams, optional
        None uses ``TissueParams()``.
    max_min_object_px : float, optional
        Caps the debris size, pixels of `rgb` (used when the scale is only assumed); None
        for no cap.

    Returns
    -------
    mask : ndarray of bool, shape (h, w)
        Tissue.
    threshold : float
        The OD-sum threshold used.

    Raises
    ------
    ValueError
        If `rgb` is not (h, w, 3).
    """
    params = params or TissueParams()
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) RGB image, got shape {rgb.shape}")
    sigma = params.smooth_um / pixel_um
    # channel planes: reductions over a length-3 last axis are slow in numpy
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    mx, mn = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    dark = (mx < params.dark_max) & ((mx - mn) / np.maximum(mx, 1.0) < 0.25)
    if sigma > 0.3:
        r, g, b = (ndi.gaussian_filter(c, sigma) for c in (r, g, b))
        mx, mn = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    # OD summed over channels = -log10 of the product of transmittances
    od_sum = -np.log10(np.clip(r * g * b, 1.0, None) / np.float32(255.0**3))
    saturation = (mx - mn) / np.maximum(mx, 1.0)
    if dark.any():  # the smoothed rim of a black border is not tissue either
        dark = ndi.binary_dilation(dark, iterations=max(1, math.ceil(2 * sigma)))

    glass = _glass_level(od_sum[~dark])
    threshold = float(np.clip(glass + params.glass_margin_od, *params.od_bounds))
    coloured = saturation > params.min_saturation
    absorbing = od_sum > max(threshold, glass + params.colourless_margin_od)
    mask = (od_sum > threshold) & (coloured | absorbing) & ~dark

    px_area = pixel_um**2
    if params.max_hole_um2 > 0:
        mask = fill_small_holes(mask, params.max_hole_um2 / px_area)
    if params.min_object_um2 > 0:
        lab, n = ndi.label(mask)
        if n:
            sizes_px = np.bincount(lab.ravel())[1:]
            min_px = params.min_object_um2 / px_area
            if max_min_object_px is not None:
                min_px = min(min_px, max_min_object_px)
            mask = np.isin(lab, 1 + np.flatnonzero(sizes_px >= min_px))
    return mask, threshold


def _glass_level(od_sum: np.ndarray) -> float:
    """The most common OD below 0.2: the glass (0 when no pixel is that clear)."""
    clear = od_sum[od_sum < 0.2]
    if clear.size < 0.01 * max(od_sum.size, 1):
        return 0.0
    hist, edges = np.histogram(clear, bins=80, range=(0.0, 0.2))
    k = int(hist.argmax())
    return float((edges[k] + edges[k + 1]) / 2)
