"""Numba kernels: paint nuclei and vessels into a tile, measure nuclei, compose RGB.

Objects (nuclei, karyorrhectic dust, red cells) are rows of a float64 array with the
columns named by the ``O_*`` constants. Every per-pixel random value is a hash of the
global pixel position, so output never depends on tile boundaries.
"""

from __future__ import annotations

import numpy as np
from numba import njit

(O_CX, O_CY, O_A, O_B, O_TH, O_A2, O_P2, O_A3, O_P3) = range(9)
(O_H, O_D, O_E, O_CYTO, O_TEX, O_GRAIN) = range(9, 15)
N_COLS = 15
# Vessel rows (CD31 stain): centre (px), outer and lumen semi-axes (px; lumen 0 = solid),
# orientation, wall DAB OD, nucleus hematoxylin, texture seed, wobble, kind, region, key.
(V_CX, V_CY, V_AO, V_BO, V_AI, V_BI, V_TH, V_DAB, V_HCORE, V_TEX) = range(10)
(V_WOB, V_KIND, V_REGION, V_KEY) = range(10, 14)
N_VCOLS = 14

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)
_M3 = np.uint64(0x165667B19E3779F9)
_F1 = np.uint64(0xBF58476D1CE4E5B9)
_F2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0


@njit(inline="always", cache=True)
def _hash01(ix: int, iy: int, s: int) -> float:
    h = np.uint64(ix) * _M1 ^ np.uint64(iy) * _M2 ^ np.uint64(s) * _M3
    h ^= h >> _S30
    h *= _F1
    h ^= h >> _S27
    h *= _F2
    h ^= h >> _S31
    return float(h >> _S11) * _INV53


@njit(inline="always", cache=True)
def _hash_bits(ix: int, iy: int, s: int) -> np.uint64:
    h = np.uint64(ix) * _M1 ^ np.uint64(iy) * _M2 ^ np.uint64(s) * _M3
    h ^= h >> _S30
    h *= _F1
    h ^= h >> _S27
    h *= _F2
    h ^= h >> _S31
    return h


@njit(inline="always", cache=True)
def _u16(h: np.uint64, k: int) -> float:
    return float((h >> np.uint64(16 * k)) & np.uint64(0xFFFF)) * (1.0 / 65536.0)


@njit(inline="always", cache=True)
def _vnoise01(x: float, y: float, cell: float, s: int) -> float:
    """Value noise in [0, 1] at a point (smoothstep interpolation)."""
    fx = x / cell
    fy = y / cell
    ix = int(np.floor(fx))
    iy = int(np.floor(fy))
    tx = fx - ix
    ty = fy - iy
    tx = tx * tx * (3.0 - 2.0 * tx)
    ty = ty * ty * (3.0 - 2.0 * ty)
    a = _hash01(ix, iy, s) * (1 - tx) + _hash01(ix + 1, iy, s) * tx
    b = _hash01(ix, iy + 1, s) * (1 - tx) + _hash01(ix + 1, iy + 1, s) * tx
    return a * (1 - ty) + b * ty


@njit(inline="always", cache=True)
def _rel_radius(o: np.ndarray, cs: np.ndarray, px: float, py: float) -> float:
    """Radius of a point relative to the object's wobbly boundary (< 1 inside).

    ``cs`` holds cos/sin of the orientation and of both harmonic phases, so the
    per-pixel work needs no trigonometric calls (cos 2phi, cos 3phi by identities).
    """
    dx = px - o[O_CX]
    dy = py - o[O_CY]
    u = (dx * cs[0] + dy * cs[1]) / o[O_A]
    v = (-dx * cs[1] + dy * cs[0]) / o[O_B]
    r = np.sqrt(u * u + v * v)
    if r == 0.0:
        return 0.0
    c = u / r
    s = v / r
    c2 = c * c - s * s
    s2 = 2.0 * c * s
    c3 = c * (4.0 * c * c - 3.0)
    s3 = s * (3.0 - 4.0 * s * s)
    rb = 1.0 + o[O_A2] * (c2 * cs[2] - s2 * cs[3]) + o[O_A3] * (c3 * cs[4] - s3 * cs[5])
    return r / rb


@njit(inline="always", cache=True)
def _trig(o: np.ndarray) -> np.ndarray:
    cs = np.empty(6)
    cs[0] = np.cos(o[O_TH])
    cs[1] = np.sin(o[O_TH])
    cs[2] = np.cos(o[O_P2])
    cs[3] = np.sin(o[O_P2])
    cs[4] = np.cos(o[O_P3])
    cs[5] = np.sin(o[O_P3])
    return cs


@njit(inline="always", cache=True)
def _bbox(
    o: np.ndarray, scale: float, x0: int, y0: int, h: int, w: int
) -> tuple[int, int, int, int]:
    rad = o[O_A] * (1.0 + abs(o[O_A2]) + abs(o[O_A3])) * scale + 1.5
    c0 = max(0, int(np.floor(o[O_CX] - rad)) - x0)
    c1 = min(w, int(np.ceil(o[O_CX] + rad)) - x0 + 1)
    r0 = max(0, int(np.floor(o[O_CY] - rad)) - y0)
    r1 = min(h, int(np.ceil(o[O_CY] + rad)) - y0 + 1)
    return r0, r1, c0, c1


@njit(cache=True, nogil=True)
def paint_objects(
    objs: np.ndarray,
    x0: int,
    y0: int,
    hn: np.ndarray,
    dn: np.ndarray,
    en: np.ndarray,
    emul: np.ndarray,
    inmask: np.ndarray,
) -> None:
    """Paint objects into stain-concentration planes of one tile.

    Overlaps composite with ``max`` per stain, so a pixel covered twice is never
    darker than its darkest nucleus (stacked nuclei in a thin section).

    Parameters
    ----------
    objs : ndarray, shape (n, N_COLS)
    x0, y0 : int
        Global level-0 position of the tile.
    hn, dn, en : ndarray of float32, shape (h, w)
        Hematoxylin, DAB, eosin of objects (updated).
    emul : ndarray of float32
        Eosin factor of the cytoplasm ring around nuclei (updated).
    inmask : ndarray of uint8
        Set to 1 inside any object.
    """
    h, w = hn.shape
    # Pass 1: cytoplasm / perinuclear halo rings (under every nucleus).
    for k in range(objs.shape[0]):
        o = objs[k]
        if o[O_CYTO] == 1.0:
            continue
        cs = _trig(o)
        r0, r1, c0, c1 = _bbox(o, 1.7, x0, y0, h, w)
        for r in range(r0, r1):
            for c in range(c0, c1):
                rel = _rel_radius(o, cs, x0 + c + 0.5, y0 + r + 0.5)
                if 1.0 <= rel < 1.6:
                    if o[O_CYTO] < 1.0:
                        emul[r, c] = min(emul[r, c], o[O_CYTO])
                    else:
                        emul[r, c] = max(emul[r, c], o[O_CYTO])
    # Pass 2: nuclei with chromatin texture and a darker nuclear membrane.
    for k in range(objs.shape[0]):
        o = objs[k]
        cs = _trig(o)
        r0, r1, c0, c1 = _bbox(o, 1.0, x0, y0, h, w)
        tex = int(o[O_TEX])
        grain = o[O_GRAIN]
        for r in range(r0, r1):
            gy = y0 + r + 0.5
            for c in range(c0, c1):
                gx = x0 + c + 0.5
                rel = _rel_radius(o, cs, gx, gy)
                if rel >= 1.0:
                    continue
                chrom = _vnoise01(gx, gy, grain, tex)
                speck = _hash01(x0 + c, y0 + r, tex + 17)
                rim = 0.2 if rel > 0.8 else 0.0
                hv = o[O_H] * (0.68 + 0.5 * chrom + 0.12 * speck + rim - 0.06)
                dv = o[O_D] * (0.85 + 0.3 * _vnoise01(gx, gy, 1.6 * grain, tex + 5))
                hn[r, c] = max(hn[r, c], hv)
                dn[r, c] = max(dn[r, c], dv)
                en[r, c] = max(en[r, c], o[O_E])
                inmask[r, c] = 1


@njit(cache=True, nogil=True)
def paint_vessels(
    ves: np.ndarray,
    x0: int,
    y0: int,
    bh: np.ndarray,
    be: np.ndarray,
    bd: np.ndarray,
    mpp: float,
) -> None:
    """Paint CD31-stained vessels (brown walls, open lumens) into background planes.

    The outline wobble and the DAB texture are value noise of the global position, so a
    vessel crossing a tile edge is painted identically from both tiles.

    Parameters
    ----------
    ves : ndarray, shape (n, N_VCOLS)
        Vessel rows (``V_*`` columns).
    x0, y0 : int
        Global level-0 position of the tile.
    bh, be, bd : ndarray of float32, shape (h, w)
        Background hematoxylin, eosin and DAB (updated).
    mpp : float
        Micrometres per pixel (noise feature sizes are in micrometres).
    """
    h, w = bh.shape
    wcell = 3.0 / mpp
    tcell = 1.2 / mpp
    for k in range(ves.shape[0]):
        v = ves[k]
        ao, bo, ai, bi = v[V_AO], v[V_BO], v[V_AI], v[V_BI]
        wob = v[V_WOB]
        ct, st = np.cos(v[V_TH]), np.sin(v[V_TH])
        tex = int(v[V_TEX])
        rad = ao / (1.0 - 0.5 * wob) + 1.5
        c0 = max(0, int(np.floor(v[V_CX] - rad)) - x0)
        c1 = min(w, int(np.ceil(v[V_CX] + rad)) - x0 + 1)
        r0 = max(0, int(np.floor(v[V_CY] - rad)) - y0)
        r1 = min(h, int(np.ceil(v[V_CY] + rad)) - y0 + 1)
        for r in range(r0, r1):
            gy = y0 + r + 0.5
            for c in range(c0, c1):
                gx = x0 + c + 0.5
                dx = gx - v[V_CX]
                dy = gy - v[V_CY]
                u = dx * ct + dy * st
                q = -dx * st + dy * ct
                f = 1.0
                if wob > 0.0:
                    f = 1.0 + wob * (_vnoise01(gx, gy, wcell, tex) - 0.5)
                ro = np.sqrt((u / ao) ** 2 + (q / bo) ** 2) / f
                if ro >= 1.0:
                    continue
                if ai > 0.0 and np.sqrt((u / ai) ** 2 + (q / bi) ** 2) / f < 1.0:
                    bh[r, c] = 0.01  # open lumen: plasma only
                    be[r, c] = 0.0
                    bd[r, c] = 0.0
                    continue
                dv = v[V_DAB] * (0.8 + 0.4 * _vnoise01(gx, gy, tcell, tex + 7))
                bd[r, c] = max(bd[r, c], dv)
                if ro < 0.55:
                    bh[r, c] += v[V_HCORE]


@njit(cache=True, nogil=True)
def measure_objects(
    objs: np.ndarray,
    n: int,
    x0: int,
    y0: int,
    width: int,
    height: int,
    dab: np.ndarray,
    acc: np.ndarray,
) -> None:
    """Accumulate pixel count, centroid sums and DAB sum of the first ``n`` objects.

    Only pixels inside the slide count, so a nucleus cut by the slide edge reports
    its visible part. ``acc`` rows: count, sum x, sum y, sum DAB OD (added to).
    """
    h, w = dab.shape
    for k in range(n):
        o = objs[k]
        cs = _trig(o)
        r0, r1, c0, c1 = _bbox(o, 1.0, x0, y0, h, w)
        for r in range(r0, r1):
            if y0 + r >= height:
                break
            for c in range(c0, c1):
                if x0 + c >= width:
                    break
                if _rel_radius(o, cs, x0 + c + 0.5, y0 + r + 0.5) < 1.0:
                    acc[k, 0] += 1.0
                    acc[k, 1] += x0 + c + 0.5
                    acc[k, 2] += y0 + r + 0.5
                    acc[k, 3] += dab[r, c]


@njit(cache=True, nogil=True)
def compose_rgb(
    conc: np.ndarray,
    vectors: np.ndarray,
    x0: int,
    y0: int,
    seed: int,
    sigma: float,
    out: np.ndarray,
) -> None:
    """Beer-Lambert mixing: RGB = 255 * 10**-(sum_s c_s v_s + noise).

    Parameters
    ----------
    conc : ndarray of float32, shape (s, h, w)
        Stain concentrations (OD along each unit stain vector).
    vectors : ndarray, shape (s, 3)
        Stain OD vectors.
    x0, y0 : int
        Global position (for position-addressed pixel noise).
    seed : int
        Noise seed.
    sigma : float
        Approximate standard deviation of the per-channel OD noise.
    out : ndarray of uint8, shape (h, w, 3)
    """
    ns, h, w = conc.shape
    amp = sigma * 2.449  # triangular noise (u1 + u2 - 1) has sd 1/sqrt(6)
    ln10 = np.log(10.0)
    for r in range(h):
        for c in range(w):
            gx = x0 + c
            gy = y0 + r
            # Two 64-bit hashes give eight 16-bit uniforms: cheaper than eight hashes.
            h1 = _hash_bits(gx, gy, seed)
            h2 = _hash_bits(gx, gy, seed + 1)
            common = _u16(h1, 0) + _u16(h1, 1) - 1.0
            for ch in range(3):
                od = 0.0
                for s in range(ns):
                    od += conc[s, r, c] * vectors[s, ch]
                if ch == 0:
                    u = _u16(h1, 2) + _u16(h1, 3)
                elif ch == 1:
                    u = _u16(h2, 0) + _u16(h2, 1)
                else:
                    u = _u16(h2, 2) + _u16(h2, 3)
                od += amp * (0.6 * (u - 1.0) + 0.5 * common)
                v = 255.0 * np.exp(-od * ln10)
                if v < 0.0:
                    v = 0.0
                elif v > 255.0:
                    v = 255.0
                out[r, c, ch] = np.uint8(v + 0.5) if v < 254.5 else np.uint8(255)


@njit(cache=True, nogil=True)
def interp_grid(
    v: np.ndarray,
    iy0: np.ndarray,
    iy1: np.ndarray,
    fy: np.ndarray,
    ix0: np.ndarray,
    ix1: np.ndarray,
    fx: np.ndarray,
) -> np.ndarray:
    """Separable two-point interpolation of a small grid onto a pixel rectangle.

    ``out[r, c]`` blends ``v[iy0[r] or iy1[r], ix0[c] or ix1[c]]`` with weights
    ``fy[r]``, ``fx[c]`` (bilinear or smoothstep, chosen by the caller). A plain loop:
    BLAS matrix products were slower under CPU contention (threads spin).
    """
    h = iy0.size
    w = ix0.size
    out = np.empty((h, w), dtype=np.float32)
    for r in range(h):
        a0 = iy0[r]
        a1 = iy1[r]
        ty = fy[r]
        for c in range(w):
            b0 = ix0[c]
            b1 = ix1[c]
            tx = fx[c]
            top = v[a0, b0] + (v[a0, b1] - v[a0, b0]) * tx
            bot = v[a1, b0] + (v[a1, b1] - v[a1, b0]) * tx
            out[r, c] = top + (bot - top) * ty
    return out
