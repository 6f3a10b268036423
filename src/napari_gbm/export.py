"""Exports a pathologist opens elsewhere: tables with our, QuPath's or HistomicsTK's column
names, and QuPath GeoJSON of cells and outlines.

Column names
------------
Other tools' names come from one mapping per tool (:func:`column_names`), applied by renaming,
never by computing anything again. A column the tool has no name for keeps ours behind a
prefix (``"napari_gbm: "`` for QuPath, ``"napari_gbm."`` for HistomicsTK), so every export
renames back exactly (:func:`from_qupath_names`, :func:`from_histomicstk_names`).

- QuPath: the measurement names of QuPath's *Cell detection* command, spelt as in QuPath's
  source (``WatershedCellDetection`` and ``ObjectMeasurements.addShapeStatistics`` in
  qupath-core-processing: ``"Nucleus: " + stain + " OD mean"``, ``sum``, ``std dev``,
  ``max``, ``min``, ``range`` for the nucleus; ``mean``, ``std dev``, ``max``, ``min`` for
  ``Cell:`` and ``Cytoplasm:``; ``Area``, ``Perimeter``, ``Circularity``, ``Max caliper``,
  ``Min caliper``, ``Eccentricity``; ``"Nucleus/Cell area ratio"``), with the µm unit on
  size names as QuPath's measurement tables show them (``"Nucleus: Area µm^2"``,
  ``"Nucleus: Perimeter µm"``, ``"Nucleus: Max caliper µm"``; the 0.2-0.3 sources read
  here stored them without unit, ``"Nucleus: Area"``), ``"Solidity"`` from its *Add shape
  features* command, stains named as QuPath's defaults (``Hematoxylin``, ``Eosin``,
  ``DAB``), ``"Centroid X µm"`` and ``"Image"`` from its measurement tables. Values keep our
  definitions (see :mod:`napari_gbm.features.measure`: e.g. circularity uses scikit-image's
  perimeter, and our centroids refer to pixel centres while QuPath's refer to pixel
  corners, half a pixel apart).
- HistomicsTK: ``compute_nuclei_features`` names (``Identifier.CentroidX``, ``Size.Area``,
  ``Shape.Circularity``, ``Orientation.Orientation``, ``Nucleus.Intensity.Mean``,
  ``Cytoplasm.Intensity.Mean``, ``Nucleus.Haralick.ASM.Mean`` ...), for nucleus features
  only. HistomicsTK measures sizes in pixels; ours are in µm, so sizes carry the unit:
  ``Size.Area_um2``, ``Size.Perimeter_um``, ``Shape.EquivalentDiameter_um``. Intensities are
  optical densities: ``Nucleus.Intensity`` of hematoxylin, ``Cytoplasm.Intensity`` of eosin
  (HistomicsTK's nuclear and cytoplasmic channels in H&E; its cytoplasm is an 8 px ring).

QuPath GeoJSON
--------------
As QuPath (0.4 and later) writes and reads it (``PathObjectTypeAdapters`` in qupath-core; the
QuPath docs, "Exporting annotations"): a ``FeatureCollection`` of ``Feature`` objects with a
UUID ``id``, a ``Polygon`` (or ``MultiPolygon``) ``geometry``, for cells a
``nucleusGeometry``, and ``properties`` ``objectType`` (``"cell"``, ``"detection"``,
``"annotation"``), ``classification`` ``{"name", "color": [r, g, b]}`` and ``measurements``
(a flat name -> number object; NaN and infinite values are left out, as JSON has no NaN).
The collection carries our metadata as the foreign member ``"napari_gbm"`` (RFC 7946 §6.1).

Coordinates are level-0 pixels with QuPath's origin: the top-left *corner* of the image,
so pixel ``(col, row)`` covers ``[col, col + 1] x [row, row + 1]``. The cell table's
``centroid_x_px`` refers to pixel centres: it sits at ``centroid_x_px + 0.5`` here. Rings are
closed, exteriors counter-clockwise by the shoelace sign of the raw ``(x, y)`` numbers
(RFC 7946 §3.1.6; on screen, with y pointing down, they turn clockwise).

Outlines from a label image (:func:`labels_to_polygons`) follow pixel edges exactly: a
polygon's area is its pixel count (times ``downsample²``), holes are filled (as QuPath's
filled cell ROIs), and each 4-connected part is one ring. Without outlines a nucleus is drawn
as its moment ellipse (centroid, major and minor axis, orientation; 24 vertices) and a cell as
a circle of its equivalent diameter, both scaled so that the polygon's area equals the
ellipse's (pi a b / 4).

Class names and default colours of ``positive_class`` are QuPath's standard intensity classes
(``PathClass``: ``"Negative"``, ``"1+"``, ``"2+"``, ``"3+"``, base colours scaled by 1.25).
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from napari_gbm import __version__
from napari_gbm.io import atomic_path, write_csv, write_json, write_parquet

__all__ = [
    "HISTOMICSTK_PREFIX",
    "POSITIVE_CLASSES",
    "QUPATH_PREFIX",
    "LabelOutlines",
    "cells_to_geojson",
    "column_names",
    "export_table",
    "from_histomicstk_names",
    "from_qupath_names",
    "labels_to_geojson",
    "labels_to_polygons",
    "to_histomicstk_names",
    "to_qupath_names",
]

QUPATH_PREFIX = "napari_gbm: "
HISTOMICSTK_PREFIX = "napari_gbm."
NAMINGS = ("napari_gbm", "qupath", "histomicstk")
TABLE_EXTENSIONS = (".csv", ".tsv", ".parquet")

#: positive_class -> (QuPath class name, QuPath's default colour); -1 (not graded) is left
#: unclassified.
POSITIVE_CLASSES: dict[int, tuple[str, tuple[int, int, int]]] = {
    0: ("Negative", (112, 112, 225)),
    1: ("1+", (255, 255, 0)),
    2: ("2+", (255, 187, 62)),
    3: ("3+", (250, 62, 62)),
}
_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34),
            (23, 190, 207)]  # fmt: skip

# ------------------------------------------------------------------------------ names

_COMP = {"nucleus": "Nucleus", "cell": "Cell", "cytoplasm": "Cytoplasm"}
_OURS_STAT = re.compile(r"^(nucleus|cell|cytoplasm)_(.+)_od_(mean|std|min|max|sum|median|range)$")
_QP_STAINS = {"hematoxylin": "Hematoxylin", "eosin": "Eosin", "dab": "DAB"}
_QP_STATS = {"mean": "mean", "std": "std dev", "max": "max", "min": "min", "sum": "sum",
             "range": "range"}  # fmt: skip
_QP_NUCLEUS_ONLY = {"sum", "range"}
_QP_SHAPE = {"area_um2": "Area µm^2", "perimeter_um": "Perimeter µm", "circularity": "Circularity",
             "max_caliper_um": "Max caliper µm", "min_caliper_um": "Min caliper µm",
             "eccentricity": "Eccentricity", "solidity": "Solidity"}  # fmt: skip
_QP_FIXED = {"centroid_x_um": "Centroid X µm", "centroid_y_um": "Centroid Y µm",
             "centroid_x_px": "Centroid X px", "centroid_y_px": "Centroid Y px",
             "nucleus_cell_area_ratio": "Nucleus/Cell area ratio", "slide_id": "Image"}  # fmt: skip
_QP_STAT_RE = re.compile(r"^(Nucleus|Cell|Cytoplasm): (.+) OD (mean|std dev|max|min|sum|range)$")
_QP_SHAPE_RE = re.compile(r"^(Nucleus|Cell): (.+)$")

_HT_FIXED = {"centroid_x_px": "Identifier.CentroidX", "centroid_y_px": "Identifier.CentroidY",
             "nucleus_orientation_rad": "Orientation.Orientation",
             "nucleus_area_um2": "Size.Area_um2", "nucleus_perimeter_um": "Size.Perimeter_um",
             "nucleus_major_axis_um": "Size.MajorAxisLength_um",
             "nucleus_minor_axis_um": "Size.MinorAxisLength_um",
             "nucleus_circularity": "Shape.Circularity",
             "nucleus_eccentricity": "Shape.Eccentricity",
             "nucleus_equivalent_diameter_um": "Shape.EquivalentDiameter_um",
             "nucleus_extent": "Shape.Extent", "nucleus_solidity": "Shape.Solidity"}  # fmt: skip
_HT_INTENSITY = {("nucleus", "hematoxylin"): "Nucleus", ("cytoplasm", "eosin"): "Cytoplasm"}
_HT_STATS = {"min": "Min", "max": "Max", "mean": "Mean", "median": "Median", "std": "Std"}
_HT_HARALICK = {"asm": "ASM", "contrast": "Contrast", "correlation": "Correlation",
                "sum_of_squares": "SumOfSquares", "idm": "IDM", "sum_average": "SumAverage",
                "sum_variance": "SumVariance", "sum_entropy": "SumEntropy", "entropy": "Entropy",
                "difference_variance": "DifferenceVariance",
                "difference_entropy": "DifferenceEntropy", "imc1": "IMC1",
                "imc2": "IMC2"}  # fmt: skip
_HT_AGG = {"mean": "Mean", "range": "Range"}


def _inverse(d: Mapping[Any, Any]) -> dict[Any, Any]:
    return {v: k for k, v in d.items()}


def _qupath_rule(col: str) -> str | None:
    if col in _QP_FIXED:
        return _QP_FIXED[col]
    if m := _OURS_STAT.match(col):
        comp, stain, stat = m.groups()
        if stat in _QP_STATS and (comp == "nucleus" or stat not in _QP_NUCLEUS_ONLY):
            name = _QP_STAINS.get(stain, stain[:1].upper() + stain[1:])
            return f"{_COMP[comp]}: {name} OD {_QP_STATS[stat]}"
        return None
    comp, _, rest = col.partition("_")
    if comp in ("nucleus", "cell") and rest in _QP_SHAPE:
        return f"{_COMP[comp]}: {_QP_SHAPE[rest]}"
    return None


def _qupath_unrule(name: str) -> str | None:
    if name in (fixed := _inverse(_QP_FIXED)):
        return str(fixed[name])
    if m := _QP_STAT_RE.match(name):
        comp, stain, stat = m.groups()
        ours = _inverse(_QP_STAINS).get(stain, stain[:1].lower() + stain[1:])
        return f"{comp.lower()}_{ours}_od_{_inverse(_QP_STATS)[stat]}"
    if (m := _QP_SHAPE_RE.match(name)) and m.group(2) in (shape := _inverse(_QP_SHAPE)):
        return f"{m.group(1).lower()}_{shape[m.group(2)]}"
    return None


def _histomicstk_rule(col: str) -> str | None:
    if col in _HT_FIXED:
        return _HT_FIXED[col]
    if m := _OURS_STAT.match(col):
        comp, stain, stat = m.groups()
        if (comp, stain) in _HT_INTENSITY and stat in _HT_STATS:
            return f"{_HT_INTENSITY[comp, stain]}.Intensity.{_HT_STATS[stat]}"
        return None
    if m := re.match(r"^nucleus_haralick_(.+)_(mean|range)$", col):
        feat, agg = m.groups()
        if feat in _HT_HARALICK:
            return f"Nucleus.Haralick.{_HT_HARALICK[feat]}.{_HT_AGG[agg]}"
    return None


def _histomicstk_unrule(name: str) -> str | None:
    if name in (fixed := _inverse(_HT_FIXED)):
        return str(fixed[name])
    if m := re.match(r"^(Nucleus|Cytoplasm)\.Intensity\.(\w+)$", name):
        key = _inverse(_HT_INTENSITY).get(m.group(1))
        stat = _inverse(_HT_STATS).get(m.group(2))
        return f"{key[0]}_{key[1]}_od_{stat}" if key and stat else None
    if m := re.match(r"^Nucleus\.Haralick\.(\w+)\.(Mean|Range)$", name):
        feat = _inverse(_HT_HARALICK).get(m.group(1))
        return f"nucleus_haralick_{feat}_{m.group(2).lower()}" if feat else None
    return None


_RULES = {
    "qupath": (_qupath_rule, _qupath_unrule, QUPATH_PREFIX),
    "histomicstk": (_histomicstk_rule, _histomicstk_unrule, HISTOMICSTK_PREFIX),
}


def _check_naming(naming: str) -> None:
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {NAMINGS}, got {naming!r}")


def column_names(columns: Sequence[str], naming: str) -> dict[str, str]:
    """Our column name -> the name used by ``naming`` ("napari_gbm", "qupath" or
    "histomicstk"), for each of ``columns``. A column the tool has no name for keeps ours
    behind the tool's prefix, so the mapping can always be reversed."""
    _check_naming(naming)
    if naming == "napari_gbm":
        return {str(c): str(c) for c in columns}
    rule, unrule, prefix = _RULES[naming]
    out = {}
    for col in map(str, columns):
        name = rule(col)
        out[col] = name if name is not None and unrule(name) == col else prefix + col
    return out


def _from_names(df: pd.DataFrame, naming: str) -> pd.DataFrame:
    _, unrule, prefix = _RULES[naming]
    mapping = {}
    for name in map(str, df.columns):
        ours = name[len(prefix) :] if name.startswith(prefix) else unrule(name)
        mapping[name] = ours if ours is not None else name
    return _renamed(df, mapping)


def _renamed(df: pd.DataFrame, mapping: Mapping[str, str]) -> pd.DataFrame:
    new = [mapping.get(str(c), str(c)) for c in df.columns]
    if len(set(new)) != len(new):
        dup = sorted({n for n in new if new.count(n) > 1})
        raise ValueError(f"renaming would give duplicate columns {dup}; drop one of each first")
    out = df.copy(deep=False)
    out.columns = new
    return out


def to_qupath_names(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with QuPath's measurement names (a shallow copy; values untouched)."""
    return _renamed(df, column_names(list(df.columns), "qupath"))


def from_qupath_names(df: pd.DataFrame) -> pd.DataFrame:
    """Inverse of :func:`to_qupath_names`; names it does not know are kept."""
    return _from_names(df, "qupath")


def to_histomicstk_names(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with HistomicsTK's feature names where defined (a shallow copy)."""
    return _renamed(df, column_names(list(df.columns), "histomicstk"))


def from_histomicstk_names(df: pd.DataFrame) -> pd.DataFrame:
    """Inverse of :func:`to_histomicstk_names`; names it does not know are kept."""
    return _from_names(df, "histomicstk")


# ------------------------------------------------------------------------------ tables


def _jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types: numpy scalars and arrays converted, NaN and infinities
    None (JSON has none), anything else its str."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    return json.loads(json.dumps(obj, default=default), parse_constant=lambda _: None)


def _export_metadata(metadata: Mapping[str, Any] | None, **export: Any) -> dict[str, Any]:
    meta = dict(_jsonable(dict(metadata or {})))
    meta.setdefault("software", {"napari_gbm": __version__})
    meta["export"] = _jsonable({"software": {"napari_gbm": __version__}, **export})
    return meta


def export_table(
    df: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    naming: str = "napari_gbm",
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a table (cells, tiles, any frame) as CSV, TSV or Parquet, chosen by extension,
    atomically.

    ``metadata`` (parameters, slide, ...) goes into the Parquet schema metadata under
    ``napari_gbm`` (read it with :func:`napari_gbm.io.read_parquet_metadata`), or for CSV and
    TSV into a sidecar ``<file>.json``; either way with the software version, the naming and
    the exported -> our column names under ``"export"``. In CSV and TSV a text cell that a
    spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` first) gets a leading
    apostrophe (:func:`napari_gbm.io.write_csv`; :func:`napari_gbm.io.read_csv` reads the
    original text back); numbers are written as they are.

    Raises
    ------
    ValueError
        For an unknown extension or naming, or if renaming gives duplicate columns.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in TABLE_EXTENSIONS:
        hint = " (GeoJSON: use cells_to_geojson)" if ext in (".geojson", ".json") else ""
        raise ValueError(
            f"cannot write a table as {ext or 'a file without extension'!r} ({path.name}): "
            f"use one of {', '.join(TABLE_EXTENSIONS)}{hint}"
        )
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"export_table needs a pandas DataFrame, got {type(df).__name__}")
    _check_naming(naming)
    mapping = column_names(list(df.columns), naming)
    out = _renamed(df, mapping)
    meta = _export_metadata(
        metadata, naming=naming, columns={v: k for k, v in mapping.items()}, rows=len(df)
    )
    if ext == ".parquet":
        return write_parquet(out.reset_index(drop=True), path, metadata=meta)
    # Arrow's writer (10x pandas' speed), text cells that a spreadsheet would run as a
    # formula (a slide named "=HYPERLINK(...)") prefixed with an apostrophe
    write_csv(out, path, sep="," if ext == ".csv" else "\t", fast=True)
    write_json(meta, path.with_name(path.name + ".json"))
    return path


# ------------------------------------------------------------------------------ outlines


@dataclass(frozen=True)
class LabelOutlines:
    """A label image placed in the slide: label pixel ``(row, col)`` covers level-0
    ``[x0 + col d, x0 + (col + 1) d] x [y0 + row d, y0 + (row + 1) d]`` with ``d`` the
    downsample (QuPath's corner-origin frame; see the module docstring)."""

    labels: np.ndarray
    offset: tuple[float, float] = (0.0, 0.0)
    downsample: float = 1.0


def _trace_component(mask: np.ndarray) -> np.ndarray:
    """Closed ring along the pixel edges of one 4-connected, hole-free component (``mask``
    padded with a False border), counter-clockwise by the raw shoelace sign, collinear
    vertices dropped. Vertex ``(x, y)`` is a pixel corner of the padded array."""
    r, c = np.nonzero(mask)
    stride = mask.shape[1] + 1
    starts, ends = [], []
    # each boundary edge oriented with the inside on its left in the (x, y) plane taken as
    # drawn on paper (y up): the ring then has a positive shoelace area
    for dr, dc, (sx, sy), (ex, ey) in (
        (-1, 0, (0, 0), (1, 0)),  # top edge, +x
        (0, 1, (1, 0), (1, 1)),  # right edge, +y
        (1, 0, (1, 1), (0, 1)),  # bottom edge, -x
        (0, -1, (0, 1), (0, 0)),  # left edge, -y
    ):
        edge = ~mask[r + dr, c + dc]
        rr, cc = r[edge], c[edge]
        starts.append((rr + sy) * stride + cc + sx)
        ends.append((rr + ey) * stride + cc + ex)
    start, end = np.concatenate(starts), np.concatenate(ends)
    nxt = dict(zip(start.tolist(), end.tolist(), strict=True))
    if len(nxt) != len(start):
        raise RuntimeError("outline tracing met a pinch vertex")  # excluded by construction
    v0 = int(start.min())
    ring = [v0]
    v = nxt[v0]
    while v != v0:
        ring.append(v)
        v = nxt[v]
    ids = np.asarray(ring)
    xy = np.stack([ids % stride, ids // stride], axis=1).astype(np.float64)
    d_in, d_out = xy - np.roll(xy, 1, axis=0), np.roll(xy, -1, axis=0) - xy
    xy = xy[d_in[:, 0] * d_out[:, 1] != d_in[:, 1] * d_out[:, 0]]  # corners only
    return np.vstack([xy, xy[:1]])


def _label_rings(
    labels: np.ndarray, offset: tuple[float, float] = (0.0, 0.0), downsample: float = 1.0
) -> dict[int, list[np.ndarray]]:
    """Every label's outer rings (one per 4-connected part, holes filled), level-0 pixels."""
    from scipy import ndimage

    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"outlines need a 2-D integer label image, got shape {labels.shape} "
            f"and dtype {labels.dtype}"
        )
    if not (math.isfinite(downsample) and downsample > 0):
        raise ValueError(f"downsample must be a positive number, got {downsample}")
    x0, y0 = (float(v) for v in offset)
    index = np.where(labels > 0, labels, 0)
    ids = None
    if labels.size and int(index.max()) > 1 << 22:  # find_objects is O(largest label)
        ids = np.unique(index)
        ids = ids[ids > 0]
        index = np.where(index > 0, np.searchsorted(ids, index) + 1, 0)
    out: dict[int, list[np.ndarray]] = {}
    for slot, sl in enumerate(ndimage.find_objects(index)):
        if sl is None:
            continue
        label = int(ids[slot]) if ids is not None else slot + 1
        crop = np.pad(index[sl] == slot + 1, 1)
        parts, n = ndimage.label(ndimage.binary_fill_holes(crop))
        rings = []
        for i in range(1, n + 1):
            xy = _trace_component(parts == i)
            xy[:, 0] = x0 + (xy[:, 0] - 1 + sl[1].start) * downsample
            xy[:, 1] = y0 + (xy[:, 1] - 1 + sl[0].start) * downsample
            rings.append(xy)
        rings.sort(key=lambda ring: -_signed_area(ring))
        out[label] = rings
    return out


def labels_to_polygons(
    labels: np.ndarray, offset: tuple[float, float] = (0.0, 0.0), downsample: float = 1.0
) -> dict[int, list[tuple[float, float]]]:
    """Exact outlines of a label image: label -> closed ring of ``(x, y)`` level-0 pixels.

    ``offset`` is the level-0 ``(x0, y0)`` of the top-left corner of label pixel (0, 0) and
    ``downsample`` the level-0 pixels per label pixel (see :class:`LabelOutlines`). Rings
    follow pixel edges, counter-clockwise (raw shoelace sign), with holes filled; a label in
    several 4-connected parts gives its largest part here (GeoJSON exports keep all parts as
    a MultiPolygon). The ring's area is the part's pixel count times ``downsample²``.
    """
    return {
        label: [(float(x), float(y)) for x, y in rings[0]]
        for label, rings in _label_rings(labels, offset, downsample).items()
    }


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def _as_rings(value: Any, label: Any) -> list[np.ndarray]:
    """A user outline (one ring or a list of rings of (x, y)) as closed CCW rings."""
    try:
        arr = np.asarray(value, dtype=np.float64)
        rings = [arr] if arr.ndim == 2 else list(arr)
    except ValueError:  # ragged: a list of rings
        rings = [np.asarray(r, dtype=np.float64) for r in value]
    out = []
    for ring in rings:
        if ring.ndim != 2 or ring.shape[1] != 2 or not np.isfinite(ring).all():
            raise ValueError(f"outline of {label!r} is not a finite (N, 2) array of (x, y)")
        if not np.array_equal(ring[0], ring[-1]):
            ring = np.vstack([ring, ring[:1]])
        if len(ring) < 4 or _signed_area(ring) == 0:
            raise ValueError(f"outline of {label!r} has fewer than 3 distinct vertices")
        out.append(ring if _signed_area(ring) > 0 else ring[::-1])
    return out


def _outline_rings(outlines: Any) -> dict[int, list[np.ndarray]]:
    if isinstance(outlines, LabelOutlines):
        return _label_rings(outlines.labels, outlines.offset, outlines.downsample)
    if isinstance(outlines, tuple) and len(outlines) == 3:
        return _label_rings(*outlines)
    if isinstance(outlines, Mapping):
        return {int(k): _as_rings(v, k) for k, v in outlines.items()}
    raise ValueError(
        "outlines must be a LabelOutlines(labels, offset, downsample), a tuple "
        f"(labels, (x0, y0), downsample) or a dict label -> ring, got {type(outlines).__name__}"
    )


# ------------------------------------------------------------------------------ GeoJSON

_ELLIPSE_VERTICES = 24
_COORD_DECIMALS = 2


def _ellipse_rings(
    cx: np.ndarray, cy: np.ndarray, a: np.ndarray, b: np.ndarray, theta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Closed CCW 24-gons of ellipses (semi-axes a, b in px; theta = scikit-image's
    orientation, so the major axis points along (x, y) = (sin theta, cos theta)), scaled so
    each polygon's area is pi a b."""
    n = _ELLIPSE_VERTICES
    t = 2 * np.pi * np.arange(n + 1) / n
    t[-1] = 0.0
    scale = math.sqrt(2 * math.pi / (n * math.sin(2 * math.pi / n)))
    ca, sa = np.cos(t) * scale, np.sin(t) * scale
    s, c = np.sin(theta)[:, None], np.cos(theta)[:, None]
    u, v = a[:, None] * ca, b[:, None] * sa  # along the major, minor axis
    # minor axis (-cos, sin) makes (major, minor) a right-handed basis: counter-clockwise
    return cx[:, None] + u * s - v * c, cy[:, None] + u * c + v * s


def _polygon_strings(x: np.ndarray, y: np.ndarray) -> list[str]:
    """GeoJSON Polygon objects for rows of closed rings x, y (n, k), formatted in C."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n, k = x.shape
    if n == 0:
        return []
    fmt = [pa.array(np.round(v, _COORD_DECIMALS).ravel()).cast(pa.string()) for v in (x, y)]
    vertex = pc.binary_join_element_wise("[", fmt[0], ",", fmt[1], "]", "")
    rings = pc.binary_join(
        pa.ListArray.from_arrays(pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)), vertex),
        ",",
    )
    return [f'{{"type":"Polygon","coordinates":[[{r}]]}}' for r in rings.to_pylist()]


def _rings_json(rings: list[np.ndarray]) -> str:
    polys = [np.round(r, _COORD_DECIMALS).tolist() for r in rings]
    if len(polys) == 1:
        return json.dumps({"type": "Polygon", "coordinates": polys}, separators=(",", ":"))
    return json.dumps(
        {"type": "MultiPolygon", "coordinates": [[p] for p in polys]}, separators=(",", ":")
    )


def _measurement_strings(table: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """One '"name":value,...' string per row, formatted in C; non-finite values left out."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(table) == 0 or len(names) == 0:
        return [""] * len(table)
    keys = [json.dumps(name, ensure_ascii=False) + ":" for name in names]
    values, finite = [], np.ones(len(table), bool)
    for col in table.columns:
        s = table[col]
        if pd.api.types.is_bool_dtype(s.dtype):
            v = s.to_numpy(dtype=np.int8)
        elif pd.api.types.is_integer_dtype(s.dtype) and not s.hasnans:
            v = s.to_numpy()
        else:  # float32 stays float32: it formats with float32's shortest digits
            v = s.to_numpy() if s.dtype == np.float32 else s.to_numpy(np.float64, na_value=np.nan)
            ok = np.isfinite(v)
            finite &= ok
            v = np.where(ok, v, np.nan)
        values.append(pa.array(v, from_pandas=True).cast(pa.string()))
    # rows with every value: one join, keys interleaved (4x faster than joining pairs)
    args: list[Any] = []
    for j, (key, v) in enumerate(zip(keys, values, strict=True)):
        args += ["," + key if j else key, v]
    out = [str(v) for v in pc.binary_join_element_wise(*args, "").to_pylist()]
    if not finite.all():  # rows with missing values: join the present pairs only
        rows = pa.array(np.flatnonzero(~finite))
        pairs = [
            pc.binary_join_element_wise(k, v.take(rows), "")
            for k, v in zip(keys, values, strict=True)
        ]
        joined = pc.binary_join_element_wise(*pairs, ",", null_handling="skip").to_pylist()
        for i, text in zip(rows.to_pylist(), joined, strict=True):
            out[i] = str(text)
    return out


def _numeric_columns(df: pd.DataFrame) -> list[str]:
    return [
        str(c)
        for c in df.columns
        if pd.api.types.is_numeric_dtype(df[c].dtype) or pd.api.types.is_bool_dtype(df[c].dtype)
    ]


def _class_strings(cells: pd.DataFrame, classification: str | None) -> tuple[list[str], Any]:
    """Per-row '"classification": {...}' JSON member (or '') and a description."""
    n = len(cells)
    if classification is None:
        return [""] * n, None
    if classification not in cells.columns:
        if classification == "positive_class":
            return [""] * n, None  # the default, on a table without grades
        raise ValueError(
            f"classification column {classification!r} is not in the table; "
            f"pass one of its columns or classification=None"
        )

    def member(name: str, rgb: tuple[int, int, int]) -> str:
        return ',"classification":' + json.dumps(
            {"name": name, "color": list(rgb)}, ensure_ascii=False, separators=(",", ":")
        )

    col = cells[classification]
    if classification == "positive_class":
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        known = np.isin(values, [-1, 0, 1, 2, 3]) | np.isnan(values)
        if not known.all():
            bad = sorted(set(values[~known].tolist()))[:5]
            raise ValueError(f"positive_class must be -1 (not graded), 0, 1, 2 or 3; found {bad}")
        grades = {k: member(*v) for k, v in POSITIVE_CLASSES.items()}
        strings = [grades.get(int(v), "") if v == v else "" for v in values.tolist()]
        return strings, {"column": classification, "classes": dict(POSITIVE_CLASSES)}
    texts = [None if pd.isna(v) or str(v) == "" else str(v) for v in col.tolist()]
    names = sorted({t for t in texts if t is not None})
    lookup = {name: member(name, _PALETTE[i % len(_PALETTE)]) for i, name in enumerate(names)}
    return [lookup[t] if t is not None else "" for t in texts], {"column": classification}


def _infer_mpp(cells: pd.DataFrame) -> float | None:
    if not {"centroid_x_px", "centroid_x_um"} <= set(cells.columns):
        return None
    px = cells["centroid_x_px"].to_numpy(dtype=np.float64)
    um = cells["centroid_x_um"].to_numpy(dtype=np.float64)
    ok = np.abs(px) > 1
    if not ok.any():
        return None
    ratio = um[ok] / px[ok]
    mpp = float(np.median(ratio))
    if not (mpp > 0 and np.allclose(ratio, mpp, rtol=1e-6)):
        return None
    return mpp


def _require(cells: pd.DataFrame, columns: Sequence[str], why: str) -> None:
    missing = [c for c in columns if c not in cells.columns]
    if missing:
        raise ValueError(
            f"{why} needs the cell-table columns {missing}; the table has "
            f"{list(cells.columns)[:10]}{' ...' if len(cells.columns) > 10 else ''}"
        )


def _semi_axis_px(values: np.ndarray, mpp: float) -> np.ndarray:
    a = values / (2 * mpp)
    return np.where(np.isfinite(a), np.maximum(a, 0.5), 0.5)  # at least half a pixel


def _feature_ids(slides: Sequence[Any], ids: np.ndarray, object_type: str) -> list[str]:
    """Stable UUIDs (version 5 bits kept): per slide and object type a name-based prefix, then
    the cell id in the last 12 hex digits, so a cell gets the same id in every export."""
    ns = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/napari-gbm/" + object_type)
    heads = {s: str(uuid.uuid5(ns, str(s)))[:24] for s in set(slides)}
    return [f"{heads[s]}{int(i) & 0xFFFFFFFFFFFF:012x}" for s, i in zip(slides, ids, strict=True)]


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
    if path is None:
        import io

        buf = io.StringIO()
        _write_collection(buf, header, chunks)
        return dict(json.loads(buf.getvalue()))
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        _write_collection(fh, header, chunks)
    return {"type": "FeatureCollection", "napari_gbm": header, "path": str(path)}


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
    """
    if not isinstance(cells, pd.DataFrame):
        raise ValueError(f"cells must be a pandas DataFrame, got {type(cells).__name__}")
    if object_type not in ("cell", "detection"):
        raise ValueError(f"object_type must be 'cell' or 'detection', got {object_type!r}")
    _require(cells, ["centroid_x_px", "centroid_y_px"], "a GeoJSON export")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    nuclei = _outline_rings(outlines) if outlines is not None else {}
    cell_rings = _outline_rings(cell_outlines) if cell_outlines is not None else {}
    if (nuclei or cell_rings) and "cell_id" not in cells:
        raise ValueError("outlines are matched to cells by cell_id: the table has no cell_id")
    ids = cells["cell_id"].to_numpy() if "cell_id" in cells else np.arange(len(cells))
    slides = cells["slide_id"].astype(str).tolist() if "slide_id" in cells else [""] * len(cells)
    has_nucleus = np.array([int(i) in nuclei for i in ids], bool) if nuclei else None
    has_cell = np.array([int(i) in cell_rings for i in ids], bool) if cell_rings else None
    need_nucleus = has_nucleus is None or not has_nucleus.all()
    need_cell = object_type == "cell" and (has_cell is None or not has_cell.all())
    if need_nucleus:
        _require(
            cells,
            ["nucleus_major_axis_um", "nucleus_minor_axis_um", "nucleus_orientation_rad"],
            "the nucleus ellipse approximation (no outline)",
        )
    if need_cell and "cell_equivalent_diameter_um" not in cells:
        _require(cells, ["cell_area_um2"], "the cell circle approximation (no outline)")
    if (need_nucleus or need_cell) and len(cells):
        mpp = mpp if mpp is not None else _infer_mpp(cells)
        if mpp is None or not (math.isfinite(mpp) and mpp > 0):
            raise ValueError(
                "the ellipse approximation needs the pixel size: pass mpp= (µm per level-0 "
                "pixel) or a table with centroid_x_px and centroid_x_um"
            )

    skip = {"centroid_x_px", "centroid_y_px", "centroid_x_um", "centroid_y_um"}
    if classification is not None:
        skip.add(classification)
    if isinstance(measurements, str):
        if measurements not in ("qupath", "ours"):
            raise ValueError(
                f"measurements must be 'qupath', 'ours' or a list of columns, got {measurements!r}"
            )
        columns = [c for c in _numeric_columns(cells) if c not in skip]
        names = column_names(columns, "qupath" if measurements == "qupath" else "napari_gbm")
    else:
        columns = list(measurements)
        missing = [c for c in columns if c not in cells.columns]
        non_numeric = [c for c in columns if c in cells and c not in _numeric_columns(cells)]
        if missing or non_numeric:
            raise ValueError(
                f"measurement columns not in the table: {missing}; not numeric: {non_numeric}"
            )
        names = column_names(columns, "qupath")
    class_strings, class_meta = _class_strings(cells, classification)
    counts = {
        "nucleus_outlines": int(has_nucleus.sum()) if has_nucleus is not None else 0,
        "cell_outlines": int(has_cell.sum()) if has_cell is not None else 0,
    }
    if not (need_nucleus or need_cell):
        geometry = "outlines"
    elif nuclei or cell_rings:
        geometry = "outlines, ellipse approximation where missing"
    else:
        geometry = "ellipse approximation"

    def described(need: bool, given: bool, approximation: str) -> str:
        return "outline" if not need else ("outline, else " if given else "") + approximation

    header = _export_metadata(
        metadata,
        geometry=geometry,
        nucleus_geometry=described(
            need_nucleus, bool(nuclei), "ellipse of the moment axes, area pi/4 major minor"
        ),
        cell_geometry=(
            None
            if object_type == "detection"
            else described(need_cell, bool(cell_rings), "circle of the equivalent diameter")
        ),
        coordinates="level-0 pixels, origin at the image's top-left corner (QuPath); "
        "x = centroid_x_px + 0.5 at a cell's centroid",
        object_type=object_type,
        n_features=len(cells),
        measurements=measurements if isinstance(measurements, str) else "list",
        classification=class_meta,
        mpp=mpp,
        **counts,
    )

    def chunks() -> Iterator[list[str]]:
        for lo in range(0, len(cells), chunk_rows):
            part = cells.iloc[lo : lo + chunk_rows]
            sl = slice(lo, lo + len(part))
            cx = part["centroid_x_px"].to_numpy(dtype=np.float64) + 0.5
            cy = part["centroid_y_px"].to_numpy(dtype=np.float64) + 0.5
            pid = ids[sl]
            nucleus = [""] * len(part)
            if need_nucleus:
                assert mpp is not None
                theta = part["nucleus_orientation_rad"].to_numpy(dtype=np.float64)
                x, y = _ellipse_rings(
                    cx,
                    cy,
                    _semi_axis_px(part["nucleus_major_axis_um"].to_numpy(np.float64), mpp),
                    _semi_axis_px(part["nucleus_minor_axis_um"].to_numpy(np.float64), mpp),
                    np.nan_to_num(theta),
                )
                nucleus = _polygon_strings(x, y)
            if has_nucleus is not None:
                for j in np.flatnonzero(has_nucleus[sl]):
                    nucleus[j] = _rings_json(nuclei[int(pid[j])])
            cell = [""] * len(part)
            if need_cell:
                assert mpp is not None
                if "cell_equivalent_diameter_um" in part:
                    d = part["cell_equivalent_diameter_um"].to_numpy(np.float64)
                else:
                    d = np.sqrt(4 * part["cell_area_um2"].to_numpy(np.float64) / np.pi)
                r = _semi_axis_px(d, mpp)
                cell = _polygon_strings(*_ellipse_rings(cx, cy, r, r, np.zeros_like(r)))
            if has_cell is not None:
                for j in np.flatnonzero(has_cell[sl]):
                    cell[j] = _rings_json(cell_rings[int(pid[j])])
            meas = _measurement_strings(part[columns], [names[c] for c in columns])
            uids = _feature_ids(slides[sl], pid, object_type)
            cls = class_strings[sl]
            if object_type == "cell":
                geom = [
                    f'"geometry":{c},"nucleusGeometry":{n}'
                    for c, n in zip(cell, nucleus, strict=True)
                ]
            else:
                geom = [f'"geometry":{n}' for n in nucleus]
            yield [
                f'{{"type":"Feature","id":"{u}",{g},"properties":{{"objectType":"{object_type}"'
                f'{k},"measurements":{{{m}}}}}}}'
                for u, g, k, m in zip(uids, geom, cls, meas, strict=True)
            ]

    return _emit(path, header, chunks())


def labels_to_geojson(
    labels: np.ndarray,
    path: str | os.PathLike[str] | None = None,
    *,
    offset: tuple[float, float] = (0.0, 0.0),
    downsample: float = 1.0,
    object_type: str = "detection",
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every label of a label image as a QuPath object with its exact outline (Polygon, or
    MultiPolygon for a label in several parts) and the measurement
    ``"napari_gbm: label"``. ``offset`` and ``downsample`` place the image in level-0
    pixels (:class:`LabelOutlines`)."""
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
    features = [
        f'{{"type":"Feature","id":"{u}","geometry":{_rings_json(r)},'
        f'"properties":{{"objectType":"{object_type}",'
        f'"measurements":{{"{QUPATH_PREFIX}label":{label}}}}}}}'
        for u, (label, r) in zip(uids, rings.items(), strict=True)
    ]
    return _emit(path, header, iter([features]))
