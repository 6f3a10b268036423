"""Debouncing on the Qt event loop, for the napari side's view-following controllers
(:class:`napari_gbm._napari._cell_view.CellsInView` takes it as ``debounce``): Qt stays in
``widgets/``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QTimer

__all__ = ["Debounced"]


class Debounced:
    """``fn`` called once, ``ms`` after the last of a burst of calls: a single-shot
    QTimer, restarted by each call."""

    def __init__(self, fn: Callable[..., Any], ms: int) -> None:
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(int(ms))
        self._timer.timeout.connect(fn)

    def __call__(self, *_: Any) -> None:
        self._timer.start()

    def cancel(self) -> None:
        """Drop a pending call."""
        self._timer.stop()
