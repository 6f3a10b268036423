"""Exports a pathologist opens elsewhere: tables with our, QuPath's or HistomicsTK's column
names, QuPath GeoJSON of cells and outlines, and cells as AnnData for the scverse tools.

- :mod:`.naming`: our, QuPath's and HistomicsTK's column names, one reversible mapping each;
- :mod:`.tables`: :func:`export_table` to CSV, TSV or Parquet, with the export metadata;
- :mod:`.outlines`: exact label outlines along pixel edges (:class:`LabelOutlines`);
- :mod:`.geojson`: QuPath GeoJSON of cells (:func:`cells_to_geojson`) and label outlines;
- :mod:`._geometry`: the cell polygons, outlines or ellipse approximations, as GeoJSON text;
- :mod:`._properties`: measurements and classes of a GeoJSON feature as JSON text;
- :mod:`.formats`: one cell table in a format chosen by name (:func:`export_cells`);
- :mod:`.folders`: analysis and cohort folders (:func:`open_results`) exported whole
  (:func:`export_results`), what ``napari-gbm export`` runs;
- :mod:`.anndata`: AnnData ``.h5ad`` files (:func:`write_h5ad`) and cells as AnnData
  (:func:`write_cells_h5ad`), written with h5py by anndata's on-disk format spec;
- :mod:`._h5ad`: the elements of that format (arrays, dataframes, categoricals, ``uns``);
- :mod:`.spatialdata`: cells, nucleus shapes and the slide image as a SpatialData store
  (:func:`write_cells_spatialdata`; the optional extra ``napari-gbm[spatialdata]``);
- :mod:`.vessels`: vessels and microvascular-proliferation foci as QuPath GeoJSON
  (:func:`vessels_to_geojson`), written beside a slide's cells by a GeoJSON export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_gbm._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "QUPATH_PREFIX": "naming",
        "HISTOMICSTK_PREFIX": "naming",
        "column_names": "naming",
        "to_qupath_names": "naming",
        "from_qupath_names": "naming",
        "to_histomicstk_names": "naming",
        "from_histomicstk_names": "naming",
        "export_table": "tables",
        "LabelOutlines": "outlines",
        "labels_to_polygons": "outlines",
        "POSITIVE_CLASSES": "_properties",
        "cells_to_geojson": "geojson",
        "labels_to_geojson": "geojson",
        "EXPORT_FORMATS": "formats",
        "export_cells": "formats",
        "AnalysisFolder": "folders",
        "CohortFolder": "folders",
        "ExportResult": "folders",
        "export_results": "folders",
        "open_results": "folders",
        "plan_export": "folders",
        "H5AD_ENCODINGS": "anndata",
        "feature_unit": "anndata",
        "read_analysis_for_anndata": "anndata",
        "write_cells_h5ad": "anndata",
        "write_h5ad": "anndata",
        "cells_to_anndata": "anndata",
        "write_cells_spatialdata": "spatialdata",
        "vessels_to_geojson": "vessels",
    },
)

if TYPE_CHECKING:
    from napari_gbm.export._properties import POSITIVE_CLASSES
    from napari_gbm.export.anndata import (
        H5AD_ENCODINGS,
        cells_to_anndata,
        feature_unit,
        read_analysis_for_anndata,
        write_cells_h5ad,
        write_h5ad,
    )
    from napari_gbm.export.folders import (
        AnalysisFolder,
        CohortFolder,
        ExportResult,
        export_results,
        open_results,
        plan_export,
    )
    from napari_gbm.export.formats import EXPORT_FORMATS, export_cells
    from napari_gbm.export.geojson import cells_to_geojson, labels_to_geojson
    from napari_gbm.export.naming import (
        HISTOMICSTK_PREFIX,
        QUPATH_PREFIX,
        column_names,
        from_histomicstk_names,
        from_qupath_names,
        to_histomicstk_names,
        to_qupath_names,
    )
    from napari_gbm.export.outlines import LabelOutlines, labels_to_polygons
    from napari_gbm.export.spatialdata import write_cells_spatialdata
    from napari_gbm.export.tables import export_table
    from napari_gbm.export.vessels import vessels_to_geojson
