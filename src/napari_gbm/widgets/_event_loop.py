"""Timing on the Qt event loop, for the docks: :class:`Debounced` (the napari side's
view-following controllers, :class:`napari_gbm._napari._cell_view.CellsInView`, take it as
``debounce``) and :func:`in_steps` (add layers one per event-loop turn). Qt stays in
``widgets/``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QTimer

__all__ = ["Debounced", "in_steps"]


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


def in_steps(steps: list[Any], last: Any) -> None:
    """Run each of ``steps`` (callables) in its own turn of the Qt event loop, then
    ``last`` (also when a step raises; the error then propagates to napari's handler).

    Adding a layer costs napari 0.1-0.3 s on the event loop (its Qt controls, the first
    draw); adding three in one call froze the window for their sum. In steps, the window
    repaints and takes input between layers, so the longest freeze is one layer's."""
    todo = list(steps)

    def run_next() -> None:
        try:
            if todo:
                todo.pop(0)()
        except BaseException:
            todo.clear()
            last()
            raise
        if todo:
            QTimer.singleShot(0, run_next)
        else:
            last()

    run_next()
