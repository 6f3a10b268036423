"""Vessels and microvascular-proliferation foci as QuPath GeoJSON, for review in QuPath.

An analysis folder with vessels (H&E, CD31, CD34: ``vessels.parquet``, ``mvp_foci.parquet``)
becomes one ``FeatureCollection`` in QuPath's layout (as :mod:`.geojson` writes cells): each
MVP focus an ``"annotation"`` classified *Microvascular proliferation* with its outline and
``Vessels`` and ``Area µm^2``; each vessel a ``"detection"`` classified *Vessel* (or *Vessel
(MVP)* inside a focus) drawn as the circle of its equivalent diameter, with its
measurements. Coordinates are level-0 pixels with QuPath's origin, the top-left corner of
the image (a µm position ``u`` is pixel ``u / mpp + 0.5``).
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_gbm.io import atomic_path

__all__ = ["MVP_CLASS", "VESSEL_CLASSES", "vessels_geojson_path", "vessels_to_geojson"]

#: QuPath classes (name, RGB) of the objects
MVP_CLASS = ("Microvascular proliferation", (25, 255, 76))
VESSEL_CLASSES = {False: ("Vessel", (0, 217, 255)), True: ("Vessel (MVP)", (255, 217, 0))}
#: vessel-table columns written as measurements (QuPath name -> ours), where finite
MEASUREMENTS = {
    "Equivalent diameter µm": "equivalent_diameter_um",
    "Area µm^2": "area_um2",
    "Lumen area µm^2": "lumen_area_um2",
    "Wall nuclei": "n_wall_nuclei",
    "Endothelial nuclei": "n_endothelial",
    "Outer endothelial nuclei": "n_outer_endothelial",
    "Lining coverage": "lining_coverage",
    "DAB OD mean": "dab_od_mean",
}
_CIRCLE_VERTICES = 24


def vessels_geojson_path(cells_path: str | os.PathLike[str]) -> Path:
    """Where the vessels of a slide go beside its cells' GeoJSON:
    ``<name>.geojson`` -> ``<name>.vessels.geojson``."""
    p = Path(cells_path)
    return p.with_name((p.name[: -len(p.suffix)] if p.suffix else p.name) + ".vessels.geojson")


def _ring(x: np.ndarray, y: np.ndarray) -> list[list[float]]:
    ring = [[round(float(a), 2), round(float(b), 2)] for a, b in zip(x, y, strict=True)]
    return [*ring, ring[0]]


def _feature(
    uid: str, object_type: str, ring: list[list[float]], klass: tuple[str, Any], m: dict
) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": uid,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "objectType": object_type,
            "classification": {"name": klass[0], "color": list(klass[1])},
            "measurements": m,
        },
    }


def vessels_to_geojson(
    vessels: pd.DataFrame,
    foci: pd.DataFrame,
    mpp: float,
    path: str | os.PathLike[str] | None = None,
    *,
    slide_id: str = "",
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The vessels and MVP foci of one slide as a QuPath GeoJSON ``FeatureCollection``.

    Parameters
    ----------
    vessels : pandas.DataFrame
        ``vessels.parquet`` (rows with ``is_vessel``; ``mvp_focus`` -1 outside MVP).
    foci : pandas.DataFrame
        ``mvp_foci.parquet`` (``outline_x_um``, ``outline_y_um``, ``n_vessels``,
        ``area_um2``).
    mpp : float
        The slide's level-0 pixel size, µm/px.
    path : str or os.PathLike, optional
        Written there atomically; None returns the collection.
    slide_id : str, optional
        Makes the feature ids (UUIDs) stable per slide and object.
    metadata : dict, optional
        Stored as the collection's foreign member ``"napari_gbm"``.

    Returns
    -------
    dict
        The collection (``path`` None), or its header and ``"path"``.

    Raises
    ------
    ValueError
        If `mpp` is not a positive number.
    """
    if not (isinstance(mpp, (int, float)) and math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"mpp must be a positive number of µm per pixel, got {mpp!r}")
    ns = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/napari-gbm/vessels/" + slide_id)
    features: list[dict[str, Any]] = []
    for row in foci.itertuples(index=False):
        x = np.asarray(row.outline_x_um, float) / mpp + 0.5
        y = np.asarray(row.outline_y_um, float) / mpp + 0.5
        m = {"Vessels": int(row.n_vessels), "Area µm^2": round(float(row.area_um2), 2)}
        uid = str(uuid.uuid5(ns, f"focus {int(row.mvp_focus)}"))
        features.append(_feature(uid, "annotation", _ring(x, y), MVP_CLASS, m))
    v = vessels[vessels["is_vessel"].astype(bool)] if "is_vessel" in vessels else vessels
    t = 2 * np.pi * np.arange(_CIRCLE_VERTICES) / _CIRCLE_VERTICES
    for row in v.to_dict("records"):
        r = max(float(row["equivalent_diameter_um"]) / 2 / mpp, 0.5)
        cx, cy = row["centroid_x_um"] / mpp + 0.5, row["centroid_y_um"] / mpp + 0.5
        ring = _ring(cx + r * np.cos(t), cy + r * np.sin(t))
        m = {
            name: round(float(row[col]), 4)
            for name, col in MEASUREMENTS.items()
            if col in row and row[col] is not None and np.isfinite(row[col]) and row[col] >= 0
        }
        klass = VESSEL_CLASSES[int(row.get("mvp_focus", -1)) >= 0]
        uid = str(uuid.uuid5(ns, f"vessel {int(row['vessel_id'])}"))
        features.append(_feature(uid, "detection", ring, klass, m))
    doc = {"type": "FeatureCollection", "napari_gbm": metadata or {}, "features": features}
    if path is None:
        return doc
    with atomic_path(Path(path)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, allow_nan=False)
    return {"type": "FeatureCollection", "napari_gbm": doc["napari_gbm"], "path": str(path)}
