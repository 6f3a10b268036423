"""Vessels and microvascular proliferation (MVP) as napari layers (issue 18): the reader
opening an H&E analysis folder, the Biomarkers dock adding them, in a real viewer under
Xvfb; and the layer builders on small tables."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from napari_gbm._napari._vessels import (
    MVP_FOCUS_COLOR,
    MVP_VESSEL_COLOR,
    VESSEL_COLOR,
    VESSEL_RING_MARGIN_UM,
    mvp_shapes_layer,
    vessel_points_layer,
)


def _kind(layer: Any) -> str | None:
    return layer.metadata.get("napari_gbm", {}).get("kind")


@pytest.fixture(scope="module")
def he_analysis(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A 4096 x 4096 synthetic H&E slide with two MVP foci (seed 3), analysed once."""
    from napari_gbm.detect.cells import CellParams
    from napari_gbm.pipeline import AnalyzeParams, analyze_slide
    from napari_gbm.synthetic import make_synthetic_slide

    root = tmp_path_factory.mktemp("vessels")
    make_synthetic_slide(root / "he.tif", size_px=(4096, 4096), stain="he", seed=3)
    params = AnalyzeParams(cells=CellParams(stain="he", texture=False))
    summary = analyze_slide(root / "he.tif", root / "he_an", params)
    return root / "he_an", summary


# --- the layer builders, no viewer ----------------------------------------------------------


def test_vessel_points_layer_keeps_vessels_and_colours_mvp() -> None:
    v = pd.DataFrame(
        {
            "vessel_id": [0, 1, 2],
            "centroid_x_um": [10.0, 20.0, 30.0],
            "centroid_y_um": [5.0, 6.0, 7.0],
            "equivalent_diameter_um": [12.0, 20.0, 8.0],
            "is_vessel": [True, True, False],
            "mvp_focus": [0, -1, -1],
        }
    )
    data, kw, kind = vessel_points_layer(v, 0.5, name="v")  # type: ignore[misc]
    assert kind == "points" and len(data) == 2  # the lumen without a wall is left out
    np.testing.assert_allclose(data * 0.5, [[5.0, 10.0], [6.0, 20.0]])
    np.testing.assert_allclose(np.asarray(kw["size"]) * 0.5, [12 + VESSEL_RING_MARGIN_UM, 24])
    np.testing.assert_allclose(kw["border_color"], [MVP_VESSEL_COLOR, VESSEL_COLOR])
    assert kw["face_color"] == "transparent" and list(kw["features"]["vessel_id"]) == [0, 1]
    # a CD31 table has no MVP column: every vessel the plain colour
    _, kw, _ = vessel_points_layer(v.drop(columns="mvp_focus"), 0.5)  # type: ignore[misc]
    np.testing.assert_allclose(kw["border_color"], [VESSEL_COLOR] * 2)
    assert vessel_points_layer(v[~v["is_vessel"]], 0.5) is None


def test_mvp_shapes_layer_polygons_in_um() -> None:
    foci = pd.DataFrame(
        {
            "mvp_focus": [0],
            "n_vessels": [3],
            "area_um2": [100.0],
            "centroid_x_um": [5.0],
            "centroid_y_um": [5.0],
            "outline_x_um": [[0.0, 10.0, 10.0, 0.0]],
            "outline_y_um": [[0.0, 0.0, 10.0, 10.0]],
        }
    )
    data, kw, kind = mvp_shapes_layer(foci, 0.25)  # type: ignore[misc]
    assert kind == "shapes" and len(data) == 1
    np.testing.assert_allclose(data[0] * 0.25, [[0, 0], [0, 10], [10, 10], [10, 0]])  # (y, x)
    assert list(kw["features"].columns) == [
        "mvp_focus", "n_vessels", "area_um2", "centroid_x_um", "centroid_y_um"
    ]  # fmt: skip
    assert mvp_shapes_layer(foci.iloc[:0], 0.25) is None


# --- in a viewer ----------------------------------------------------------------------------


def _settle(seconds: float = 0.6) -> None:
    from _gui import settle

    settle(seconds)


def _colour_pixels(img: np.ndarray, rgba: tuple[float, ...], tol: int = 40) -> int:
    target = np.asarray(rgba[:3]) * 255
    return int((np.abs(img[..., :3].astype(float) - target).max(axis=2) < tol).sum())


@pytest.mark.gui
@pytest.mark.slow
def test_reader_shows_vessels_and_mvp_foci(make_napari_viewer, he_analysis) -> None:
    napari = pytest.importorskip("napari")
    from napari_gbm._napari._layers import camera_of
    from napari_gbm.wsi.slide import Slide

    folder, summary = he_analysis
    vessels = pd.read_parquet(folder / "vessels.parquet")
    foci = pd.read_parquet(folder / "mvp_foci.parquet")
    vessels = vessels[vessels["is_vessel"]].reset_index(drop=True)
    assert summary["n_mvp_foci"] == len(foci) >= 1 and len(vessels) >= 3  # the slide's MVP

    viewer = make_napari_viewer(show=True)
    layers = viewer.open(str(folder), plugin="napari-gbm")
    [pts] = [ly for ly in layers if _kind(ly) == "vessels"]
    [shapes] = [ly for ly in layers if _kind(ly) == "mvp_foci"]
    assert isinstance(pts, napari.layers.Points) and isinstance(shapes, napari.layers.Shapes)
    mpp = summary["slide"]["mpp"]
    # the vessels: one ring per vessel at its centroid, its size in µm the diameter + margin
    assert len(pts.data) == len(vessels)
    np.testing.assert_allclose(pts.scale, (mpp, mpp))
    np.testing.assert_allclose(
        pts.data * mpp, vessels[["centroid_y_um", "centroid_x_um"]].to_numpy(), atol=1e-6
    )
    np.testing.assert_allclose(
        pts.size * mpp, vessels["equivalent_diameter_um"] + VESSEL_RING_MARGIN_UM, rtol=1e-6
    )
    in_mvp = vessels["mvp_focus"].to_numpy() >= 0
    expected = np.where(in_mvp[:, None], MVP_VESSEL_COLOR, VESSEL_COLOR)
    np.testing.assert_allclose(pts.border_color, expected, atol=1e-6)
    assert list(pts.features["vessel_id"]) == list(vessels["vessel_id"])  # shown on hover
    # each ring sits on a lumen: inside it the slide is mostly empty (white; red cells
    # cover part of some lumina), where tissue is pink or purple
    slide = Slide(summary["slide"]["path"])
    for x, y, d in vessels[["centroid_x_um", "centroid_y_um", "equivalent_diameter_um"]].to_numpy():
        r = int(0.4 * d / mpp)
        rgb = slide.read_region((int(x / mpp) - r, int(y / mpp) - r), 0, (2 * r + 1, 2 * r + 1))
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        white = rgb.min(axis=2)[yy**2 + xx**2 <= r * r] > 200
        assert white.mean() > 0.3, (x, y, white.mean())
    # the MVP foci: one polygon per focus, vertices as in the table
    assert shapes.nshapes == summary["n_mvp_foci"]
    for poly, (_, f) in zip(shapes.data, foci.iterrows(), strict=True):
        np.testing.assert_allclose(
            np.asarray(poly) * mpp, np.column_stack([f["outline_y_um"], f["outline_x_um"]])
        )
    assert set(shapes.features.columns) >= {"n_vessels", "area_um2"}
    # the maps: vessel density and MVP with the other maps, hidden (one click away)
    maps = {ly.metadata["napari_gbm"]["map"]: ly for ly in layers if _kind(ly) == "biomarker_map"}
    assert {"vessel_density_per_mm2", "microvascular"} <= set(maps)
    assert not maps["microvascular"].visible and not maps["vessel_density_per_mm2"].visible
    assert np.nanmax(maps["microvascular"].data) == 1
    assert maps["region_class"].contrast_limits[1] == 5  # class 5, microvascular, coloured
    # in a picture zoomed on the first focus: its green outline and the yellow rings
    viewer.window._qt_window.resize(1000, 900)
    _settle()
    camera_of(viewer).center = (float(foci["centroid_y_um"][0]), float(foci["centroid_x_um"][0]))
    camera_of(viewer).zoom = min(viewer.canvas.size) / 320.0  # 320 µm across: the focus
    _settle()
    img = np.asarray(viewer.screenshot(canvas_only=True, flash=False))
    assert img[..., :3].std() > 15  # not a blank canvas
    green = _colour_pixels(img, MVP_FOCUS_COLOR)
    assert green > 2000, green
    assert _colour_pixels(img, MVP_VESSEL_COLOR) > 500
    shapes.visible = False  # the green is the outline's, not the stain's
    _settle()
    hidden = np.asarray(viewer.screenshot(canvas_only=True, flash=False))
    assert _colour_pixels(hidden, MVP_FOCUS_COLOR) < 0.02 * green


@pytest.mark.gui
@pytest.mark.slow
def test_biomarkers_dock_adds_vessels_once(make_napari_viewer, he_analysis) -> None:
    pytest.importorskip("napari")
    from napari_gbm.widgets._biomarkers import BiomarkersWidget

    folder, summary = he_analysis
    viewer = make_napari_viewer()
    layers = viewer.open(str(folder), plugin="napari-gbm")
    for ly in [ly for ly in layers if _kind(ly) in ("vessels", "mvp_foci")]:
        viewer.layers.remove(ly)
    names = {ly.name for ly in viewer.layers}
    w = BiomarkersWidget(viewer)
    viewer.window.add_dock_widget(w)
    assert w._layer.value is not None and w._vessels.value == ""
    added = w.add_vessels()
    assert sorted(_kind(ly) for ly in added) == [
        "biomarker_map", "biomarker_map", "mvp_foci", "vessels"
    ]  # fmt: skip
    assert f"{summary['n_vessels']} vessels" in w._vessels.value
    assert f"MVP: {summary['n_mvp_foci']} foci" in w._vessels.value
    # the reader's maps were updated in place, the rings and outlines added back: twice
    # gives the same layers, not doubles
    n = len(viewer.layers)
    assert n == len(names) + 2
    w.add_vessels()
    assert len(viewer.layers) == n
    [pts] = [ly for ly in viewer.layers if _kind(ly) == "vessels"]
    assert len(pts.data) == int(pd.read_parquet(folder / "vessels.parquet")["is_vessel"].sum())
    assert viewer.layers.selection.active is w._layer.value  # the cells stay active


@pytest.mark.gui
@pytest.mark.slow
def test_folder_without_vessels_opens_as_before(make_napari_viewer, he_analysis, tmp_path):
    """An older analysis (no vessels.parquet, mvp_foci.parquet, vascular maps) opens with
    the layers it always had; the dock says there are none."""
    pytest.importorskip("napari")
    from napari_gbm.widgets._biomarkers import BiomarkersWidget

    folder, _ = he_analysis
    old = tmp_path / "he_an"
    shutil.copytree(folder, old)
    (old / "vessels.parquet").unlink()
    (old / "mvp_foci.parquet").unlink()
    with np.load(old / "maps.npz") as npz:
        kept = {
            k: npz[k] for k in npz.files if k not in ("vessel_density_per_mm2", "microvascular")
        }
    np.savez_compressed(old / "maps.npz", **kept)
    viewer = make_napari_viewer()
    layers = viewer.open(str(old), plugin="napari-gbm")
    kinds = [_kind(ly) for ly in layers]
    assert "vessels" not in kinds and "mvp_foci" not in kinds
    assert not any("vessel" in ly.name or "microvascular" in ly.name for ly in layers)
    assert {type(ly).__name__ for ly in layers} == {"Image", "Labels", "Points"}
    w = BiomarkersWidget(viewer)
    assert w.add_vessels() == []
    assert "none in this analysis" in w._vessels.value
    assert len(viewer.layers) == len(layers)
