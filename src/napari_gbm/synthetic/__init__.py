"""Synthetic glioblastoma whole-slide images with exact ground truth.

``make_synthetic_slide`` writes a pyramidal TIFF (H&E or Ki-67 H-DAB) that OpenSlide
opens, plus a per-nucleus Parquet table, a region map and a JSON summary, so that tissue
detection, cell detection, IHC scoring and region statistics can be tested end to end.
"""

from ._params import (
    DAB_THRESHOLDS,
    GENERATOR_VERSION,
    REGION_NAMES,
    STAIN_DAB,
    STAIN_E,
    STAIN_H,
)
from .cohort import make_synthetic_cohort as make_synthetic_cohort
from .generator import SyntheticSlideInfo, make_synthetic_slide
from .pyramid import level_dimensions
from .truth import NUCLEI_SCHEMA

__all__ = [
    "DAB_THRESHOLDS",
    "GENERATOR_VERSION",
    "NUCLEI_SCHEMA",
    "REGION_NAMES",
    "STAIN_DAB",
    "STAIN_E",
    "STAIN_H",
    "SyntheticSlideInfo",
    "level_dimensions",
    "make_synthetic_slide",
]
