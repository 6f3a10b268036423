"""Measure the longest event-loop block of the napari paths a user takes (issue 15).

Run as a script in a fresh interpreter (so the first round is cold):
``python tests/_event_loop_probe.py SLIDE OUT_DIR ROUNDS``. A QTimer fires every 10 ms
on napari's event loop; the longest gap between two ticks while a path runs is how long
the window was frozen. Each round opens the slide with napari-gbm's reader, runs Slide &
tiles, the Cells widget on the current view and then on the whole slide (its layers then
updated in place), and opens the analysis folder. Prints one JSON line per round:
``{"path": [longest block s, total s], ...}``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def main(slide: str, out_dir: str, rounds: int) -> None:
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_gbm._napari import _warmup as warmup
    from napari_gbm.widgets._cells import CellsWidget
    from napari_gbm.widgets._slide_tiles import SlideTilesWidget

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    state = {"last": time.perf_counter(), "max": 0.0}

    def tick() -> None:
        now = time.perf_counter()
        state["max"] = max(state["max"], now - state["last"])
        state["last"] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()

    def settle(until: object = None, timeout: float = 600.0) -> None:
        t0 = time.perf_counter()
        while until is not None and not until():
            app.processEvents()
            time.sleep(0.005)
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("the worker did not finish")
        for _ in range(40):  # the layers' first draws happen here
            app.processEvents()
            time.sleep(0.005)

    def measure(results: dict[str, list[float]], key: str, action: object) -> object:
        settle()
        state["last"], state["max"] = time.perf_counter(), 0.0
        t0 = time.perf_counter()
        value = action()  # type: ignore[operator]
        results[key] = [state["max"], time.perf_counter() - t0]
        return value

    settle()
    for r in range(rounds):
        res: dict[str, list[float]] = {}
        viewer.layers.clear()
        viewer.window.remove_dock_widget("all")

        def open_slide() -> object:
            layer = viewer.open(slide, plugin="napari-gbm")[0]
            settle()
            return layer

        layer = measure(res, "open slide", open_slide)
        tiles = SlideTilesWidget(viewer)
        viewer.window.add_dock_widget(tiles)
        tiles._layer.value = layer
        if r == 0:
            # the plugin compiles napari's label-colour code in the background from the
            # moment the reader or a dock is first used (_napari/_warmup.py): the cold round
            # starts once it has, as a user setting up the dock would (on a fresh CI machine
            # with a cold Numba cache the compilation alone took about 10 s)
            t0 = time.perf_counter()
            if not warmup.wait(300):
                raise TimeoutError("the warm-up did not finish")
            res["warm-up (background)"] = [0.0, time.perf_counter() - t0]

        def run_tiles(tiles: Any = tiles) -> None:
            tiles.run()
            settle(lambda: tiles._worker is None)

        measure(res, "slide & tiles", run_tiles)
        cells = CellsWidget(viewer)
        viewer.window.add_dock_widget(cells)
        cells._layer.value = layer
        cells._stain.value = "hdab"
        cells._scope.value = "current view"

        def run_cells(cells: Any = cells) -> None:
            cells.run()
            settle(lambda: cells._worker is None)
            if "error" in str(cells._status.value):
                raise RuntimeError(cells._status.value)

        measure(res, "cells, view", run_cells)
        out = Path(out_dir) / f"round{r}"
        cells._scope.value = "whole slide"
        cells._out.value = str(out)
        measure(res, "cells, whole slide", run_cells)
        viewer.layers.clear()

        def open_folder(out: Path = out) -> None:
            viewer.open(str(out), plugin="napari-gbm")
            settle()

        measure(res, "open analysis", open_folder)
        print(json.dumps(res), flush=True)
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
