"""Helpers of the GUI tests (imported by them; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import time


def settle(seconds: float = 0.3) -> None:
    """Let Qt process events for ``seconds``: repaints, queued signals, timers."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def wait_done(qtbot: object, widget: object, timeout_s: float = 120.0) -> None:
    """Wait until ``widget``'s run has ended: its worker finished *and* every layer it
    adds one per event-loop turn is in (the widget clears ``_worker`` last). Waiting on
    the worker's ``finished`` signal alone races the layer steps on a slow machine."""
    qtbot.waitUntil(lambda: widget._worker is None, timeout=int(timeout_s * 1000))  # type: ignore[attr-defined]
    settle(0.1)
