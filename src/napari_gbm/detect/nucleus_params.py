"""The parameters of nucleus detection (:class:`NucleusParams`), written once with their
defaults, units and meaning, and the overlap they make a tile need (:func:`halo_um`).

:mod:`.segment` runs the detection; the CLI, the Cells dock and the cohort read their
defaults from here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

__all__ = ["DETECTION_CHOICES", "DETECTORS", "QUPATH_DEFAULTS", "NucleusParams", "halo_um"]

DETECTION_CHOICES = ("nuclear", "od_sum")
#: The nucleus detectors: the calibrated watershed, or the shipped network
#: (:mod:`napari_gbm.detect.learned`).
DETECTORS = ("classical", "learned")


@dataclass(frozen=True)
class NucleusParams:
    """Nucleus detection parameters; lengths in µm and areas in µm² (any pixel size).

    Defaults are QuPath's watershed cell detection defaults except where measured on
    synthetic ground truth and checked on real tiles (see the module docs and tests).

    Attributes
    ----------
    detector : {"classical", "learned"}
        ``"classical"``: the calibrated watershed below (the default). ``"learned"``: the
        small U-Net shipped with the package (:mod:`napari_gbm.detect.learned`); it uses
        ``learned_threshold``, ``learned_split_um``, the area limits and
        ``cell_expansion_um``, not the watershed's thresholds and filters.
    learned_threshold : float
        Learned detector: nucleus probability above which a pixel is nucleus (0-1).
    learned_split_um : float
        Learned detector: a dip of the predicted edge distance at least this deep (µm)
        separates two touching nuclei (h-maxima dynamics).
    detection : str
        ``"nuclear"`` (hematoxylin plus DAB if the stains have it), ``"od_sum"``
        (sum of RGB OD, QuPath's IHC option) or the name of one stain, e.g.
        ``"hematoxylin"`` (QuPath's H&E default).
    background_radius_um : float
        Half-side of the opening that estimates background (QuPath 8); 0 disables.
    median_radius_um : float
        Median filter radius before everything else (QuPath 0).
    sigma_um : float
        Gaussian smoothing (QuPath 1.5). Default 1.0: on synthetic truth it raises
        recall in crowded regions and cuts area bias from +13 % to +4 %.
    min_area_um2, max_area_um2 : float
        Nucleus area limits (QuPath 10 - 400).
    threshold_od : float
        Foreground threshold on the smoothed background-subtracted detection image, in
        OD (QuPath 0.1), used when the slide is not calibrated.
    peak_threshold_od : float
        An object must reach this smoothed contrast somewhere (hysteresis; not in
        QuPath), used when the slide is not calibrated. Set to ``threshold_od`` to
        disable.
    threshold_rel, peak_rel : float
        With a slide calibration (:mod:`napari_gbm.detect.calibration`), the two thresholds
        are these multiples of the slide's counterstain level ``level_od``, so they
        follow the stain instead of a fixed OD: on real H&E and Ki-67 tiles a fixed 0.25
        peak missed the pale counterstained nuclei of IHC and let neuropil texture of
        dark 40x scans through.
    floor_od : float
        Calibrated thresholds never go below this OD (a slide whose sample holds almost
        no nuclei must not turn noise into nuclei).
    max_background_od : float
        Pixels whose background estimate exceeds this are not detected (QuPath 2).
    split_by_shape : bool
        Split touching nuclei by the distance transform (QuPath on).
    split_neck_ratio : float
        Two basins stay separate only if the neck half-width is at most this fraction
        of the smaller basin's inscribed radius.
    split_depth_um : float
        ... and the smaller basin rises at least this much (µm) above the neck.
    cell_expansion_um : float
        Cell = nucleus grown by this distance without entering neighbours (QuPath 5).
    """

    detector: str = "classical"
    learned_threshold: float = 0.5
    learned_split_um: float = 0.75
    detection: str = "nuclear"
    background_radius_um: float = 8.0
    median_radius_um: float = 0.0
    sigma_um: float = 1.0
    min_area_um2: float = 10.0
    max_area_um2: float = 400.0
    threshold_od: float = 0.1
    peak_threshold_od: float = 0.25
    threshold_rel: float = 0.75
    peak_rel: float = 1.35
    floor_od: float = 0.05
    max_background_od: float = 2.0
    split_by_shape: bool = True
    split_neck_ratio: float = 0.85
    split_depth_um: float = 0.5
    cell_expansion_um: float = 5.0

    def __post_init__(self) -> None:
        for name in (
            "background_radius_um",
            "median_radius_um",
            "sigma_um",
            "min_area_um2",
            "split_depth_um",
            "cell_expansion_um",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (math.isfinite(self.max_area_um2) and self.max_area_um2 > self.min_area_um2):
            raise ValueError(
                f"max_area_um2 ({self.max_area_um2}) must exceed min_area_um2 ({self.min_area_um2})"
            )
        for name in ("threshold_rel", "peak_rel", "floor_od"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("threshold_od", "peak_threshold_od", "max_background_od"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
        if self.max_background_od <= 0:
            raise ValueError(f"max_background_od must be > 0, got {self.max_background_od}")
        if not 0 < self.split_neck_ratio <= 1:
            raise ValueError(f"split_neck_ratio must be in (0, 1], got {self.split_neck_ratio}")
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {self.detector!r}")
        if not 0 < self.learned_threshold < 1:
            raise ValueError(f"learned_threshold must be in (0, 1), got {self.learned_threshold}")
        if not (math.isfinite(self.learned_split_um) and self.learned_split_um > 0):
            raise ValueError(f"learned_split_um must be > 0, got {self.learned_split_um!r}")
        if not isinstance(self.detection, str) or not self.detection:
            raise ValueError(f"detection must be a non-empty str, got {self.detection!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the parameters (for provenance in outputs)."""
        return asdict(self)

    def thresholds(self, level_od: float | None = None) -> tuple[float, float]:
        """(foreground, peak) thresholds in OD: fixed without a calibration level,
        ``max(floor_od, rel * level_od)`` with one (a level of 0 means the calibration
        found nothing to measure: the fixed values apply)."""
        if level_od is None or not level_od > 0:
            return self.threshold_od, self.peak_threshold_od
        return (
            max(self.floor_od, self.threshold_rel * level_od),
            max(self.floor_od, self.peak_rel * level_od),
        )


QUPATH_DEFAULTS = NucleusParams(
    detection="hematoxylin", sigma_um=1.5, peak_threshold_od=0.1, split_neck_ratio=1.0
)
"""QuPath's plain watershed cell detection defaults, for comparison."""


def halo_um(params: NucleusParams = NucleusParams()) -> float:
    """Overlap (µm) each side of a tile that makes its interior tile-independent.

    Sum of the supports of the opening (2 r), the Gaussian (4 sigma), the median, one
    largest nucleus (its diameter, for the distance-transform split) and the cell
    expansion. Clumps of touching nuclei wider than this can still differ. For the learned
    detector, the network's receptive field and stride take the place of the filters.

    Parameters
    ----------
    params : NucleusParams, default NucleusParams()
        Detection parameters (lengths in µm, areas in µm²).

    Returns
    -------
    float
        The halo, µm (about 48 µm for the defaults).
    """
    p = params
    diameter = 2 * math.sqrt(p.max_area_um2 / math.pi)
    if p.detector == "learned":
        from .nucleus_net import MODEL_MPP, RECEPTIVE_RADIUS_PX, STRIDE

        return (RECEPTIVE_RADIUS_PX + STRIDE) * MODEL_MPP + diameter + p.cell_expansion_um
    return (
        2 * p.background_radius_um
        + 4 * p.sigma_um
        + p.median_radius_um
        + diameter
        + p.cell_expansion_um
    )
