"""The Cells and Biomarkers widgets driven in a real viewer under Xvfb."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari")


def _wait(qtbot: Any, widget: Any, timeout_s: float = 120) -> None:
    qtbot.waitUntil(lambda: widget._worker is None, timeout=int(timeout_s * 1000))


def _slide_layer(viewer: Any, path: Any) -> Any:
    return viewer.open(str(path), plugin="napari-gbm")[0]


@pytest.fixture
def region_run(make_napari_viewer, qtbot, synthetic_ki67):
    from napari_gbm.widgets._cells import CellsWidget

    viewer = make_napari_viewer()
    slide = _slide_layer(viewer, synthetic_ki67)
    mpp = slide.metadata["napari_gbm"]["mpp"]
    # a rectangle drawn over part of the slide, in world µm
    rect = np.array([[300, 250], [300, 850], [750, 850], [750, 250]], float)
    viewer.add_shapes([rect], shape_type="rectangle", name="region")
    w = CellsWidget(viewer)
    viewer.window.add_dock_widget(w)
    w._layer.value = slide
    w._scope.value = "drawn region"
    w._stain.value = "hdab"
    w._shapes.reset_choices()
    w._shapes.value = viewer.layers["region"]
    assert w.run() is not None
    _wait(qtbot, w)
    assert "error" not in w._status.value, w._status.value
    return viewer, w, slide, mpp, synthetic_ki67


def test_drawn_region_follows_the_users_layer_not_the_tile_grid(
    make_napari_viewer, qtbot, synthetic_ki67
):
    """With the tile grid of Slide & tiles on the canvas, the region is the shape the user
    drew in their own layer; the status names it and its area, and it is outlined."""
    from napari_gbm.widgets._cells import CellsWidget

    viewer = make_napari_viewer()
    slide = _slide_layer(viewer, synthetic_ki67)
    mpp = slide.metadata["napari_gbm"]["mpp"]
    grid = np.array([[0, 0], [0, 512], [512, 512], [512, 0]], float)
    viewer.add_shapes(
        [grid], shape_type="rectangle", name="tiles", metadata={"napari_gbm": {"kind": "tiles"}}
    )
    w = CellsWidget(viewer)
    viewer.window.add_dock_widget(w)
    assert [name for name, _ in w._shapes_choices()] == []  # never our tile grid
    assert [w._stain.native.itemText(i) for i in range(2)] == ["H&E", "H-DAB (Ki-67)"]
    mine = viewer.add_shapes(name="my region")
    assert w._shapes.value is mine
    other = viewer.add_shapes(name="other")
    assert w._shapes.value is other
    rect = np.array([[300, 250], [300, 550], [500, 550], [500, 250]], float)  # µm (y, x)
    mine.add_rectangles([rect])  # the user draws in "my region": it becomes the region
    assert w._shapes.value is mine
    assert mine.face_color[0][3] == 0  # drawn as an outline: no white fill over the tissue
    w._layer.value = slide
    w._scope.value = "drawn region"
    w._stain.value = "hdab"
    assert w.run() is not None
    _wait(qtbot, w)
    status = w._status.value
    assert "shape 1 of 1 in 'my region'" in status, status
    assert f"{0.2 * 0.3:.3f} mm²" in status  # 200 x 300 µm
    outline = viewer.layers[f"{slide.name} analysed region"]
    np.testing.assert_allclose(np.sort(outline.data[0], axis=0), np.sort(rect, axis=0), atol=mpp)
    assert [name for name, _ in w._shapes_choices()] == ["my region", "other"]
    # another slide: the status of this one does not stay
    second = _slide_layer(viewer, synthetic_ki67)
    w._layer.reset_choices()
    w._layer.value = second
    assert w._status.value == ""
    w._layer.value = slide
    cells = viewer.layers[f"{slide.name} cells"]
    y, x = cells.data[:, 0] * mpp, cells.data[:, 1] * mpp
    assert len(cells.data) > 20
    assert (x >= 250 - mpp).all() and (x < 550).all() and (y >= 300 - mpp).all() and (y < 500).all()


@pytest.mark.slow
def test_cells_of_a_drawn_region(region_run):
    from napari_gbm.detect.cells import CellParams
    from napari_gbm.detect.region import analyze_region
    from napari_gbm.wsi.slide import Slide

    viewer, w, slide, mpp, path = region_run
    points = viewer.layers[f"{slide.name} cells"]
    labels = viewer.layers[f"{slide.name} nuclei"]
    assert isinstance(points, napari.layers.Points)
    assert isinstance(labels, napari.layers.Labels)
    np.testing.assert_allclose(points.scale, (mpp, mpp))
    meta = points.metadata["napari_gbm"]
    assert meta["kind"] == "cells" and meta["software"]["napari_gbm"]
    # the same cells as the core function on the same box
    ref = analyze_region(
        Slide(path),
        (250 / mpp, 300 / mpp, 600 / mpp, 450 / mpp),
        CellParams(stain="hdab", texture=False),
        outlines=False,
    )
    assert len(points.data) == len(ref.cells) > 50
    np.testing.assert_allclose(
        np.sort(points.features["nucleus_area_um2"]), np.sort(ref.cells["nucleus_area_um2"])
    )
    # every cell's centroid is inside the rectangle
    y_um, x_um = points.data[:, 0] * mpp, points.data[:, 1] * mpp
    assert (x_um >= 250 - mpp).all() and (x_um <= 850).all() and (y_um >= 300 - mpp).all()
    assert labels.metadata["napari_gbm"]["region"]["downsample"] == pytest.approx(1.0)
    assert labels.data.max() > 50
    assert "cells" in w._status.value
    # the region was detected with the slide's calibration, not the region's
    from napari_gbm.detect.calibration import calibrate_slide

    level = calibrate_slide(Slide(path), "hdab", CellParams().nucleus).level_od
    assert f"counterstain level {level:.3f} OD" in w._status.value


@pytest.mark.slow
def test_biomarkers_widget_regrades_and_maps(region_run, qtbot):
    from napari_gbm._napari._layers import class_colors
    from napari_gbm.biomarkers import ihc_scores, positive_class
    from napari_gbm.widgets._biomarkers import BiomarkersWidget

    viewer, _, slide, mpp, _ = region_run
    points = viewer.layers[f"{slide.name} cells"]
    b = BiomarkersWidget(viewer)
    viewer.window.add_dock_widget(b)
    shown = list(b)  # every control is in the dock, not only created
    for w in (b._maps_btn, b._in_view_btn, b._export_path, b._naming, b._export_btn):
        assert w in shown
    b._layer.value = points
    assert b._column.value == "nucleus_dab_od_mean"
    b._t1.value = 0.3  # thresholds 0.3 / 0.4 / 0.6: fewer 1+ cells
    expected = positive_class(points.features["nucleus_dab_od_mean"], (0.3, 0.4, 0.6))
    np.testing.assert_array_equal(points.features["positive_class"], expected)
    np.testing.assert_allclose(points.face_color, class_colors(expected))

    def table_grades() -> tuple[np.ndarray, np.ndarray]:
        """(the table's positive_class column, the layer's for the same cells)."""
        t = b._table
        col = [t.horizontalHeaderItem(c).text() for c in range(t.columnCount())]
        j = col.index("positive_class")
        rows = [int(t.item(r, 0).data(0x0100)) for r in range(t.rowCount())]
        shown = np.array([int(t.item(r, j).data(0)) for r in range(t.rowCount())])
        return shown, points.features["positive_class"].to_numpy()[rows]

    shown, layer_grades = table_grades()
    np.testing.assert_array_equal(shown, layer_grades)
    b._t1.value = 0.15  # and back below QuPath's: the table follows, not only the layer
    shown, layer_grades = table_grades()
    np.testing.assert_array_equal(shown, layer_grades)
    assert (layer_grades >= 1).sum() > 0
    b._t1.value = 0.3
    np.testing.assert_array_equal(*table_grades())
    s = ihc_scores(expected)
    assert f"positive {s['positive_percent']:.1f} %" in b._scores.value
    assert b.scores()["h_score"] == pytest.approx(s["h_score"])
    b._colour.value = "nucleus_area_um2"
    assert not np.allclose(points.face_color, class_colors(expected))
    # no dark colours (they vanish on hematoxylin); the legend is short and goes away
    assert points.face_color[:, :3].max(axis=1).min() > 0.9
    assert b._legend.value.startswith("cyan (low) - magenta (high)")
    assert max(len(line) for line in b._legend.value.split("\n")) < 40
    b._colour.value = "positive_class"
    assert b._legend.value == "" and "cyan" not in b._scores.value
    np.testing.assert_allclose(points.face_color, class_colors(expected))
    b._colour.value = "nucleus_area_um2"
    maps = b.add_maps()
    assert {m.metadata["napari_gbm"]["map"] for m in maps} == {
        "cell_density_per_mm2",
        "positive_percent",
    }
    assert maps[0].scale[-1] == pytest.approx(25.0)
    # named like the analysis's own maps, and told apart from them
    assert {m.name for m in maps} == {
        f"{points.name}: cell density (/mm²), current thresholds",
        f"{points.name}: Ki-67 index (%), current thresholds",
    }
    # export: QuPath names, GeoJSON, scores
    import json as _json

    import pandas as pd

    tmp = Path(tempfile.mkdtemp())
    b._export_path.value = tmp / "cells.csv"
    b._naming.value = "qupath"
    b.export()
    csv = pd.read_csv(tmp / "cells.csv")
    assert len(csv) == len(points.data) and "Nucleus: Area µm^2" in csv.columns
    np.testing.assert_allclose(
        np.sort(csv["Nucleus: Area µm^2"]), np.sort(points.features["nucleus_area_um2"]), rtol=1e-6
    )
    b._export_path.value = tmp / "cells.geojson"
    b.export()
    gj = _json.loads((tmp / "cells.geojson").read_text())
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == len(points.data)
    assert gj["features"][0]["geometry"]["type"] == "Polygon"
    b._export_path.value = tmp / "cells.h5ad"  # AnnData, the writer of `napari-gbm export`
    b.export()
    import h5py

    with h5py.File(tmp / "cells.h5ad") as h5:
        assert h5.attrs["encoding-type"] == "anndata"
        assert h5["X"].shape[0] == len(points.data)
        np.testing.assert_allclose(
            np.sort(h5["obsm/spatial_px"][:, 0]), np.sort(points.data[:, 1]), rtol=1e-5
        )
    b._export_path.value = tmp / "scores.json"
    b.export()
    saved = _json.loads((tmp / "scores.json").read_text())
    assert saved["scores"]["h_score"] == pytest.approx(s["h_score"])
    # locate the first row of the table: the view centres on that cell
    b._locate(0)
    idx = next(iter(points.selected_data))
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], points.data[idx] * mpp, atol=1e-6)


def test_cells_widget_bad_input_notifies(make_napari_viewer, monkeypatch):
    import napari_gbm.widgets._cells as mod

    messages: list[str] = []
    monkeypatch.setattr(mod, "_notify_error", messages.append)
    viewer = make_napari_viewer()
    w = mod.CellsWidget(viewer)
    assert w.run() is None
    assert "no slide layer" in messages[-1]


@pytest.mark.slow
def test_cells_widget_cancel(make_napari_viewer, qtbot, synthetic_he, tmp_path):
    from napari_gbm.widgets._cells import CellsWidget

    viewer = make_napari_viewer()
    slide = _slide_layer(viewer, synthetic_he)
    w = CellsWidget(viewer)
    w._layer.value = slide
    w._scope.value = "whole slide"
    w._out.value = tmp_path
    n_layers = len(viewer.layers)
    w.run()
    w.cancel()
    t0 = time.monotonic()
    _wait(qtbot, w)
    assert time.monotonic() - t0 < 60
    assert "cancelled" in w._status.value
    assert len(viewer.layers) == n_layers
    assert not (tmp_path / "summary.json").exists()
    assert not (tmp_path / "cells.parquet").exists()


@pytest.mark.slow
def test_analysis_folder_reopens_with_its_layers(make_napari_viewer, synthetic_ki67, tmp_path):
    from napari_gbm.detect.cells import CellParams
    from napari_gbm.pipeline import AnalyzeParams, analyze_slide

    out = tmp_path / "ki67"
    s = analyze_slide(synthetic_ki67, out, AnalyzeParams(cells=CellParams("hdab", texture=False)))
    viewer = make_napari_viewer(show=True)
    layers = viewer.open(str(out), plugin="napari-gbm")
    kinds = {type(ly).__name__ for ly in layers}
    assert kinds == {"Image", "Points", "Labels"}
    cells = next(ly for ly in layers if isinstance(ly, napari.layers.Points))
    assert len(cells.data) == s["n_cells"]
    # one unit for every layer, so the scale bar can show µm (no "inconsistent units")
    assert {str(u) for ly in layers for u in ly.units} == {"micrometer"}
    assert viewer.canvas.overlays["scale_bar"].visible  # on, in µm, from the first view
    assert cells.metadata["napari_gbm"]["analysed_tissue_area_mm2"] == pytest.approx(
        s["analysed_tissue_area_mm2"]
    )
    maps = [ly for ly in layers if ly.metadata.get("napari_gbm", {}).get("kind") == "biomarker_map"]
    assert {m.metadata["napari_gbm"]["map"] for m in maps} >= {
        "cell_density_per_mm2",
        "positive_percent",
        "region_class",
        "positive_pixel_fraction",  # H-DAB: the DAB-positive area, as maps.npz has it
    }
    ppc = next(m for m in maps if m.metadata["napari_gbm"]["map"] == "positive_pixel_fraction")
    with np.load(out / "maps.npz") as npz:
        np.testing.assert_array_equal(ppc.data, npz["positive_pixel_fraction"])
    assert not ppc.visible and ppc.name.endswith("DAB-positive area (fraction)")
    # the slide, the cells and a map in one picture: real pixels, not a blank canvas
    pos = next(m for m in maps if m.metadata["napari_gbm"]["map"] == "positive_percent")
    pos.visible = True
    viewer.window._qt_window.resize(1200, 900)
    viewer.reset_view()
    from qtpy.QtWidgets import QApplication

    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)
    img = np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].astype(float)
    assert img.std() > 15 and (img.mean(axis=2) > 100).mean() > 0.05


def test_cells_in_view_follow_the_camera(make_napari_viewer):
    import pandas as pd

    from napari_gbm._napari._cell_view import CellsInView
    from napari_gbm._napari._layers import cells_points_layer
    from napari_gbm.biomarkers import positive_class
    from napari_gbm.widgets._biomarkers import BiomarkersWidget

    rng = np.random.default_rng(0)
    n = 200_000
    cells = pd.DataFrame(
        {
            "cell_id": np.arange(1, n + 1),
            "centroid_x_px": rng.uniform(0, 40_000, n),
            "centroid_y_px": rng.uniform(0, 40_000, n),
            "nucleus_dab_od_mean": rng.gamma(2, 0.12, n).astype(np.float32),
            "nucleus_area_um2": rng.gamma(6, 9, n).astype(np.float32),
        }
    )
    cells["positive_class"] = positive_class(cells["nucleus_dab_od_mean"])
    viewer = make_napari_viewer()
    data, kw, _ = cells_points_layer(cells, 0.5, name="cells")
    layer = viewer.add_points(data, **kw)
    view = CellsInView(viewer, layer, max_points=20_000)
    viewer.scene.camera.center = (10_000.0, 5_000.0)  # µm
    viewer.scene.camera.zoom = 1.0
    view.update()
    x0, y0, x1, y1 = view.view_box_px()
    inside = (cells.centroid_x_px.between(x0, x1, inclusive="left")) & (
        cells.centroid_y_px.between(y0, y1, inclusive="left")
    )
    assert 0 < inside.sum() <= 20_000
    assert len(layer.data) == inside.sum()
    np.testing.assert_array_equal(np.sort(layer.features["cell_id"]), cells.cell_id[inside])
    viewer.scene.camera.zoom = 0.01  # the whole slide: too many cells, the layer empties
    view.update()
    assert len(layer.data) == 0 and "zoom in" in view.status
    # regrading applies to every cell, not only those shown
    viewer.scene.camera.zoom = 1.0
    view.update()
    b = BiomarkersWidget(viewer)
    b._layer.value = layer
    b._t1.value = 0.35
    expected = positive_class(cells["nucleus_dab_od_mean"], (0.35, 0.4, 0.6))
    np.testing.assert_array_equal(view.cells["positive_class"], expected)
    shown = view.cells.iloc[view.shown]
    np.testing.assert_array_equal(layer.features["positive_class"], shown["positive_class"])
    assert b.scores()["n_graded"] == n


def test_learned_detector_from_the_cells_dock(make_napari_viewer, qtbot, synthetic_he):
    """The dock's detector choice reaches the analysis: the learned detector's cells, the
    same as the core function's, with outlines under them."""
    from napari_gbm.detect.cells import CellParams
    from napari_gbm.detect.nucleus_params import NucleusParams
    from napari_gbm.detect.region import analyze_region
    from napari_gbm.widgets._cells import CellsWidget
    from napari_gbm.wsi.slide import Slide

    viewer = make_napari_viewer()
    slide = _slide_layer(viewer, synthetic_he)
    mpp = slide.metadata["napari_gbm"]["mpp"]
    rect = np.array([[400, 500], [400, 650], [520, 650], [520, 500]], float)  # µm
    viewer.add_shapes([rect], shape_type="rectangle", name="region")
    w = CellsWidget(viewer)
    viewer.window.add_dock_widget(w)
    assert w._detector.value == NucleusParams().detector == "classical"
    w._layer.value = slide
    w._scope.value = "drawn region"
    w._detector.value = "learned"
    w._shapes.reset_choices()
    w._shapes.value = viewer.layers["region"]
    assert w.run() is not None
    _wait(qtbot, w)
    assert "error" not in w._status.value, w._status.value
    points = viewer.layers[f"{slide.name} cells"]
    labels = viewer.layers[f"{slide.name} nuclei"]
    ref = analyze_region(
        Slide(synthetic_he),
        (500 / mpp, 400 / mpp, 150 / mpp, 120 / mpp),
        CellParams(texture=False, nucleus=NucleusParams(detector="learned")),
        outlines=False,
    )
    assert len(points.data) == len(ref.cells) > 20
    # outlines and points agree: nearly every cell centroid lies on a nucleus label
    meta = labels.metadata["napari_gbm"]["region"]
    oy, ox, ds = meta["y0"], meta["x0"], meta["downsample"]  # level-0 px
    r = np.floor((points.data[:, 0] - oy) / ds).astype(int)
    c = np.floor((points.data[:, 1] - ox) / ds).astype(int)
    ok = (r >= 0) & (r < labels.data.shape[0]) & (c >= 0) & (c < labels.data.shape[1])
    on = labels.data[r[ok], c[ok]] > 0
    assert ok.mean() > 0.95 and on.mean() > 0.9, (ok.mean(), on.mean())
