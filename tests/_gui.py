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
