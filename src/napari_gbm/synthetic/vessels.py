"""CD31 vessels of the synthetic slide: placement per block, the vessel truth table.

Vessels are placed on the nucleus blocks' grid: each block's candidates come from a
generator seeded by (seed, block index) on a jittered lattice, are thinned to the target
density of their region (``VESSEL_DENSITY_PER_MM2``) and kept off the glass and away from
MVP lumens. A candidate that comes closer than ``VESSEL_GAP_UM`` (wall to wall) to a
candidate with a higher random key is dropped; the keys of the eight neighbouring blocks
decide that, so whichever tile asks gets the same vessels. MVP lumens of the layout are
vessels too (kind ``mvp``), each owned by the block of its centre.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import _kernels as K
from . import _params as P
from .layout import Layout, classify
from .truth import REGION_TYPE

__all__ = [
    "VESSELS_SCHEMA",
    "VESSEL_KINDS",
    "VesselField",
    "VesselTruth",
    "hotspot_count",
    "hotspot_radius_um",
]

VESSEL_KINDS: tuple[str, ...] = ("capillary", "vessel", "mvp")
CAPILLARY, VESSEL, MVP_LUMEN = range(3)

VESSELS_SCHEMA = pa.schema(
    [
        ("vessel_id", pa.int64()),
        ("centroid_x_um", pa.float64()),
        ("centroid_y_um", pa.float64()),
        ("area_um2", pa.float64()),
        ("lumen_radius_um", pa.float64()),
        ("major_axis_um", pa.float64()),
        ("minor_axis_um", pa.float64()),
        ("orientation_rad", pa.float64()),
        ("kind", REGION_TYPE),
        ("region", REGION_TYPE),
    ]
)
_ROW_GROUP = 65536
_DICTS = {
    "kind": pa.array(VESSEL_KINDS, type=pa.string()),
    "region": pa.array(P.REGION_NAMES, type=pa.string()),
}


def _rows(n: int) -> np.ndarray:
    return np.zeros((n, K.N_VCOLS), dtype=np.float64)


class VesselField:
    """Vessels of one slide, generated per block on demand and cached.

    Parameters
    ----------
    layout : Layout
    seed : int
        Slide seed.
    bsize : int
        Block side in level-0 pixels (the nucleus blocks' side).
    """

    def __init__(self, layout: Layout, seed: int, bsize: int) -> None:
        self.layout, self.seed, self.bsize = layout, int(seed), int(bsize)
        self.nbx = -(-layout.width // bsize)
        self.nby = -(-layout.height // bsize)
        self.reach = float(np.ceil(P.VESSEL_MAX_RADIUS_UM / layout.mpp))
        self._raw: dict[tuple[int, int], np.ndarray] = {}
        self._final: dict[tuple[int, int], np.ndarray] = {}
        self._mvp = self._mvp_rows()

    def _mvp_rows(self) -> np.ndarray:
        """The layout's MVP lumens as vessel rows (brown luminal ring, no wobble)."""
        lay, mpp = self.layout, self.layout.mpp
        lum = lay.lumens
        rows = _rows(len(lum))
        if len(lum) == 0:
            return rows
        inner, outer = (v / mpp for v in P.MVP_RING_UM)
        rows[:, K.V_CX], rows[:, K.V_CY] = lum[:, 0], lum[:, 1]
        rows[:, K.V_AO] = rows[:, K.V_BO] = lum[:, 2] + outer
        rows[:, K.V_AI] = rows[:, K.V_BI] = lum[:, 2] - inner
        rng = np.random.default_rng([self.seed, 12])
        rows[:, K.V_DAB] = rng.uniform(*P.VESSEL_DAB_OD, len(lum))
        rows[:, K.V_TEX] = rng.integers(0, 2**31, len(lum))
        rows[:, K.V_KIND] = MVP_LUMEN
        code = lay.classify_points(lum[:, 0], lum[:, 1])
        rows[:, K.V_REGION] = np.where(code == P.BACKGROUND, P.MVP, code)
        return rows

    def raw(self, bx: int, by: int) -> np.ndarray:
        """Candidates of block (bx, by) before the gap rule (``V_KEY`` decides it)."""
        key = (bx, by)
        if key not in self._raw:
            self._raw[key] = self._make_raw(bx, by)
        return self._raw[key]

    def _make_raw(self, bx: int, by: int) -> np.ndarray:
        lay, mpp, b = self.layout, self.layout.mpp, self.bsize
        if not (0 <= bx < self.nbx and 0 <= by < self.nby):
            return _rows(0)
        rng = np.random.default_rng([self.seed, 11, bx, by])
        n = max(1, round(b * mpp * np.sqrt(P.VESSEL_CANDIDATE_DENSITY_PER_MM2) / 1000))
        cell = b / n
        dcand = 1e6 / (cell * mpp) ** 2
        m = n * n
        jy, jx = np.mgrid[0:n, 0:n]
        xs = bx * b + (jx.ravel() + 0.5 + rng.uniform(-0.45, 0.45, m)) * cell
        ys = by * b + (jy.ravel() + 0.5 + rng.uniform(-0.45, 0.45, m)) * cell
        # Every draw is made for every candidate, so a vessel never depends on which
        # other candidates survive.
        keep, large, kind_u = rng.random(m), rng.random(m), rng.random(m)
        u1, u2, u3 = rng.random(m), rng.random(m), rng.random(m)
        th = rng.uniform(-np.pi / 2, np.pi / 2, m)
        dab = rng.uniform(*P.VESSEL_DAB_OD, m)
        tex = rng.integers(0, 2**31, m)
        prio = rng.random(m)

        def span(lohi: tuple[float, float], u: np.ndarray) -> np.ndarray:
            return lohi[0] + (lohi[1] - lohi[0]) * u

        # Sizes (um) of every kind; the kind picks one set per candidate.
        cap_q, ves_q = span(P.VESSEL_ASPECT[0], u3), span(P.VESSEL_ASPECT[1], u3)
        ring_l, ring_w = span(P.CAPILLARY_LUMEN_UM, u1), span(P.CAPILLARY_WALL_UM, u2)
        solid = span(P.CAPILLARY_SOLID_UM, u1)
        streak_a, streak_b = span(P.STREAK_UM[0], u1), span(P.STREAK_UM[1], u2)
        ves_l, ves_w = span(P.VESSEL_LUMEN_UM, u1), span(P.VESSEL_WALL_UM, u2)
        s_ring, s_solid, _ = P.CAPILLARY_SPLIT
        f = lay.fields_at_points(xs, ys)
        code = classify(**f)
        is_large = large < P.VESSEL_LARGE_FRACTION[code]
        ring = ~is_large & (kind_u < s_ring)
        coll = ~is_large & (kind_u >= s_ring) & (kind_u < s_ring + s_solid)
        streak = ~is_large & ~ring & ~coll
        q = np.where(is_large, ves_q, cap_q)
        lum = np.where(is_large, ves_l, np.where(ring, ring_l, 0.0))
        wall = np.where(is_large, ves_w, ring_w)
        ai, bi = lum * np.sqrt(q), lum / np.sqrt(q)
        ao = np.where(lum > 0, ai + wall, np.where(coll, solid, streak_a))
        bo = np.where(lum > 0, bi + wall, np.where(coll, solid / q, streak_b))
        rad = ao / (1 - 0.5 * P.VESSEL_WOBBLE)  # bounding radius, um
        sel = (xs < lay.width) & (ys < lay.height) & (code != P.BACKGROUND)
        sel &= keep < P.VESSEL_DENSITY_PER_MM2[code] / dcand
        sel &= f["t"] > rad + 2.0  # the whole vessel lies in tissue
        gap = P.VESSEL_GAP_UM / mpp
        r_px = rad / mpp
        for i in lay.lumens_near(
            bx * b - 2 * self.reach,
            by * b - 2 * self.reach,
            (bx + 1) * b + 2 * self.reach,
            (by + 1) * b + 2 * self.reach,
        ):  # keep off MVP lumens and their layers of nuclei
            lx, ly, lr, layers = lay.lumens[i]
            zone = lr + (4.0 + P.LUMEN_LAYER_UM * layers) / mpp
            sel &= np.hypot(xs - lx, ys - ly) > zone + r_px + gap
        rows = _rows(int(sel.sum()))
        rows[:, K.V_CX], rows[:, K.V_CY] = xs[sel], ys[sel]
        rows[:, K.V_AO], rows[:, K.V_BO] = ao[sel] / mpp, bo[sel] / mpp
        rows[:, K.V_AI], rows[:, K.V_BI] = ai[sel] / mpp, bi[sel] / mpp
        rows[:, K.V_TH] = th[sel]
        rows[:, K.V_DAB] = dab[sel]
        rows[:, K.V_HCORE] = np.where(streak[sel], P.STREAK_NUCLEUS_H, 0.0)
        rows[:, K.V_TEX] = tex[sel]
        rows[:, K.V_WOB] = P.VESSEL_WOBBLE
        rows[:, K.V_KIND] = np.where(is_large[sel], VESSEL, CAPILLARY)
        rows[:, K.V_REGION] = code[sel]
        rows[:, K.V_KEY] = prio[sel]
        return rows

    def block(self, bx: int, by: int) -> np.ndarray:
        """Final vessels owned by block (bx, by), MVP lumens included (cached)."""
        key = (bx, by)
        if key not in self._final:
            self._final[key] = self._make_final(bx, by)
        return self._final[key]

    def _make_final(self, bx: int, by: int) -> np.ndarray:
        own = self.raw(bx, by)
        pool = np.concatenate(
            [self.raw(i, j) for j in (by - 1, by, by + 1) for i in (bx - 1, bx, bx + 1)]
        )
        gap = P.VESSEL_GAP_UM / self.layout.mpp
        rad = own[:, K.V_AO] / (1 - 0.5 * P.VESSEL_WOBBLE)
        prad = pool[:, K.V_AO] / (1 - 0.5 * P.VESSEL_WOBBLE)
        ok = np.ones(len(own), dtype=bool)
        for k in range(len(own)):
            d = np.hypot(pool[:, K.V_CX] - own[k, K.V_CX], pool[:, K.V_CY] - own[k, K.V_CY])
            clash = (d < rad[k] + prad + gap) & (pool[:, K.V_KEY] > own[k, K.V_KEY])
            ok[k] = not clash.any()
        b = self.bsize
        mvp = self._mvp
        mine = (np.floor(mvp[:, K.V_CX] / b) == bx) & (np.floor(mvp[:, K.V_CY] / b) == by)
        return np.ascontiguousarray(np.concatenate([own[ok], mvp[mine]]))

    def near(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Vessels whose outline may reach the rectangle [x0, x1) x [y0, y1) (px)."""
        r, b = self.reach, self.bsize
        bx0, bx1 = max(0, int((x0 - r) // b)), min(self.nbx - 1, int((x1 + r) // b))
        by0, by1 = max(0, int((y0 - r) // b)), min(self.nby - 1, int((y1 + r) // b))
        parts = [self.block(i, j) for j in range(by0, by1 + 1) for i in range(bx0, bx1 + 1)]
        v = np.concatenate(parts) if parts else _rows(0)
        rad = v[:, K.V_AO] / (1 - 0.5 * P.VESSEL_WOBBLE) + 2
        ok = (v[:, K.V_CX] + rad > x0) & (v[:, K.V_CX] - rad < x1)
        ok &= (v[:, K.V_CY] + rad > y0) & (v[:, K.V_CY] - rad < y1)
        return np.ascontiguousarray(v[ok])

    def forget_rows_before(self, by: int) -> None:
        """Drop cached blocks of rows < ``by`` (they are regenerated identically if asked)."""
        for cache in (self._raw, self._final):
            for key in [k for k in cache if k[1] < by]:
                del cache[key]


def hotspot_count(xs_um: np.ndarray, ys_um: np.ndarray, size_um: tuple[float, float]) -> int:
    """Most vessel centroids within any disc of ``HOTSPOT_FIELD_MM2``.

    Disc centres lie on a ``HOTSPOT_GRID_UM`` grid over the slide (0, 25, 50, ... um).

    Parameters
    ----------
    xs_um, ys_um : ndarray
        Vessel centroids, µm.
    size_um : (float, float)
        Slide width and height, µm.

    Returns
    -------
    int
    """
    # scipy.spatial is only needed here, for the truth summary of CD31 slides.
    from scipy.spatial import cKDTree

    if len(xs_um) == 0:
        return 0
    r = hotspot_radius_um()
    tree = cKDTree(np.column_stack([xs_um, ys_um]))
    g = P.HOTSPOT_GRID_UM
    gx = np.arange(0.0, size_um[0] + 1e-9, g)
    best = 0
    for y in np.arange(0.0, size_um[1] + 1e-9, g):  # one row of centres at a time
        pts = np.column_stack([gx, np.full_like(gx, y)])
        best = max(best, int(tree.query_ball_point(pts, r, return_length=True).max()))
    return best


def hotspot_radius_um() -> float:
    """Radius of the hotspot disc, µm: a disc of ``HOTSPOT_FIELD_MM2``."""
    return float(np.sqrt(P.HOTSPOT_FIELD_MM2 / np.pi) * 1000.0)


class VesselTruth:
    """Stream finished blocks' vessels into ``<stem>.vessels.parquet``.

    Parameters
    ----------
    path : Path
        Parquet file to write (a temporary name; the caller renames it).
    mpp : float
        Micrometres per pixel.
    """

    def __init__(self, path: Path, mpp: float) -> None:
        self.mpp = mpp
        self._writer = pq.ParquetWriter(path, VESSELS_SCHEMA, compression="zstd")
        self.next_id = 1
        self.counts = np.zeros(len(P.REGION_NAMES), dtype=np.int64)
        self._buf: list[dict[str, np.ndarray]] = []
        self._nbuf = 0
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []

    def add(self, v: np.ndarray) -> None:
        """Append the vessels of one block (rows of :class:`VesselField`)."""
        n = len(v)
        if n == 0:
            return
        mpp = self.mpp
        ao, bo, ai, bi = (v[:, c] * mpp for c in (K.V_AO, K.V_BO, K.V_AI, K.V_BI))
        x, y = v[:, K.V_CX] * mpp, v[:, K.V_CY] * mpp
        region = v[:, K.V_REGION].astype(np.int8)
        self._buf.append(
            {
                "vessel_id": np.arange(self.next_id, self.next_id + n, dtype=np.int64),
                "centroid_x_um": x,
                "centroid_y_um": y,
                "area_um2": np.pi * (ao * bo - ai * bi),
                "lumen_radius_um": np.sqrt(ai * bi),
                "major_axis_um": 2 * ao,
                "minor_axis_um": 2 * bo,
                "orientation_rad": v[:, K.V_TH],
                "kind": v[:, K.V_KIND].astype(np.int8),
                "region": region,
            }
        )
        self._nbuf += n
        self.next_id += n
        np.add.at(self.counts, region.astype(np.int64), 1)
        self._x.append(x)
        self._y.append(y)
        if self._nbuf >= _ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        cols = {k: np.concatenate([b[k] for b in self._buf]) for k in self._buf[0]}
        arrays = []
        for f in VESSELS_SCHEMA:
            if f.name in _DICTS:
                idx = pa.array(cols[f.name], type=pa.int8())
                arrays.append(pa.DictionaryArray.from_arrays(idx, _DICTS[f.name]))
            else:
                arrays.append(pa.array(cols[f.name], type=f.type))
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=VESSELS_SCHEMA))
        self._buf, self._nbuf = [], 0

    @property
    def count(self) -> int:
        """Vessels written so far."""
        return self.next_id - 1

    def centroids_um(self) -> tuple[np.ndarray, np.ndarray]:
        """All vessel centroids written, µm."""
        if not self._x:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(self._x), np.concatenate(self._y)

    def close(self) -> None:
        """Flush and close the Parquet file (also when no vessel was written)."""
        self._flush()
        self._writer.close()

    def abort(self) -> None:
        """Close without raising (the caller deletes the file)."""
        with contextlib.suppress(Exception):
            self._writer.close()
