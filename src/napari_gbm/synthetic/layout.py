"""Global region layout of a synthetic glioblastoma section.

The layout lives on a coarse grid (one node per ``region_downsample`` level-0 pixels,
about 16 um) as signed-distance fields in micrometres. Pixels and nucleus centroids are
classified from bilinearly interpolated fields plus position-addressed noise, so region
boundaries are smooth at full resolution and identical whichever tile asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from . import _params as P
from ._kernels import interp_grid
from ._noise import noise_points, noise_tile, smooth_grid_noise

__all__ = ["Layout", "build_layout", "classify"]

_MAX_GRID = 2048  # grid side cap: bounds layout memory for any slide size


def classify(
    t: np.ndarray,
    f_inf: np.ndarray,
    f_tum: np.ndarray,
    d_nec: np.ndarray,
    rim: np.ndarray,
    mv: np.ndarray,
) -> np.ndarray:
    """Region codes from (perturbed) layout fields.

    Later rules take priority: tissue zones (normal, infiltrating, tumour), then MVP,
    pseudopalisade, necrosis, and glass last.

    Parameters
    ----------
    t : numpy.ndarray
        Tissue field, µm; < 0 is glass (background).
    f_inf, f_tum : numpy.ndarray
        Infiltrating and tumour fronts, µm; >= 0 inside the zone.
    d_nec : numpy.ndarray
        Distance from necrosis, µm; < 0 inside necrosis.
    rim : numpy.ndarray
        Pseudopalisade width, µm: ``0 <= d_nec < rim`` is pseudopalisade.
    mv : numpy.ndarray
        Microvascular-proliferation field, µm; < 0 inside MVP clusters.

    All six arrays have one shape (or broadcast to that of `t`).

    Returns
    -------
    numpy.ndarray of uint8
        Shape of `t`: region codes of :mod:`._params` (BACKGROUND, TUMOR, NECROSIS,
        PALISADE, MVP, INFILTRATING, NORMAL = 0..6).
    """
    code = np.full(np.shape(t), P.NORMAL, dtype=np.uint8)
    code[f_inf >= 0] = P.INFILTRATING
    code[f_tum >= 0] = P.TUMOR
    code[mv < 0] = P.MVP
    code[(d_nec >= 0) & (d_nec < rim)] = P.PALISADE
    code[d_nec < 0] = P.NECROSIS
    code[t < 0] = P.BACKGROUND
    return code


def _signed_distance(mask: np.ndarray, step_um: float) -> np.ndarray:
    """Signed distance in um, positive inside ``mask``."""
    if not mask.any():
        return np.full(mask.shape, -1e6, dtype=np.float32)
    if mask.all():
        return np.full(mask.shape, 1e6, dtype=np.float32)
    inside = ndimage.distance_transform_edt(mask)
    inside -= ndimage.distance_transform_edt(~mask)
    # A light blur rounds the staircase of the binary grid mask into smooth outlines.
    return (ndimage.gaussian_filter(inside, 1.2) * step_um).astype(np.float32)


def _axis_interp(
    start: int, n: int, ds: int, size: int, step: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear indices and weights mapping ``size`` grid nodes to ``n`` samples."""
    g = np.clip((start + (np.arange(n) + 0.5) * step) / ds - 0.5, 0, size - 1)
    i0 = np.floor(g).astype(np.int64)
    i1 = np.minimum(i0 + 1, size - 1)
    return i0, i1, (g - i0).astype(np.float32)


@dataclass
class Layout:
    """Region layout of one synthetic slide.

    Attributes
    ----------
    width, height : int
        Level-0 size in pixels.
    mpp : float
        Micrometres per pixel.
    ds : int
        Level-0 pixels per grid node (``region_downsample``).
    fields : dict of str to ndarray
        Signed-distance style grids in um: ``t`` (tissue, > 0 inside), ``f_inf``,
        ``f_tum`` (infiltrating / tumour fronts), ``d_nec`` (distance from necrosis,
        < 0 inside), ``rim`` (pseudopalisade width), ``mv`` (< 0 inside MVP clusters).
    lumens : ndarray, shape (n, 4)
        Vessel lumens: centre x, y and radius (level-0 px), wall layers.
    debris : ndarray, shape (k, 4)
        Off-tissue specks: centre x, y, radius (px), optical density.
    border : dict
        Dark slide-edge strip: ``side`` and ``width_px``.
    codes : ndarray of uint8
        Region code per grid node.
    noise_seed : int
        Seed of the boundary-perturbation noise.
    """

    width: int
    height: int
    mpp: float
    ds: int
    fields: dict[str, np.ndarray]
    lumens: np.ndarray
    debris: np.ndarray
    border: dict[str, Any]
    noise_seed: int
    codes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        gh, gw = self.fields["t"].shape
        xs = (np.arange(gw) + 0.5) * self.ds
        ys = (np.arange(gh) + 0.5) * self.ds
        gx, gy = np.meshgrid(xs, ys)
        self.codes = self.classify_points(gx.ravel(), gy.ravel()).reshape(gh, gw)

    # -- perturbation: small noise so boundaries are irregular at cell scale --------
    def _perturb(
        self, f: dict[str, np.ndarray], noise: Callable[[float, int], np.ndarray]
    ) -> dict[str, np.ndarray]:
        um = 1.0 / self.mpp  # noise cells are given in um, converted to px
        s = self.noise_seed
        f["t"] = f["t"] + 6 * noise(12 * um, s) + 10 * noise(40 * um, s + 1)
        fine = noise(25 * um, s + 2)
        f["d_nec"] = f["d_nec"] + 10 * fine
        f["mv"] = f["mv"] + 8 * noise(18 * um, s + 3)
        front = 30 * noise(70 * um, s + 4)
        f["f_inf"] = f["f_inf"] + front
        f["f_tum"] = f["f_tum"] + front
        return f

    def fields_at_points(self, xs: np.ndarray, ys: np.ndarray) -> dict[str, np.ndarray]:
        """Perturbed fields (um) at level-0 points ``xs``, ``ys``."""
        gh, gw = self.fields["t"].shape
        coords = [
            np.clip(np.asarray(ys) / self.ds - 0.5, 0, gh - 1),
            np.clip(np.asarray(xs) / self.ds - 0.5, 0, gw - 1),
        ]
        f = {
            k: ndimage.map_coordinates(v, coords, order=1, mode="nearest")
            for k, v in self.fields.items()
        }
        return self._perturb(f, lambda cell, s: noise_points(xs, ys, cell, s))

    def classify_points(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Region code at level-0 points."""
        return classify(**self.fields_at_points(xs, ys))

    def classify_tile(self, x0: int, y0: int, w: int, h: int, step: int = 2) -> np.ndarray:
        """Region code per pixel of a level-0 rectangle, shape (h, w).

        Classified on ``step`` x ``step`` blocks (1 um at 0.5 um/px: finer than any
        region feature) and expanded, which quarters the cost.
        """
        gh, gw = self.fields["t"].shape
        ax = _axis_interp(x0, w // step, self.ds, gw, step)
        ay = _axis_interp(y0, h // step, self.ds, gh, step)
        f = {k: interp_grid(v, *ay, *ax) for k, v in self.fields.items()}
        f = self._perturb(f, lambda cell, s: noise_tile(x0, y0, w, h, cell, s, step))
        code = classify(**f)
        return np.repeat(np.repeat(code, step, axis=0), step, axis=1)

    def lumens_near(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Indices of lumens whose wall zone may reach the rectangle."""
        if len(self.lumens) == 0:
            return np.zeros(0, dtype=np.int64)
        reach = self.lumens[:, 2] + (3 + P.LUMEN_LAYER_UM * 4) / self.mpp
        lx, ly = self.lumens[:, 0], self.lumens[:, 1]
        ok = (lx + reach > x0) & (lx - reach < x1) & (ly + reach > y0) & (ly - reach < y1)
        return np.flatnonzero(ok)


def _pick(rng: np.random.Generator, cand: np.ndarray) -> tuple[int, int] | None:
    if len(cand) == 0:
        return None
    i, j = cand[rng.integers(len(cand))]
    return int(i), int(j)


def build_layout(width: int, height: int, mpp: float, seed: int) -> Layout:
    """Lay out tissue, regions, vessels, debris and the edge strip for a slide.

    Parameters
    ----------
    width, height : int
        Level-0 size in pixels.
    mpp : float
        Micrometres per pixel.
    seed : int
        Slide seed.

    Returns
    -------
    Layout
    """
    rng = np.random.default_rng([seed, 101])
    ds = max(4, int(2 ** round(np.log2(16.0 / mpp))))
    while max(width, height) / ds > _MAX_GRID:
        ds *= 2
    gw, gh = int(np.ceil(width / ds)), int(np.ceil(height / ds))
    g = ds * mpp  # um per node
    wu, hu = width * mpp, height * mpp
    s_um = min(wu, hu)
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    xx, yy = (xx + 0.5) * g, (yy + 0.5) * g

    # Tissue: a rotated ellipse roughened by low-frequency noise, thresholded so the
    # section covers 52-62 % of the slide and keeps clear of the slide edges.
    cx, cy = wu * (0.5 + rng.uniform(-0.04, 0.04)), hu * (0.5 + rng.uniform(-0.04, 0.04))
    ang = rng.uniform(0, np.pi)
    dx, dy = xx - cx, yy - cy
    u = (dx * np.cos(ang) + dy * np.sin(ang)) / (0.42 * wu)
    v = (-dx * np.sin(ang) + dy * np.cos(ang)) / (0.42 * hu)
    base = 1 - np.sqrt(u * u + v * v)
    base += 0.3 * smooth_grid_noise((gh, gw), 0.3 * s_um / g, rng)
    base += 0.07 * smooth_grid_noise((gh, gw), 0.07 * s_um / g, rng)
    edge = np.minimum(np.minimum(xx, wu - xx), np.minimum(yy, hu - yy))
    # A soft penalty bends the outline away from the slide edges instead of cutting it.
    base -= 3.0 * np.clip(1 - edge / (0.14 * s_um), 0, None) ** 2
    base[edge < 0.045 * s_um] = -np.inf
    thr = np.quantile(base, 1 - rng.uniform(0.52, 0.62))
    tissue = ndimage.binary_fill_holes(base > thr)
    lab, n = ndimage.label(tissue)
    if n > 1:  # drop crumbs: a section is one or a few large pieces
        sizes = ndimage.sum_labels(tissue, lab, np.arange(1, n + 1))
        tissue = np.isin(lab, 1 + np.flatnonzero(sizes >= 0.02 * sizes.max()))
    t = _signed_distance(tissue, g)

    # Tumour score: distance from a tumour centre, so normal brain lies on one side.
    deep = np.argwhere(t > 0.35 * t.max())
    centre = _pick(rng, deep)
    assert centre is not None  # t.max() > 0: the tissue mask is never empty
    ti, tj = centre
    score = -np.hypot(xx - xx[ti, tj], yy - yy[ti, tj]) / s_um
    score += 0.12 * smooth_grid_noise((gh, gw), 0.15 * s_um / g, rng)
    q_n, q_i = rng.uniform(0.18, 0.26), rng.uniform(0.16, 0.22)
    thr_n, thr_i = np.quantile(score[tissue], [q_n, q_n + q_i])
    f_inf = _signed_distance(score >= thr_n, g)
    f_tum = _signed_distance(score >= thr_i, g)
    tumour = tissue & (score >= thr_i)
    area_t = tumour.sum() * g * g / 1e6

    # Necrosis foci deep in the tumour, rimmed by pseudopalisades 55-145 um wide.
    rim = np.clip(100 + 30 * smooth_grid_noise((gh, gw), 0.2 * s_um / g, rng), 55, 145)
    depth = ndimage.distance_transform_edt(tumour) * g
    r_base = float(np.clip(0.07 * s_um, 90, 800))
    wobble = smooth_grid_noise((gh, gw), 0.6 * r_base / g, rng)
    nec = np.zeros((gh, gw), dtype=bool)
    foci: list[tuple[float, float, float]] = []
    for _ in range(int(np.clip(round(area_t / 2.5), 1, 40))):
        r = r_base * rng.uniform(0.6, 1.3)
        cand = np.argwhere(depth > min(0.7 * r, 0.8 * depth.max()))
        for _try in range(30):
            p = _pick(rng, cand)
            if p is None:
                break
            fx, fy = xx[p], yy[p]
            if all(np.hypot(fx - a, fy - b) > 1.3 * (r + c) + 300 for a, b, c in foci):
                foci.append((fx, fy, r))
                nec |= np.hypot(xx - fx, yy - fy) / r + 0.28 * wobble < 1
                break
    nec &= tissue
    d_nec = -_signed_distance(nec, g)

    # Microvascular proliferation: glomeruloid clusters of lumens in viable tumour.
    mv = np.full((gh, gw), 1e6, dtype=np.float32)
    lumens: list[tuple[float, float, float, float]] = []
    clusters: list[tuple[float, float, float]] = []
    for _ in range(int(np.clip(round(area_t / 1.5), 2, 80))):
        rc = rng.uniform(*P.MVP_CLUSTER_RADIUS_UM)
        # Relax the clearance on small slides so every region still appears.
        for relax in (1.0, 0.5, 0.2):
            ok = tumour & (d_nec > rim + relax * rc + 20) & (depth > relax * rc + 10)
            cand = np.argwhere(ok)
            if len(cand) or clusters:
                break
        for _try in range(20):
            p = _pick(rng, cand)
            if p is None:
                break
            mx, my = float(xx[p]), float(yy[p])
            if all(np.hypot(mx - a, my - b) > rc + c + 150 for a, b, c in clusters):
                clusters.append((mx, my, rc))
                break
        else:
            continue
        if p is None:
            continue
        # Rasterise only the cluster's window of the grid.
        r0, r1 = max(0, int((my - 2 * rc) / g)), min(gh, int((my + 2 * rc) / g) + 2)
        c0, c1 = max(0, int((mx - 2 * rc) / g)), min(gw, int((mx + 2 * rc) / g) + 2)
        d = np.hypot(xx[r0:r1, c0:c1] - mx, yy[r0:r1, c0:c1] - my) - rc
        mv[r0:r1, c0:c1] = np.minimum(mv[r0:r1, c0:c1], d)
        placed: list[tuple[float, float, float, float]] = []
        for _l in range(int(rng.integers(3, 9))):
            for _try in range(40):
                rl = rng.uniform(*P.LUMEN_RADIUS_UM)
                layers = float(rng.integers(1, 4))
                wall = 2.5 + P.LUMEN_LAYER_UM * layers
                rr = (0.75 * rc - rl) * np.sqrt(rng.uniform())
                a = rng.uniform(0, 2 * np.pi)
                lx, ly = mx + rr * np.cos(a), my + rr * np.sin(a)
                if all(
                    np.hypot(lx - qx, ly - qy) >= rl + ql + wall + qw - 3
                    for qx, qy, ql, qw in placed
                ):
                    placed.append((lx, ly, rl, wall))
                    lumens.append((lx / mpp, ly / mpp, rl / mpp, layers))
                    break

    # Debris specks on the glass and a dark strip along one slide edge.
    bg_nodes = np.argwhere((t < -80) & (edge > 0.03 * s_um))
    debris = []
    for _ in range(int(rng.integers(3, 9))):
        p = _pick(rng, bg_nodes)
        if p is not None:
            r_um = rng.uniform(4, 22)
            debris.append((xx[p] / mpp, yy[p] / mpp, r_um / mpp, rng.uniform(0.6, 1.4)))
    side = str(rng.choice(["left", "right", "top", "bottom"]))
    across = width if side in ("left", "right") else height
    border = {"side": side, "width_px": max(4, int(across * rng.uniform(0.004, 0.009)))}

    fields = {
        "t": t,
        "f_inf": f_inf,
        "f_tum": f_tum,
        "d_nec": d_nec,
        "rim": rim.astype(np.float32),
        "mv": mv,
    }
    return Layout(
        width=width,
        height=height,
        mpp=mpp,
        ds=ds,
        fields=fields,
        lumens=np.array(lumens, dtype=np.float64).reshape(-1, 4),
        debris=np.array(debris, dtype=np.float64).reshape(-1, 4),
        border=border,
        noise_seed=int(seed) * 64 + 7,
    )
