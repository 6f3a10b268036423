"""napari: the manifest, the reader, sample data and the Slide & tiles widget in a real
viewer under Xvfb, with screenshots checked for real pixels."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari", reason="napari is a runtime dependency")

from _gui import settle, wait_done  # noqa: E402


def _screenshot(viewer: Any) -> np.ndarray:
    viewer.window._qt_window.resize(1200, 900)
    settle()
    viewer.reset_view()
    settle(0.5)
    return np.asarray(viewer.screenshot(canvas_only=True, flash=False))


def _assert_not_blank(img: np.ndarray) -> None:
    rgb = img[..., :3].astype(float)
    assert rgb.std() > 15, "screenshot is flat (blank canvas)"
    assert (rgb.mean(axis=2) > 100).mean() > 0.05, "screenshot is (almost) all dark"


def test_manifest_validates() -> None:
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-gbm")
    pm.validate_imports()
    assert {r.command for r in pm.contributions.readers} == {"napari-gbm.get_reader"}
    assert {s.key for s in pm.contributions.sample_data} == {
        "cmu1_small_region",
        "synthetic_gbm_he",
        "synthetic_gbm_ki67",
    }


def test_reader_layer_data(cmu_path: Path) -> None:
    import dask.array as da

    from napari_gbm._napari._reader import napari_get_reader

    reader = napari_get_reader(str(cmu_path))
    assert reader is not None
    [(data, kwargs, layer_type)] = reader(str(cmu_path))
    assert layer_type == "image"
    assert kwargs["multiscale"] and kwargs["rgb"]
    assert all(isinstance(level, da.Array) for level in data)
    assert data[0].shape == (2967, 2220, 3)
    assert [lv.shape[0] for lv in data] == sorted((lv.shape[0] for lv in data), reverse=True)
    assert kwargs["scale"] == (0.499, 0.499) and kwargs["units"] == ("um", "um")
    assert kwargs["contrast_limits"] == (0, 255)
    meta = kwargs["metadata"]["napari_gbm"]
    assert meta["mpp"] == 0.499 and meta["format"] == "aperio" and meta["objective_power"] == 20
    assert meta["dimensions"] == [2220, 2967] and meta["path"] == str(cmu_path)
    assert "napari_gbm" in meta["software"]


def test_reader_declines_what_it_cannot_read(tmp_path: Path) -> None:
    from napari_gbm._napari._reader import napari_get_reader

    (tmp_path / "x.svs").write_text("not a slide")
    assert napari_get_reader(str(tmp_path / "x.svs")) is None
    assert napari_get_reader(str(tmp_path / "missing.tif")) is None


def test_open_slide_in_viewer_renders_lazily(make_napari_viewer: Any, tmp_path: Path) -> None:
    """A 100k x 100k slide opens as a multiscale layer in µm, and rendering it reads only
    low-resolution levels."""
    from napari_gbm._testing import write_repeated_tile_slide
    from napari_gbm.wsi import slide as slide_mod

    path = write_repeated_tile_slide(tmp_path / "big.tif", 100_000, mpp=0.25)
    levels_read: list[int] = []
    orig = slide_mod._LevelArray.__getitem__

    def spy(self: Any, key: Any) -> np.ndarray:
        levels_read.append(self.level)
        return orig(self, key)

    slide_mod._LevelArray.__getitem__ = spy  # type: ignore[method-assign]
    try:
        viewer = make_napari_viewer(show=True)
        [layer] = viewer.open(str(path), plugin="napari-gbm")
        assert layer.multiscale and len(layer.data) == 5
        np.testing.assert_allclose(layer.scale, (0.25, 0.25))
        assert viewer.canvas.overlays["scale_bar"].visible  # a slide in µm: the bar is on
        img = _screenshot(viewer)
    finally:
        slide_mod._LevelArray.__getitem__ = orig  # type: ignore[method-assign]
    _assert_not_blank(img)
    assert levels_read and min(levels_read) > 0, f"level 0 was read: {sorted(set(levels_read))}"


def test_sample_cmu_in_viewer(make_napari_viewer: Any) -> None:
    viewer = make_napari_viewer(show=True)
    layers = viewer.open_sample("napari-gbm", "cmu1_small_region")
    assert len(layers) == 1
    layer = layers[0]
    np.testing.assert_allclose(layer.scale, (0.499, 0.499))
    assert str(layer.units[0]) in ("micrometer", "um", "µm")
    # extent in µm: 2220 px x 0.499 µm
    assert layer.extent.world[1][1] == pytest.approx(2220 * 0.499, rel=1e-3)
    _assert_not_blank(_screenshot(viewer))


def _run_widget(widget: Any, qtbot: Any) -> None:
    assert widget.run() is not None
    wait_done(qtbot, widget, 60)


def test_slide_tiles_widget_adds_aligned_layers(
    make_napari_viewer: Any, qtbot: Any, cmu_path: Path, tmp_path: Path
) -> None:
    from napari_gbm.widgets._slide_tiles import SlideTilesWidget

    viewer = make_napari_viewer(show=True)
    [slide_layer] = viewer.open(str(cmu_path), plugin="napari-gbm")
    widget = SlideTilesWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget._layer.value is slide_layer
    assert "0.499" in widget._info.value
    assert widget._mpp.value == pytest.approx(0.499)  # the slide's own, not 0.000
    widget._tile_size.value = 512
    widget._overlap.value = 32
    _run_widget(widget, qtbot)

    names = [layer.name for layer in viewer.layers]
    base = slide_layer.name
    assert names == [base, f"{base} tissue", f"{base} tile tissue fraction", f"{base} tiles"]
    tissue = viewer.layers[f"{base} tissue"]
    tiles = viewer.layers[f"{base} tiles"]
    frac = viewer.layers[f"{base} tile tissue fraction"]
    assert type(tissue).__name__ == "Labels" and type(tiles).__name__ == "Shapes"
    # everything lines up in µm: the tissue mask spans the slide; the selected tiles lie
    # on it, on the 512 px grid (corners at pixel edges: (px - 0.5) * mpp in world µm)
    np.testing.assert_allclose(tissue.extent.world[1], slide_layer.extent.world[1], atol=3.0)
    lo, hi = tiles.extent.world
    assert (lo >= -1).all() and (hi <= slide_layer.extent.world[1] + 1).all()
    corners_px = np.concatenate([np.asarray(r) for r in tiles.data]) / 0.499 + 0.5  # (y, x) px
    for axis, edge in ((0, 2967), (1, 2220)):
        v = corners_px[:, axis]
        assert (
            np.isclose(np.round(v / 512) * 512, v, atol=0.01) | np.isclose(v, edge, atol=0.01)
        ).all()
    assert tissue.metadata["napari_gbm"]["params"]["resolution_um"] == 8.0
    assert tiles.metadata["napari_gbm"]["params"]["tile_size_px"] == 512
    assert "napari_gbm" in tiles.metadata["napari_gbm"]["software"]
    assert {"tile_id", "tissue_fraction", "core_x0_px"} <= set(tiles.features.columns)
    assert (tiles.features.tissue_fraction > 0).all()
    # 6 x 5 tiles (2967 / 512, 2220 / 512) of 32 x 32 pixels, cropped to the slide: the
    # layer ends with the slide (so the home view centres on it), each tile its fraction
    px = 512 / 32
    assert frac.data.shape == (int(np.ceil(2967 / px)), int(np.ceil(2220 / px)))
    lo, hi = frac.extent.world
    assert hi[0] <= 2967 * 0.499 + px * 0.499 and hi[1] <= 2220 * 0.499 + px * 0.499
    by_tile = tiles.features.set_index(["row", "col"])["tissue_fraction"]
    for (row, col), f in by_tile.items():
        assert frac.data[row * 32 + 16, col * 32 + 16] == pytest.approx(f, abs=1e-6)
    assert "tissue 3" in widget._info.value  # "tissue 38.x %"

    img = _screenshot(viewer)
    _assert_not_blank(img)
    # the green tissue outline and the tile edges are drawn over the slide
    rgb = img[..., :3].astype(int)
    green = (rgb[..., 1] > 200) & (rgb[..., 0] < 80) & (rgb[..., 2] < 80)
    assert green.sum() > 200
    from PIL import Image

    Image.fromarray(img).save(tmp_path / "slide_tiles.png")


def test_widget_user_mpp_rescales_a_slide_without_one(
    make_napari_viewer: Any, qtbot: Any, tcga_path: Path
) -> None:
    from napari_gbm.widgets._slide_tiles import SlideTilesWidget

    viewer = make_napari_viewer(show=False)
    [slide_layer] = viewer.open(str(tcga_path), plugin="napari-gbm")
    np.testing.assert_allclose(slide_layer.scale, (1, 1))  # pixels: no mpp in the file
    assert not viewer.canvas.overlays["scale_bar"].visible  # no µm to show yet
    widget = SlideTilesWidget(viewer)
    assert "unknown" in widget._info.value and widget._mpp.value == 0.0
    widget._mpp.value = 0.25
    widget._tile_size.value = 512
    _run_widget(widget, qtbot)
    np.testing.assert_allclose(slide_layer.scale, (0.25, 0.25))
    assert slide_layer.metadata["napari_gbm"]["mpp_source"] == "user"
    tissue = viewer.layers[f"{slide_layer.name} tissue"]
    np.testing.assert_allclose(tissue.extent.world[1], slide_layer.extent.world[1], atol=3.0)


def test_widget_errors_become_notifications(
    make_napari_viewer: Any, qtbot: Any, tcga_path: Path
) -> None:
    from napari.utils.notifications import notification_manager

    from napari_gbm.widgets._slide_tiles import SlideTilesWidget

    viewer = make_napari_viewer(show=False)
    widget = SlideTilesWidget(viewer)
    before = len(notification_manager.records)
    assert widget.run() is None  # no slide layer yet
    assert "no slide layer" in str(notification_manager.records[-1].message)

    viewer.open(str(tcga_path), plugin="napari-gbm")  # no mpp, none given
    assert widget.run() is not None
    wait_done(qtbot, widget, 60)
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert any("pixel size" in m for m in messages), messages
    # the reason comes first (a cut pop-up still says it), and it stays in the dock;
    # the slide was read fine, so it does not say "cannot read"
    msg = [m for m in messages if "pixel size" in m][-1]  # the run's (not the reader's)
    assert msg.startswith("the file does not record its pixel size"), msg
    assert widget._status.value.startswith("error: the file does not record its pixel size")
    assert len(viewer.layers) == 1  # nothing added
    assert widget._run_btn.enabled  # ready for another try


def test_all_docks_fit_a_laptop_screen(make_napari_viewer: Any, cmu_path: Path) -> None:
    """The four docks open at once in a 1366 x 768 window: they scroll, the window does
    not grow past the screen, and no control is cut on the right."""
    from qtpy.QtWidgets import QApplication

    from napari_gbm.widgets._biomarkers import BiomarkersWidget
    from napari_gbm.widgets._cells import CellsWidget
    from napari_gbm.widgets._cohort import CohortWidget
    from napari_gbm.widgets._slide_tiles import SlideTilesWidget

    viewer = make_napari_viewer(show=True)
    viewer.open(str(cmu_path), plugin="napari-gbm")
    docks = []
    for cls in (SlideTilesWidget, CellsWidget, BiomarkersWidget, CohortWidget):
        w = cls(viewer)
        viewer.window.add_dock_widget(w, name=cls.__name__)
        docks.append(w)
    viewer.window._qt_window.resize(1366, 768)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)
    size = viewer.window._qt_window.size()
    assert size.width() <= 1366 and size.height() <= 768, (size.width(), size.height())
    for w in docks:  # the scroll area shows the controls' full width
        assert w.native.viewport().width() >= w.body.minimumSizeHint().width(), type(w).__name__
    # a long result line wraps inside the dock instead of widening its body past the
    # visible width (which cut off the right edge of every control)
    cells = docks[1]
    cells._status.value = (
        "shape 1 of 1 in 'my region' (0.078 mm², outlined): 287 cells, 3679/mm², "
        "positive 12.5 %\nslide calibration: counterstain level 0.330 OD\nwarning: nuclei "
        "are small for tissue (median 12 µm², 48 % near the smallest kept; usually 25-55 "
        "µm²): the pixel size (0.2 µm/px) may be wrong, the true one larger"
    )
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)
    assert cells.body.width() <= cells.native.viewport().width()
    assert cells.body.sizeHint().width() <= cells.native.viewport().width()
    assert cells._status.native.height() > cells._stain.native.height()  # it wrapped


def test_sample_generation_keeps_the_window_alive(make_napari_viewer, tmp_path, monkeypatch):
    """Open Sample on a first run generates the synthetic slide (seconds) without freezing
    napari: the event loop turns (a 10 ms timer keeps ticking) and the slide arrives."""
    import time

    from qtpy.QtCore import QTimer

    monkeypatch.setenv("NAPARI_GBM_CACHE", str(tmp_path))  # nothing cached: generated now
    viewer = make_napari_viewer()
    state = {"last": time.perf_counter(), "max": 0.0, "ticks": 0}

    def tick() -> None:
        now = time.perf_counter()
        state["max"] = max(state["max"], now - state["last"])
        state["last"] = now
        state["ticks"] += 1

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    state["last"] = time.perf_counter()
    t0 = time.perf_counter()
    layers = viewer.open_sample("napari-gbm", "synthetic_gbm_he")
    took = time.perf_counter() - t0
    timer.stop()
    assert len(layers) == 1 and layers[0].name == "synthetic GBM H&E"
    assert Path(layers[0].metadata["slide_path"]).parent == tmp_path
    assert took > 1.0  # it was generated, not read from a cache
    assert state["ticks"] > took / 0.1  # the loop turned all along, not once at the end
    assert state["max"] < 1.0, state
