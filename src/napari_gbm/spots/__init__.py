"""Histology per spatial-transcriptomics spot: the cells under each Visium spot (or Visium
HD bin), summarised as the slide is.

- :mod:`.spaceranger`: Space Ranger's spot table and scale factors, the transform from its
  full-resolution image to the slide, and the checks that the spots lie where they should;
- :mod:`.aggregate`: the cells under each spot (:func:`aggregate_spots`, :class:`SpotTable`);
- :mod:`.run`: one analysis folder's spots (:func:`spots_from_analysis`) and their output
  as Parquet, CSV or AnnData (:func:`write_spots`), what ``napari-gbm spots`` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_gbm._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "POSITION_COLUMNS": "spaceranger",
        "SpotGeometry": "spaceranger",
        "plausibility": "spaceranger",
        "read_positions": "spaceranger",
        "read_scalefactors": "spaceranger",
        "read_transform": "spaceranger",
        "SpotParams": "aggregate",
        "SpotTable": "aggregate",
        "aggregate_spots": "aggregate",
        "assign_cells": "aggregate",
        "feature_units": "aggregate",
        "spots_from_analysis": "run",
        "write_spots": "run",
    },
)

if TYPE_CHECKING:
    from napari_gbm.spots.aggregate import (
        SpotParams,
        SpotTable,
        aggregate_spots,
        assign_cells,
        feature_units,
    )
    from napari_gbm.spots.run import spots_from_analysis, write_spots
    from napari_gbm.spots.spaceranger import (
        POSITION_COLUMNS,
        SpotGeometry,
        plausibility,
        read_positions,
        read_scalefactors,
        read_transform,
    )
