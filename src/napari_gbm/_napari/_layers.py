"""Core results as napari layer-data tuples ``(data, kwargs, layer_type)``.

Every layer is placed in µm (``scale`` from the slide's pixel size) so that the slide,
the tissue mask and the tiles line up at any zoom, and carries its parameters and the
software version in ``metadata["napari_gbm"]``. When a slide has no known pixel size,
layers are placed in level-0 pixels instead and say so in their metadata.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_gbm import __version__
from napari_gbm.wsi.slide import Slide
from napari_gbm.wsi.tiling import TileGrid
from napari_gbm.wsi.tissue import TissueMask

LayerData = tuple[Any, dict[str, Any], str]

#: Beyond this many tiles a Shapes layer gets slow; the per-tile image still shows them.
MAX_TILE_SHAPES = 5000
TISSUE_COLOR = "lime"


def camera_of(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera``
    before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def _unit(slide_mpp: float | None) -> tuple[float, str]:
    return (slide_mpp, "um") if slide_mpp else (1.0, "pixel")


def slide_metadata(slide: Slide) -> dict[str, Any]:
    info = slide.info()
    info["software"] = {"napari_gbm": __version__}
    return info


def slide_layer(slide: Slide, name: str | None = None) -> LayerData:
    """A lazy multiscale RGB image of the slide, scaled in µm."""
    levels = slide.to_dask()
    # napari reads multiscale data best with a pyramid that shrinks; drop tiny levels
    mpp, unit = _unit(slide.mpp)
    kwargs = {
        "name": name or slide.path.stem,
        "rgb": True,
        "multiscale": len(levels) > 1,
        "contrast_limits": (0, 255),
        "scale": (mpp, mpp),
        "units": (unit, unit),
        "metadata": {"napari_gbm": slide_metadata(slide), "slide_path": str(slide.path)},
    }
    data = levels if len(levels) > 1 else levels[0]
    return data, kwargs, "image"


def tissue_layer(tissue: TissueMask, slide_mpp: float | None, name: str = "tissue") -> LayerData:
    """The tissue mask as a Labels layer (1 = tissue) over the slide."""
    mpp, unit = _unit(slide_mpp)
    ds = tissue.downsample
    # mask pixel r covers level-0 [r ds, (r + 1) ds): its centre is at (r + 0.5) ds - 0.5
    offset = (ds - 1) / 2 * mpp
    kwargs = {
        "name": name,
        "scale": (ds * mpp, ds * mpp),
        "translate": (offset, offset),
        "units": (unit, unit),
        "opacity": 0.3,
        "colormap": {None: "transparent", 0: "transparent", 1: TISSUE_COLOR},
        "metadata": {
            "napari_gbm": {
                "kind": "tissue_mask",
                **tissue.summary(),
                "software": {"napari_gbm": __version__},
            }
        },
    }
    return tissue.mask.astype(np.uint8), kwargs, "labels"


def tile_fraction_layer(grid: TileGrid, name: str = "tile tissue fraction") -> LayerData:
    """Each tile core valued by its tissue fraction (0-1), on a grid of up to 32 x 32 pixels
    per core, cropped to the slide: the layer ends where the slide ends (to a 32nd of a
    tile), so napari's home view centres on the slide, not on the last tiles' overhang.
    At most 4096 pixels on the long side."""
    mpp, unit = _unit(grid.slide_mpp)
    t = grid.tiles
    img = np.zeros((grid.n_rows, grid.n_cols), np.float32)
    img[t["row"].to_numpy(), t["col"].to_numpy()] = t["tissue_fraction"].to_numpy()
    step = grid.params.tile_size_px * grid.scale  # level-0 px per core
    # the first core may be clipped by an offset grid: place cells on the full grid
    ox = grid.params.offset_px[0] % grid.params.tile_size_px * grid.scale + grid.col_min * step
    oy = grid.params.offset_px[1] % grid.params.tile_size_px * grid.scale + grid.row_min * step
    k = max(1, min(32, 4096 // max(grid.n_rows, grid.n_cols, 1)))
    fine = step / k  # level-0 px per layer pixel
    img = np.repeat(np.repeat(img, k, axis=0), k, axis=1)
    w0, h0 = grid.slide_dimensions
    c0 = max(0, int(np.floor(-ox / fine)))
    r0 = max(0, int(np.floor(-oy / fine)))
    c1 = min(img.shape[1], int(np.ceil((w0 - ox) / fine)))
    r1 = min(img.shape[0], int(np.ceil((h0 - oy) / fine)))
    img = np.ascontiguousarray(img[r0:r1, c0:c1])
    ox, oy = ox + c0 * fine, oy + r0 * fine
    kwargs = {
        "name": name,
        "scale": (fine * mpp, fine * mpp),
        "translate": ((oy + fine / 2 - 0.5) * mpp, (ox + fine / 2 - 0.5) * mpp),
        "units": (unit, unit),
        "colormap": "viridis",
        "contrast_limits": (0.0, 1.0),
        "opacity": 0.4,
        "visible": False,
        "metadata": {
            "napari_gbm": {
                "kind": "tile_tissue_fraction",
                **grid.metadata(),
                "software": {"napari_gbm": __version__},
            }
        },
    }
    return img, kwargs, "image"


def tile_shapes_layer(grid: TileGrid, name: str = "tiles") -> LayerData | None:
    """Selected tile cores as rectangles (edges only), with the tile table as features.
    ``None`` when there are more than :data:`MAX_TILE_SHAPES` tiles."""
    sel = grid.selected
    if len(sel) > MAX_TILE_SHAPES or len(sel) == 0:
        return None
    mpp, unit = _unit(grid.slide_mpp)
    x0 = (sel["core_x0_px"].to_numpy() - 0.5) * mpp
    y0 = (sel["core_y0_px"].to_numpy() - 0.5) * mpp
    x1 = (sel["core_x1_px"].to_numpy() - 0.5) * mpp
    y1 = (sel["core_y1_px"].to_numpy() - 0.5) * mpp
    rects = np.stack(
        [
            np.stack([y0, x0], 1),
            np.stack([y0, x1], 1),
            np.stack([y1, x1], 1),
            np.stack([y1, x0], 1),
        ],
        axis=1,
    )
    kwargs = {
        "name": name,
        "shape_type": "rectangle",
        "units": (unit, unit),
        # edges in data units (µm): 0.4 % of a tile (2 µm at 1024 px of 0.5 µm), thin lines
        # at slide zoom and at cell zoom alike (1.5 % made 7.7 µm bars over the cells)
        "edge_width": 0.004 * grid.params.tile_size_px * grid.effective_mpp,
        "edge_color": "tissue_fraction",
        "edge_colormap": "plasma",
        "face_color": "transparent",
        "features": sel.reset_index(drop=True),
        "metadata": {
            "napari_gbm": {
                "kind": "tiles",
                **grid.metadata(),
                "software": {"napari_gbm": __version__},
            }
        },
    }
    return list(rects), kwargs, "shapes"


# --- cells and biomarkers ----------------------------------------------------------------

#: colours of ``positive_class``: not graded, negative, 1+, 2+, 3+ (QuPath-like blue / yellow
#: / orange / red)
CLASS_COLORS = {
    -1: (0.55, 0.55, 0.55, 1.0),
    0: (0.25, 0.45, 0.95, 1.0),
    1: (1.0, 0.85, 0.2, 1.0),
    2: (1.0, 0.55, 0.1, 1.0),
    3: (0.85, 0.1, 0.1, 1.0),
}
#: columns a Points layer carries as ``features`` when a table is too big for all of them
KEY_FEATURES = (
    "cell_id",
    "tile_id",
    "centroid_x_um",
    "centroid_y_um",
    "positive_class",
    "nucleus_area_um2",
    "nucleus_circularity",
    "nucleus_eccentricity",
    "nucleus_hematoxylin_od_mean",
    "nucleus_dab_od_mean",
    "nucleus_eosin_od_mean",
    "cell_area_um2",
    "density_per_mm2",
)
#: above this many cells, only :data:`KEY_FEATURES` go into the layer (memory, speed)
ALL_FEATURES_MAX_CELLS = 200_000
POINT_DIAMETER_UM = 7.0


def class_colors(classes: Any) -> np.ndarray:
    """RGBA (n, 4) float32 colours of ``positive_class`` values."""
    c = np.asarray(classes, dtype=np.int64)
    lut = np.array([CLASS_COLORS[k] for k in (-1, 0, 1, 2, 3)], np.float32)
    return lut[np.clip(c, -1, 3) + 1]


#: cells coloured by a measurement: cyan (low) to magenta (high), no dark end (a dark
#: viridis dot vanishes on hematoxylin-stained nuclei)
MEASURE_COLORMAP = "cool"
MEASURE_LEGEND = "cyan (low) - magenta (high)"


def value_colors(
    values: Any, colormap: str = MEASURE_COLORMAP, limits: tuple[float, float] | None = None
) -> tuple[np.ndarray, tuple[float, float]]:
    """RGBA colours of a measurement through a colormap (NaN grey), and the limits used
    (default: 1st-99th percentile)."""
    from matplotlib import colormaps

    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    if limits is None:
        limits = tuple(float(q) for q in np.percentile(v[ok], [1, 99])) if ok.any() else (0.0, 1.0)  # type: ignore[assignment]
    lo, hi = limits  # type: ignore[misc]
    t = np.clip((v - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    rgba = colormaps[colormap](np.where(ok, t, 0)).astype(np.float32)
    rgba[~ok] = CLASS_COLORS[-1]
    return rgba, (float(lo), float(hi))


def cells_points_layer(
    cells: Any,
    slide_mpp: float | None,
    *,
    name: str = "cells",
    metadata: dict[str, Any] | None = None,
) -> LayerData:
    """Cells as Points at their centroids (level-0 px, scaled to µm), coloured by
    ``positive_class``, with the cell table (or its key columns, for big tables) as
    ``features``."""
    mpp, unit = _unit(slide_mpp)
    data = np.column_stack(
        [cells["centroid_y_px"].to_numpy(), cells["centroid_x_px"].to_numpy()]
    ).astype(np.float64)
    if len(cells) > ALL_FEATURES_MAX_CELLS:
        features = cells[[c for c in KEY_FEATURES if c in cells.columns]]
    else:
        features = cells
    if "positive_class" not in features:
        features = features.assign(positive_class=np.full(len(features), -1, np.int8))
    kwargs = {
        "name": name,
        "scale": (mpp, mpp),
        "units": (unit, unit),
        "size": POINT_DIAMETER_UM / mpp,
        # rings: the class colour around each nucleus, the nucleus itself visible inside
        "symbol": "ring",
        "border_width": 0,
        # napari's categorical colour path with a fixed class -> colour map: faster to add
        # and to recolour than an RGBA array (benchmarks/bench_napari_points.py)
        "face_color": "positive_class",
        "face_color_cycle": CLASS_COLORS,
        "features": features.reset_index(drop=True),
        "metadata": {
            "napari_gbm": {
                "kind": "cells",
                "n_cells": len(cells),
                "colour_by": "positive_class",
                **(metadata or {}),
                "software": {"napari_gbm": __version__},
            }
        },
    }
    return data, kwargs, "points"


def nucleus_labels_layer(
    nuclei: np.ndarray,
    origin: tuple[float, float],
    downsample: float,
    slide_mpp: float | None,
    *,
    name: str = "nuclei",
    metadata: dict[str, Any] | None = None,
) -> LayerData:
    """Nucleus outlines of a region: a label image at ``downsample`` level-0 px per pixel,
    top-left corner at level-0 ``origin`` (x, y). ``metadata["napari_gbm"]["region"]``
    holds ``x0, y0, downsample`` (the contract the GeoJSON writer reads)."""
    mpp, unit = _unit(slide_mpp)
    x0, y0 = origin
    # label pixel r covers level-0 [y0 + r ds, y0 + (r + 1) ds): centre y0 + (r + 0.5) ds - 0.5
    ty = (y0 + downsample / 2 - 0.5) * mpp
    tx = (x0 + downsample / 2 - 0.5) * mpp
    kwargs = {
        "name": name,
        "scale": (downsample * mpp, downsample * mpp),
        "translate": (ty, tx),
        "units": (unit, unit),
        "opacity": 0.8,
        "metadata": {
            "napari_gbm": {
                "kind": "nucleus_labels",
                "region": {"x0": float(x0), "y0": float(y0), "downsample": float(downsample)},
                **(metadata or {}),
                "software": {"napari_gbm": __version__},
            }
        },
    }
    return nuclei, kwargs, "labels"


#: the title and colour map of each biomarker map, wherever a map layer is made (reader,
#: Cells and Biomarkers widgets), so the same map has the same name everywhere
MAP_STYLES: dict[str, tuple[str, str]] = {
    "cell_density_per_mm2": ("cell density (/mm²)", "magma"),
    "positive_percent": ("Ki-67 index (%)", "inferno"),
    "necrosis": ("necrosis", "red"),
    "positive_pixel_fraction": ("DAB-positive area (fraction)", "inferno"),
    "vessel_density_per_mm2": ("vessel density (/mm²)", "magma"),
    "microvascular": ("microvascular proliferation", "green"),
}


def npz_map_layers(
    path: Any, keys: Any, slide_mpp: float | None, name: str, metadata: dict[str, Any]
) -> list[LayerData]:
    """Hidden image layers of the biomarker maps ``keys`` in a ``maps.npz`` (those it has),
    titled and coloured by :data:`MAP_STYLES`, named ``"<name> <title>"``."""
    layers: list[LayerData] = []
    with np.load(path) as npz:
        for key in keys:
            if key not in npz.files:
                continue
            title, cmap = map_title(key)
            data, kw, kind = map_layer(
                npz[key],
                float(npz["bin_um"]),
                slide_mpp,
                name=f"{name} {title}",
                colormap=cmap,
                metadata={**metadata, "map": key},
            )
            layers.append((data, {**kw, "visible": False}, kind))
    return layers


def map_title(key: str) -> tuple[str, str]:
    """(title, colour map) of a biomarker map ``key``."""
    return MAP_STYLES.get(key, (key.replace("_", " "), "viridis"))


def map_layer(
    values: np.ndarray,
    bin_um: float,
    slide_mpp: float | None,
    *,
    name: str,
    colormap: str = "magma",
    contrast_limits: tuple[float, float] | None = None,
    origin_um: tuple[float, float] = (0.0, 0.0),
    metadata: dict[str, Any] | None = None,
) -> LayerData:
    """A biomarker map: one value per square bin of ``bin_um`` µm, bin (0, 0) with its
    top-left corner at ``origin_um`` (x, y) µm from the slide's origin. NaN is
    transparent."""
    mpp, unit = _unit(slide_mpp)
    img = np.asarray(values, dtype=np.float32)
    finite = img[np.isfinite(img)]
    if contrast_limits is None:
        hi = float(np.percentile(finite, 99)) if finite.size else 1.0
        lo = float(min(0.0, finite.min())) if finite.size else 0.0
        contrast_limits = (lo, hi if hi > lo else lo + 1.0)
    # slide pixel centres sit at index * mpp in world space: shift by half a slide pixel
    half = 0.5 * mpp if unit == "um" else 0.5
    b = bin_um if unit == "um" else bin_um / (slide_mpp or 1.0)
    kwargs = {
        "name": name,
        "scale": (b, b),
        "translate": (origin_um[1] + b / 2 - half, origin_um[0] + b / 2 - half),
        "units": (unit, unit),
        "colormap": colormap,
        "contrast_limits": contrast_limits,
        "opacity": 0.55,
        "blending": "translucent",
        "metadata": {
            "napari_gbm": {
                "kind": "biomarker_map",
                "bin_um": bin_um,
                **(metadata or {}),
                "software": {"napari_gbm": __version__},
            }
        },
    }
    return img, kwargs, "image"


# --- putting layers into a viewer --------------------------------------------------------


def put_layer(viewer: Any, layer_data: LayerData) -> Any:
    """Add ``(data, kwargs, type)`` to ``viewer``, or update the layer of that name.

    A re-run (another region, new tiles) gives layers of the names already there. Removing
    a napari layer runs a full garbage collection on the event loop (0.2 s each in a
    session with a slide and results open, napari 0.9), so an image, labels or points
    layer of the same type is updated in place instead: data, placement, features,
    colouring and metadata, the user's other settings (opacity, visibility) kept. Other
    types (shapes) are replaced. Returns the layer.
    """
    from napari.layers import Layer

    data, kwargs, kind = layer_data
    name = kwargs["name"]
    old = viewer.layers[name] if name in viewer.layers else None  # noqa: SIM401 (a LayerList)
    if old is not None and _same_kind(old, kind, kwargs):
        _update_in_place(old, data, kwargs, kind)
        return old
    if old is not None:
        viewer.layers.remove(old)
    return viewer.add_layer(Layer.create(data, kwargs, kind))


def _same_kind(layer: Any, kind: str, kwargs: dict[str, Any]) -> bool:
    if type(layer).__name__.lower() != kind or kind not in ("image", "labels", "points"):
        return False
    if kind == "image":
        return not layer.multiscale and not kwargs.get("multiscale", False) and not layer.rgb
    return True


def _update_in_place(layer: Any, data: Any, kwargs: dict[str, Any], kind: str) -> None:
    from napari_gbm._napari._cell_view import cells_in_view_of

    view = cells_in_view_of(layer)
    if view is not None:  # the new cells replace the table it was showing
        view.close()
    layer.scale = kwargs.get("scale", (1.0, 1.0))
    layer.translate = kwargs.get("translate", (0.0, 0.0))
    if kind == "points":
        with layer.events.blocker_all():
            layer.data = data
            layer.features = kwargs.get("features")
        layer.size = kwargs.get("size", layer.size)
        if "face_color_cycle" in kwargs:
            layer.face_color_cycle = kwargs["face_color_cycle"]
        layer.face_color = kwargs.get("face_color", layer.face_color)
        if "border_color" in kwargs:  # vessels: the ring colours
            layer.border_width = kwargs.get("border_width", layer.border_width)
            layer.border_color = kwargs["border_color"]
        layer.refresh()  # redraw once, with the new colours
    else:
        layer.data = data
        if kind == "image":
            if "colormap" in kwargs:
                layer.colormap = kwargs["colormap"]
            if "contrast_limits" in kwargs:
                layer.contrast_limits = kwargs["contrast_limits"]
            else:
                layer.reset_contrast_limits()
    layer.metadata = kwargs.get("metadata", {})
