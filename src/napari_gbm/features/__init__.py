"""Per-object features of label images: morphology, intensity and cell compartments.

Import the functions from their modules (``napari_gbm.features.measure`` etc.); this
package module re-exports them lazily so importing it does not compile or load numba.
"""

from __future__ import annotations

from typing import Any

__all__ = ["measure_cells", "measure_compartments"]


def __getattr__(name: str) -> Any:
    # numba (and its JIT cache) load on first use, not when the package is imported
    if name == "measure_cells":
        from napari_gbm.features.measure import measure_cells

        return measure_cells
    if name == "measure_compartments":
        from napari_gbm.features.compartments import measure_compartments

        return measure_compartments
    raise AttributeError(f"module 'napari_gbm.features' has no attribute {name!r}")
