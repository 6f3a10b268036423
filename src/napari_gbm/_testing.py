"""Fixtures for tests and benchmarks that must be made, not shipped.

:func:`write_repeated_tile_slide` writes a huge pyramidal TIFF (100k x 100k in about a
second) by repeating one pre-encoded JPEG tile: real OpenSlide-readable files for
measuring open time and low-resolution reads at whole-slide scale.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

__all__ = ["write_repeated_tile_slide"]


def write_repeated_tile_slide(
    path: str | os.PathLike[str],
    size_px: int = 100_000,
    *,
    mpp: float = 0.25,
    downsamples: tuple[int, ...] = (1, 4, 16, 64, 256),
    tile_px: int = 256,
    tile_rgb: np.ndarray | None = None,
) -> Path:
    """A square pyramidal JPEG-tiled TIFF of ``size_px`` per side whose every tile shows
    ``tile_rgb`` (default: a pink square of tissue on near-white glass) at every level.
    Levels are separate ``subfiletype=1`` pages with resolution tags, the layout OpenSlide
    reads as ``generic-tiff``."""
    if tile_rgb is None:
        tile = np.full((tile_px, tile_px, 3), 240, np.uint8)
        q = tile_px // 4
        tile[q : 3 * q, q : 3 * q] = (200, 120, 180)
    else:
        tile = np.ascontiguousarray(tile_rgb[:tile_px, :tile_px, :3])
        if tile.shape != (tile_px, tile_px, 3):
            raise ValueError(f"tile_rgb must be at least {tile_px} x {tile_px} RGB")
    encoded = imagecodecs.jpeg8_encode(tile, level=90)
    path = Path(path)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for i, ds in enumerate(downsamples):
            n = max(1, size_px // ds)
            n_tiles = math.ceil(n / tile_px) ** 2
            tw.write(
                data=(bytes(encoded) for _ in range(n_tiles)),
                shape=(n, n, 3),
                dtype="uint8",
                tile=(tile_px, tile_px),
                photometric="rgb",
                compression="jpeg",
                subfiletype=0 if i == 0 else 1,
                resolution=(1e4 / (mpp * ds), 1e4 / (mpp * ds)),
                resolutionunit="CENTIMETER",
            )
    return path
