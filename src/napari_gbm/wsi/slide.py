"""One interface to whole-slide images: :class:`Slide`.

A slide is opened by path (so it pickles to dask workers by path, never as an open
handle). Pyramidal formats (SVS, NDPI, generic tiled TIFF, MRXS, SCN, BIF, ...) go through
OpenSlide; plain TIFF (any compression tifffile decodes), PNG and JPEG go through a
fallback that builds its own lazy pyramid.

Coordinates follow OpenSlide at this boundary: locations are level-0 ``(x, y)``, sizes are
``(width, height)`` in the pixels of the requested level. Arrays come back as numpy RGB
``uint8`` of shape ``(height, width, 3)``, transparent pixels composited on white.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from napari_gbm.wsi._backends import Backend, SlideError
from napari_gbm.wsi._open import open_backend

__all__ = ["MPP_RANGE_UM", "Slide", "SlideError"]

#: Pixel sizes outside this range (µm/px) are treated as missing metadata: a TIFF's
#: default 72 dpi would otherwise claim 352 µm/px.
MPP_RANGE_UM = (0.02, 100.0)
#: the longest side of a slide at its pixel size, in µm: 1 µm to 1 m (a pixel size given
#: outside this makes the slide absurd, and is refused)
PHYSICAL_SIDE_UM = (1.0, 1e6)
#: an image smaller than this on its long side holds no cell to analyse
MIN_SIDE_PX = 16


class Slide:
    """A whole-slide image opened by path.

    Parameters
    ----------
    path : str or Path
        The slide file.
    mpp : float, optional
        Pixel size of level 0 in µm/px. Overrides the file's metadata; needed when the file
        has none (``slide.mpp`` is then ``None``).

    Raises
    ------
    SlideError
        If the file is missing, empty, a directory, not a slide or image format, or its
        pixels cannot be decoded; or, when `mpp` is given, if it makes the slide shorter
        than 1 µm or longer than 1 m, or the image is under 16 px on its long side. The
        message names the file and the reason.
    ValueError
        If `mpp` is given but not a positive finite number.
    """

    def __init__(self, path: str | os.PathLike[str], *, mpp: float | None = None) -> None:
        self.path = Path(path)
        if mpp is not None and not (mpp > 0 and math.isfinite(mpp)):
            raise ValueError(f"mpp must be a positive number of µm per pixel, got {mpp!r}")
        self._mpp_override = None if mpp is None else float(mpp)
        self._backend: Backend = open_backend(self.path)
        if mpp is not None:
            self._check_physical_size(float(mpp))

    def _check_physical_size(self, mpp: float) -> None:
        """A pixel size that makes the slide smaller than a micrometre or larger than a
        metre is a typo (1e-6 for 1e-6 m, 0.5 mm for 0.5 µm): refused before any work (it
        hung tissue detection, or asked for terabytes)."""
        w, h = self._backend.level_dimensions[0]
        if max(w, h) < MIN_SIDE_PX:
            self.close()
            raise SlideError(
                self.path,
                f"the image is {w} x {h} px: too small to hold tissue to analyse",
                read_failure=False,
            )
        side_um = max(w, h) * mpp
        lo, hi = PHYSICAL_SIDE_UM
        if not (lo <= side_um <= hi):
            size = f"{side_um:.3g} µm" if side_um < 1e4 else f"{side_um / 1e6:.3g} m"
            self.close()
            raise SlideError(
                self.path,
                f"pixel size {mpp:g} µm/px makes this {max(w, h)}-px slide {size} long; "
                f"a slide is {lo:g} µm to {hi / 1e6:g} m: give the pixel size in µm per "
                "pixel (0.25 for a 40x scan, 0.5 for 20x)",
                read_failure=False,
            )

    # -- pickling: by path, reopened on the other side ---------------------------------
    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (str(self.path), self._mpp_override))

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._backend.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        mpp = "unknown" if self.mpp is None else f"{self.mpp:.4g}"
        return f"Slide({str(self.path)!r}, {w}x{h}, levels={self.level_count}, mpp={mpp})"

    # -- geometry ----------------------------------------------------------------------
    @property
    def format(self) -> str:
        """Vendor / format as OpenSlide names it (``aperio``, ``generic-tiff``, ...),
        or ``tiff``, ``png``, ``jpeg`` for the fallback."""
        return self._backend.format

    @property
    def backend_name(self) -> str:
        return self._backend.name

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 ``(width, height)`` in pixels."""
        return self._backend.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self._backend.level_dimensions)

    @property
    def stored_level_count(self) -> int:
        """Levels stored in the file. Levels after these are built on the fly (2x block
        means of the coarsest stored level), so that even a single-level file has a
        small level for overviews and napari."""
        return self._backend._native

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple(self._backend.level_dimensions)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(self._backend.level_downsamples)

    @property
    def tile_sizes(self) -> tuple[tuple[int, int], ...]:
        """Native ``(width, height)`` of the storage tiles of each level."""
        return tuple(self._backend.tile_sizes)

    @property
    def properties(self) -> dict[str, str]:
        return dict(self._backend.properties)

    # -- physical scale ----------------------------------------------------------------
    @cached_property
    def metadata_mpp(self) -> float | None:
        """Pixel size from the file's metadata (mean of x and y), or ``None``."""
        mpp_xy = self._backend.mpp_xy
        if mpp_xy is None:
            return None
        mpp = float(np.mean(mpp_xy))
        lo, hi = MPP_RANGE_UM
        if not (lo <= mpp <= hi):
            return None
        return mpp

    @property
    def mpp(self) -> float | None:
        """Level-0 pixel size in µm/px: the override if given, else the metadata's, else
        ``None`` (see :attr:`mpp_message`)."""
        return self._mpp_override if self._mpp_override is not None else self.metadata_mpp

    @property
    def mpp_source(self) -> str | None:
        """``"user"``, ``"metadata"`` or ``None`` when unknown."""
        if self._mpp_override is not None:
            return "user"
        return "metadata" if self.metadata_mpp is not None else None

    @property
    def mpp_message(self) -> str:
        """Why the pixel size is what it is, in words a user can act on."""
        if self.mpp_source == "user":
            return f"pixel size {self.mpp:.4g} µm/px given by the user"
        if self.mpp_source == "metadata":
            return f"pixel size {self.mpp:.4g} µm/px from the file's metadata"
        return (
            "the file does not record its pixel size (µm per pixel); "
            "measurements in µm need it: pass it explicitly (--mpp on the command line, "
            "'mpp' in the widget; 0.25 is typical for a 40x scan, 0.5 for 20x)"
        )

    def require_mpp(self) -> float:
        """The pixel size, or a :class:`SlideError` that says how to provide it."""
        if self.mpp is None:
            raise SlideError(self.path, self.mpp_message, read_failure=False)
        return self.mpp

    @property
    def objective_power(self) -> float | None:
        return self._backend.objective_power

    # -- pixels ------------------------------------------------------------------------
    def read_region(self, location: Sequence[int], level: int, size: Sequence[int]) -> np.ndarray:
        """Read a region as RGB.

        Parameters
        ----------
        location : (x, y)
            Top-left corner in level-0 pixels.
        level : int
            Pyramid level to read from.
        size : (width, height)
            Size in pixels of ``level``. Parts outside the slide come back white.

        Returns
        -------
        ndarray of uint8, shape (height, width, 3)
            The region, transparent pixels composited on white.

        Raises
        ------
        ValueError
            If `level` does not exist or `size` is negative.
        """
        if not 0 <= level < self.level_count:
            raise ValueError(f"level must be in [0, {self.level_count}), got {level}")
        w, h = int(size[0]), int(size[1])
        if w < 0 or h < 0:
            raise ValueError(f"size must be non-negative, got {tuple(size)}")
        if w == 0 or h == 0:
            return np.full((h, w, 3), 255, np.uint8)
        return self._backend.read_region((int(location[0]), int(location[1])), level, (w, h))

    def best_level_for_downsample(self, downsample: float) -> int:
        """The coarsest level whose downsample is at most `downsample`.

        A 1 % tolerance lets a level at 3.999 serve a request for 4.

        Parameters
        ----------
        downsample : float
            Level-0 pixels per output pixel wanted.

        Returns
        -------
        int
            The level index; 0 when every level is coarser.
        """
        best = 0
        for i, ds in enumerate(self.level_downsamples):
            if ds <= downsample * 1.01:
                best = i
        return best

    def read_downsampled(
        self,
        box_l0: Sequence[float],
        out_size: Sequence[int],
        *,
        chunk_px: int = 4096,
    ) -> np.ndarray:
        """Read a level-0 box resampled to ``out_size``, from the best level.

        The box is read from the coarsest level that is still at least as fine as the
        output, in chunks (so memory stays bounded even on a single-level slide), and
        area-averaged to `out_size`.

        Parameters
        ----------
        box_l0 : sequence of 4 float
            ``(x, y, width, height)`` in level-0 pixels (fractional allowed); parts
            outside the slide come back white.
        out_size : sequence of 2 int
            ``(width, height)`` of the output, pixels.
        chunk_px : int, default 4096
            Largest side of a chunk read at once, pixels of the level read.

        Returns
        -------
        ndarray of uint8, shape (height, width, 3)
            The resampled region.

        Raises
        ------
        ValueError
            If the box or the output size is empty.
        """
        x0, y0, bw, bh = (float(v) for v in box_l0)
        ow, oh = int(out_size[0]), int(out_size[1])
        if ow <= 0 or oh <= 0 or bw <= 0 or bh <= 0:
            raise ValueError(f"empty box or output size: box={box_l0}, out={out_size}")
        scale = min(bw / ow, bh / oh)  # level-0 px per output px
        level = self.best_level_for_downsample(scale)
        ds = self.level_downsamples[level]
        out = np.empty((oh, ow, 3), np.uint8)
        # Split the output into row/column strips whose level footprint fits chunk_px.
        step = max(1, int(chunk_px * ds / max(bw / ow, bh / oh)))
        for oy in range(0, oh, step):
            for ox in range(0, ow, step):
                ow_c, oh_c = min(step, ow - ox), min(step, oh - oy)
                # level-0 box of this output chunk
                cx0 = x0 + ox * bw / ow
                cy0 = y0 + oy * bh / oh
                cx1 = x0 + (ox + ow_c) * bw / ow
                cy1 = y0 + (oy + oh_c) * bh / oh
                # level pixels covering the chunk, plus a one-pixel margin so the
                # resampling filter sees the same neighbours on either side of a seam
                lx0 = math.floor(cx0 / ds) - 1
                ly0 = math.floor(cy0 / ds) - 1
                lw = math.ceil(cx1 / ds) + 1 - lx0
                lh = math.ceil(cy1 / ds) + 1 - ly0
                region = self.read_region((round(lx0 * ds), round(ly0 * ds)), level, (lw, lh))
                box = (cx0 / ds - lx0, cy0 / ds - ly0, cx1 / ds - lx0, cy1 / ds - ly0)
                if (ow_c, oh_c) == (lw - 2, lh - 2) and box[:2] == (1.0, 1.0):
                    out[oy : oy + oh_c, ox : ox + ow_c] = region[1:-1, 1:-1]
                    continue
                img = Image.fromarray(region).resize((ow_c, oh_c), Image.Resampling.BOX, box=box)
                out[oy : oy + oh_c, ox : ox + ow_c] = np.asarray(img)
        return out

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        """The whole slide as RGB with its longest side `max_size` pixels (or less).

        Parameters
        ----------
        max_size : int, default 1024
            Longest side of the thumbnail, pixels (never larger than level 0).

        Returns
        -------
        ndarray of uint8, shape (height, width, 3)
            The thumbnail.
        """
        w, h = self.dimensions
        f = min(1.0, max_size / max(w, h))
        return self.read_downsampled((0, 0, w, h), (max(1, round(w * f)), max(1, round(h * f))))

    # -- associated images ---------------------------------------------------------------
    @property
    def associated_image_names(self) -> tuple[str, ...]:
        """Names of the associated images (``label``, ``macro``, ``thumbnail``, ...)."""
        return tuple(self._backend.associated_names)

    def associated_image(self, name: str) -> np.ndarray:
        """An associated image of the slide file.

        Parameters
        ----------
        name : str
            One of :attr:`associated_image_names`.

        Returns
        -------
        ndarray of uint8, shape (height, width, 3)
            The image.

        Raises
        ------
        KeyError
            If the file has no associated image of that name (the message lists them).
        """
        if name not in self.associated_image_names:
            raise KeyError(
                f"'{self.path.name}' has no associated image {name!r}; "
                f"it has: {', '.join(self.associated_image_names) or 'none'}"
            )
        return self._backend.associated_image(name)

    # -- lazy pyramid ------------------------------------------------------------------
    def to_dask(self) -> list[Any]:
        """The pyramid as a list of lazy dask arrays ``(height, width, 3)`` uint8, largest
        first, one chunk per native storage tile. Nothing is read until computed."""
        import dask.array as da  # lazy: dask takes 0.3 s to import, only to_dask uses it

        levels = []
        for level, (w, h) in enumerate(self.level_dimensions):
            tw, th = self.tile_sizes[level]
            src = _LevelArray(self, level, (h, w, 3))
            levels.append(
                da.from_array(
                    src,
                    chunks=(th, tw, 3),
                    asarray=False,
                    fancy=False,
                    name=f"napari-gbm-{self.path.name}-{level}-{self._token}",
                    meta=np.empty((0, 0, 0), np.uint8),
                )
            )
        return levels

    @cached_property
    def _token(self) -> str:
        st = self.path.stat()
        return f"{st.st_size}-{st.st_mtime_ns}"

    def info(self) -> dict[str, Any]:
        """A JSON-friendly description of the slide."""
        return {
            "path": str(self.path),
            "format": self.format,
            "backend": self.backend_name,
            "dimensions": list(self.dimensions),
            "level_count": self.level_count,
            "stored_level_count": self.stored_level_count,
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "level_downsamples": list(self.level_downsamples),
            "tile_sizes": [list(t) for t in self.tile_sizes],
            "mpp": self.mpp,
            "mpp_source": self.mpp_source,
            "objective_power": self.objective_power,
            "associated_images": list(self.associated_image_names),
        }


class _LevelArray:
    """Array-like view of one level for ``dask.array.from_array``: reads on slicing."""

    def __init__(self, slide: Slide, level: int, shape: tuple[int, int, int]) -> None:
        self.slide = slide
        self.level = level
        self.shape = shape
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        ys, xs = key[0], key[1]
        y0, y1, _ = ys.indices(self.shape[0])
        x0, x1, _ = xs.indices(self.shape[1])
        ds = self.slide.level_downsamples[self.level]
        # Nearest level-0 location. With a non-integer downsample (Aperio's 2.0005...)
        # OpenSlide places the region at the fractional level position and interpolates,
        # so rounding keeps chunks within a quarter pixel of their true place.
        loc = (round(x0 * ds), round(y0 * ds))
        region = self.slide.read_region(loc, self.level, (x1 - x0, y1 - y0))
        return region[(slice(None), slice(None), *key[2:])] if len(key) > 2 else region


def _reopen(path: str, mpp: float | None) -> Slide:
    return Slide(path, mpp=mpp)
