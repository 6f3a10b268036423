"""Nucleus and cell detection: stains, per-slide calibration, the tile segmenter and its Numba
kernels, the whole-slide cell run and the cells of one region.

- :mod:`.stain`: optical density, stain vectors, colour deconvolution (QuPath conventions);
- :mod:`.calibration`: what detection needs to know about one slide's staining;
- :mod:`.nucleus_params`: :class:`NucleusParams`, the detection parameters, and the halo they need;
- :mod:`.segment`: nuclei and cells on one RGB tile;
- :mod:`._kernels`: the Numba kernels behind stain and segment;
- :mod:`.nucleus_net`, :mod:`.learned`: the learned detector
  (``NucleusParams(detector="learned")``), its network and its shipped weights;
- :mod:`.cells`: tiles -> nuclei and cells -> features -> one cell table (:class:`CellParams`);
- :mod:`.region`: the cells of one region, with outlines (what the Cells dock runs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_gbm._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "StainVectors": "stain",
        "deconvolve": "stain",
        "optical_density": "stain",
        "SlideCalibration": "calibration",
        "calibrate_slide": "calibration",
        "NucleusParams": "nucleus_params",
        "Segmentation": "segment",
        "segment_nuclei": "segment",
        "CellParams": "cells",
        "analyze_cells": "cells",
        "analyze_region": "region",
    },
)

if TYPE_CHECKING:
    from napari_gbm.detect.calibration import SlideCalibration, calibrate_slide
    from napari_gbm.detect.cells import CellParams, analyze_cells
    from napari_gbm.detect.nucleus_params import NucleusParams
    from napari_gbm.detect.region import analyze_region
    from napari_gbm.detect.segment import Segmentation, segment_nuclei
    from napari_gbm.detect.stain import StainVectors, deconvolve, optical_density
