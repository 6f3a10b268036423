"""Vessels and microvascular proliferation (MVP) of an analysis folder as napari layer
data: the vessels (``vessels.parquet``) as rings at their lumina, the MVP foci
(``mvp_foci.parquet``) as outlined polygons, and the vascular maps of ``maps.npz``.

``napari_gbm.analyze_slide`` writes these for H&E slides (lumina with an endothelial
wall) and for H-DAB slides of a vessel marker (CD31, CD34); a folder without them (an
older analysis, a Ki-67 slide) gives no layer here. Like every napari-gbm layer they are
placed in µm: level-0 pixel coordinates with ``scale`` the slide's pixel size, a
position of ``x`` µm at world ``x`` (as the cells' ``centroid_x_um``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_gbm import __version__
from napari_gbm._napari._layers import LayerData, npz_map_layers

#: ring colours: vessels in an MVP focus (``mvp_focus >= 0``), and the others (RGBA 0-1);
#: yellow and cyan stand out on both H&E and hematoxylin-DAB
MVP_VESSEL_COLOR = (1.0, 0.85, 0.0, 1.0)
VESSEL_COLOR = (0.0, 0.85, 1.0, 1.0)
#: the outline colour of an MVP focus: green, a colour no stain has
MVP_FOCUS_COLOR = (0.1, 1.0, 0.3, 1.0)
#: a vessel's ring: its equivalent diameter plus this (µm), so the ring sits on the
#: lumen's edge with the lumen itself left clear, drawn this wide (µm)
VESSEL_RING_MARGIN_UM = 4.0
VESSEL_RING_WIDTH_UM = 2.5
#: the outline width of an MVP focus, µm (a focus is ~100-300 µm across)
MVP_EDGE_WIDTH_UM = 4.0
#: the columns of ``mvp_foci.parquet`` a focus carries as features (not the outlines)
FOCUS_FEATURES = ("mvp_focus", "n_vessels", "area_um2", "centroid_x_um", "centroid_y_um")
#: the vascular maps of ``maps.npz`` (titles and colour maps in ``MAP_STYLES``)
VASCULAR_MAPS = ("vessel_density_per_mm2", "microvascular")


def _metadata(kind: str, extra: dict[str, Any] | None, **more: Any) -> dict[str, Any]:
    return {
        "napari_gbm": {
            "kind": kind,
            **more,
            **(extra or {}),
            "software": {"napari_gbm": __version__},
        }
    }


def vessel_points_layer(
    vessels: pd.DataFrame,
    slide_mpp: float,
    *,
    name: str = "vessels",
    metadata: dict[str, Any] | None = None,
) -> LayerData | None:
    """The vessels of a vessel table as rings at their centroids.

    Parameters
    ----------
    vessels : pandas.DataFrame
        ``vessels.parquet``: ``centroid_x_um``, ``centroid_y_um``,
        ``equivalent_diameter_um``, ``is_vessel`` and (H&E) ``mvp_focus`` (-1 outside MVP).
        Rows with ``is_vessel`` false (lumina without a vessel wall) are left out.
    slide_mpp : float
        The slide's pixel size, µm/px.
    name : str, default "vessels"
        The layer's name.
    metadata : dict or None
        Added to ``metadata["napari_gbm"]``.

    Returns
    -------
    tuple or None
        ``(data, kwargs, "points")``: level-0 (row, col) positions, ``scale`` the pixel
        size, each ring ``equivalent_diameter_um`` + :data:`VESSEL_RING_MARGIN_UM` across,
        transparent inside, its edge :data:`MVP_VESSEL_COLOR` in an MVP focus and
        :data:`VESSEL_COLOR` otherwise; the table's rows as ``features`` (shown on
        hover). None when there is no vessel.
    """
    v = vessels[vessels["is_vessel"].to_numpy(bool)] if "is_vessel" in vessels else vessels
    if len(v) == 0:
        return None
    v = v.reset_index(drop=True)
    mpp = float(slide_mpp)
    data = (
        np.column_stack(
            [v["centroid_y_um"].to_numpy(np.float64), v["centroid_x_um"].to_numpy(np.float64)]
        )
        / mpp
    )
    in_mvp = v["mvp_focus"].to_numpy() >= 0 if "mvp_focus" in v else np.zeros(len(v), bool)
    border = np.where(in_mvp[:, None], MVP_VESSEL_COLOR, VESSEL_COLOR).astype(np.float32)
    size_um = v["equivalent_diameter_um"].to_numpy(np.float64) + VESSEL_RING_MARGIN_UM
    kwargs = {
        "name": name,
        "scale": (mpp, mpp),
        "units": ("um", "um"),
        "size": size_um / mpp,
        "symbol": "disc",
        "face_color": "transparent",
        "border_color": border,
        "border_width": VESSEL_RING_WIDTH_UM / mpp,
        "border_width_is_relative": False,
        "features": v,
        "metadata": _metadata(
            "vessels",
            metadata,
            n_vessels=len(v),
            n_mvp_vessels=int(in_mvp.sum()),
            colours={"mvp": MVP_VESSEL_COLOR, "other": VESSEL_COLOR},
        ),
    }
    return data, kwargs, "points"


def mvp_shapes_layer(
    foci: pd.DataFrame,
    slide_mpp: float,
    *,
    name: str = "MVP foci",
    metadata: dict[str, Any] | None = None,
) -> LayerData | None:
    """The MVP foci as outlined polygons.

    Parameters
    ----------
    foci : pandas.DataFrame
        ``mvp_foci.parquet``: ``outline_x_um`` and ``outline_y_um`` (each a list of the
        polygon's vertices, µm), ``n_vessels``, ``area_um2``.
    slide_mpp : float
        The slide's pixel size, µm/px.
    name : str, default "MVP foci"
        The layer's name.
    metadata : dict or None
        Added to ``metadata["napari_gbm"]``.

    Returns
    -------
    tuple or None
        ``(data, kwargs, "shapes")``: one polygon per focus in level-0 (row, col) pixels,
        ``scale`` the pixel size, edges :data:`MVP_FOCUS_COLOR`, no fill; features
        :data:`FOCUS_FEATURES`. None when there is no focus.
    """
    if len(foci) == 0:
        return None
    mpp = float(slide_mpp)
    polygons = [
        np.column_stack([np.asarray(y, np.float64), np.asarray(x, np.float64)]) / mpp
        for x, y in zip(foci["outline_x_um"], foci["outline_y_um"], strict=True)
    ]
    features = foci[[c for c in FOCUS_FEATURES if c in foci]].reset_index(drop=True)
    kwargs = {
        "name": name,
        "shape_type": "polygon",
        "scale": (mpp, mpp),
        "units": ("um", "um"),
        "edge_width": MVP_EDGE_WIDTH_UM / mpp,
        "edge_color": np.tile(np.asarray(MVP_FOCUS_COLOR, np.float32), (len(polygons), 1)),
        "face_color": "transparent",
        "opacity": 1.0,  # napari's default 0.7 mixes the outline with the stain
        "features": features,
        "metadata": _metadata("mvp_foci", metadata, n_mvp_foci=len(foci)),
    }
    return polygons, kwargs, "shapes"


def vessel_layers(
    folder: str | Path,
    slide_mpp: float,
    *,
    name: str,
    metadata: dict[str, Any] | None = None,
    maps: bool = False,
) -> list[LayerData]:
    """The vessel and MVP layers of an analysis folder; none for a folder without them.

    Parameters
    ----------
    folder : str or Path
        An analysis folder (``napari-gbm analyze``, the Cells dock's whole-slide run).
    slide_mpp : float
        The slide's pixel size, µm/px.
    name : str
        The layers' names start with it (the slide's name, as the reader's layers).
    metadata : dict or None
        Added to each layer's ``metadata["napari_gbm"]``.
    maps : bool, default False
        Also the vascular maps of ``maps.npz`` (:data:`VASCULAR_MAPS`, hidden), which the
        reader adds with the other maps.

    Returns
    -------
    list of tuple
        Layer data: the maps first (if asked), then the vessels (points) and the MVP foci
        (shapes), each only where the folder has it.
    """
    folder = Path(folder)
    meta = {"analysis_folder": str(folder), **(metadata or {})}
    layers: list[LayerData] = []
    if maps and (folder / "maps.npz").is_file():
        layers += npz_map_layers(folder / "maps.npz", VASCULAR_MAPS, slide_mpp, name, meta)
    found: list[LayerData | None] = []
    if (folder / "vessels.parquet").is_file():
        vessels = pd.read_parquet(folder / "vessels.parquet")
        found.append(vessel_points_layer(vessels, slide_mpp, name=f"{name} vessels", metadata=meta))
    if (folder / "mvp_foci.parquet").is_file():
        foci = pd.read_parquet(folder / "mvp_foci.parquet")
        found.append(mvp_shapes_layer(foci, slide_mpp, name=f"{name} MVP foci", metadata=meta))
    return layers + [f for f in found if f is not None]


def vascular_text(folder: str | Path) -> str:
    """The vascular biomarkers of an analysis folder's ``summary.json`` in two short
    lines; empty when it has none (no vessel detection for that stain)."""
    path = Path(folder) / "summary.json"
    s = json.loads(path.read_text()) if path.is_file() else {}
    if s.get("n_vessels") is None:
        return ""

    def fmt(v: Any, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    line = f"{s['n_vessels']} vessels, {fmt(s.get('vessel_density_per_mm2'), '.1f')}/mm²"
    if s.get("microvessel_hotspot_density_per_mm2") is not None:
        line += f", hotspot {s['microvessel_hotspot_density_per_mm2']:.0f}/mm²"
    if s.get("n_mvp_foci") is not None:
        mvp = s.get("mvp_fraction")
        line += (
            f"\nMVP: {s['n_mvp_foci']} foci, "
            f"{fmt(None if mvp is None else 100 * mvp, '.1f')} % of tissue"
        )
    return line
