"""The polygons of a cell-table export: exact outlines where given (:mod:`.outlines`), else
approximations from the table, formatted as GeoJSON geometry text.

Without an outline a nucleus is drawn as its moment ellipse (centroid, major and minor axis,
orientation; 24 vertices) and a cell as a circle of its equivalent diameter, both scaled so
that the polygon's area equals the ellipse's (pi a b / 4). The cell table's ``centroid_x_px``
refers to pixel centres and coordinates here to pixel corners (QuPath): a centroid sits at
``centroid_x_px + 0.5``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from napari_gbm.export.outlines import _outline_rings

NUCLEUS_AXES = ["nucleus_major_axis_um", "nucleus_minor_axis_um", "nucleus_orientation_rad"]
ELLIPSE_VERTICES = 24
COORD_DECIMALS = 2


@dataclass(frozen=True)
class Shapes:
    """Where one kind of polygon (nucleus or cell) comes from, row by row."""

    rings: dict[int, list[np.ndarray]]  # outlines by cell id
    given: np.ndarray | None  # per row: has an outline; None without outlines
    approximate: bool  # some rows are drawn by the approximation

    @property
    def n_outlines(self) -> int:
        return int(self.given.sum()) if self.given is not None else 0


@dataclass(frozen=True)
class Geometry:
    """How a cell table's nuclei and cells are drawn."""

    object_type: str  # "cell" or "detection"
    nuclei: Shapes
    cells: Shapes
    mpp: float | None  # µm per level-0 pixel, for the approximations


def cell_ids(cells: pd.DataFrame) -> np.ndarray:
    """The table's ``cell_id`` (its row numbers without one)."""
    return cells["cell_id"].to_numpy() if "cell_id" in cells else np.arange(len(cells))


def require_columns(cells: pd.DataFrame, columns: Sequence[str], why: str) -> None:
    """Raise ValueError naming the ``columns`` that ``cells`` lacks for ``why``."""
    missing = [c for c in columns if c not in cells.columns]
    if missing:
        raise ValueError(
            f"{why} needs the cell-table columns {missing}; the table has "
            f"{list(cells.columns)[:10]}{' ...' if len(cells.columns) > 10 else ''}"
        )


def _shapes(outlines: Any, ids: np.ndarray, wanted: bool) -> Shapes:
    rings = _outline_rings(outlines) if outlines is not None else {}
    given = np.array([int(i) in rings for i in ids], bool) if rings else None
    return Shapes(rings, given, wanted and (given is None or not given.all()))


def plan_geometry(
    cells: pd.DataFrame, outlines: Any, cell_outlines: Any, object_type: str, mpp: float | None
) -> Geometry:
    """Outlines by row, the columns the approximations need, and the pixel size
    (``mpp``, else inferred from the centroid columns); ValueError where one is missing."""
    ids = cell_ids(cells)
    nuclei = _shapes(outlines, ids, True)
    cell = _shapes(cell_outlines, ids, object_type == "cell")
    if (nuclei.rings or cell.rings) and "cell_id" not in cells:
        raise ValueError("outlines are matched to cells by cell_id: the table has no cell_id")
    if nuclei.approximate:
        require_columns(cells, NUCLEUS_AXES, "the nucleus ellipse approximation (no outline)")
    if cell.approximate and "cell_equivalent_diameter_um" not in cells:
        require_columns(cells, ["cell_area_um2"], "the cell circle approximation (no outline)")
    if (nuclei.approximate or cell.approximate) and len(cells):
        mpp = mpp if mpp is not None else _infer_mpp(cells)
        if mpp is None or not (math.isfinite(mpp) and mpp > 0):
            raise ValueError(
                "the ellipse approximation needs the pixel size: pass mpp= (µm per level-0 "
                "pixel) or a table with centroid_x_px and centroid_x_um"
            )
    return Geometry(object_type, nuclei, cell, mpp)


def geometry_metadata(geo: Geometry) -> dict[str, Any]:
    """How the geometries were drawn, for the collection's metadata."""

    def described(shapes: Shapes, approximation: str) -> str:
        if not shapes.approximate:
            return "outline"
        return ("outline, else " if shapes.rings else "") + approximation

    if not (geo.nuclei.approximate or geo.cells.approximate):
        geometry = "outlines"
    elif geo.nuclei.rings or geo.cells.rings:
        geometry = "outlines, ellipse approximation where missing"
    else:
        geometry = "ellipse approximation"
    return {
        "geometry": geometry,
        "nucleus_geometry": described(
            geo.nuclei, "ellipse of the moment axes, area pi/4 major minor"
        ),
        "cell_geometry": (
            None
            if geo.object_type == "detection"
            else described(geo.cells, "circle of the equivalent diameter")
        ),
        "coordinates": "level-0 pixels, origin at the image's top-left corner (QuPath); "
        "x = centroid_x_px + 0.5 at a cell's centroid",
    }


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


def nucleus_polygons(part: pd.DataFrame, ids: np.ndarray, rows: slice, geo: Geometry) -> list[str]:
    """GeoJSON geometry of each row's nucleus (rows ``rows`` of the table, ids ``ids``):
    its outline, else its moment ellipse."""
    polygons = [""] * len(part)
    if geo.nuclei.approximate:
        assert geo.mpp is not None
        a = _semi_axis_px(part["nucleus_major_axis_um"].to_numpy(np.float64), geo.mpp)
        b = _semi_axis_px(part["nucleus_minor_axis_um"].to_numpy(np.float64), geo.mpp)
        theta = np.nan_to_num(part["nucleus_orientation_rad"].to_numpy(dtype=np.float64))
        polygons = polygon_strings(*_ellipse_rings(*_centroids(part), a, b, theta))
    return _outlined(polygons, geo.nuclei, ids, rows)


def cell_polygons(part: pd.DataFrame, ids: np.ndarray, rows: slice, geo: Geometry) -> list[str]:
    """GeoJSON geometry of each row's cell: its outline, else the circle of its equivalent
    diameter (from the area without one)."""
    polygons = [""] * len(part)
    if geo.cells.approximate:
        assert geo.mpp is not None
        if "cell_equivalent_diameter_um" in part:
            d = part["cell_equivalent_diameter_um"].to_numpy(np.float64)
        else:
            d = np.sqrt(4 * part["cell_area_um2"].to_numpy(np.float64) / np.pi)
        r = _semi_axis_px(d, geo.mpp)
        polygons = polygon_strings(*_ellipse_rings(*_centroids(part), r, r, np.zeros_like(r)))
    return _outlined(polygons, geo.cells, ids, rows)


def _centroids(part: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Centroids in QuPath's corner-origin frame: pixel centres are at + 0.5."""
    cx = part["centroid_x_px"].to_numpy(dtype=np.float64) + 0.5
    cy = part["centroid_y_px"].to_numpy(dtype=np.float64) + 0.5
    return cx, cy


def _outlined(polygons: list[str], shapes: Shapes, ids: np.ndarray, rows: slice) -> list[str]:
    """``polygons`` with each row that has an outline drawn by it."""
    if shapes.given is not None:
        for j in np.flatnonzero(shapes.given[rows]):
            polygons[j] = rings_json(shapes.rings[int(ids[j])])
    return polygons


def _semi_axis_px(values: np.ndarray, mpp: float) -> np.ndarray:
    a = values / (2 * mpp)
    return np.where(np.isfinite(a), np.maximum(a, 0.5), 0.5)  # at least half a pixel


def _ellipse_rings(
    cx: np.ndarray, cy: np.ndarray, a: np.ndarray, b: np.ndarray, theta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Closed CCW 24-gons of ellipses (semi-axes a, b in px; theta = scikit-image's
    orientation, so the major axis points along (x, y) = (sin theta, cos theta)), scaled so
    each polygon's area is pi a b."""
    n = ELLIPSE_VERTICES
    t = 2 * np.pi * np.arange(n + 1) / n
    t[-1] = 0.0
    scale = math.sqrt(2 * math.pi / (n * math.sin(2 * math.pi / n)))
    ca, sa = np.cos(t) * scale, np.sin(t) * scale
    s, c = np.sin(theta)[:, None], np.cos(theta)[:, None]
    u, v = a[:, None] * ca, b[:, None] * sa  # along the major, minor axis
    # minor axis (-cos, sin) makes (major, minor) a right-handed basis: counter-clockwise
    return cx[:, None] + u * s - v * c, cy[:, None] + u * c + v * s


def polygon_strings(x: np.ndarray, y: np.ndarray) -> list[str]:
    """GeoJSON Polygon objects for rows of closed rings x, y (n, k), formatted in C."""
    n, k = x.shape
    if n == 0:
        return []
    fmt = [pa.array(np.round(v, COORD_DECIMALS).ravel()).cast(pa.string()) for v in (x, y)]
    vertex = pc.binary_join_element_wise("[", fmt[0], ",", fmt[1], "]", "")
    rings = pc.binary_join(
        pa.ListArray.from_arrays(pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)), vertex),
        ",",
    )
    return [f'{{"type":"Polygon","coordinates":[[{r}]]}}' for r in rings.to_pylist()]


def rings_json(rings: list[np.ndarray]) -> str:
    """GeoJSON Polygon of one ring, MultiPolygon of several."""
    polys = [np.round(r, COORD_DECIMALS).tolist() for r in rings]
    if len(polys) == 1:
        return json.dumps({"type": "Polygon", "coordinates": polys}, separators=(",", ":"))
    return json.dumps(
        {"type": "MultiPolygon", "coordinates": [[p] for p in polys]}, separators=(",", ":")
    )
