"""napari-gbm: glioblastoma tissue biomarkers from whole-slide images.

The public API, importable from the package root (each name loads its module on first use,
so ``import napari_gbm`` stays light for command-line tools and dask workers, and never loads
napari or Qt):

- slides: :class:`Slide`, :class:`SlideError`, :class:`NoTissueError`, :func:`tile_slide`;
- the slide pipeline: :func:`analyze_slide` with :class:`AnalyzeParams`, :func:`analyze_cells`
  with :class:`CellParams`, :func:`analyze_region`, :func:`measure_cells`,
  :func:`slide_biomarkers`;
- cohorts and patients: :func:`run_cohort`, :func:`run_stratify`;
- accuracy on human annotations: :func:`evaluate_dataset`;
- test data: :func:`make_synthetic_slide`.

docs/ARCHITECTURE.md maps the packages behind these names.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from napari_gbm._lazy import attach

try:
    __version__ = version("napari-gbm")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

__getattr__, __dir__, _public = attach(
    __name__,
    {
        "Slide": "wsi.slide",
        "SlideError": "wsi.slide",
        "NoTissueError": "pipeline",
        "tile_slide": "pipeline",
        "analyze_slide": "pipeline",
        "AnalyzeParams": "pipeline",
        "analyze_cells": "detect.cells",
        "CellParams": "detect.cells",
        "analyze_region": "detect.region",
        "measure_cells": "features.measure",
        "slide_biomarkers": "biomarkers.whole_slide",
        "run_cohort": "cohort",
        "run_stratify": "survival.stratify",
        "evaluate_dataset": "evaluation.evaluate",
        "make_synthetic_slide": "synthetic.generator",
    },
)
__all__ = [*_public, "__version__"]

if TYPE_CHECKING:
    from napari_gbm.biomarkers.whole_slide import slide_biomarkers
    from napari_gbm.cohort import run_cohort
    from napari_gbm.detect.cells import CellParams, analyze_cells
    from napari_gbm.detect.region import analyze_region
    from napari_gbm.evaluation.evaluate import evaluate_dataset
    from napari_gbm.features.measure import measure_cells
    from napari_gbm.pipeline import AnalyzeParams, NoTissueError, analyze_slide, tile_slide
    from napari_gbm.survival.stratify import run_stratify
    from napari_gbm.synthetic.generator import make_synthetic_slide
    from napari_gbm.wsi.slide import Slide, SlideError
