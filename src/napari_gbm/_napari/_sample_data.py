"""napari sample-data contributions: open the sample slides as the reader would.

napari calls a sample command on its event loop and waits for the layer data. A
synthetic sample is generated on first use (3-9 s), so it is generated on a thread while
this call keeps napari's event loop turning, with a progress bar in napari's activity
panel: the window repaints and says what it is doing instead of freezing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from napari_gbm._napari._layers import LayerData, slide_layer
from napari_gbm.samples import cmu1_path, synthetic_sample_path
from napari_gbm.wsi.slide import Slide


def cmu1_small_region() -> list[LayerData]:
    return [slide_layer(Slide(cmu1_path()), name="CMU-1 small region")]


def _synthetic(stain: str, name: str) -> list[LayerData]:
    from napari.utils import progress
    from qtpy.QtWidgets import QApplication

    box: dict[str, Any] = {"done": 0.0}

    def generate() -> None:
        try:
            box["path"] = synthetic_sample_path(
                stain, progress=lambda f: box.__setitem__("done", f)
            )
        except BaseException as exc:  # re-raised on napari's thread below
            box["error"] = exc

    thread = threading.Thread(target=generate, name="napari-gbm-sample", daemon=True)
    thread.start()
    thread.join(0.3)  # cached: done by now, no progress bar
    app = QApplication.instance()
    if thread.is_alive():
        desc = f"generating the {name} sample (first use only)"
        with progress(total=100, desc=desc) as bar:
            while thread.is_alive():
                if app is not None:
                    app.processEvents()
                thread.join(0.03)
                bar.update(int(100 * box["done"]) - bar.n)
    if "error" in box:
        raise box["error"]
    return [slide_layer(Slide(Path(box["path"])), name=name)]


def synthetic_he() -> list[LayerData]:
    return _synthetic("he", "synthetic GBM H&E")


def synthetic_ki67() -> list[LayerData]:
    return _synthetic("hdab", "synthetic GBM Ki-67")
