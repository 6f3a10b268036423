"""Tissue biomarkers from the cell table: IHC scores (Ki-67 index, H-score, Allred),
marker presets (compartment, thresholds; ATRX loss with its internal controls),
densities, hotspots, nuclear pleomorphism, necrosis and pseudopalisades, region classes,
heterogeneity, and maps to show over the slide; and, from the pixels, area-based
positivity (positive pixel count)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_gbm._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "NOT_APPLICABLE": "ihc",
        "POSITIVE_CLASS_NAMES": "ihc",
        "POSITIVITY_COMPARTMENTS": "ihc",
        "POSITIVITY_STATISTICS": "ihc",
        "PositivityParams": "ihc",
        "allred_score": "ihc",
        "ihc_scores": "ihc",
        "positive_class": "ihc",
        "InternalControlParams": "marker_loss",
        "internal_controls": "marker_loss",
        "loss_summary": "marker_loss",
        "MARKERS": "markers",
        "MarkerPreset": "markers",
        "get_marker": "markers",
        "marker_positivity": "markers",
        "marker_summary": "markers",
        "PositivePixelParams": "positive_pixels",
        "SlidePositivePixels": "positive_pixels",
        "positive_pixel_count": "positive_pixels",
        "positive_pixel_summary": "positive_pixels",
        "slide_positive_pixels": "positive_pixels",
        "GridMaps": "spatial",
        "SpatialParams": "spatial",
        "spatial_biomarkers": "spatial",
        "BiomarkerParams": "whole_slide",
        "REGION_CLASSES": "whole_slide",
        "SlideBiomarkers": "whole_slide",
        "slide_biomarkers": "whole_slide",
        "tile_map": "whole_slide",
    },
)

if TYPE_CHECKING:
    from napari_gbm.biomarkers.ihc import (
        NOT_APPLICABLE,
        POSITIVE_CLASS_NAMES,
        POSITIVITY_COMPARTMENTS,
        POSITIVITY_STATISTICS,
        PositivityParams,
        allred_score,
        ihc_scores,
        positive_class,
    )
    from napari_gbm.biomarkers.marker_loss import (
        InternalControlParams,
        internal_controls,
        loss_summary,
    )
    from napari_gbm.biomarkers.markers import (
        MARKERS,
        MarkerPreset,
        get_marker,
        marker_positivity,
        marker_summary,
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
