"""Render level-0 tiles of the synthetic slide from the layout and nucleus blocks."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from . import _kernels as K
from . import _params as P
from ._noise import noise_tile
from .layout import Layout
from .nuclei import Block, make_block
from .vessels import VesselField

__all__ = ["TileRenderer", "block_px_for"]

BLOCK_UM = 256.0  # nucleus-ownership block side, fixed in um so tile_px never matters


def block_px_for(mpp: float) -> int:
    """Side of a nucleus-ownership block in level-0 pixels for a pixel size.

    Parameters
    ----------
    mpp : float
        Level-0 pixel size, µm/px.

    Returns
    -------
    int
        ``round(256 µm / mpp)``, at least 64.
    """
    return max(64, round(BLOCK_UM / mpp))


class TileRenderer:
    """Render tiles and accumulate per-nucleus measurements into their blocks.

    Parameters
    ----------
    layout : Layout
    stain : {"he", "hdab", "cd31"}
        For ``"cd31"`` the renderer also paints the vessels of a :class:`VesselField`.
    seed : int
    tile : int
        Tile side in pixels.
    """

    def __init__(self, layout: Layout, stain: str, seed: int, tile: int) -> None:
        self.layout = layout
        self.stain = stain
        self.seed = int(seed)
        self.tile = int(tile)
        self.bsize = block_px_for(layout.mpp)
        self.reach = int(np.ceil(P.MAX_REACH_UM / layout.mpp))
        self.nbx = -(-layout.width // self.bsize)
        self.nby = -(-layout.height // self.bsize)
        rng = np.random.default_rng([seed, 5])
        # Per-slide stain intensity (+-15 %): batches and scanners differ.
        self.h_scale = float(rng.uniform(0.85, 1.15))
        self.e_scale = float(rng.uniform(0.85, 1.15))
        self.table = P.BG_HE if stain == "he" else P.BG_HDAB
        self.vectors = np.stack([P.STAIN_H, P.STAIN_E, P.STAIN_DAB, P.STAIN_DIRT])
        self.blocks: dict[tuple[int, int], Block] = {}
        self.vessels = VesselField(layout, seed, self.bsize) if stain == "cd31" else None

    def block(self, bx: int, by: int) -> Block:
        """The (cached) block at (bx, by)."""
        key = (bx, by)
        if key not in self.blocks:
            near = None
            if self.vessels is not None:
                b, r = self.bsize, P.VESSEL_NUCLEUS_CLEARANCE_UM / self.layout.mpp + 2
                near = self.vessels.near(bx * b - r, by * b - r, (bx + 1) * b + r, (by + 1) * b + r)
            self.blocks[key] = make_block(
                self.layout, bx, by, self.bsize, self.seed, self.stain, self.h_scale, near
            )
        return self.blocks[key]

    def pop_block(self, bx: int, by: int) -> Block:
        """Remove a finished block from the cache and return it."""
        return self.blocks.pop((bx, by)) if (bx, by) in self.blocks else self.block(bx, by)

    def pop_vessels(self, bx: int, by: int) -> np.ndarray:
        """The vessels owned by a finished block; cached rows above ``by - 1`` are dropped."""
        assert self.vessels is not None
        v = self.vessels.block(bx, by)
        self.vessels.forget_rows_before(by - 1)
        return v

    def block_done_y(self, by: int) -> int:
        """Level-0 row below which all pixels of block row ``by`` are painted."""
        return min(self.layout.height, (by + 1) * self.bsize + self.reach)

    # -- background --------------------------------------------------------------
    def _background(
        self, x0: int, y0: int, n: int
    ) -> tuple[
        npt.NDArray[np.float32],
        npt.NDArray[np.float32],
        npt.NDArray[np.float32],
        npt.NDArray[np.float32],
    ]:
        lay, s, um = self.layout, self.layout.noise_seed + 100, 1.0 / self.layout.mpp
        code = lay.classify_tile(x0, y0, n, n)
        tab = self.table[code]
        bh, be, bd, amp = (np.ascontiguousarray(tab[..., i], np.float32) for i in range(4))
        # Low-frequency staining variation (+-10 %) across the section.
        be *= self.e_scale * (1 + 0.10 * self._coarse(x0, y0, n, 500 * um, s))
        bh *= self.h_scale * (1 + 0.10 * self._coarse(x0, y0, n, 700 * um, s + 1))
        # Fibrillary neuropil / tumour processes: thin ridges of value noise, plus fine
        # grain; necrosis gets only the grain (granular debris).
        ridge = 1 - np.abs(noise_tile(x0, y0, n, n, 3.0 * um, s + 2))
        ridge2 = 1 - np.abs(noise_tile(x0, y0, n, n, 1.8 * um, s + 5))
        fib = 0.8 * ridge**6 + 0.5 * ridge2**8 - 0.25
        grain = noise_tile(x0, y0, n, n, 1.1 * um, s + 3)
        fib = np.where(code == P.NECROSIS, 0.8 * grain, 1.1 * fib + 0.35 * grain)
        be *= np.clip(1 + amp * fib, 0.2, None)
        bh *= np.clip(1 + 0.5 * amp * fib, 0.2, None)
        dirt = np.full((n, n), P.GLASS_OD, dtype=np.float32)
        self._lumens(x0, y0, n, bh, be, bd)
        if self.vessels is not None:
            ves = self.vessels.near(x0, y0, x0 + n, y0 + n)
            K.paint_vessels(ves, x0, y0, bh, be, bd, lay.mpp)
        self._debris(x0, y0, n, dirt)
        return bh, be, bd, dirt

    @staticmethod
    def _coarse(x0: int, y0: int, n: int, cell: float, seed: int) -> np.ndarray:
        """Low-frequency noise sampled every 8 px (it changes < 1 % over 8 px)."""
        c = noise_tile(x0, y0, n, n, cell, seed, 8)
        return np.repeat(np.repeat(c, 8, axis=0), 8, axis=1)

    def _lumens(
        self,
        x0: int,
        y0: int,
        n: int,
        bh: npt.NDArray[np.float32],
        be: npt.NDArray[np.float32],
        bd: npt.NDArray[np.float32],
    ) -> None:
        lay = self.layout
        for i in lay.lumens_near(x0, y0, x0 + n, y0 + n):
            lx, ly, lr, _ = lay.lumens[i]
            r0, r1 = max(0, int(ly - lr) - y0 - 2), min(n, int(ly + lr) - y0 + 3)
            c0, c1 = max(0, int(lx - lr) - x0 - 2), min(n, int(lx + lr) - x0 + 3)
            if r0 >= r1 or c0 >= c1:
                continue
            yy, xx = np.mgrid[r0:r1, c0:c1]
            d = np.hypot(xx + x0 + 0.5 - lx, yy + y0 + 0.5 - ly)
            inner = d < lr - 1.2 / lay.mpp
            wall = (d < lr) & ~inner
            # Open lumen: plasma only; a thin bright-pink basement membrane around it.
            for arr, val in ((bh, 0.01), (be, 0.04), (bd, 0.0)):
                sub = arr[r0:r1, c0:c1]
                sub[inner] = val
            be[r0:r1, c0:c1][wall] = 0.55 * self.e_scale if self.stain == "he" else 0.0
            bh[r0:r1, c0:c1][wall] *= 0.8

    def _debris(self, x0: int, y0: int, n: int, dirt: npt.NDArray[np.float32]) -> None:
        lay = self.layout
        s = lay.noise_seed + 200
        for dx, dy, dr, od in lay.debris:
            if dx + 2 * dr < x0 or dx - 2 * dr > x0 + n or dy + 2 * dr < y0 or dy - 2 * dr > y0 + n:
                continue
            yy, xx = np.mgrid[0:n, 0:n]
            wob = noise_tile(x0, y0, n, n, max(dr / 2, 2.0), s)
            d = np.hypot(xx + x0 + 0.5 - dx, yy + y0 + 0.5 - dy) / dr + 0.3 * wob
            dirt += np.where(d < 1, od * (1.1 - 0.3 * d), 0).astype(np.float32)
        side, bw = lay.border["side"], lay.border["width_px"]
        across = np.arange(n)
        if side in ("left", "right"):
            pos = x0 + across[None, :]
            along = noise_tile(x0, y0, 1, n, 40.0 / lay.mpp, s + 1)[:, :1]
            dist = pos if side == "left" else lay.width - 1 - pos
        else:
            pos = y0 + across[:, None]
            along = noise_tile(x0, y0, n, 1, 40.0 / lay.mpp, s + 1)[:1, :]
            dist = pos if side == "top" else lay.height - 1 - pos
        strip = dist < bw * (1 + 0.25 * along)
        if strip.any():
            dirt += np.where(strip, 1.9, 0).astype(np.float32)

    # -- tile --------------------------------------------------------------------
    def render(self, tx: int, ty: int) -> np.ndarray:
        """Render tile (tx, ty) as uint8 RGB of shape (tile, tile, 3).

        Nuclei from every block within reach are painted, so objects cross tile
        edges seamlessly; their rendered pixels are measured into the owning block.
        """
        n = self.tile
        x0, y0 = tx * n, ty * n
        bh, be, bd, dirt = self._background(x0, y0, n)
        b = self.bsize
        bx0, bx1 = max(0, (x0 - self.reach) // b), min(self.nbx - 1, (x0 + n + self.reach) // b)
        by0, by1 = max(0, (y0 - self.reach) // b), min(self.nby - 1, (y0 + n + self.reach) // b)
        blocks = [self.block(i, j) for j in range(by0, by1 + 1) for i in range(bx0, bx1 + 1)]
        truth = [bl.objs[: bl.n_truth] for bl in blocks]
        extra = [bl.objs[bl.n_truth :] for bl in blocks]
        objs = np.ascontiguousarray(np.concatenate(truth + extra))
        hn = np.zeros((n, n), np.float32)
        dn = np.zeros((n, n), np.float32)
        en = np.zeros((n, n), np.float32)
        emul = np.ones((n, n), np.float32)
        inmask = np.zeros((n, n), np.uint8)
        K.paint_objects(objs, x0, y0, hn, dn, en, emul, inmask)
        conc = np.empty((4, n, n), np.float32)
        conc[0] = bh * np.minimum(emul, 1) + hn
        conc[1] = be * emul * (1 - 0.35 * inmask) + en
        conc[2] = bd + dn
        conc[3] = dirt
        n_truth = sum(bl.n_truth for bl in blocks)
        acc = np.zeros((n_truth, 4))
        lay = self.layout
        K.measure_objects(objs, n_truth, x0, y0, lay.width, lay.height, conc[2], acc)
        i = 0
        for bl in blocks:
            bl.acc += acc[i : i + bl.n_truth]
            i += bl.n_truth
        out = np.empty((n, n, 3), np.uint8)
        K.compose_rgb(conc, self.vectors, x0, y0, self.seed * 31 + 3, 0.012, out)
        return out
