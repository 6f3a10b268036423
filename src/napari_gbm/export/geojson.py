"""QuPath GeoJSON of cells (:func:`cells_to_geojson`) and of label outlines
(:func:`labels_to_geojson`).

As QuPath (0.4 and later) writes and reads it (``PathObjectTypeAdapters`` in qupath-core; the
QuPath docs, "Exporting annotations"): a ``FeatureCollection`` of ``Feature`` objects with a
UUID ``id``, a ``Polygon`` (or ``MultiPolygon``) ``geometry``, for cells a
``nucleusGeometry``, and ``properties`` ``objectType`` (``"cell"``, ``"detection"``,
``"annotation"``), ``classification`` ``{"name", "color": [r, g, b]}`` and ``measurements``
(a flat name -> number object; NaN and infinite values are left out, as JSON has no NaN).
The collection carries our metadata as the foreign member ``"napari_gbm"`` (RFC 7946 §6.1).

Coordinates are level-0 pixels with QuPath's origin, the top-left *corner* of the image:
exact outlines come from :mod:`.outlines`, approximations from the cell table from
:mod:`._geometry`; measurements and classes (QuPath's intensity classes for
``positive_class``) from :mod:`._properties`.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from napari_gbm.export._geometry import (
    Geometry,
    cell_ids,
    cell_polygons,
    geometry_metadata,
    nucleus_polygons,
    plan_geometry,
    require_columns,
    rings_json,
)
from napari_gbm.export._properties import class_strings, measurement_columns, measurement_strings
from napari_gbm.export.naming import QUPATH_PREFIX
from napari_gbm.export.outlines import _label_rings
from napari_gbm.export.tables import _export_metadata
from napari_gbm.io import atomic_path


def cells_to_geojson(
    cells: pd.DataFrame,
    path: str | os.PathLike[str] | None = None,
    *,
    outlines: Any = None,
    cell_outlines: Any = None,
    classification: str | None = "positive_class",
    measurements: str | Sequence[str] = "qupath",
    object_type: str = "cell",
    mpp: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    chunk_rows: int = 4096,
) -> dict[str, Any]:
    """The cell table as a QuPath GeoJSON FeatureCollection (see the module docstring).

    Parameters
    ----------
    cells : DataFrame
        A cell table; ``centroid_x_px`` and ``centroid_y_px`` are required, and without
        outlines the nucleus axes and orientation (and, for cells, the equivalent diameter).
    path : path, optional
        Written atomically and streamed chunk by chunk (memory does not grow with the
        table); the return value is then the collection without its features.
    outlines, cell_outlines : LabelOutlines, (labels, (x0, y0), downsample) or dict, optional
        Exact nucleus (cell) outlines, by ``cell_id`` (label values are cell ids; a dict maps
        cell id -> ring or list of rings of level-0 ``(x, y)``). Cells without an outline get
        the approximation; how many did is in the metadata.
    classification : str or None
        Column giving each object's class: ``positive_class`` (QuPath's intensity classes;
        -1 unclassified), any other column (its values as names), or None.
    measurements : "qupath", "ours" or list of str
        All numeric columns under QuPath's names or ours, or just these columns (QuPath
        names). Centroids (QuPath recomputes them) and the class column are not included.
    object_type : "cell" or "detection"
        Cells carry the cell outline as ``geometry`` and the nucleus as ``nucleusGeometry``;
        detections carry the nucleus only.
    mpp : float, optional
        µm per level-0 pixel, needed for the approximations; by default from the centroid
        columns in px and µm.
    metadata : dict, optional
        Stored, with the software version, in the collection's ``"napari_gbm"`` member.
    chunk_rows : int
        Rows formatted at a time.

    Returns
    -------
    dict
        The FeatureCollection (``"type"``, ``"napari_gbm"``, ``"features"``); with ``path``,
        ``"path"`` instead of the features.

    Raises
    ------
    ValueError
        For a ``cells`` that is not a DataFrame, an unknown ``object_type`` or
        ``measurements``, missing columns (centroids, those of the approximations, the
        measurement or class column, ``cell_id`` with outlines), a pixel size that is not
        given and cannot be inferred, malformed outlines, or ``positive_class`` values
        other than -1 to 3.
    """
    if not isinstance(cells, pd.DataFrame):
        raise ValueError(f"cells must be a pandas DataFrame, got {type(cells).__name__}")
    if object_type not in ("cell", "detection"):
        raise ValueError(f"object_type must be 'cell' or 'detection', got {object_type!r}")
    require_columns(cells, ["centroid_x_px", "centroid_y_px"], "a GeoJSON export")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    geo = plan_geometry(cells, outlines, cell_outlines, object_type, mpp)
    columns, names = measurement_columns(cells, measurements, classification)
    classes, class_meta = class_strings(cells, classification)
    header = _export_metadata(
        metadata,
        **geometry_metadata(geo),
        object_type=object_type,
        n_features=len(cells),
        measurements=measurements if isinstance(measurements, str) else "list",
        classification=class_meta,
        mpp=geo.mpp,
        nucleus_outlines=geo.nuclei.n_outlines,
        cell_outlines=geo.cells.n_outlines,
    )
    return _emit(path, header, _cell_features(cells, geo, columns, names, classes, chunk_rows))


def _cell_features(
    cells: pd.DataFrame,
    geo: Geometry,
    columns: list[str],
    names: list[str],
    classes: list[str],
    chunk_rows: int,
) -> Iterator[list[str]]:
    """The cells' Feature texts, ``chunk_rows`` at a time."""
    ids = cell_ids(cells)
    slides = cells["slide_id"].astype(str).tolist() if "slide_id" in cells else [""] * len(cells)
    for lo in range(0, len(cells), chunk_rows):
        part = cells.iloc[lo : lo + chunk_rows]
        rows = slice(lo, lo + len(part))
        pid = ids[rows]
        nucleus = nucleus_polygons(part, pid, rows, geo)
        cell = cell_polygons(part, pid, rows, geo) if geo.object_type == "cell" else None
        yield _feature_strings(
            geo.object_type,
            _feature_ids(slides[rows], pid, geo.object_type),
            nucleus if cell is None else cell,  # detections: the nucleus is the geometry
            None if cell is None else nucleus,
            classes[rows],
            measurement_strings(part[columns], names),
        )


def _feature_strings(
    object_type: str,
    uids: Sequence[str],
    geometry: Sequence[str],
    nucleus_geometry: Sequence[str] | None,
    classes: Sequence[str],
    measurements: Sequence[str],
) -> list[str]:
    """One GeoJSON Feature per object, joined as text from pieces that are JSON already.

    Not dicts through ``json.dumps``: that was measured 3.3x slower on a whole slide
    (200,000 cells x 107 columns, the whole export 50 s against 15 s), and it would print
    float32 values with float64 digits unless converted first. Nothing here needs escaping:
    ids are hex UUIDs, ``object_type`` one of our literals, geometries numbers, and names and
    class members come from ``json.dumps`` (:mod:`._properties`).
    """
    if nucleus_geometry is None:
        geom = [f'"geometry":{g}' for g in geometry]
    else:
        geom = [
            f'"geometry":{g},"nucleusGeometry":{n}'
            for g, n in zip(geometry, nucleus_geometry, strict=True)
        ]
    return [
        f'{{"type":"Feature","id":"{u}",{g},"properties":{{"objectType":"{object_type}"'
        f'{k},"measurements":{{{m}}}}}}}'
        for u, g, k, m in zip(uids, geom, classes, measurements, strict=True)
    ]


def _feature_ids(slides: Sequence[Any], ids: np.ndarray, object_type: str) -> list[str]:
    """Stable UUIDs (version 5 bits kept): per slide and object type a name-based prefix, then
    the cell id in the last 12 hex digits, so a cell gets the same id in every export."""
    ns = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/napari-gbm/" + object_type)
    heads = {s: str(uuid.uuid5(ns, str(s)))[:24] for s in set(slides)}
    return [f"{heads[s]}{int(i) & 0xFFFFFFFFFFFF:012x}" for s, i in zip(slides, ids, strict=True)]


# ------------------------------------------------------------------------------ writing


def _write_collection(fh: IO[str], header: Mapping[str, Any], chunks: Iterator[list[str]]) -> None:
    head = json.dumps(header, ensure_ascii=False, allow_nan=False)
    fh.write('{"type":"FeatureCollection",\n"napari_gbm":' + head + ',\n"features":[')
    sep = "\n"
    for chunk in chunks:
        if chunk:
            fh.write(sep + ",\n".join(chunk))
            sep = ",\n"
    fh.write("\n]}\n")


def _emit(
    path: str | os.PathLike[str] | None, header: dict[str, Any], chunks: Iterator[list[str]]
) -> dict[str, Any]:
    """The collection parsed back (no ``path``), or written atomically to ``path``."""
    if path is None:
        buf = io.StringIO()
        _write_collection(buf, header, chunks)
        return dict(json.loads(buf.getvalue()))
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        _write_collection(fh, header, chunks)
    return {"type": "FeatureCollection", "napari_gbm": header, "path": str(path)}


# ------------------------------------------------------------------------------ labels


def labels_to_geojson(
    labels: np.ndarray,
    path: str | os.PathLike[str] | None = None,
    *,
    offset: tuple[float, float] = (0.0, 0.0),
    downsample: float = 1.0,
    object_type: str = "detection",
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every label of a label image as a QuPath object with its exact outline.

    Parameters
    ----------
    labels : ndarray
        2-D integer label image; 0 (and below) is background.
    path : path, optional
        Written atomically; the return value is then the collection without its features.
    offset, downsample
        Place the image in level-0 pixels (:class:`~napari_gbm.export.outlines.LabelOutlines`).
    object_type : "detection" or "annotation"
        QuPath's object type.
    metadata : dict, optional
        Stored, with the software version, in the collection's ``"napari_gbm"`` member.

    Returns
    -------
    dict
        The FeatureCollection: per label a Polygon (a MultiPolygon for a label in several
        parts) and the measurement ``"napari_gbm: label"``; with ``path``, ``"path"``
        instead of the features.

    Raises
    ------
    ValueError
        For an unknown ``object_type``, an image that is not 2-D integer, or a downsample
        that is not positive.
    """
    if object_type not in ("detection", "annotation"):
        raise ValueError(f"object_type must be 'detection' or 'annotation', got {object_type!r}")
    rings = _label_rings(labels, offset, downsample)
    header = _export_metadata(
        metadata,
        geometry="outlines",
        coordinates="level-0 pixels, origin at the image's top-left corner (QuPath)",
        object_type=object_type,
        n_features=len(rings),
        region={"x0": float(offset[0]), "y0": float(offset[1]), "downsample": float(downsample)},
    )
    labels_ = np.fromiter(rings, dtype=np.int64, count=len(rings))
    uids = _feature_ids([f"{offset}/{downsample}"] * len(rings), labels_, object_type)
    key = json.dumps(QUPATH_PREFIX + "label", ensure_ascii=False) + ":"
    features = _feature_strings(
        object_type,
        uids,
        [rings_json(r) for r in rings.values()],
        None,
        [""] * len(rings),
        [f"{key}{label}" for label in rings],
    )
    return _emit(path, header, iter([features]))
