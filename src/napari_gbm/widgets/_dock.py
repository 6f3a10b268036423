"""The base of every napari-gbm dock: a magicgui Container that scrolls instead of
growing the window, so the docks fit a 1366 x 768 laptop screen side by side."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import Container, Label, Widget


class ScrollingDock(Container):
    """A labelled, vertically scrolling Container.

    napari docks a magicgui widget's ``native`` Qt widget; a scrollable Container's
    ``native`` is the inner widget, so without this napari would dock the inner widget and
    the scroll area would never be shown. Here ``native`` is the scroll area, and
    :attr:`body` the inner widget that holds the layout (to add plain Qt widgets to)."""

    def __init__(self, **kwargs: Any) -> None:
        from napari_gbm._napari._warmup import start

        start()  # compile napari's label colours while the user sets the dock up
        super().__init__(labels=True, scrollable=True, **kwargs)

    @property
    def native(self) -> Any:
        return self.root_native_widget

    def fit_width(self) -> None:
        """Keep the controls' full width (only the height scrolls): call once the dock's
        widgets are added."""
        from qtpy.QtWidgets import QLabel, QSizePolicy

        for label in self.body.findChildren(QLabel):  # long status lines wrap, not widen
            label.setWordWrap(True)
        # a wrapped label still asks for a comfortable width (up to ~400 px): a long result
        # line made the body wider than the dock and cut off the right edge of every
        # control. Value labels (status lines, not the row names) take the width given.
        for widget in _walk(self):
            if isinstance(widget, Label):
                policy = widget.native.sizePolicy()
                policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
                widget.native.setSizePolicy(policy)
        self.body.layout().addStretch(1)  # rows stay together at the top of a tall dock
        scroll = self.root_native_widget
        bar = scroll.verticalScrollBar().sizeHint().width()
        scroll.setMinimumWidth(self.body.sizeHint().width() + bar + 4)

    @property
    def body(self) -> Any:
        """The Qt widget inside the scroll area (its layout holds the controls)."""
        return self.root_native_widget.widget()


def _walk(container: Container) -> list[Widget]:
    out: list[Widget] = []
    for widget in container:
        out.append(widget)
        if isinstance(widget, Container):
            out.extend(_walk(widget))
    return out
