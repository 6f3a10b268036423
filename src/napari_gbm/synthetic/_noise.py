"""Seeded, position-addressed noise for the synthetic slide generator.

Every value depends only on global coordinates and a seed, never on which tile asks
for it, so tiles rendered independently join without seams.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._kernels import interp_grid

__all__ = ["hash_uniform", "noise_points", "noise_tile", "smooth_grid_noise"]

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)
_F1 = np.uint64(0xBF58476D1CE4E5B9)
_F2 = np.uint64(0x94D049BB133111EB)


def hash_uniform(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Hash integer lattice coordinates to uniform floats in [-1, 1).

    Parameters
    ----------
    ix, iy : ndarray of int
        Lattice coordinates (broadcastable); negative values are fine.
    seed : int
        Stream seed.

    Returns
    -------
    ndarray of float32
    """
    # uint64 arrays wrap on overflow silently, which is what a hash wants.
    x = np.asarray(ix, dtype=np.int64).astype(np.uint64)
    y = np.asarray(iy, dtype=np.int64).astype(np.uint64)
    salt = np.uint64((int(seed) * 0x165667B19E3779F9) & 0xFFFFFFFFFFFFFFFF)
    h = x * _M1 ^ y * _M2 ^ salt
    # splitmix64 finaliser: decorrelates neighbouring lattice points.
    h ^= h >> np.uint64(30)
    h *= _F1
    h ^= h >> np.uint64(27)
    h *= _F2
    h ^= h >> np.uint64(31)
    return ((h >> np.uint64(40)).astype(np.float32) / np.float32(2**23)) - np.float32(1.0)


def _axis_weights(
    start: float, n: int, cell: float, step: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lattice indices (relative to the first), smoothstep weights, lattice coords."""
    f = (start + (np.arange(n) + 0.5) * step) / cell
    i0 = np.floor(f).astype(np.int64)
    t = f - i0
    s = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
    base = int(i0.min())
    lat = np.arange(base, int(i0.max()) + 2)
    return i0 - base, i0 - base + 1, s, lat


def noise_tile(
    x0: int, y0: int, w: int, h: int, cell: float, seed: int, step: int = 1
) -> np.ndarray:
    """Value noise over a pixel rectangle, in [-1, 1].

    The lattice values of the rectangle are hashed once, then interpolated per pixel
    (identical at any tile origin, so tiles join without seams).

    Parameters
    ----------
    x0, y0 : int
        Global level-0 pixel of the rectangle's top-left corner.
    w, h : int
        Rectangle size in pixels.
    cell : float
        Lattice spacing in pixels (feature size).
    seed : int
        Stream seed.
    step : int
        Sample every ``step`` pixels (at the centres of step x step blocks); the result
        then has shape ``(h // step, w // step)``.

    Returns
    -------
    ndarray of float32, shape (h // step, w // step)
    """
    ax0, ax1, sx, lx = _axis_weights(x0, w // step, cell, step)
    ay0, ay1, sy, ly = _axis_weights(y0, h // step, cell, step)
    v = hash_uniform(lx[None, :], ly[:, None], seed)
    return interp_grid(v, ay0, ay1, sy, ax0, ax1, sx)


def noise_points(xs: np.ndarray, ys: np.ndarray, cell: float, seed: int) -> np.ndarray:
    """Value noise at arbitrary points, matching :func:`noise_tile` at pixel centres.

    Parameters
    ----------
    xs, ys : ndarray of float
        Global level-0 coordinates (pixel centres are at ``i + 0.5``).
    cell : float
        Lattice spacing in pixels.
    seed : int
        Stream seed.

    Returns
    -------
    ndarray of float32
    """
    fx = np.asarray(xs, dtype=np.float64) / cell
    fy = np.asarray(ys, dtype=np.float64) / cell
    ix = np.floor(fx).astype(np.int64)
    iy = np.floor(fy).astype(np.int64)
    tx = fx - ix
    ty = fy - iy
    sx = tx * tx * (3.0 - 2.0 * tx)
    sy = ty * ty * (3.0 - 2.0 * ty)
    v00 = hash_uniform(ix, iy, seed)
    v10 = hash_uniform(ix + 1, iy, seed)
    v01 = hash_uniform(ix, iy + 1, seed)
    v11 = hash_uniform(ix + 1, iy + 1, seed)
    top = v00 * (1 - sx) + v10 * sx
    bot = v01 * (1 - sx) + v11 * sx
    return (top * (1 - sy) + bot * sy).astype(np.float32)


def smooth_grid_noise(shape: tuple[int, int], cell: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth Gaussian-like noise on a small grid, unit standard deviation.

    Built by upsampling a coarse random lattice (spacing ``cell`` grid nodes) with cubic
    splines, so the cost does not grow with the feature size (a wide Gaussian filter
    would).

    Parameters
    ----------
    shape : (int, int)
        Output grid shape (rows, cols).
    cell : float
        Feature size in grid nodes (>= 1).
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    ndarray of float32
    """
    cell = max(float(cell), 1.0)
    ch = int(np.ceil(shape[0] / cell)) + 4
    cw = int(np.ceil(shape[1] / cell)) + 4
    coarse = ndimage.gaussian_filter(rng.standard_normal((ch, cw)), 0.7)
    yy = (np.arange(shape[0]) + 0.5) / cell + 1.5
    xx = (np.arange(shape[1]) + 0.5) / cell + 1.5
    out = np.empty(shape, dtype=np.float32)
    # Row bands keep map_coordinates' temporaries small for large grids.
    for r0 in range(0, shape[0], 256):
        r1 = min(r0 + 256, shape[0])
        gy, gx = np.meshgrid(yy[r0:r1], xx, indexing="ij")
        out[r0:r1] = ndimage.map_coordinates(coarse, [gy, gx], order=3, mode="nearest")
    sd = float(out.std()) or 1.0
    out -= float(out.mean())
    out /= sd
    return out
