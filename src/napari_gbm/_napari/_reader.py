"""napari reader: whole-slide images as lazy multiscale layers in µm.

Returns ``None`` for anything it cannot open (napari then tries other readers); never
raises at the get-reader stage, and never reads level 0 whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from napari_gbm._napari._layers import LayerData, slide_layer
from napari_gbm.slide import Slide, SlideError

PathOrPaths = str | Sequence[str]


def napari_get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    paths = [path] if isinstance(path, str | Path) else list(path)
    slides: list[Slide] = []
    for p in paths:
        try:
            slides.append(Slide(p))
        except (SlideError, OSError, ValueError):
            for s in slides:
                s.close()
            return None
    return _Reader(slides)


class _Reader:
    """Holds the slides opened by the get-reader check, so they are not opened twice."""

    def __init__(self, slides: list[Slide]) -> None:
        self.slides = slides

    def __call__(self, path: Any) -> list[LayerData]:
        layers = []
        for slide in self.slides:
            if slide.mpp is None:
                _warn(f"{slide.path.name}: {slide.mpp_message}. Shown in pixels.")
            layers.append(slide_layer(slide))
        return layers


def _warn(message: str) -> None:
    try:
        from napari.utils.notifications import show_warning

        show_warning(message)
    except ImportError:  # pragma: no cover - napari is a dependency
        import warnings

        warnings.warn(message, stacklevel=3)
