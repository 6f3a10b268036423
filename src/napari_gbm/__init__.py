"""napari-gbm: glioblastoma tissue biomarkers from whole-slide images.

The package root imports only the core (no napari, no Qt), so command-line tools and dask
workers stay light.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-gbm")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

from typing import Any

from napari_gbm.slide import Slide, SlideError

__all__ = ["Slide", "SlideError", "__version__", "measure_cells"]


def __getattr__(name: str) -> Any:
    # measure_cells pulls in numba: imported on first use, not with the package
    if name == "measure_cells":
        from napari_gbm.features.measure import measure_cells

        return measure_cells
    raise AttributeError(f"module 'napari_gbm' has no attribute {name!r}")
