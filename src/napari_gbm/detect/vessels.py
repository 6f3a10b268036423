"""Vessel objects of a whole slide: lumina with an endothelial wall on H&E, DAB-positive
vessel profiles on CD31 / CD34 immunohistochemistry.

The slide is streamed tile by tile at ``resolution_um`` (1 µm/px by default); each tile is
read with a halo and an object belongs to the tile whose core holds its centroid, so an
object smaller than the halo is found once, whatever the grid.

**H&E** (``kind="lumen"``). A vessel in cross-section is an empty or blood-filled lumen
lined by flat endothelial nuclei that follow its outline (WHO CNS5 and every histology
text; microvascular proliferation is the same lumen with its wall *multilayered*:
stratified, crowded endothelial cells and pericytes, often in glomeruloid tufts). So:

1. *lumen candidates*: empty pixels (optical density summed over R, G, B below
   ``lumen_max_od``) and red cells (strong eosin, little hematoxylin), holes up to
   ``lumen_max_hole_um2`` filled (plasma clumps, white cells); connected components of
   ``lumen_min_area_um2`` to ``lumen_max_area_um2``, at least
   ``lumen_min_empty_fraction`` empty (a blood clot is no lumen), solid enough
   (``lumen_min_solidity``) and not a slit (``lumen_max_elongation``: a tear or a crack
   is no lumen), enclosed: at least ``lumen_min_enclosure`` of a 2-µm ring around
   the component is stained tissue (an open edge of glass is no lumen), and standing in
   tissue: at most ``lumen_max_surround_empty`` of the band 3-8 µm around it is empty
   (fat cells sit among the vacuoles of other fat cells);
2. *wall nuclei*: the detected nuclei within ``wall_um`` of the lumen (nearest lumen by
   distance transform); *endothelial* ones are elongated (major / minor axis
   >= ``wall_min_elongation``) and lie along the lumen outline (major axis within
   ``wall_max_angle_deg`` of the tangent); *outer* endothelial ones lie more than
   ``inner_wall_um`` from the lumen: a second or third layer;
3. a candidate is a **vessel** when at least ``vessel_min_endothelial`` endothelial nuclei
   line it, all round: ``lining_coverage``, the fraction of 8 sectors around the lumen
   holding one, is at least ``vessel_min_lining``. What is multilayered or glomeruloid
   is decided on the whole slide by :mod:`napari_gbm.biomarkers.vascular`.

**CD31 / CD34** (``kind="dab"``). Weidner's microvessel count (Weidner et al., N Engl J
Med 1991;324:1-8): "any brown-staining endothelial cell or endothelial-cell cluster that
was clearly separate from adjacent microvessels, tumour cells and other connective-tissue
elements was considered a single, countable microvessel"; a lumen is not required. So:
DAB OD (colour deconvolution, lightly smoothed) >= ``dab_threshold``, a closing of
``closing_um`` (the wall of one vessel, broken by its nuclei, is one object), holes up to
``dab_max_hole_um2`` filled (the lumen belongs to its vessel), components of at least
``dab_min_area_um2`` = one vessel each.

What this cannot see: collapsed vessels without a lumen on H&E (they are CD31's job),
vessels cut lengthwise whose lumen is a slit (low solidity), and lumina whose endothelium
was not detected as nuclei. Glands and ducts of other organs are lumina lined by
nuclei too; the endothelial test (thin, elongated, tangential nuclei) rejects cuboidal
epithelium but not every flat one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.morphology import disk

from napari_gbm.detect._lumina import bucket_nuclei, lumina, nuclei_near
from napari_gbm.detect.stain import StainVectors, deconvolve
from napari_gbm.detect.vessel_params import (
    NUCLEUS_POINT_COLUMNS,
    VESSEL_COLUMNS,
    NucleusPoints,
    VesselParams,
)
from napari_gbm.masks import fill_small_holes
from napari_gbm.wsi.slide import Slide
from napari_gbm.wsi.tiling import TileGrid, owner_tile_ids
from napari_gbm.wsi.tissue import TissueMask

__all__ = [
    "NUCLEUS_POINT_COLUMNS",
    "VESSEL_COLUMNS",
    "NucleusPoints",
    "VesselParams",
    "find_vessels",
]


def _tiles(
    slide: Slide, tissue: TissueMask | None, params: VesselParams
) -> Iterator[tuple[int, int, int, int, int]]:
    """(x0, y0, w, h, halo) of each tile core with tissue, output pixels at the resolution."""
    mpp = slide.require_mpp()
    ds = max(1.0, params.resolution_um / mpp)
    w0, h0 = slide.dimensions
    ow, oh = max(1, math.ceil(w0 / ds)), max(1, math.ceil(h0 / ds))
    halo = math.ceil(params.halo_um / (ds * mpp))
    t = int(params.tile_px)
    for y in range(0, oh, t):
        for x in range(0, ow, t):
            w, h = min(t, ow - x), min(t, oh - y)
            if tissue is not None:
                f = ds / tissue.downsample
                r0, r1 = int(max(0, (y - halo) * f)), math.ceil((y + h + halo) * f)
                c0, c1 = int(max(0, (x - halo) * f)), math.ceil((x + w + halo) * f)
                if not tissue.mask[r0:r1, c0:c1].any():
                    continue
            yield x, y, w, h, halo


def find_vessels(
    slide: Slide,
    tissue: TissueMask | None,
    stains: StainVectors,
    kind: Literal["lumen", "dab"],
    params: VesselParams | None = None,
    nuclei: NucleusPoints | None = None,
    grid: TileGrid | None = None,
) -> pd.DataFrame:
    """Every vessel object of a slide, streamed tile by tile.

    Parameters
    ----------
    slide : Slide
        The slide; it must have a pixel size.
    tissue : TissueMask or None
        Tiles without tissue are skipped, lumina and DAB objects off tissue dropped; None
        analyses the whole image.
    stains : StainVectors
        The slide's stain vectors (their ``background`` is the white point); for
        ``kind="dab"`` they must have a ``"dab"`` stain.
    kind : {"lumen", "dab"}
        Lumina with an endothelial wall (H&E) or DAB-positive vessel profiles (CD31/CD34).
    params : VesselParams, optional
        None uses ``VesselParams()``.
    nuclei : NucleusPoints, optional
        The slide's nuclei (H&E: the wall of each lumen is judged by them; without them no
        lumen is a vessel).
    grid : TileGrid, optional
        The analysis' tile grid: each object's ``tile_id`` is the tile whose core holds its
        centre (:func:`~napari_gbm.wsi.tiling.owner_tile_ids`, the cells' rule); -1 without
        a grid.

    Returns
    -------
    pandas.DataFrame
        One row per object, columns :data:`VESSEL_COLUMNS`, positions in µm from the
        slide's top-left corner; ``is_vessel`` is True for every DAB object.

    Raises
    ------
    SlideError
        If the slide has no pixel size.
    ValueError
        If `kind` is unknown or the stains lack DAB for ``kind="dab"``.
    """
    params = params or VesselParams()
    if kind not in ("lumen", "dab"):
        raise ValueError(f"kind must be 'lumen' (H&E) or 'dab' (CD31/CD34), got {kind!r}")
    if kind == "dab" and "dab" not in stains.names:
        raise ValueError(f"DAB vessels need H-DAB stain vectors, got {stains.names}")
    mpp = slide.require_mpp()
    ds = max(1.0, params.resolution_um / mpp)
    px_um = ds * mpp
    # a read pixel i is centred on level-0 pixel (i + 0.5) * ds - 0.5 (index coordinates,
    # the frame of the cell table's µm): µm = i * px_um + shift
    shift = 0.5 * (px_um - mpp)
    order, buckets = bucket_nuclei(nuclei, params.tile_px * px_um)
    rows: list[pd.DataFrame] = []
    for x, y, w, h, halo in _tiles(slide, tissue, params):
        x0, y0 = x - halo, y - halo
        ww, hh = w + 2 * halo, h + 2 * halo
        rgb = slide.read_downsampled((x0 * ds, y0 * ds, ww * ds, hh * ds), (ww, hh))
        on_tissue = (
            np.ones((hh, ww), bool) if tissue is None else tissue.on_grid(x0, y0, (hh, ww), ds)
        )
        if kind == "dab":
            found = _dab_objects(rgb, on_tissue, stains, px_um, params)
        else:
            window = (x0, y0, ww, hh)
            near = nuclei_near(nuclei, order, buckets, window, px_um, params, shift)
            found = lumina(rgb, on_tissue, stains, px_um, params, near)
        if found.empty:
            continue
        cx = found.pop("_cx").to_numpy()
        cy = found.pop("_cy").to_numpy()
        # pixel i covers [i - 0.5, i + 0.5): the core holds pixels halo .. halo + w - 1
        own = (cx + 0.5 >= halo) & (cx + 0.5 < halo + w) & (cy + 0.5 >= halo)
        own &= cy + 0.5 < halo + h
        found = found[own].copy()
        found["centroid_x_um"] = (cx[own] + x0) * px_um + shift
        found["centroid_y_um"] = (cy[own] + y0) * px_um + shift
        rows.append(found)
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    if grid is not None and len(table):
        x_px, y_px = table["centroid_x_um"] / mpp, table["centroid_y_um"] / mpp
        table["tile_id"] = owner_tile_ids(grid, x_px.to_numpy(), y_px.to_numpy())
    return _as_vessel_table(table, kind)


def _as_vessel_table(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    out = pd.DataFrame(index=range(len(table)))
    for c in VESSEL_COLUMNS:
        if c in table:
            out[c] = table[c].to_numpy()
        elif c.startswith("n_") or c == "tile_id":
            out[c] = np.full(len(table), -1, np.int32)
        elif c in ("is_vessel",):
            out[c] = np.ones(len(table), bool)
        else:
            out[c] = np.full(len(table), np.nan)
    out["vessel_id"] = np.arange(len(table), dtype=np.int64)
    out["kind"] = pd.Series([kind] * len(table), dtype="str")
    out["tile_id"] = out["tile_id"].astype(np.int64)
    for c in ("n_wall_nuclei", "n_endothelial", "n_outer_endothelial"):
        out[c] = out[c].astype(np.int32)
    out["is_vessel"] = out["is_vessel"].astype(bool)
    return out[list(VESSEL_COLUMNS)]


# --- DAB vessel profiles ----------------------------------------------------------------


def _dab_objects(
    rgb: np.ndarray,
    on_tissue: np.ndarray,
    stains: StainVectors,
    px_um: float,
    params: VesselParams,
) -> pd.DataFrame:
    dab = deconvolve(rgb, stains)["dab"]
    sigma = params.dab_smooth_um / px_um
    if sigma > 0.3:
        dab = ndimage.gaussian_filter(dab, sigma)
    stained = (dab >= params.dab_threshold) & on_tissue
    r = round(params.closing_um / px_um)
    if r >= 1:
        stained = ndimage.binary_closing(stained, disk(r), border_value=0)
    filled = fill_small_holes(stained, params.dab_max_hole_um2 / px_um**2)
    labels, n = ndimage.label(filled)
    if n == 0:
        return pd.DataFrame()
    idx = np.arange(1, n + 1)
    area = ndimage.sum_labels(np.ones_like(labels), labels, idx) * px_um**2
    keep = area >= params.dab_min_area_um2
    if not keep.any():
        return pd.DataFrame()
    cy, cx = (np.asarray(v) for v in zip(*ndimage.center_of_mass(filled, labels, idx), strict=True))
    wall = ndimage.sum_labels(stained, labels, idx) * px_um**2
    dab_mean = ndimage.mean(dab, labels * stained, idx)
    return pd.DataFrame(
        {
            "_cx": cx[keep],
            "_cy": cy[keep],
            "area_um2": wall[keep],
            "equivalent_diameter_um": np.sqrt(4 * area[keep] / np.pi),
            "lumen_area_um2": (area - wall)[keep],
            "dab_od_mean": np.asarray(dab_mean)[keep],
        }
    )
