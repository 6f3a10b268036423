"""Cells dock widget: detect and measure cells in the current view, in a drawn region, or
over the whole slide; cells come back as a Points layer (the cell table as features,
coloured by DAB grade), nucleus outlines as Labels for a region, biomarker maps for a whole
slide. Compute runs in a thread worker with progress and a cancel button.

The core reports progress through a callback, called in the worker's thread; the callback
emits a Qt signal (:class:`_Progress`), which Qt delivers in the main thread, where the
progress bar is. Cancel sets a flag the core's ``cancel`` callback reads between tiles; the
core then raises :class:`~napari_gbm.detect.cells.Cancelled`, which the worker reports as
its error."""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
)
from qtpy.QtCore import QObject, Signal

from napari_gbm._napari._layers import (
    camera_of,
    cells_points_layer,
    map_layer,
    map_title,
    nucleus_labels_layer,
    put_layer,
)
from napari_gbm.detect.cells import Cancelled, CellParams
from napari_gbm.detect.nucleus_params import NucleusParams
from napari_gbm.widgets._dock import ScrollingDock
from napari_gbm.widgets._event_loop import Debounced, in_steps

if TYPE_CHECKING:
    import napari

#: above this many cells the Points layer shows the cells in view only
IN_VIEW_ABOVE = 200_000
SCOPES = ("current view", "drawn region", "whole slide")


#: our own Shapes layers, never a region to analyse: the tile grid, the analysed region
OWN_SHAPES = ("tiles", "analysed_region", "mvp_foci")


def _own_shapes(layer: Any) -> bool:
    return layer.metadata.get("napari_gbm", {}).get("kind") in OWN_SHAPES


class _Progress(QObject):
    """Progress from the worker's thread to the widget: a Qt signal emitted in one thread
    runs its slots in the thread of the receiver (here the main thread)."""

    tile = Signal(object)  # (tiles done, tiles in all, cells so far)


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


class CellsWidget(ScrollingDock):
    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = napari_viewer
        self._worker: Any = None
        self._cancel = False
        self._tile_progress = _Progress()
        self._tile_progress.tile.connect(self._on_progress)
        self._layer = ComboBox(label="slide layer", choices=self._slide_choices)
        self._scope = ComboBox(
            label="analyse",
            choices=SCOPES,
            value="current view",
            tooltip="The part of the slide in view, the shape drawn in a Shapes layer, or "
            "every tile with tissue (written to the output folder).",
        )
        self._shapes = ComboBox(label="region layer", choices=self._shapes_choices)
        self._stain = ComboBox(
            label="stain",
            choices=[("H&E", "he"), ("H-DAB (Ki-67)", "hdab")],
            value="he",
            tooltip="H&E, or hematoxylin-DAB immunohistochemistry such as Ki-67",
        )
        self._detector = ComboBox(
            label="detector",
            choices=[("classical (watershed)", "classical"), ("learned (network)", "learned")],
            value=NucleusParams().detector,
            tooltip="The calibrated watershed, or the small network shipped with napari-gbm "
            "(offline; see docs/MODEL_CARD.md for where each is better)",
        )
        self._texture = CheckBox(text="texture (Haralick)", value=False)
        self._out = FileEdit(label="output folder", mode="d", tooltip="whole slide only")
        self._run_btn = PushButton(text="Detect cells")
        self._cancel_btn = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="", value=0, min=0, max=1, visible=False)
        self._status = Label(label="", value="")
        self.extend(
            [
                self._layer,
                self._scope,
                self._shapes,
                self._stain,
                self._detector,
                self._texture,
                self._out,
                self._run_btn,
                self._cancel_btn,
                self._progress,
                self._status,
            ]
        )
        self._region_text = ""
        self._run_btn.changed.connect(self.run)
        self._cancel_btn.changed.connect(self.cancel)
        # another slide: the last status described the previous one
        self._layer.changed.connect(lambda *_: setattr(self._status, "value", ""))
        napari_viewer.layers.events.inserted.connect(self._on_inserted)
        napari_viewer.layers.events.removed.connect(self._refresh)
        for layer in list(napari_viewer.layers):
            self._watch(layer)
        self.fit_width()

    # -- choices ---------------------------------------------------------------------------
    def _slide_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return [(ly.name, ly) for ly in self._viewer.layers if "slide_path" in ly.metadata]

    def _shapes_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Shapes

        return [
            (ly.name, ly)
            for ly in self._viewer.layers
            if isinstance(ly, Shapes) and not _own_shapes(ly)
        ]

    def _refresh(self, *_: Any) -> None:
        self._layer.reset_choices()
        self._shapes.reset_choices()

    def _on_inserted(self, event: Any) -> None:
        self._refresh()
        self._watch(event.value, follow=True)

    def _watch(self, layer: Any, follow: bool = False) -> None:
        """The region layer follows the Shapes layer the user last added or drew in."""
        from napari.layers import Shapes

        if not isinstance(layer, Shapes) or _own_shapes(layer):
            return
        layer.events.data.connect(lambda _e, ly=layer: self._follow(ly))
        if follow:
            if len(layer.data) == 0:  # a new layer to draw a region in: outline, not fill
                layer.current_face_color = "transparent"
            self._follow(layer)

    def _follow(self, layer: Any) -> None:
        self._shapes.reset_choices()
        if layer in [v for _, v in self._shapes_choices()]:
            self._shapes.value = layer

    # -- the region ------------------------------------------------------------------------
    def _view_box(self, mpp: float) -> tuple[float, float, float, float]:
        """The level-0 box (x, y, w, h) of what the canvas shows."""
        cy, cx = camera_of(self._viewer).center[-2:]
        h_px, w_px = tuple(self._viewer.canvas.size)
        zoom = camera_of(self._viewer).zoom
        w, h = w_px / zoom, h_px / zoom  # world units (µm)
        return ((cx - w / 2) / mpp, (cy - h / 2) / mpp, w / mpp, h / mpp)

    def _shape_polygon(self, mpp: float) -> tuple[np.ndarray, str]:
        """The selected (else the last) shape of the region layer, as (x, y) level-0
        vertices, and words that name it."""
        layer = self._shapes.value
        if layer is None or len(layer.data) == 0:
            raise ValueError(
                "no region drawn: add a Shapes layer and draw a rectangle or polygon over "
                "the slide, then choose it as the region layer"
            )
        idx = sorted(layer.selected_data)[-1] if layer.selected_data else len(layer.data) - 1
        verts = np.asarray(layer.data[idx], dtype=np.float64)[:, -2:]
        world = verts * np.asarray(layer.scale)[-2:] + np.asarray(layer.translate)[-2:]
        text = f"shape {idx + 1} of {len(layer.data)} in '{layer.name}'"
        return world[:, ::-1] / mpp, text  # (x, y) level-0 px

    # -- compute ---------------------------------------------------------------------------
    def run(self, *_: Any) -> Any:
        """Start the analysis in a worker; returns the worker (or None on bad input)."""
        from napari.qt.threading import create_worker

        layer = self._layer.value
        if layer is None:
            _notify_error("no slide layer: open a slide with napari-gbm first")
            return None
        mpp = layer.metadata.get("napari_gbm", {}).get("mpp")
        if not mpp:
            _notify_error("the slide has no pixel size: set it in the Slide & tiles widget first")
            return None
        params = CellParams(
            stain=self._stain.value,
            nucleus=NucleusParams(detector=self._detector.value),
            texture=bool(self._texture.value),
        )
        path = layer.metadata["slide_path"]
        scope = self._scope.value
        try:
            if scope == "whole slide":
                out = Path(str(self._out.value)) if str(self._out.value) not in ("", ".") else None
                out = out or Path(tempfile.mkdtemp(prefix="napari-gbm-"))
                job: Any = (_run_slide, path, mpp, params, out)
            else:
                if scope == "drawn region":
                    poly, self._region_text = self._shape_polygon(mpp)
                    x0, y0 = poly.min(0)
                    x1, y1 = poly.max(0)
                    box = (x0, y0, x1 - x0, y1 - y0)
                else:
                    poly, box = None, self._view_box(mpp)
                    self._region_text = "the current view"
                job = (_run_region, path, mpp, params, box, poly)
        except ValueError as exc:
            _notify_error(str(exc))
            return None
        self._cancel = False
        worker = create_worker(
            *job,
            progress=lambda *p: self._tile_progress.tile.emit(p),
            cancel=lambda: self._cancel,
            _connect={
                "returned": lambda result: self._add_layers(layer, mpp, result),
                "errored": self._on_error,
                "finished": self._done,
            },
            _start_thread=False,
        )
        self._run_btn.enabled = False
        self._cancel_btn.enabled = True
        self._progress.visible = True
        self._progress.value = 0
        self._status.value = f"analysing ({scope}) ..."
        self._worker = worker
        worker.start()
        return worker

    def cancel(self, *_: Any) -> None:
        self._cancel = True
        self._status.value = "cancelling after the current tile ..."

    def _on_progress(self, p: tuple[int, int, int]) -> None:
        done, total, n = p
        self._progress.max = max(total, 1)
        self._progress.value = done
        self._status.value = f"tile {done}/{total}, {n} cell{'' if n == 1 else 's'}"

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, Cancelled):
            self._status.value = str(exc)  # "cancelled after 2 of 9 tiles"
            return
        self._status.value = f"error: {exc}"
        _notify_error(str(exc))

    def _done(self) -> None:
        if getattr(self, "_adding", False):
            return  # layers are still being added, one per event-loop turn
        self._run_btn.enabled = True
        self._cancel_btn.enabled = False
        self._progress.visible = False
        self._worker = None

    def _outline_region(self, slide_layer: Any, mpp: float, meta: dict[str, Any]) -> None:
        """Draw (or move) the outline of the region that was analysed."""
        name = f"{slide_layer.name} analysed region"
        outline = _region_outline(meta, mpp)
        style = {
            "edge_color": "yellow",
            # µm: visible both zoomed in and with the whole region in view
            "edge_width": max(2.0, 0.005 * float(np.ptp(outline, axis=0).max())),
            "face_color": "transparent",
        }
        metadata = {"napari_gbm": {"kind": "analysed_region", "area_mm2": meta["area_mm2"]}}
        if name in self._viewer.layers:  # move the outline: removing a layer costs 0.2 s
            layer = self._viewer.layers[name]
            layer.selected_data = set(range(layer.nshapes))
            layer.remove_selected()
            layer.add_polygons([outline], **style)
            layer.metadata = metadata
            return
        self._viewer.add_shapes(
            [outline],
            shape_type="polygon",
            name=name,
            units=("um", "um"),
            metadata=metadata,
            **style,
        )

    def _add_layers(self, slide_layer: Any, mpp: float, result: dict[str, Any]) -> None:

        base = slide_layer.name
        meta = result["metadata"]
        tuples = [cells_points_layer(result["cells"], mpp, name=f"{base} cells", metadata=meta)]
        if result.get("nuclei") is not None:
            tuples.append(
                nucleus_labels_layer(
                    result["nuclei"],
                    result["origin"],
                    result["downsample"],
                    mpp,
                    name=f"{base} nuclei",
                    metadata=meta,
                )
            )
        for key, arr in result.get("maps", {}).items():
            title, cmap = map_title(key)
            tuples.append(
                map_layer(
                    arr,
                    result["bin_um"],
                    mpp,
                    name=f"{base} {title}",
                    colormap=cmap,
                    metadata={**meta, "map": key},
                )
            )
        big = len(result["cells"]) > IN_VIEW_ABOVE
        if big:  # whole slides: the layer holds the cells in view only (CellsInView)
            pts, kw, kind = tuples[0]
            tuples[0] = (pts[:0], {**kw, "features": kw["features"].iloc[:0]}, kind)

        def put(data: Any) -> None:
            if data[2] == "image":  # maps: one click away, the cells stay readable
                data = (data[0], {**data[1], "visible": False}, data[2])
            new = put_layer(self._viewer, data)
            if data[2] == "points" and big:
                from napari_gbm._napari._cell_view import CellsInView

                CellsInView(self._viewer, new, result["cells"], debounce=Debounced)
            if data[2] == "labels":
                new.contour = 1

        def finish() -> None:
            n = len(result["cells"])
            s = result.get("summary", {})
            line = f"{n} cell" if n == 1 else f"{n} cells"
            if meta.get("scope") == "region":
                self._outline_region(slide_layer, mpp, meta)
                line = (
                    f"{self._region_text or 'region'} ({meta['area_mm2']:.3f} mm², outlined): "
                    f"{line}"
                )
            if s.get("cell_density_per_mm2"):
                line += f", {s['cell_density_per_mm2']:.0f}/mm²"
            if s.get("positive_percent") is not None:
                line += f", positive {s['positive_percent']:.1f} %"
            cal = result.get("metadata", {}).get("calibration")
            if cal:
                line += f"\nslide calibration: counterstain level {cal['level_od']:.3f} OD"
            if result.get("out"):
                line += f"\nwritten to {result['out']}"
            for warning in s.get("warnings", []):
                line += f"\nwarning: {warning}"
            self._status.value = line
            self._adding = False
            self._done()

        self._adding = True  # the run ends when the last layer is in (see _done)
        in_steps([partial(put, d) for d in tuples], finish)


#: the slide calibrations measured so far (a view or a drawn region uses its slide's one,
#: measured once per slide and parameters: a few seconds on a large slide)
_CALIBRATIONS: dict[tuple[Any, ...], Any] = {}


def _calibration_of(slide: Any, path: str, mpp: float, params: CellParams) -> Any:
    from napari_gbm.detect.cells import slide_calibration
    from napari_gbm.wsi.tiling import TilingParams

    key = (path, mpp, params.stain, params.nucleus, params.calibration)
    if key not in _CALIBRATIONS:
        _CALIBRATIONS[key] = slide_calibration(slide, params, target_mpp=TilingParams().target_mpp)
    return _CALIBRATIONS[key]


def _run_region(
    path: str, mpp: float, params: CellParams, box: Any, poly: Any, *, progress: Any, cancel: Any
) -> dict[str, Any]:
    from napari_gbm.biomarkers import ihc_scores
    from napari_gbm.detect.region import analyze_region
    from napari_gbm.qc import result_warnings
    from napari_gbm.wsi.slide import Slide

    slide = Slide(path, mpp=mpp)
    cal = _calibration_of(slide, path, mpp, params)
    r = analyze_region(
        slide, box, params, calibration=cal, polygon=poly, progress=progress, cancel=cancel
    )
    area_mm2 = _polygon_area(poly) if poly is not None else r.box[2] * r.box[3]
    area_mm2 *= mpp**2 / 1e6
    scores = ihc_scores(r.cells["positive_class"].to_numpy())
    summary = {
        "cell_density_per_mm2": len(r.cells) / area_mm2 if area_mm2 > 0 else None,
        **scores,
        "warnings": result_warnings(
            r.cells["nucleus_area_um2"], area_mm2, mpp, params.nucleus.min_area_um2
        ),
    }
    meta = {
        "scope": "region",
        "box_l0": list(r.box),
        "polygon_l0": None if poly is None else np.asarray(poly).tolist(),
        "area_mm2": area_mm2,
        "cells": params.to_dict(),
        "calibration": cal.to_dict() if cal is not None else None,
        "slide_path": path,
    }
    return {
        "cells": r.cells,
        "nuclei": r.nuclei,
        "origin": r.origin,
        "downsample": r.downsample,
        "metadata": meta,
        "summary": summary,
    }


def _region_outline(meta: dict[str, Any], mpp: float) -> np.ndarray:
    """The analysed region as (row, col) vertices in µm: the polygon, else the box."""
    poly = meta.get("polygon_l0")
    if poly is None:
        x, y, w, h = meta["box_l0"]
        poly = [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]
    return np.asarray(poly, dtype=np.float64)[:, ::-1] * mpp


def _run_slide(
    path: str, mpp: float, params: CellParams, out: Path, *, progress: Any, cancel: Any
) -> dict[str, Any]:
    import pandas as pd

    from napari_gbm.pipeline import AnalyzeParams, analyze_slide

    summary = analyze_slide(
        path, out, AnalyzeParams(cells=params), mpp=mpp, progress=progress, cancel=cancel
    )
    cells = pd.read_parquet(out / "cells.parquet")
    maps = np.load(out / "maps.npz")
    meta = {
        "scope": "slide",
        "output": str(out),
        "slide_path": path,
        "analysed_tissue_area_mm2": summary.get("analysed_tissue_area_mm2"),
        "calibration": summary.get("calibration"),
    }
    return {
        "cells": cells,
        "maps": {
            k: maps[k]
            for k in ("cell_density_per_mm2", "positive_percent", "necrosis")
            if k in maps.files
        },
        "bin_um": float(maps["bin_um"]),
        "metadata": meta,
        "summary": summary,
        "out": str(out),
    }


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)
