"""napari reader: whole-slide images as lazy multiscale layers in µm, and analysis
folders (``napari-gbm analyze`` / the Cells widget's output) as the slide with its result
layers: tissue, cells (Points with the cell table), biomarker maps, tile region classes,
vessels and MVP foci (H&E, CD31, CD34);
and the ``.parquet`` of ``napari-gbm spots`` as a Points layer of Visium spots.

Returns ``None`` for anything it cannot open (napari then tries other readers); never
raises at the get-reader stage, and never reads level 0 whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from napari_gbm._napari._layers import LayerData, slide_layer
from napari_gbm._napari._spots import is_spots_file, read_spots
from napari_gbm.wsi.slide import Slide, SlideError

PathOrPaths = str | Sequence[str]


def napari_get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    from napari_gbm._napari._warmup import start

    start(delay_s=2.0)  # after napari has added what this call returns
    paths = [path] if isinstance(path, str | Path) else list(path)
    if len(paths) == 1 and (Path(paths[0]) / "summary.json").is_file():
        return read_analysis_folder
    if len(paths) == 1 and is_spots_file(paths[0]):  # napari-gbm spots' .parquet
        return read_spots
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
        if any(slide.mpp for slide in self.slides):
            _scale_bar_on()
        return layers


def _scale_bar_on() -> None:
    """Show napari's scale bar: a slide in µm is read with one (a reader returns layer
    data only, so the viewer is the current one; nothing happens without one)."""
    try:
        from napari import current_viewer

        viewer = current_viewer()
        if viewer is not None:
            viewer.canvas.overlays["scale_bar"].visible = True
    except Exception:  # an older napari without canvas overlays: the bar stays as it was
        pass


def _warn(message: str) -> None:
    try:
        from napari.utils.notifications import show_warning

        show_warning(message)
    except ImportError:  # pragma: no cover - napari is a dependency
        import warnings

        warnings.warn(message, stacklevel=3)


def read_analysis_folder(path: PathOrPaths) -> list[LayerData]:
    """The layers of a complete analysis folder (one with ``summary.json``)."""
    import json

    import numpy as np
    import pandas as pd
    from PIL import Image

    from napari_gbm._napari._layers import (
        MAP_STYLES,
        cells_points_layer,
        map_layer,
        npz_map_layers,
    )
    from napari_gbm._napari._vessels import vessel_layers
    from napari_gbm.biomarkers import REGION_CLASSES, tile_map

    folder = Path(path if isinstance(path, str | Path) else path[0])
    summary = json.loads((folder / "summary.json").read_text())
    info = summary.get("slide", {})
    mpp = info.get("mpp")
    name = summary.get("slide_id") or folder.name
    meta = {"analysis_folder": str(folder), "slide_id": name}
    layers: list[LayerData] = []
    from napari_gbm.outputs import find_analysed_slide

    slide_path = find_analysed_slide(folder, summary)
    if slide_path is not None:
        try:
            layers.append(slide_layer(Slide(slide_path, mpp=mpp), name=name))
        except SlideError as exc:
            _warn(f"the analysed slide could not be opened ({exc}); showing the results only")
    else:
        recorded = summary.get("input", {}).get("path", "?")
        _warn(
            f"the analysed slide ({recorded}) is not there, nor beside the analysis folder; "
            "showing the results only. Open the slide with napari-gbm (File > Open) to see "
            "them over it, or put it next to the folder."
        )
    w0 = info.get("dimensions", (0, 0))[0]
    if (folder / "tissue_mask.png").is_file() and mpp and w0:
        mask = np.asarray(Image.open(folder / "tissue_mask.png")) > 0
        ds = w0 / mask.shape[1]
        layers.append(
            (
                mask.astype(np.uint8),
                {
                    "name": f"{name} tissue",
                    "scale": (ds * mpp, ds * mpp),
                    "units": ("um", "um"),  # as every other layer: one scale bar unit
                    "translate": ((ds - 1) / 2 * mpp, (ds - 1) / 2 * mpp),
                    "opacity": 0.5,
                    "visible": False,  # a fill would tint the stain colours
                    "colormap": {None: "transparent", 0: "transparent", 1: "lime"},
                    "metadata": {"napari_gbm": {"kind": "tissue_mask", **meta}},
                },
                "labels",
            )
        )
    tiles_path = folder / "tiles.parquet"
    if tiles_path.is_file() and mpp:
        tiles = pd.read_parquet(tiles_path)
        if "region_class" in tiles and len(tiles):
            first = tiles.loc[tiles["core_width_um"].idxmax()]
            size = float(first["core_width_um"])
            origin = (
                float(first["core_x0_um"] - (first["col"] - tiles["col"].min()) * size),
                float(first["core_y0_um"] - (first["row"] - tiles["row"].min()) * size),
            )
            regions = tile_map(tiles, tiles["region_class"].where(tiles["region_class"] > 0))
            data, kw, kind = map_layer(
                regions,
                size,
                mpp,
                name=f"{name} tile regions",
                colormap="turbo",
                contrast_limits=(0, max(REGION_CLASSES)),
                origin_um=origin,
                metadata={**meta, "map": "region_class", "classes": REGION_CLASSES},
            )
            kw["visible"] = False
            layers.append((data, kw, kind))
    if (folder / "maps.npz").is_file() and mpp:
        layers += npz_map_layers(folder / "maps.npz", MAP_STYLES, mpp, name, meta)
    if (folder / "cells.parquet").is_file():
        cells = pd.read_parquet(folder / "cells.parquet")
        area = summary.get("analysed_tissue_area_mm2")
        layers.append(
            cells_points_layer(
                cells,
                mpp,
                name=f"{name} cells",
                metadata={**meta, "scope": "slide", "analysed_tissue_area_mm2": area},
            )
        )
    if mpp:  # H&E, CD31, CD34: vessels and MVP foci over the cells (none for others)
        layers.extend(vessel_layers(folder, mpp, name=name, metadata=meta))
        _scale_bar_on()
    return layers
