"""Synthetic glioblastoma whole-slide images with exact ground truth.

``make_synthetic_slide`` writes a pyramidal TIFF (H&E, Ki-67 H-DAB or CD31 H-DAB) that
OpenSlide opens, plus a per-nucleus Parquet table, a region map and a JSON summary (and
for CD31 a per-vessel table), so that tissue detection, cell detection, IHC scoring,
microvessel density and region statistics can be tested end to end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_gbm._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "DAB_THRESHOLDS": "_params",
        "GENERATOR_VERSION": "_params",
        "REGION_NAMES": "_params",
        "STAIN_DAB": "_params",
        "STAIN_E": "_params",
        "STAIN_H": "_params",
        "make_synthetic_cohort": "cohort",
        "SyntheticSlideInfo": "generator",
        "make_synthetic_slide": "generator",
        "level_dimensions": "pyramid",
        "NUCLEI_SCHEMA": "truth",
        "VESSELS_SCHEMA": "vessels",
    },
)

if TYPE_CHECKING:
    from napari_gbm.synthetic._params import (
        DAB_THRESHOLDS,
        GENERATOR_VERSION,
        REGION_NAMES,
        STAIN_DAB,
        STAIN_E,
        STAIN_H,
    )
    from napari_gbm.synthetic.cohort import make_synthetic_cohort
    from napari_gbm.synthetic.generator import SyntheticSlideInfo, make_synthetic_slide
    from napari_gbm.synthetic.pyramid import level_dimensions
    from napari_gbm.synthetic.truth import NUCLEI_SCHEMA
    from napari_gbm.synthetic.vessels import VESSELS_SCHEMA
