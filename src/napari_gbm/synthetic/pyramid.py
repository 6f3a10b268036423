"""Stream a tiled, Aperio-style pyramidal TIFF with bounded memory.

Level 0 is written from a tile generator. While it streams, each row of tiles is
block-averaged by 4 into a raw temporary file; that file feeds level 1, which feeds
level 2, and so on. Only one row of tiles per level is ever in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

__all__ = ["LEVEL_FACTOR", "level_dimensions", "write_pyramid"]

LEVEL_FACTOR = 4
SMALLEST_SIDE = 1024
THUMB_SIDE = 768
JPEG_QUALITY = 90
_APERIO = "Aperio Image Library v12.0.0\r\n"


def level_dimensions(width: int, height: int) -> list[tuple[int, int]]:
    """Size of every pyramid level: factor 4 until the longest side is <= 1024.

    Parameters
    ----------
    width, height : int
        Level-0 size, pixels.

    Returns
    -------
    list of tuple of int
        ``(width, height)`` per level, level 0 first; each level rounds up.
    """
    dims = [(width, height)]
    while max(dims[-1]) > SMALLEST_SIDE:
        w, h = dims[-1]
        dims.append((-(-w // LEVEL_FACTOR), -(-h // LEVEL_FACTOR)))
    return dims


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Area-average an (h, w, 3) uint8 array by ``f`` (edge-padded to a multiple)."""
    h, w = a.shape[:2]
    ph, pw = -h % f, -w % f
    if ph or pw:
        a = np.pad(a, ((0, ph), (0, pw), (0, 0)), mode="edge")
    s = a.reshape(a.shape[0] // f, f, a.shape[1] // f, f, 3).sum(axis=(1, 3), dtype=np.uint32)
    return ((s + f * f // 2) // (f * f)).astype(np.uint8)


class _RawLevel:
    """Row-major uint8 RGB image kept in a temporary file, read back in bands."""

    def __init__(self, path: Path, width: int, height: int) -> None:
        self.path, self.width, self.height = path, width, height
        self.rows = 0
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in finish()

    def append(self, band: np.ndarray) -> None:
        take = min(band.shape[0], self.height - self.rows)
        if take > 0:
            self._fh.write(np.ascontiguousarray(band[:take, : self.width]).tobytes())
            self.rows += take

    def finish(self) -> None:
        self._fh.close()

    def read(self, r0: int, r1: int) -> np.ndarray:
        row = self.width * 3
        n = max(0, min(r1, self.height) - r0)
        a = np.fromfile(self.path, dtype=np.uint8, count=n * row, offset=r0 * row)
        return a.reshape(n, self.width, 3)


def _pad_band(band: np.ndarray, rows: int, cols: int) -> np.ndarray:
    ph, pw = rows - band.shape[0], cols - band.shape[1]
    if ph or pw:
        band = np.pad(band, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return band


def write_pyramid(
    path: Path,
    width: int,
    height: int,
    tile: int,
    render_tile: Callable[[int, int], np.ndarray],
    on_row: Callable[[int, int], None],
    description: str,
    mpp: float,
    temp_name: Callable[[str], Path],
) -> list[tuple[int, int]]:
    """Write the pyramid to ``path``.

    Parameters
    ----------
    path : Path
        Output (temporary) TIFF path.
    width, height : int
        Level-0 size.
    tile : int
        Tile side (multiple of 16).
    render_tile : callable (tx, ty) -> ndarray
        Produces level-0 tiles of shape (tile, tile, 3), uint8.
    on_row : callable (tiles_done, tiles_total)
        Called after every row of tiles of every level (progress, truth flushing).
    description : str
        Key/value part of the Aperio description (``|AppMag = 20|MPP = 0.5|...``).
    mpp : float
        Level-0 micrometres per pixel (also written as resolution tags).
    temp_name : callable (suffix) -> Path
        Names a temporary file in the output folder (the caller deletes leftovers).

    Returns
    -------
    list of (width, height)
        Level dimensions written.
    """
    dims = level_dimensions(width, height)
    grid = [(-(-w // tile), -(-h // tile)) for w, h in dims]
    total = sum(nx * ny for nx, ny in grid)
    done = 0
    raws = [_RawLevel(temp_name(f"L{k}.raw"), *dims[k]) for k in range(1, len(dims))]
    head = f"{_APERIO}{width}x{height} [0,0 {width}x{height}] ({tile}x{tile})"
    # Any: the values are heterogeneous keyword arguments for TiffWriter.write.
    common: dict[str, Any] = {
        "tile": (tile, tile),
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": JPEG_QUALITY},
        "metadata": None,
        "software": False,
        "resolutionunit": "CENTIMETER",
    }
    q = tile // LEVEL_FACTOR

    def level0() -> Iterator[np.ndarray]:
        nonlocal done
        nx, ny = grid[0]
        for ty in range(ny):
            band = np.empty((q, nx * q, 3), np.uint8) if raws else None
            for tx in range(nx):
                t = render_tile(tx, ty)
                if band is not None:
                    band[:, tx * q : (tx + 1) * q] = _block_mean(t, LEVEL_FACTOR)
                if tx == nx - 1:
                    # Row bookkeeping happens before the last yield: tifffile stops
                    # pulling after the last tile, so code after it would never run.
                    if band is not None:
                        raws[0].append(band)
                    done += nx
                    on_row(done, total)
                yield t

    def from_raw(k: int) -> Iterator[np.ndarray]:
        nonlocal done
        src = raws[k - 1]
        nxt = raws[k] if k < len(raws) else None
        nx, ny = grid[k]
        for ty in range(ny):
            band = _pad_band(src.read(ty * tile, (ty + 1) * tile), tile, nx * tile)
            if nxt is not None:
                nxt.append(_block_mean(band, LEVEL_FACTOR))
            done += nx
            on_row(done, total)
            for tx in range(nx):
                yield np.ascontiguousarray(band[:, tx * tile : (tx + 1) * tile])

    try:
        bigtiff = width * height * 3 > 2**31  # JPEG is smaller, but be safe
        with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
            res = 1e4 / mpp
            tw.write(
                level0(),
                shape=(height, width, 3),
                dtype=np.uint8,
                description=f"{head} JPEG/RGB Q={JPEG_QUALITY}{description}",
                resolution=(res, res),
                **common,
            )
            if raws:
                raws[0].finish()
                thumb = _thumbnail(raws[0])
                tw.write(
                    thumb,
                    photometric="rgb",
                    compression="jpeg",
                    metadata=None,
                    software=False,
                    description=f"{head} -> {thumb.shape[1]}x{thumb.shape[0]} - ",
                )
            for k in range(1, len(dims)):
                w, h = dims[k]
                tw.write(
                    from_raw(k),
                    shape=(h, w, 3),
                    dtype=np.uint8,
                    subfiletype=1,
                    description=f"{head} -> {w}x{h} JPEG/RGB Q={JPEG_QUALITY}",
                    resolution=(res * w / width, res * h / height),
                    **common,
                )
                if k < len(raws):
                    raws[k].finish()  # filled while level k streamed
                os.remove(raws[k - 1].path)  # fully consumed
    finally:
        for r in raws:
            r.finish()
            if r.path.exists():
                os.remove(r.path)
    return dims


def _thumbnail(raw: _RawLevel) -> np.ndarray:
    """Small overview for Aperio's second page, streamed from the level-1 file."""
    f = max(1, -(-max(raw.width, raw.height) // THUMB_SIDE))
    parts = []
    for r0 in range(0, raw.height, 64 * f):
        parts.append(_block_mean(raw.read(r0, r0 + 64 * f), f))
    return np.ascontiguousarray(np.concatenate(parts))
