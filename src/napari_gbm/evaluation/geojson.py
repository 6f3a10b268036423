"""Nucleus annotations from a QuPath GeoJSON export.

Accepted: a ``FeatureCollection``, a list of features, or one feature. Per feature:

- ``Point`` / ``MultiPoint`` geometries are nucleus centres;
- ``Polygon`` / ``MultiPolygon`` geometries are nuclei: the centre is the (area-weighted)
  polygon centroid, holes subtracted, and the polygons are rasterised into an instance
  label image (one instance per feature; a later feature overwrites an earlier one where
  they overlap). A QuPath *cell* carries its nucleus in ``nucleusGeometry``, which is used
  instead of the cell outline;
- other geometries (lines) are ignored.

Class (``properties.classification.name``, or ``properties.classification`` as a string,
or ``properties.name``): ``Positive``, ``1+``, ``2+``, ``3+`` are positive, ``Negative``
negative, anything else (or none) not graded. A derived class such as
``Tumor: Positive`` is read by its last part.

Coordinates: QuPath's are continuous, pixel ``i`` spanning ``[i, i + 1)``; they are
shifted by -0.5 into the pixel-index convention of the points files (a point at the
centre of pixel ``i`` has coordinate ``i``), so a polygon covers the pixels whose centres
it contains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from skimage.draw import polygon as draw_polygon

__all__ = ["GeoJsonNuclei", "read_qupath_geojson"]

POSITIVE_CLASSES = frozenset({"positive", "1+", "2+", "3+"})
NEGATIVE_CLASSES = frozenset({"negative"})


@dataclass(frozen=True)
class GeoJsonNuclei:
    """Nuclei read from a QuPath GeoJSON file.

    Attributes
    ----------
    x, y : ndarray of float64, shape (n,)
        Nucleus centres in pixel-index coordinates (the centre of pixel ``i`` is ``i``).
    positive : ndarray of int8, shape (n,), or None
        1 positive, 0 negative, -1 not graded; None when no feature has a known class.
    labels : ndarray of int32, shape (height, width), or None
        Instance label image of the polygons (0 = background); None when there are none.
    """

    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    positive: npt.NDArray[np.int8] | None
    labels: npt.NDArray[np.int32] | None


def _class_of(props: dict[str, Any]) -> int:
    cls = props.get("classification")
    name = cls.get("name") if isinstance(cls, dict) else cls
    if name is None:
        name = props.get("name")
    if not isinstance(name, str):
        return -1
    name = name.split(":")[-1].strip().lower()
    if name in POSITIVE_CLASSES:
        return 1
    if name in NEGATIVE_CLASSES:
        return 0
    return -1


def _ring_moments(ring: np.ndarray) -> tuple[float, float, float]:
    """Signed area and first moments (area·cx, area·cy) of a closed ring (shoelace)."""
    x, y = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    a = cross.sum() / 2.0
    return float(a), float(((x + x1) * cross).sum() / 6.0), float(((y + y1) * cross).sum() / 6.0)


def _polygon_parts(geom: dict[str, Any]) -> list[list[np.ndarray]]:
    """The polygons of a Polygon / MultiPolygon as lists of rings (shifted -0.5)."""
    coords = geom.get("coordinates") or []
    polys = [coords] if geom["type"] == "Polygon" else coords
    out = []
    for poly in polys:
        rings = [np.asarray(r, dtype=np.float64).reshape(-1, 2) - 0.5 for r in poly if len(r)]
        if rings and len(rings[0]) >= 3:
            out.append(rings)
    return out


def _centroid(parts: list[list[np.ndarray]]) -> tuple[float, float] | None:
    area = mx = my = 0.0
    for rings in parts:
        for k, ring in enumerate(rings):
            a, ax, ay = _ring_moments(ring)
            # the outer ring adds its absolute area, holes subtract theirs
            sign = (1.0 if k == 0 else -1.0) * (1.0 if a >= 0 else -1.0)
            area += sign * a
            mx += sign * ax
            my += sign * ay
    if abs(area) < 1e-12:
        # degenerate polygon: mean of the outer vertices
        pts = np.concatenate([rings[0] for rings in parts])
        return (float(pts[:, 0].mean()), float(pts[:, 1].mean())) if len(pts) else None
    return mx / area, my / area


def _features(data: Any, path: Path) -> list[dict[str, Any]]:
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        data = data.get("features", [])
    elif isinstance(data, dict) and data.get("type") == "Feature":
        data = [data]
    if not isinstance(data, list):
        raise ValueError(
            f"{path}: not a GeoJSON FeatureCollection or list of features (QuPath: "
            "File > Export objects as GeoJSON)"
        )
    return [f for f in data if isinstance(f, dict)]


def read_qupath_geojson(path: str | Path, shape: tuple[int, int]) -> GeoJsonNuclei:
    """Read nuclei from a QuPath GeoJSON file (see the module docstring).

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.geojson`` file.
    shape : tuple of int
        ``(height, width)`` of the image in pixels, for the label image.

    Returns
    -------
    GeoJsonNuclei
        Centres, classes and the polygons' label image.

    Raises
    ------
    ValueError
        If the file cannot be read or parsed as JSON, or holds no FeatureCollection, feature
        or list of features.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read GeoJSON ({exc})") from None
    xs: list[float] = []
    ys: list[float] = []
    classes: list[int] = []
    labels = np.zeros(shape, np.int32)
    n_poly = 0
    for feat in _features(data, path):
        props = feat.get("properties") or {}
        geom = feat.get("nucleusGeometry") or feat.get("geometry") or {}
        kind = geom.get("type")
        cls = _class_of(props)
        if kind in ("Point", "MultiPoint"):
            pts = np.asarray(geom.get("coordinates", []), dtype=np.float64).reshape(-1, 2) - 0.5
            for px, py in pts:
                xs.append(float(px))
                ys.append(float(py))
                classes.append(cls)
        elif kind in ("Polygon", "MultiPolygon"):
            parts = _polygon_parts(geom)
            c = _centroid(parts) if parts else None
            if c is None:
                continue
            n_poly += 1
            xs.append(c[0])
            ys.append(c[1])
            classes.append(cls)
            for rings in parts:
                rr, cc = draw_polygon(rings[0][:, 1], rings[0][:, 0], shape)
                labels[rr, cc] = n_poly
                for hole in rings[1:]:  # a hole becomes background
                    hr, hc = draw_polygon(hole[:, 1], hole[:, 0], shape)
                    inside = labels[hr, hc] == n_poly
                    labels[hr[inside], hc[inside]] = 0
    cls_arr = np.asarray(classes, np.int8)
    return GeoJsonNuclei(
        np.asarray(xs, np.float64),
        np.asarray(ys, np.float64),
        cls_arr if (cls_arr >= 0).any() else None,
        labels if n_poly else None,
    )
