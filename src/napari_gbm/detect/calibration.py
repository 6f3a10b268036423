"""Per-slide calibration: what nucleus detection needs to know about a slide's staining.

Fixed optical-density thresholds tuned on one stain protocol fail on another: a pale
hematoxylin counterstain (typical of Ki-67 IHC) sits below them, a dark 40x H&E scan puts
its neuropil and cytoplasm texture above them. Tile independence forbids statistics of a
*tile*; statistics of the *slide* are fine, as long as every tile gets the same ones. So
once per slide, from a deterministic sample of its tissue, :func:`calibrate_slide` measures

1. the **white point** (``background``): the mean RGB of the brightest 1 % of sampled
   pixels (glass, lumens). Optical density is relative to it, as in QuPath's "estimate
   background" (camera fields and tinted scans are not 255 white);
2. the **counterstain level** (``level_od``): Otsu's threshold of the
   background-subtracted, smoothed counterstain (hematoxylin) image of the sample, the
   same contrast image detection thresholds (see :func:`napari_gbm.detect.segment.contrast_image`),
   its values clipped at their 95th percentile first. On IHC, pixels whose smoothed DAB
   exceeds ``dab_exclude_od`` are left out, so the level is that of the pale
   counterstained (negative) nuclei, not of the brown ones. The clip matters: a few very
   dark objects (lymphocytes, the hematoxylin that brown nuclei show through imperfect
   vectors) pull a plain Otsu split far above pale nuclei; on two Ki-67 sets it lost
   half to four fifths of the negatives of some fields (recall 0.2-0.5, the Ki-67 index
   40-60 points too high there).

Detection then thresholds every tile at multiples of ``level_od`` (``threshold_rel``,
``peak_rel`` in :class:`~napari_gbm.detect.nucleus_params.NucleusParams`), so its operating point
follows the slide's stain. A plain image (PNG, JPEG, a camera field) is its own slide.
The calibration is stored in ``summary.json`` and the Parquet metadata, and can be passed
back in (``analyze --calibration summary.json``) to analyse a cohort with one calibration.

Stain vectors stay the preset (or Macenko's with ``analyze --estimate-stains``), rebased on
the white point. Refining them per slide was tried (assigning stained pixels to the nearer
vector and averaging): on real H&E and Ki-67 tiles the mixed pixels pulled the two
vectors together (8 degrees apart on MoNuSeg) and detection lost 5-30 points of recall,
so it is not done. Macenko failed on some Ki-67 fields (DeepLIIF: recall 0.14).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from napari_gbm.detect.segment import contrast_image, deconvolve_tile
from napari_gbm.detect.stain import StainVectors, estimate_macenko, stain_preset
from napari_gbm.wsi.slide import Slide
from napari_gbm.wsi.tiling import TilingParams, make_tile_grid
from napari_gbm.wsi.tissue import TissueMask, detect_tissue

if TYPE_CHECKING:
    from napari_gbm.detect.nucleus_params import NucleusParams

__all__ = [
    "CalibrationParams",
    "SlideCalibration",
    "calibrate_pixels",
    "calibrate_slide",
    "estimate_slide_stains",
    "estimate_white_point",
    "load_calibration",
]

CALIBRATION_VERSION = 1


@dataclass(frozen=True)
class CalibrationParams:
    """How a slide is sampled and calibrated.

    Attributes
    ----------
    enabled : bool
        False: preset stain vectors on 255 white and the fixed thresholds of
        :class:`~napari_gbm.detect.nucleus_params.NucleusParams` (the behaviour before calibration).
    sample_tiles : int
        Tissue tiles sampled (evenly over the slide's tissue tiles, in grid order).
    sample_tile_px : int
        Side of a sampled tile at the analysis resolution.
    white_fraction : float
        Brightest fraction of sampled pixels averaged into the white point.
    min_white : float
        A white point darker than this in any channel is implausible (no glass or
        lumen in the sample): 255 is kept.
    dab_exclude_od : float
        Pixels with smoothed DAB above this are left out of the counterstain level.
    clip_quantile : float
        The sample's contrast values are clipped at this quantile before Otsu's
        threshold (see the module docs).
    """

    enabled: bool = True
    sample_tiles: int = 16
    sample_tile_px: int = 512
    white_fraction: float = 0.01
    min_white: float = 150.0
    dab_exclude_od: float = 0.05
    clip_quantile: float = 0.95

    def __post_init__(self) -> None:
        if self.sample_tiles < 1 or self.sample_tile_px < 32:
            raise ValueError("sample_tiles must be >= 1 and sample_tile_px >= 32")
        if not 0.5 < self.clip_quantile <= 1:
            raise ValueError(f"clip_quantile must be in (0.5, 1], got {self.clip_quantile}")
        if not 0 < self.white_fraction < 0.5:
            raise ValueError(f"white_fraction must be in (0, 0.5), got {self.white_fraction}")


@dataclass(frozen=True, eq=False)
class SlideCalibration:
    """What detection uses of one slide: stain vectors and the counterstain contrast level.

    Attributes
    ----------
    stains : StainVectors
        Stain vectors, with the white point (RGB, 0-255) as their ``background``.
    level_od : float
        Otsu level of the smoothed, background-subtracted counterstain, OD units (>= 0; 0
        when the sample was too small or flat: the fixed thresholds apply).
    source : str, default "sample"
        ``"sample"`` (measured on this slide) or ``"file"`` (passed in).
    details : dict, optional
        Provenance: sampled tiles and pixels, whether the white point was estimated,
        the stain, pixel size and parameters of the sample.

    Raises
    ------
    ValueError
        If `level_od` is negative or not finite.
    """

    stains: StainVectors
    level_od: float
    source: str = "sample"
    details: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.level_od) and self.level_od >= 0):
            raise ValueError(f"level_od must be a finite number >= 0, got {self.level_od!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``from_dict`` reads it back)."""
        return {
            "version": CALIBRATION_VERSION,
            "stain_vectors": self.stains.to_dict(),
            "level_od": float(self.level_od),
            "source": self.source,
            "details": dict(self.details or {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlideCalibration:
        """Read :meth:`to_dict`'s form (``ValueError`` naming what is missing)."""
        missing = [k for k in ("stain_vectors", "level_od") if k not in data]
        if missing:
            raise ValueError(
                f"a calibration needs {missing}; pass the 'calibration' object of an "
                "analysis summary.json, or that object saved on its own"
            )
        return cls(
            StainVectors.from_dict(data["stain_vectors"]),
            float(data["level_od"]),
            str(data.get("source", "file")),
            dict(data.get("details") or {}),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SlideCalibration):
            return NotImplemented
        return self.stains == other.stains and self.level_od == other.level_od

    def __hash__(self) -> int:
        return hash((self.stains, self.level_od))


def load_calibration(path: str | Path) -> SlideCalibration:
    """A calibration from a JSON file.

    Parameters
    ----------
    path : str or pathlib.Path
        An analysis ``summary.json`` (its ``"calibration"`` is read) or a bare calibration
        object (:meth:`SlideCalibration.to_dict`'s form).

    Returns
    -------
    SlideCalibration
        With ``source="file"``.

    Raises
    ------
    ValueError
        Saying what is wrong: no such file, not JSON, not an object, an analysis run
        without calibration, or fields missing.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such calibration file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a JSON calibration ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with a calibration")
    if "calibration" in data:
        if data["calibration"] is None:
            raise ValueError(
                f"{path}: that analysis ran without calibration (--no-calibration); "
                "pass the summary.json of a calibrated analysis"
            )
        data = data["calibration"]
    try:
        return replace(SlideCalibration.from_dict(data), source="file")
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def estimate_white_point(
    pixels: npt.ArrayLike, fraction: float = 0.01, min_white: float = 150.0
) -> tuple[tuple[float, float, float], bool]:
    """Mean RGB of the brightest pixels (by R + G + B).

    Parameters
    ----------
    pixels : array_like
        RGB values 0-255, any shape reshapeable to (n, 3) (no alpha channel).
    fraction : float, default 0.01
        Fraction of the pixels averaged (at least one pixel).
    min_white : float, default 150.0
        A white point darker than this in any channel (0-255) is implausible.

    Returns
    -------
    white : tuple of float
        ``(R, G, B)``, 0-255; ``(255, 255, 255)`` when implausible or there are no pixels.
    estimated : bool
        False when `white` is the fallback 255.
    """
    flat = np.asarray(pixels).reshape(-1, 3)
    if flat.shape[0] == 0:
        return (255.0, 255.0, 255.0), False
    bright = flat.astype(np.int32).sum(axis=1)
    k = max(1, round(flat.shape[0] * fraction))
    idx = np.argpartition(bright, flat.shape[0] - k)[flat.shape[0] - k :]
    white = flat[idx].astype(np.float64).mean(axis=0)
    if np.any(white < min_white):
        return (255.0, 255.0, 255.0), False
    return (float(white[0]), float(white[1]), float(white[2])), True


def calibrate_pixels(
    tiles: list[npt.NDArray[np.uint8]],
    mpp: float,
    preset: StainVectors,
    nucleus: NucleusParams,
    params: CalibrationParams = CalibrationParams(),
) -> SlideCalibration:
    """Calibration from sampled RGB tiles, all from one slide.

    Parameters
    ----------
    tiles : list of ndarray of uint8, shape (h, w, 3 or 4)
        The sample; alpha channels are dropped, empty tiles skipped.
    mpp : float
        Pixel size of the tiles, µm/px.
    preset : StainVectors
        Starting stain vectors; their first two vectors are kept, with the estimated white
        point as background.
    nucleus : NucleusParams
        Smoothing and contrast parameters of detection (:func:`contrast_image`).
    params : CalibrationParams, default CalibrationParams()
        White fraction, DAB exclusion and clip quantile.

    Returns
    -------
    SlideCalibration
        ``source="sample"``; ``level_od`` 0 when fewer than 100 contrast values remain or
        they are flat.
    """
    tiles = [np.ascontiguousarray(t[..., :3]) for t in tiles if t.size]
    pixels = (
        np.concatenate([t.reshape(-1, 3) for t in tiles]) if tiles else np.zeros((0, 3), np.uint8)
    )
    details: dict[str, Any] = {"sample_tiles": len(tiles), "sample_pixels": len(pixels)}
    white, ok = estimate_white_point(pixels, params.white_fraction, params.min_white)
    details["white_estimated"] = ok
    stains = StainVectors.from_vectors(preset.names, preset.matrix[:2], white)
    values = []
    has_dab = "dab" in stains.names
    for t in tiles:
        conc = deconvolve_tile(t, stains)
        contrast, _ = contrast_image(conc[0], mpp, nucleus)
        if has_dab:
            dab = conc[stains.index("dab")]
            sigma = nucleus.sigma_um / mpp
            dab_s = ndi.gaussian_filter(dab, sigma) if sigma > 0 else dab
            contrast = contrast[dab_s < params.dab_exclude_od]
        values.append(contrast.ravel())
    vals = np.concatenate(values) if values else np.zeros(0, np.float32)
    vals = vals[np.isfinite(vals)]
    if vals.size < 100 or float(vals.max()) - float(vals.min()) < 1e-6:
        level = 0.0
        details["level"] = "too few pixels or a flat sample: fixed thresholds apply"
    else:
        top = float(np.quantile(vals, params.clip_quantile))
        level = float(threshold_otsu(np.minimum(vals, top)))
    return SlideCalibration(stains, max(level, 0.0), "sample", details)


def calibrate_slide(
    slide: Slide,
    stain: str,
    nucleus: NucleusParams,
    *,
    tissue: TissueMask | None = None,
    target_mpp: float = 0.5,
    params: CalibrationParams = CalibrationParams(),
    preset: StainVectors | None = None,
) -> SlideCalibration:
    """Calibrate a slide from a deterministic sample of its tissue (see the module docstring).

    Tiles of ``params.sample_tile_px`` at `target_mpp` are laid over the slide; of those at
    least half tissue (else any tissue, else all), ``params.sample_tiles`` are taken evenly
    spaced in grid order and read without padding. The same slide and parameters always
    give the same calibration, whatever region is analysed later.

    Parameters
    ----------
    slide : Slide
        The slide; it must have a pixel size.
    stain : str
        Stain preset name (``"he"``, ``"hdab"``), used when `preset` is None.
    nucleus : NucleusParams
        Detection parameters (see :func:`calibrate_pixels`).
    tissue : TissueMask, optional
        The slide's tissue; None detects it with the default parameters.
    target_mpp : float, default 0.5
        Analysis resolution the sample is read at, µm/px.
    params : CalibrationParams, default CalibrationParams()
        Sampling and calibration parameters.
    preset : StainVectors, optional
        The starting stain vectors (default: the preset of `stain`); their background is
        replaced by the estimated white point.

    Returns
    -------
    SlideCalibration
        ``source="sample"``; ``details`` hold the stain, the sample's µm/px and `params`.

    Raises
    ------
    SlideError
        If the slide has no pixel size.
    """
    slide.require_mpp()
    if tissue is None:
        tissue = detect_tissue(slide)
    grid = make_tile_grid(
        slide,
        tissue,
        TilingParams(target_mpp=target_mpp, tile_size_px=params.sample_tile_px, overlap_px=0),
    )
    t = grid.tiles
    candidates = t[t["tissue_fraction"] >= 0.5]
    if candidates.empty:
        candidates = grid.selected
    if candidates.empty:
        candidates = t
    n = min(params.sample_tiles, len(candidates))
    pick = np.unique(np.linspace(0, len(candidates) - 1, n).round().astype(int))
    tiles = []
    for row in candidates.iloc[pick].itertuples(index=False):
        # cores are clipped to the slide already: the sample holds no padding
        x0, y0, x1, y1 = row.core_x0_px, row.core_y0_px, row.core_x1_px, row.core_y1_px
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        ow = max(1, round((x1 - x0) / grid.scale))
        oh = max(1, round((y1 - y0) / grid.scale))
        tiles.append(slide.read_downsampled((x0, y0, x1 - x0, y1 - y0), (ow, oh)))
    preset = preset or stain_preset(stain)
    cal = calibrate_pixels(tiles, grid.effective_mpp, preset, nucleus, params)
    details = dict(cal.details or {})
    details.update({"stain": stain, "mpp": grid.effective_mpp, "params": asdict(params)})
    return SlideCalibration(cal.stains, cal.level_od, "sample", details)


def estimate_slide_stains(
    slide: Slide, tissue: TissueMask, stain: str, *, pixel_um: float = 2.0
) -> StainVectors:
    """Per-slide stain vectors (Macenko) from the tissue pixels of a low-resolution read.

    Parameters
    ----------
    slide : Slide
        The slide (its pixel size is required).
    tissue : TissueMask
        Where the tissue is; only its pixels are used.
    stain : {"he", "hdab"}
        Which stains to estimate (the preset's names).
    pixel_um : float, default 2.0
        Pixel size of the read, µm/px (at most 2048 px on the long side).

    Returns
    -------
    StainVectors
        The slide's stain vectors.
    """
    w, h = slide.dimensions
    mpp = slide.require_mpp()
    f = min(mpp / pixel_um, 2048 / max(w, h), 1.0)
    ow, oh = max(1, round(w * f)), max(1, round(h * f))
    rgb = slide.read_downsampled((0, 0, w, h), (ow, oh))
    inside = tissue.sampled(oh, ow)
    names = stain_preset(stain).names
    return estimate_macenko(rgb[inside], names=names)
