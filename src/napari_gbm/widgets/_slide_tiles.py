"""Slide & tiles dock widget: pick or open a slide, see its metadata, set its pixel size,
detect tissue and tile it. Results come back as layers aligned with the slide in µm.

The work runs in a napari thread worker; errors become notifications."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)

from napari_gbm._napari._layers import (
    put_layer,
    tile_fraction_layer,
    tile_shapes_layer,
    tissue_layer,
)
from napari_gbm.pipeline import tile_slide
from napari_gbm.widgets._dock import ScrollingDock
from napari_gbm.widgets._event_loop import in_steps
from napari_gbm.wsi.slide import Slide
from napari_gbm.wsi.tiling import TileGrid, TilingParams
from napari_gbm.wsi.tissue import TissueMask, TissueParams

if TYPE_CHECKING:
    import napari

SLIDE_FILTER = "*.svs *.tif *.tiff *.ndpi *.mrxs *.scn *.bif *.vms *.png *.jpg *.jpeg"


class SlideTilesWidget(ScrollingDock):
    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = napari_viewer
        self._worker: Any = None
        self._file = FileEdit(label="open slide", filter=SLIDE_FILTER, mode="r")
        self._open_btn = PushButton(text="Open")
        self._layer = ComboBox(label="slide layer", choices=self._slide_layer_choices)
        self._info = Label(label="slide", value="(no slide)")
        # defaults from the parameter dataclasses (written once, there)
        tiling, tissue = TilingParams(), TissueParams()
        self._mpp = FloatSpinBox(
            label="pixel size (µm/px)",
            value=0.0,
            min=0.0,
            max=100.0,
            step=0.001,
            tooltip="Level-0 pixel size: the slide's own when its file records one (the "
            "slide line above says where it came from); type another to override it, or "
            "one for a file without (0 = unknown).",
        )
        self._target_mpp = FloatSpinBox(
            label="tile resolution (µm/px)",
            value=tiling.target_mpp,
            min=0.05,
            max=50.0,
            step=0.05,
            tooltip="Resolution tiles are analysed at (0.5 µm/px = 20x).",
        )
        self._tile_size = SpinBox(
            label="tile size (px)",
            value=tiling.tile_size_px,
            min=64,
            max=8192,
            step=64,
            tooltip="Core size of a tile, in pixels at the tile resolution.",
        )
        self._overlap = SpinBox(
            label="overlap (px)",
            value=tiling.overlap_px,
            min=0,
            max=1024,
            tooltip="Halo read around each tile core, at the tile resolution.",
        )
        self._min_tissue = FloatSpinBox(
            label="min tissue fraction",
            value=tiling.min_tissue_fraction,
            min=0.0,
            max=1.0,
            step=0.05,
            tooltip="Tiles with at most this tissue fraction are skipped.",
        )
        self._tissue_res = FloatSpinBox(
            label="tissue resolution (µm/px)",
            value=tissue.resolution_um,
            min=0.5,
            max=64.0,
            tooltip="Resolution of tissue detection (low: fast).",
        )
        self._run_btn = PushButton(text="Detect tissue && tile")
        self._progress = ProgressBar(label="", value=0, min=0, max=0, visible=False)
        # the last problem stays in the dock (a pop-up goes away, and is cut short)
        self._status = Label(label="", value="")
        self.extend(
            [
                self._file,
                self._open_btn,
                self._layer,
                self._info,
                self._mpp,
                self._target_mpp,
                self._tile_size,
                self._overlap,
                self._min_tissue,
                self._tissue_res,
                self._run_btn,
                self._progress,
                self._status,
            ]
        )
        self._open_btn.changed.connect(self._open_file)
        self._layer.changed.connect(self._show_info)
        self._run_btn.changed.connect(self.run)
        napari_viewer.layers.events.inserted.connect(self._refresh)
        napari_viewer.layers.events.removed.connect(self._refresh)
        self._refresh()
        self.fit_width()

    # -- slide choice --------------------------------------------------------------------
    def _slide_layer_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if "slide_path" in getattr(layer, "metadata", {})
        ]

    def _refresh(self, *_: Any) -> None:
        self._layer.reset_choices()
        self._show_info()

    def _show_info(self, *_: Any) -> None:
        layer = self._layer.value
        if layer is None:
            self._info.value = "(no slide: open one, or load a sample from File > Open Sample)"
            return
        m = layer.metadata.get("napari_gbm", {})
        mpp = m.get("mpp")
        if layer is not getattr(self, "_info_layer", None):  # a newly chosen slide
            self._info_layer = layer
            self._mpp.value = float(mpp) if mpp else 0.0
        w, h = m.get("dimensions", ("?", "?"))
        obj = m.get("objective_power")
        self._info.value = (
            f"{m.get('format', '?')}, {w} x {h} px, "
            f"{m.get('stored_level_count', '?')} stored levels\n"
            + (
                f"{mpp:.4g} µm/px ({m.get('mpp_source')})"
                if mpp
                else "pixel size unknown: set it below"
            )
            + (f", {obj:g}x" if obj else "")
        )

    def _open_file(self, *_: Any) -> None:
        path = Path(str(self._file.value))
        if not path.is_file():
            _notify_error(f"'{path}' is not a file; choose a slide file.")
            return
        try:
            self._viewer.open(str(path), plugin="napari-gbm")
        except Exception as exc:  # napari wraps reader failures in its own errors
            _notify_error(f"could not open '{path.name}': {exc}")

    # -- compute ---------------------------------------------------------------------------
    def _params(self) -> tuple[TissueParams, TilingParams]:
        return (
            TissueParams(resolution_um=float(self._tissue_res.value)),
            TilingParams(
                target_mpp=float(self._target_mpp.value),
                tile_size_px=int(self._tile_size.value),
                overlap_px=int(self._overlap.value),
                min_tissue_fraction=float(self._min_tissue.value),
            ),
        )

    def run(self, *_: Any) -> Any:
        """Start tissue detection and tiling in a worker; returns the worker (or None)."""
        from napari.qt.threading import create_worker

        layer = self._layer.value
        if layer is None:
            _notify_error("no slide layer: open a slide with napari-gbm first")
            return None
        try:
            tissue_params, tiling_params = self._params()
        except ValueError as exc:
            _notify_error(str(exc))
            return None
        path = layer.metadata["slide_path"]
        mpp = float(self._mpp.value) or None
        # errors go to a notification (passing "errored" in _connect stops the worker
        # from re-raising them into the Qt event loop as tracebacks)
        worker = create_worker(
            _compute,
            path,
            mpp,
            tissue_params,
            tiling_params,
            _connect={
                "returned": lambda result: self._add_layers(layer, *result),
                "errored": self._on_error,
                "finished": self._done,
            },
            _start_thread=False,
        )
        self._run_btn.enabled = False
        self._progress.visible = True
        self._status.value = "detecting tissue and tiling ..."
        self._worker = worker
        worker.start()
        return worker

    def _on_error(self, exc: Exception) -> None:
        self._status.value = f"error: {exc}"
        _notify_error(str(exc))

    def _done(self) -> None:
        if getattr(self, "_adding", False):
            return  # layers are still being added, one per event-loop turn
        self._run_btn.enabled = True
        self._progress.visible = False
        self._worker = None

    def _add_layers(
        self, slide_layer: Any, slide_mpp: float, tissue: TissueMask, grid: TileGrid
    ) -> None:

        if slide_layer.metadata["napari_gbm"].get("mpp") != slide_mpp:
            # the user gave the pixel size: put the slide itself in µm too
            slide_layer.scale = (slide_mpp, slide_mpp)
            slide_layer.units = ("um", "um")
            slide_layer.metadata["napari_gbm"]["mpp"] = slide_mpp
            slide_layer.metadata["napari_gbm"]["mpp_source"] = "user"
        base = slide_layer.name
        tuples = [
            tissue_layer(tissue, slide_mpp, name=f"{base} tissue"),
            tile_fraction_layer(grid, name=f"{base} tile tissue fraction"),
            tile_shapes_layer(grid, name=f"{base} tiles"),
        ]

        def put(data: Any) -> None:
            new = put_layer(self._viewer, data)
            if data[2] == "labels":
                new.contour = 1  # outline the tissue, so the slide stays visible under it
                new.opacity = 0.9

        def finish() -> None:
            self._viewer.layers.selection.active = slide_layer
            self._viewer.canvas.overlays["scale_bar"].visible = True  # the slide is in µm now
            n_sel = len(grid.selected)
            self._info.value = (
                self._info.value.split("\n")[0] + f"\ntissue {100 * tissue.tissue_fraction:.1f} % "
                f"({tissue.tissue_area_mm2:.2f} mm²), {n_sel} tiles\n"
                "tile edges: tissue fraction, dark purple 0 to yellow 1"
            )
            self._status.value = ""
            self._adding = False
            self._done()

        self._adding = True  # the run ends when the last layer is in (see _done)
        in_steps([partial(put, d) for d in tuples if d is not None], finish)


def _compute(
    path: str, mpp: float | None, tissue_params: TissueParams, tiling_params: TilingParams
) -> tuple[float, TissueMask, TileGrid]:
    slide = Slide(path, mpp=mpp)
    tissue, grid = tile_slide(slide, tissue_params, tiling_params)
    return slide.require_mpp(), tissue, grid


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)
