"""Pixel sources behind :class:`napari_gbm.wsi.slide.Slide`.

- :class:`OpenSlideBackend`: every pyramid format OpenSlide reads.
- :class:`TiffBackend`: TIFF files OpenSlide refuses (plain stripped TIFF, OME-TIFF, other
  compressions), through tifffile; uses the file's own pyramid when it has one.
- :class:`PilBackend`: PNG and JPEG (and anything else Pillow decodes).

Files without a pyramid get a lazy one (factor 2 per level, block means), computed from
level 0 only for the region asked for.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import tifffile
from PIL import Image

#: A built pyramid stops once the longest side is at most this many pixels.
_MIN_LEVEL_SIDE = 512
_DEFAULT_CHUNK = 512
#: The most stored-level pixels one read of a built level decodes at once (12 MiB of RGB,
#: 48 MiB as the float32 block mean works in).
_MAX_READ_PX = 4 * 1024 * 1024


class SlideError(Exception):
    """A slide could not be opened or read, or cannot be analysed as it is (no pixel size,
    no tissue: ``read_failure=False``). The message gives the reason first and the file
    last, so a notification cut short still says what is wrong."""

    def __init__(self, path: Path | str, reason: str, *, read_failure: bool = True) -> None:
        self.path = Path(path)
        self.reason = reason
        self.read_failure = read_failure
        lead = "cannot read this slide: " if read_failure else ""
        super().__init__(f"{lead}{reason} (slide '{self.path}')")


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA (straight alpha) to RGB on a white background.

    Opaque input comes back as a view of the RGB channels (no copy: copying a
    byte-strided array costs more than decoding the tile did)."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3]
    if alpha.min(initial=255) == 255:
        return rgb
    # Only the box holding transparent pixels is blended (at a slide edge: a thin band).
    transparent = alpha < 255
    rows = np.flatnonzero(transparent.any(axis=1))
    cols = np.flatnonzero(transparent.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    out = np.array(rgb)
    a = alpha[r0:r1, c0:c1, None].astype(np.uint16)
    blended = (rgb[r0:r1, c0:c1].astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    out[r0:r1, c0:c1] = blended
    return out


def to_rgb(arr: np.ndarray) -> np.ndarray:
    """Grey, RGB or RGBA uint8 to RGB uint8."""
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 4:
        return composite_on_white(arr)
    if arr.shape[2] == 3:
        return arr
    if arr.shape[2] == 2:  # grey + alpha
        return composite_on_white(np.concatenate([np.repeat(arr[..., :1], 3, 2), arr[..., 1:]], 2))
    raise ValueError(f"unsupported number of channels: {arr.shape[2]}")


def block_mean(arr: np.ndarray, factor: int) -> np.ndarray:
    """Downsample an (h, w, c) array by an integer factor: the mean of each block; a
    partial last block is averaged over the pixels it has."""
    if factor == 1:
        return arr
    h, w = arr.shape[:2]
    oh, ow = math.ceil(h / factor), math.ceil(w / factor)
    pad_h, pad_w = oh * factor - h, ow * factor - w
    a = arr.astype(np.float32)
    if pad_h or pad_w:
        a = np.pad(a, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    a = a.reshape(oh, factor, ow, factor, -1).mean(axis=(1, 3))
    return np.clip(a + 0.5, 0, 255).astype(np.uint8)


class Backend:
    """What a pixel source provides. Subclasses fill the attributes in ``__init__``."""

    name = "base"
    format = "unknown"
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    tile_sizes: list[tuple[int, int]]
    properties: dict[str, str]
    mpp_xy: tuple[float, float] | None = None
    objective_power: float | None = None
    associated_names: tuple[str, ...] = ()

    path: Path
    _native: int  # levels stored in the file; the rest are built from the coarsest

    def _add_built_levels(self) -> None:
        """Add factor-2 levels below the coarsest stored one until the image is small, so
        napari and tissue detection never touch level 0 of a single-level file."""
        self._native = len(self.level_dimensions)
        while max(self.level_dimensions[-1]) > _MIN_LEVEL_SIDE:
            w, h = self.level_dimensions[-1]
            self.level_dimensions.append((math.ceil(w / 2), math.ceil(h / 2)))
            self.level_downsamples.append(self.level_downsamples[-1] * 2)
            self.tile_sizes.append((_DEFAULT_CHUNK, _DEFAULT_CHUNK))

    def _read_native_region(
        self, loc: tuple[int, int], level: int, size: tuple[int, int]
    ) -> np.ndarray:
        """RGB of a stored level; ``loc`` in level-0 px; white outside the image."""
        raise NotImplementedError

    def read_region(self, loc: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB ``size`` (w, h) of ``level`` from level-0 ``loc`` (x, y); white outside.

        A built level is the block mean of the coarsest stored one, read in pieces of at
        most :data:`_MAX_READ_PX` stored pixels, so memory stays flat in the slide's size:
        the overview of a 32768² single-level TIFF is 64² blocks of all of level 0, which
        read whole took 3 GiB of pixels and 12 GiB as floats. Pieces start at multiples of
        the block size, so the result equals a read in one piece."""
        if level < self._native:
            return self._read_native_region(loc, level, size)
        src = self._native - 1
        ds_src = self.level_downsamples[src]
        factor = round(self.level_downsamples[level] / ds_src)
        w, h = size
        per_row = w * factor * factor  # stored pixels per output row
        if per_row * h <= _MAX_READ_PX:
            region = self._read_native_region(loc, src, (w * factor, h * factor))
            return block_mean(region, factor)[:h, :w]
        rows = max(1, _MAX_READ_PX // per_row)
        cols = w if rows > 1 else max(1, _MAX_READ_PX // (factor * factor))
        out = np.empty((h, w, 3), np.uint8)
        for y in range(0, h, rows):
            hh = min(rows, h - y)
            for x in range(0, w, cols):
                ww = min(cols, w - x)
                at = (loc[0] + round(x * factor * ds_src), loc[1] + round(y * factor * ds_src))
                region = self._read_native_region(at, src, (ww * factor, hh * factor))
                out[y : y + hh, x : x + ww] = block_mean(region, factor)[:hh, :ww]
        return out

    def associated_image(self, name: str) -> np.ndarray:
        raise KeyError(name)

    def close(self) -> None:
        pass


class OpenSlideBackend(Backend):
    name = "openslide"

    def __init__(self, path: Path) -> None:

        self.path = path
        self._osr = openslide.OpenSlide(str(path))
        props = dict(self._osr.properties)
        self.properties = props
        self.format = props.get("openslide.vendor", "unknown")
        self.level_dimensions = [tuple(d) for d in self._osr.level_dimensions]  # type: ignore[misc]
        self.level_downsamples = [float(d) for d in self._osr.level_downsamples]
        self.tile_sizes = [
            (
                int(props.get(f"openslide.level[{i}].tile-width", _DEFAULT_CHUNK)),
                int(props.get(f"openslide.level[{i}].tile-height", _DEFAULT_CHUNK)),
            )
            for i in range(len(self.level_dimensions))
        ]
        try:
            self.mpp_xy = (float(props["openslide.mpp-x"]), float(props["openslide.mpp-y"]))
        except (KeyError, ValueError):
            self.mpp_xy = None
        try:
            self.objective_power = float(props["openslide.objective-power"])
        except (KeyError, ValueError):
            self.objective_power = None
        self.associated_names = tuple(self._osr.associated_images.keys())
        self._add_built_levels()

    def _read_native_region(
        self, loc: tuple[int, int], level: int, size: tuple[int, int]
    ) -> np.ndarray:

        try:
            img = self._osr.read_region(loc, level, size)
        except openslide.OpenSlideError as exc:
            raise SlideError(self.path, f"pixel data could not be decoded ({exc})") from exc
        return composite_on_white(np.asarray(img))

    def associated_image(self, name: str) -> np.ndarray:
        return composite_on_white(np.asarray(self._osr.associated_images[name].convert("RGBA")))

    def close(self) -> None:
        self._osr.close()


class _ArrayBackend(Backend):
    """Stored levels read as arrays by pixel ranges (tifffile, Pillow)."""

    def _init_levels(self, dims: list[tuple[int, int]], tiles: list[tuple[int, int]]) -> None:
        w0 = dims[0][0]
        self.level_dimensions = list(dims)
        self.level_downsamples = [w0 / d[0] for d in dims]
        self.tile_sizes = list(tiles)
        self._add_built_levels()

    def _read_rows_cols(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """RGB of stored level ``level`` rows y0:y1, cols x0:x1 (inside the image)."""
        raise NotImplementedError

    def _read_native_region(
        self, loc: tuple[int, int], level: int, size: tuple[int, int]
    ) -> np.ndarray:
        w, h = size
        out = np.full((h, w, 3), 255, np.uint8)
        ds = self.level_downsamples[level]
        sx0, sy0 = math.floor(loc[0] / ds), math.floor(loc[1] / ds)
        lw, lh = self.level_dimensions[level]
        rx0, ry0 = max(sx0, 0), max(sy0, 0)
        rx1, ry1 = min(sx0 + w, lw), min(sy0 + h, lh)
        if rx1 <= rx0 or ry1 <= ry0:
            return out
        try:
            src = self._read_rows_cols(level, ry0, ry1, rx0, rx1)
        except SlideError:
            raise
        except Exception as exc:  # decoder errors come in many types
            raise SlideError(self.path, f"pixel data could not be decoded ({exc})") from exc
        out[ry0 - sy0 : ry1 - sy0, rx0 - sx0 : rx1 - sx0] = src
        return out


class TiffBackend(_ArrayBackend):
    name = "tifffile"

    def __init__(self, path: Path) -> None:
        import zarr  # lazy: zarr takes 0.15 s to import, only TIFFs OpenSlide cannot read use it

        self.path = path
        self._tif = tifffile.TiffFile(str(path))
        series = self._tif.series[0]
        axes = series.axes
        if axes not in ("YX", "YXS"):
            raise SlideError(path, f"unsupported TIFF layout (axes {axes!r}); expected RGB or grey")
        if series.dtype != np.uint8:
            raise SlideError(path, f"unsupported pixel type {series.dtype}; expected 8-bit")
        self.format = "ome-tiff" if self._tif.is_ome else "tiff"
        self._lock = threading.Lock()
        self._arrays = [
            zarr.open_array(series.aszarr(level=i), mode="r") for i in range(len(series.levels))
        ]
        dims = [(int(a.shape[1]), int(a.shape[0])) for a in self._arrays]
        tiles = []
        for lvl in series.levels:
            page = lvl.keyframe
            if page.is_tiled:
                tiles.append((int(page.tilewidth), int(page.tilelength)))
            else:
                tiles.append((min(_DEFAULT_CHUNK, int(page.imagewidth)), _DEFAULT_CHUNK))
        self._init_levels(dims, tiles)
        page0 = series.levels[0].keyframe
        self.properties = {"tiff.ImageDescription": str(page0.description or "")}
        self.mpp_xy = _tiff_mpp(page0)

    def _read_rows_cols(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        with self._lock:  # one file handle: tifffile seeks are not thread-safe
            arr = np.asarray(self._arrays[level][y0:y1, x0:x1])
        return to_rgb(arr)

    def close(self) -> None:
        self._tif.close()


def _tiff_mpp(page: Any) -> tuple[float, float] | None:
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    um_per_unit = {2: 25400.0, 3: 10000.0}.get(unit)
    if um_per_unit is None:
        return None
    xr, yr = tags["XResolution"].value, tags["YResolution"].value
    xres, yres = xr[0] / xr[1] if xr[1] else 0, yr[0] / yr[1] if yr[1] else 0
    if xres <= 0 or yres <= 0:
        return None
    return um_per_unit / xres, um_per_unit / yres


class PilBackend(_ArrayBackend):
    name = "pillow"

    def __init__(self, path: Path) -> None:
        self.path = path
        with Image.open(path) as img:
            self.format = (img.format or "image").lower()
            size = img.size
            dpi = img.info.get("dpi")
        self._image: np.ndarray | None = None
        self._lock = threading.Lock()
        self._init_levels([size], [(_DEFAULT_CHUNK, _DEFAULT_CHUNK)])
        self.properties = {}
        if dpi and dpi[0] and dpi[1]:
            self.mpp_xy = (25400.0 / float(dpi[0]), 25400.0 / float(dpi[1]))

    def _pixels(self) -> np.ndarray:
        # PNG and JPEG cannot be read in parts: decode once, on first use.
        with self._lock:
            if self._image is None:
                with Image.open(self.path) as img:
                    mode = "RGBA" if ("A" in img.mode or "transparency" in img.info) else "RGB"
                    self._image = to_rgb(np.asarray(img.convert(mode)))
            return self._image

    def _read_rows_cols(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self._pixels()[y0:y1, x0:x1]
