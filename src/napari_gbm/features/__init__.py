"""Per-object features of label images: morphology, intensity and cell compartments.

Each name loads its module on first use, so importing the package does not compile or load
numba.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_gbm._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {"measure_cells": "measure", "measure_compartments": "compartments"},
)

if TYPE_CHECKING:
    from napari_gbm.features.compartments import measure_compartments
    from napari_gbm.features.measure import measure_cells
