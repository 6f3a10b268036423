"""napari-gbm: glioblastoma tissue biomarkers from whole-slide images.

The package root imports only the core (no napari, no Qt), so command-line tools and dask
workers stay light.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-gbm")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

from napari_gbm.slide import Slide, SlideError

__all__ = ["Slide", "SlideError", "__version__"]
