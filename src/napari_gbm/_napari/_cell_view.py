"""Whole-slide cells without freezing napari: a Points layer that holds only the cells in
view.

A slide has 10^5 - 10^6 cells; napari draws 10^6 points in about 10-25 s on a software
renderer and every recolour costs as much (BENCHMARKS.md). :class:`CellsInView` keeps the
whole cell table aside and gives the layer only the cells inside the current view (plus a
margin), when they number at most ``max_points``; zoomed out further, the layer empties
and the biomarker maps show the slide. The view is followed through the camera's events,
debounced by the ``debounce`` the caller gives (the widgets give a Qt timer,
:class:`napari_gbm.widgets._event_loop.Debounced`: Qt stays in ``widgets/``), else at each
event. Regrading and recolouring apply to the whole table (``cells``) and are pushed to
the layer with :meth:`refresh`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import pandas as pd

from napari_gbm._napari._layers import KEY_FEATURES, camera_of

__all__ = ["CellsInView", "Debouncer", "cells_in_view_of"]

_REGISTRY: weakref.WeakKeyDictionary[Any, CellsInView] = weakref.WeakKeyDictionary()


def cells_in_view_of(layer: Any) -> CellsInView | None:
    """The controller of a cells layer in in-view mode, if any."""
    return _REGISTRY.get(layer)


class Debouncer(Protocol):
    """Calls a function once, some time after the last of a burst of calls."""

    def __call__(self, *args: Any) -> None: ...

    def cancel(self) -> None:
        """Drop a pending call."""


class CellsInView:
    def __init__(
        self,
        viewer: Any,
        layer: Any,
        cells: pd.DataFrame | None = None,
        *,
        max_points: int = 50_000,
        margin: float = 0.25,
        debounce_ms: int = 150,
        debounce: Callable[[Callable[..., Any], int], Debouncer] | None = None,
    ) -> None:
        """``debounce(fn, ms)`` makes the debounced form of ``fn`` that follows the camera
        (made at the first camera event); None: the view is updated at every event."""
        self.viewer = viewer
        self.layer = layer
        full = layer.features if cells is None else cells
        self.cells = full.reset_index(drop=True)
        if cells is None:
            yx = np.asarray(layer.data)[:, -2:]
        else:
            yx = full[["centroid_y_px", "centroid_x_px"]].to_numpy(dtype=np.float64)
        self.y, self.x = yx[:, 0].copy(), yx[:, 1].copy()
        self.max_points = int(max_points)
        self.margin = float(margin)
        self.shown = np.zeros(0, np.int64)
        self.status = ""
        self._debounce_ms = debounce_ms
        self._debounce = debounce
        self._debounced: Debouncer | None = None
        _REGISTRY[layer] = self
        meta = layer.metadata.setdefault("napari_gbm", {})
        meta["in_view_only"] = {"max_points": self.max_points, "n_cells": len(self.cells)}
        camera_of(viewer).events.zoom.connect(self._schedule)
        camera_of(viewer).events.center.connect(self._schedule)
        self.update()

    def close(self) -> None:
        """Stop following the view (the layer is removed, or given other cells)."""
        camera = camera_of(self.viewer)
        camera.events.zoom.disconnect(self._schedule)
        camera.events.center.disconnect(self._schedule)
        if self._debounced is not None:
            self._debounced.cancel()
        if _REGISTRY.get(self.layer) is self:
            del _REGISTRY[self.layer]
        self.layer.metadata.get("napari_gbm", {}).pop("in_view_only", None)

    # -- following the view ---------------------------------------------------------------
    def _schedule(self, *_: Any) -> None:
        if self._debounce is None:
            self.update()
            return
        if self._debounced is None:
            self._debounced = self._debounce(self.update, self._debounce_ms)
        self._debounced()

    def view_box_px(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the view plus margin, in the layer's data pixels."""
        cy, cx = camera_of(self.viewer).center[-2:]
        h_px, w_px = tuple(self.viewer.canvas.size)
        zoom = camera_of(self.viewer).zoom
        sy, sx = (float(s) for s in self.layer.scale[-2:])
        ty, tx = (float(t) for t in self.layer.translate[-2:])
        hw = w_px / zoom * (0.5 + self.margin)
        hh = h_px / zoom * (0.5 + self.margin)
        return ((cx - hw - tx) / sx, (cy - hh - ty) / sy, (cx + hw - tx) / sx, (cy + hh - ty) / sy)

    def update(self, *_: Any) -> None:
        x0, y0, x1, y1 = self.view_box_px()
        inside = (self.x >= x0) & (self.x < x1) & (self.y >= y0) & (self.y < y1)
        n = int(inside.sum())
        if n > self.max_points:
            idx = np.zeros(0, np.int64)
            self.status = (
                f"{n:,} cells in view (more than {self.max_points:,}): zoom in to see them; "
                "the maps show the whole slide"
            )
        else:
            idx = np.flatnonzero(inside)
            self.status = f"{n:,} of {len(self.cells):,} cells in view"
        if np.array_equal(idx, self.shown) and n <= self.max_points:
            return
        self.shown = idx
        self._push()

    def refresh(self) -> None:
        """Push the table's current values (e.g. new grades) to the shown points."""
        self._push()

    def _push(self) -> None:
        idx = self.shown
        cols = [c for c in self.layer.features.columns if c in self.cells.columns] or [
            c for c in KEY_FEATURES if c in self.cells.columns
        ]
        sub = self.cells.iloc[idx][cols].reset_index(drop=True)
        colour = self.layer.metadata.get("napari_gbm", {}).get("colour_by", "positive_class")
        with self.layer.events.blocker_all():
            self.layer.data = np.column_stack([self.y[idx], self.x[idx]])
            self.layer.features = sub
        if isinstance(colour, dict) and colour.get("column") in self.cells:
            from napari_gbm._napari._layers import value_colors

            rgba, _ = value_colors(
                self.cells[colour["column"]].to_numpy()[idx], limits=tuple(colour["limits"])
            )
            self.layer.face_color = rgba
        else:
            self.layer.refresh_colors(update_color_mapping=False)
        self.layer.refresh()
