"""Compile napari's label-colour code, and import what results need, in the background.

napari (0.9) compiles Numba code the first time it colours a Labels layer: about 1 s on
the event loop, the freeze a user sees when the first tissue mask or nucleus outline
appears. :func:`start` runs that compilation once per process on a daemon thread, when
the reader or a widget is first used, with the colour maps and dtypes our layers use. It
only calls napari's colour-map code (no canvas, no Qt), so it is safe off the main
thread; Numba's compiler lock makes a layer that arrives meanwhile wait for the same
compilation instead of repeating it. A failure (another napari version) is ignored: the
layer then compiles on first use, as without this module. The modules that turn results
into layers (pandas' Parquet reader, the biomarker maps) are imported on the same thread.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["start", "wait"]

_started = threading.Event()
_done = threading.Event()


def _warm(delay_s: float = 0.0) -> None:
    import time

    time.sleep(delay_s)
    try:
        import importlib

        for name in ("pyarrow.parquet", "napari_gbm.biomarkers", "napari_gbm._napari._layers"):
            importlib.import_module(name)

        from napari.layers import Labels

        # the tissue mask (uint8, a direct 0/1 colour map) and nucleus labels (int32,
        # napari's cyclic colour map), as _layers and the reader make them
        layers = [
            Labels(
                np.zeros((2, 2), np.uint8),
                colormap={None: "transparent", 0: "transparent", 1: "lime"},
            ),
            Labels(np.arange(4, dtype=np.int32).reshape(2, 2)),
        ]
        for layer in layers:
            raw = layer.data.dtype
            view = layer._slice.image.view.dtype if layer._slice is not None else raw
            layer.colormap._get_mapping_from_cache(view if raw.itemsize > 2 else raw)
        # napari triangulates shapes with Numba (compiled on first use, 5-8 s with an
        # empty Numba cache): the tile grid and the analysed-region outline are shapes
        from napari.layers import Points, Shapes

        square = np.array([[0.0, 0.0], [0.0, 10.0], [10.0, 10.0], [10.0, 0.0]])
        Shapes([square, square + 20], shape_type="rectangle", edge_width=1.0)
        Shapes([square[[0, 1, 2]]], shape_type="polygon", face_color="transparent")
        Points(np.zeros((3, 2)), symbol="ring", border_width=0, size=2.0)
    except Exception:  # an optimisation only
        pass
    finally:
        _done.set()


def start(delay_s: float = 0.0) -> None:
    """Start the warm-up thread (once per process; returns at once). ``delay_s``: wait
    this long first, so that a slide being opened does not share the interpreter with it
    (the reader starts it while napari is still adding the slide)."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_warm, args=(delay_s,), name="napari-gbm-warmup", daemon=True).start()


def wait(timeout: float | None = None) -> bool:
    """Wait until the warm-up has finished (True), or ``timeout`` seconds (False); False
    at once when it was never started."""
    return _started.is_set() and _done.wait(timeout)
