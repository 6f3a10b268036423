"""Per-block nucleus placement for the synthetic slide.

The slide is cut into square blocks; each block's nuclei come from a generator seeded
by (seed, block index), so any tile can be rendered on its own. A nucleus belongs to
exactly one block (its truth row), but is painted into every tile it overlaps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from . import _kernels as K
from . import _params as P
from .layout import Layout

__all__ = ["Block", "make_block"]


@dataclass
class Block:
    """Objects owned by one block.

    Attributes
    ----------
    objs : ndarray, shape (n, N_COLS)
        All objects to paint; the first ``n_truth`` rows are truth nuclei.
    n_truth : int
        Number of nuclei that go into the ground-truth table.
    region, grade : ndarray of int8
        Region code and Ki-67 grade per truth nucleus.
    major_um, minor_um, orientation : ndarray of float64
        Generating ellipse per truth nucleus (full axes in um; radians, x right,
        y down, major-axis direction).
    acc : ndarray, shape (n_truth, 4)
        Rendered pixel count, sum x, sum y and DAB OD sum, filled while tiles render.
    """

    objs: np.ndarray
    n_truth: int
    region: np.ndarray
    grade: np.ndarray
    major_um: np.ndarray
    minor_um: np.ndarray
    orientation: np.ndarray
    acc: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.acc = np.zeros((self.n_truth, 4), dtype=np.float64)


def _objects(n: int) -> np.ndarray:
    o = np.zeros((n, K.N_COLS), dtype=np.float64)
    o[:, K.O_CYTO] = 1.0
    o[:, K.O_GRAIN] = 2.0
    return o


def _ring_nuclei(
    layout: Layout, idx: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Endothelial nuclei around one lumen: centres (px), semi-axes (um), angle."""
    rng = np.random.default_rng([seed, 3, idx])
    lx, ly, lr, layers = layout.lumens[idx]
    mpp = layout.mpp
    xs, ys, th = [], [], []
    for k in range(int(layers)):
        rk = lr * mpp + 2.5 + P.LUMEN_LAYER_UM * (k + 0.5)
        m = max(4, int(2 * np.pi * rk / P.LUMEN_NUCLEUS_SPACING_UM))
        ang = np.linspace(0, 2 * np.pi, m, endpoint=False) + rng.uniform(0, 2 * np.pi)
        ang += rng.uniform(-0.12, 0.12, m)
        rr = (rk + rng.uniform(-1.0, 1.0, m)) / mpp
        xs.append(lx + rr * np.cos(ang))
        ys.append(ly + rr * np.sin(ang))
        th.append(ang + np.pi / 2 + rng.normal(0, 0.12, m))  # tangential
    x, y, t = np.concatenate(xs), np.concatenate(ys), np.concatenate(th)
    a = rng.uniform(5.5, 7.5, x.size)
    b = rng.uniform(1.8, 2.5, x.size)
    return x, y, a, b, t


def _extras(
    layout: Layout,
    rng: np.random.Generator,
    bx0: int,
    by0: int,
    bsize: int,
    owned_lumens: Iterable[int],
    stain: str,
    seed: int,
) -> np.ndarray:
    """Objects that are painted but not counted: necrotic dust and red cells."""
    mpp = layout.mpp
    area_mm2 = (bsize * mpp) ** 2 / 1e6
    m = rng.poisson(2500 * area_mm2)
    dx = bx0 + rng.uniform(0, bsize, m)
    dy = by0 + rng.uniform(0, bsize, m)
    ok = (dx < layout.width) & (dy < layout.height)
    dx, dy = dx[ok], dy[ok]
    ok = layout.classify_points(dx, dy) == P.NECROSIS
    dust = _objects(int(ok.sum()))
    dust[:, K.O_CX], dust[:, K.O_CY] = dx[ok], dy[ok]
    r = rng.uniform(0.5, 1.4, len(dust)) / mpp
    dust[:, K.O_A] = np.maximum(r, 0.7)
    dust[:, K.O_B] = np.maximum(r * rng.uniform(0.7, 1.0, len(dust)), 0.6)
    dust[:, K.O_H] = rng.uniform(1.0, 1.4, len(dust)) * (P.HDAB_H_SCALE if stain != "he" else 1.0)
    dust[:, K.O_TEX] = rng.integers(0, 2**31, len(dust))
    cells = []
    for i in owned_lumens:
        lrng = np.random.default_rng([seed, 4, int(i)])
        lx, ly, lr, _ = layout.lumens[i]
        k = int(lrng.integers(0, 6))
        rc = 3.6 / mpp
        if lr <= rc * 1.3 or k == 0:
            continue
        rr = (lr - rc) * np.sqrt(lrng.uniform(0, 1, k))
        a = lrng.uniform(0, 2 * np.pi, k)
        o = _objects(k)
        o[:, K.O_CX], o[:, K.O_CY] = lx + rr * np.cos(a), ly + rr * np.sin(a)
        o[:, K.O_A] = o[:, K.O_B] = rc
        if stain == "he":
            o[:, K.O_E] = lrng.uniform(0.8, 1.0, k)
        else:  # endogenous peroxidase: red cells look faintly tan in DAB
            o[:, K.O_D] = 0.06
        o[:, K.O_TEX] = lrng.integers(0, 2**31, k)
        cells.append(o)
    return np.concatenate([dust, *cells]) if cells else dust


def make_block(
    layout: Layout,
    bx: int,
    by: int,
    bsize: int,
    seed: int,
    stain: str,
    h_scale: float,
    vessels: np.ndarray | None = None,
) -> Block:
    """Generate the objects owned by block (bx, by).

    Parameters
    ----------
    layout : Layout
    bx, by : int
        Block column and row.
    bsize : int
        Block side in level-0 pixels.
    seed : int
        Slide seed.
    stain : {"he", "hdab", "cd31"}
        H&E, Ki-67 H-DAB, or CD31 H-DAB (hematoxylin as in H-DAB, every nucleus
        DAB-negative).
    h_scale : float
        Per-slide hematoxylin intensity factor.
    vessels : ndarray, shape (k, N_VCOLS), optional
        CD31 vessels near the block (:class:`.vessels.VesselField` rows); ordinary
        nuclei keep ``VESSEL_NUCLEUS_CLEARANCE_UM`` off their outlines.

    Returns
    -------
    Block
    """
    rng = np.random.default_rng([seed, 2, bx, by])
    mpp = layout.mpp
    x0, y0 = bx * bsize, by * bsize
    # Jittered lattice at the highest density, thinned per region: nuclei rarely
    # overlap because candidates keep a minimum spacing.
    n = max(1, round(bsize * mpp * np.sqrt(P.CANDIDATE_DENSITY_PER_MM2) / 1000))
    cell = bsize / n
    dmax = 1e6 / (cell * mpp) ** 2
    jy, jx = np.mgrid[0:n, 0:n]
    xs = x0 + (jx.ravel() + 0.5 + rng.uniform(-0.35, 0.35, n * n)) * cell
    ys = y0 + (jy.ravel() + 0.5 + rng.uniform(-0.35, 0.35, n * n)) * cell
    keep = rng.random(n * n)
    inside = (xs < layout.width) & (ys < layout.height)
    xs, ys, keep = xs[inside], ys[inside], keep[inside]
    code = layout.classify_points(xs, ys)
    sel = keep < P.DENSITY_PER_MM2[code] / dmax
    reach = P.MAX_REACH_UM / mpp
    near = layout.lumens_near(x0 - reach, y0 - reach, x0 + bsize + reach, y0 + bsize + reach)
    for i in near:  # keep lumens and their walls free of ordinary nuclei
        lx, ly, lr, layers = layout.lumens[i]
        zone = lr + (4.0 + P.LUMEN_LAYER_UM * layers) / mpp
        sel &= np.hypot(xs - lx, ys - ly) > zone
    if vessels is not None:  # CD31: keep vessel walls free of ordinary nuclei
        clear = P.VESSEL_NUCLEUS_CLEARANCE_UM / mpp
        for v in vessels:
            rad = v[K.V_AO] / (1 - 0.5 * v[K.V_WOB]) + clear
            sel &= np.hypot(xs - v[K.V_CX], ys - v[K.V_CY]) > rad
    xs, ys, code = xs[sel], ys[sel], code[sel]
    m = xs.size

    lum = layout.lumens
    owned = [
        int(i) for i in near if int(lum[i, 0] // bsize) == bx and int(lum[i, 1] // bsize) == by
    ]
    ring = [_ring_nuclei(layout, i, seed) for i in owned]

    # Morphology per region (um).
    med, lsd, amin, amax, q_lo, q_hi, h_lo, h_hi, irr, cyto = P.MORPHOLOGY[code].T
    area = np.clip(med * np.exp(lsd * rng.standard_normal(m)), amin, amax)
    giant = rng.random(m) < P.GIANT_FRACTION[code]
    area = np.where(giant, rng.uniform(*P.GIANT_AREA_UM2, m), area)
    q = rng.uniform(q_lo, q_hi)
    b = np.sqrt(area / (np.pi * q))
    a = q * b
    th = rng.uniform(-np.pi / 2, np.pi / 2, m)
    pal = np.flatnonzero(code == P.PALISADE)
    if pal.size:  # palisading nuclei point away from the necrosis
        d = 8.0 / mpp
        px, py = xs[pal], ys[pal]
        gx = layout.fields_at_points(px + d, py)["d_nec"]
        gx = gx - layout.fields_at_points(px - d, py)["d_nec"]
        gy = layout.fields_at_points(px, py + d)["d_nec"]
        gy = gy - layout.fields_at_points(px, py - d)["d_nec"]
        th[pal] = np.arctan2(gy, gx) + rng.normal(0, 0.25, pal.size)
    hconc = rng.uniform(h_lo, h_hi) * np.where(giant, 1.15, 1.0)
    irr = irr * np.where(giant, 1.5, 1.0)

    if ring:
        rx, ry, ra, rb, rt = (np.concatenate(v) for v in zip(*ring, strict=True))
        ok = (rx >= 0) & (ry >= 0) & (rx < layout.width) & (ry < layout.height)
        rx, ry, ra, rb, rt = rx[ok], ry[ok], ra[ok], rb[ok], rt[ok]
        rcode = layout.classify_points(rx, ry)
        rcode = np.where(rcode == P.BACKGROUND, P.MVP, rcode).astype(np.uint8)
        k = rx.size
        xs, ys, code = np.r_[xs, rx], np.r_[ys, ry], np.r_[code, rcode]
        a, b, th = np.r_[a, ra], np.r_[b, rb], np.r_[th, rt]
        hconc = np.r_[hconc, rng.uniform(0.8, 1.05, k)]
        irr = np.r_[irr, np.full(k, 0.05)]
        cyto = np.r_[cyto, np.full(k, 1.0)]
    n_truth = xs.size

    # Ki-67 grade and DAB target per nucleus (drawn for H&E too: same nuclei).
    positive = rng.random(n_truth) < P.POSITIVE_FRACTION[code]
    if stain == "cd31":  # CD31 stains endothelium only: every nucleus is negative
        positive[:] = False
    g = 1 + np.searchsorted(np.cumsum(P.GRADE_SPLIT)[:-1], rng.random(n_truth))
    grade = np.where(positive, g, 0).astype(np.int8)
    lo = np.array([bnd[0] for bnd in P.DAB_BANDS])[grade]
    hi = np.array([bnd[1] for bnd in P.DAB_BANDS])[grade]
    target = rng.uniform(lo, hi)

    o = _objects(n_truth)
    o[:, K.O_CX], o[:, K.O_CY] = xs, ys
    o[:, K.O_A], o[:, K.O_B] = a / mpp, b / mpp
    o[:, K.O_TH] = th
    o[:, K.O_A2] = rng.uniform(0, 1, n_truth) * irr
    o[:, K.O_A3] = rng.uniform(0, 0.6, n_truth) * irr
    o[:, K.O_P2] = rng.uniform(0, 2 * np.pi, n_truth)
    o[:, K.O_P3] = rng.uniform(0, 2 * np.pi, n_truth)
    o[:, K.O_TEX] = rng.integers(0, 2**31, n_truth)
    o[:, K.O_GRAIN] = rng.uniform(0.9, 1.6, n_truth) / mpp
    if stain == "he":
        o[:, K.O_H] = hconc * h_scale
        o[:, K.O_CYTO] = cyto
        grade[:] = 0
    else:
        # Dense DAB hides the counterstain: positive nuclei look brown, not black.
        o[:, K.O_H] = hconc * h_scale * P.HDAB_H_SCALE * np.where(grade > 0, 0.55, 1.0)
        o[:, K.O_CYTO] = np.minimum(cyto, 1.0)  # halos stay; no eosin to brighten
        # The kernel's DAB texture has mean ~1; background DAB adds underneath.
        o[:, K.O_D] = np.maximum(target - P.BG_HDAB[code, 2], 0.0)
    extras = _extras(layout, rng, x0, y0, bsize, owned, stain, seed)
    th_mod = (th + np.pi / 2) % np.pi - np.pi / 2
    return Block(
        objs=np.ascontiguousarray(np.concatenate([o, extras])),
        n_truth=n_truth,
        region=code.astype(np.int8),
        grade=grade,
        major_um=2 * a,
        minor_um=2 * b,
        orientation=th_mod,
    )
