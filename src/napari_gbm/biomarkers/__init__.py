"""Tissue biomarkers from the cell table: IHC scores (Ki-67 index, H-score, Allred),
densities, hotspots, nuclear pleomorphism, necrosis and pseudopalisades, region classes,
heterogeneity, and maps to show over the slide; and, from the pixels, area-based
positivity (positive pixel count)."""

from napari_gbm.biomarkers.ihc import (
    NOT_APPLICABLE,
    POSITIVE_CLASS_NAMES,
    PositivityParams,
    allred_score,
    ihc_scores,
    positive_class,
)
from napari_gbm.biomarkers.positive_pixels import (
    PositivePixelParams,
    SlidePositivePixels,
    positive_pixel_count,
    positive_pixel_summary,
    slide_positive_pixels,
)
from napari_gbm.biomarkers.spatial import GridMaps, SpatialParams, spatial_biomarkers
from napari_gbm.biomarkers.whole_slide import (
    REGION_CLASSES,
    BiomarkerParams,
    SlideBiomarkers,
    slide_biomarkers,
    tile_map,
)

__all__ = [
    "NOT_APPLICABLE",
    "POSITIVE_CLASS_NAMES",
    "REGION_CLASSES",
    "BiomarkerParams",
    "GridMaps",
    "PositivePixelParams",
    "PositivityParams",
    "SlideBiomarkers",
    "SlidePositivePixels",
    "SpatialParams",
    "allred_score",
    "ihc_scores",
    "positive_class",
    "positive_pixel_count",
    "positive_pixel_summary",
    "slide_biomarkers",
    "slide_positive_pixels",
    "spatial_biomarkers",
    "tile_map",
]
