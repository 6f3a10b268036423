"""H&E lumina and their walls, one tile at a time (the method is in
:mod:`napari_gbm.detect.vessels`): lumen candidates, the nuclei in each wall, the endothelial
ones and how much of the lumen they line."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.measure import regionprops_table
from skimage.morphology import disk

from napari_gbm.detect.stain import StainVectors, deconvolve, optical_density
from napari_gbm.detect.vessel_params import SECTORS, NucleusPoints, VesselParams
from napari_gbm.masks import fill_small_holes


def bucket_nuclei(
    nuclei: NucleusPoints | None, bucket_um: float
) -> tuple[np.ndarray, dict[tuple[int, int], np.ndarray]]:
    """Nuclei sorted into square buckets of the tile size, for fast per-tile lookup."""
    if nuclei is None or len(nuclei.x_um) == 0:
        return np.zeros(0, np.int64), {}
    bx = np.floor(nuclei.x_um / bucket_um).astype(np.int64)
    by = np.floor(nuclei.y_um / bucket_um).astype(np.int64)
    key = by * (int(bx.max()) + 2) + bx
    order = np.argsort(key, kind="stable")
    ks, starts = np.unique(key[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    width = int(bx.max()) + 2
    buckets = {
        (int(k // width), int(k % width)): order[s:e]
        for k, s, e in zip(ks, starts, ends, strict=True)
    }
    return order, buckets


def nuclei_near(
    nuclei: NucleusPoints | None,
    order: np.ndarray,
    buckets: dict[tuple[int, int], np.ndarray],
    window: tuple[int, int, int, int],
    px_um: float,
    params: VesselParams,
    shift_um: float = 0.0,
) -> dict[str, np.ndarray]:
    """The nuclei inside a window (in window pixels: read pixel i is at
    ``i * px_um + shift_um`` µm), with their axes."""
    empty = {k: np.zeros(0) for k in ("r", "c", "major", "minor", "theta")}
    if nuclei is None or not buckets:
        return empty
    x0, y0, ww, hh = window
    b = params.tile_px * px_um
    bx0, bx1 = math.floor(x0 * px_um / b), math.floor((x0 + ww) * px_um / b)
    by0, by1 = math.floor(y0 * px_um / b), math.floor((y0 + hh) * px_um / b)
    parts = [
        buckets[(j, i)]
        for j in range(by0, by1 + 1)
        for i in range(bx0, bx1 + 1)
        if (j, i) in buckets
    ]
    if not parts:
        return empty
    sel = np.concatenate(parts)
    c = (nuclei.x_um[sel] - shift_um) / px_um - x0
    r = (nuclei.y_um[sel] - shift_um) / px_um - y0
    inside = (c >= -0.5) & (c < ww - 0.5) & (r >= -0.5) & (r < hh - 0.5)
    sel = sel[inside]
    return {
        "r": r[inside],
        "c": c[inside],
        "major": nuclei.major_um[sel],
        "minor": nuclei.minor_um[sel],
        "theta": nuclei.orientation_rad[sel],
    }


def lumina(
    rgb: np.ndarray,
    on_tissue: np.ndarray,
    stains: StainVectors,
    px_um: float,
    params: VesselParams,
    near: dict[str, np.ndarray],
) -> pd.DataFrame:
    od = optical_density(rgb, stains.background).sum(axis=-1)
    empty = od < params.lumen_max_od
    conc = deconvolve(rgb, stains)
    blood = (conc["eosin"] >= params.blood_min_eosin_od) & (
        conc["hematoxylin"] <= params.blood_max_h_ratio * conc["eosin"]
    )
    pale = fill_small_holes(empty | blood, params.lumen_max_hole_um2 / px_um**2)
    labels, n = ndimage.label(pale & on_tissue)
    if n == 0:
        return pd.DataFrame()
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:] * px_um**2
    n_empty = np.bincount(labels[empty], minlength=n + 1)[1:] * px_um**2
    ok = (area >= params.lumen_min_area_um2) & (area <= params.lumen_max_area_um2)
    ok &= n_empty >= params.lumen_min_empty_fraction * area  # a blood clot is no lumen
    # enclosure: the 2-µm ring around each candidate is stained tissue (not glass, not
    # off the tissue mask)
    ring_r = max(1, round(2.0 / px_um))
    grown = ndimage.grey_dilation(labels, footprint=disk(ring_r))
    ring = (labels == 0) & (grown > 0)
    stained = ~pale & on_tissue
    n_ring = np.bincount(grown[ring], minlength=n + 1)[1:]
    n_ring_stained = np.bincount(grown[ring & stained], minlength=n + 1)[1:]
    enclosure = np.divide(n_ring_stained, n_ring, out=np.zeros(n), where=n_ring > 0)
    ok &= enclosure >= params.lumen_min_enclosure
    # cut by the window's edge: not whole here (a lumen smaller than the halo is whole in
    # the tile that owns it)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    ok[edge[edge > 0] - 1] = False
    if not ok.any():
        return pd.DataFrame()
    keep_ids = np.flatnonzero(ok) + 1
    lut = np.zeros(n + 1, np.int32)
    lut[keep_ids] = np.arange(1, len(keep_ids) + 1)
    lum = lut[labels]
    props = regionprops_table(
        lum,
        properties=("label", "centroid", "solidity", "area", "axis_major_length",
                    "axis_minor_length", "bbox"),
    )  # fmt: skip
    elongation = props["axis_major_length"] / np.maximum(props["axis_minor_length"], 1.0)
    surround = _surround_empty(lum, props, empty | ~on_tissue, px_um)
    solid = (props["solidity"] >= params.lumen_min_solidity) & (
        elongation <= params.lumen_max_elongation
    )
    solid &= surround <= params.lumen_max_surround_empty  # fat cells: empty all around
    wall = _wall_nuclei(lum, (props["centroid-0"], props["centroid-1"]), px_um, params, near)
    a = props["area"] * px_um**2
    out = pd.DataFrame(
        {
            "_cx": props["centroid-1"],
            "_cy": props["centroid-0"],
            "area_um2": a,
            "equivalent_diameter_um": np.sqrt(4 * a / np.pi),
            "lumen_area_um2": a,
            "solidity": props["solidity"],
            "enclosure": enclosure[keep_ids - 1],
            "surround_empty": surround,
            **{k: v[props["label"] - 1] for k, v in wall.items()},
        }
    )
    out = out[solid].reset_index(drop=True)
    out["is_vessel"] = (out["n_endothelial"] >= params.vessel_min_endothelial) & (
        out["lining_coverage"] >= params.vessel_min_lining
    )
    return out


def _surround_empty(
    lum: np.ndarray, props: dict[str, np.ndarray], empty: np.ndarray, px_um: float
) -> np.ndarray:
    """Per lumen: the empty fraction of the band 3-8 µm outside it. A vessel stands in its
    wall and the tissue around it; a fat cell is ringed by its neighbours' empty vacuoles
    across a septum of 1-3 µm."""
    r_in, r_out = 3.0 / px_um, 8.0 / px_um
    pad = int(np.ceil(r_out)) + 1
    out = np.zeros(len(props["label"]))
    for i, lab in enumerate(props["label"]):
        r0, c0 = max(0, props["bbox-0"][i] - pad), max(0, props["bbox-1"][i] - pad)
        r1 = min(lum.shape[0], props["bbox-2"][i] + pad)
        c1 = min(lum.shape[1], props["bbox-3"][i] + pad)
        d = ndimage.distance_transform_edt(lum[r0:r1, c0:c1] != lab)
        band = (d > r_in) & (d <= r_out)
        out[i] = empty[r0:r1, c0:c1][band].mean() if band.any() else 0.0
    return out


def _wall_nuclei(
    lum: np.ndarray,
    centres: tuple[np.ndarray, np.ndarray],
    px_um: float,
    params: VesselParams,
    near: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Per lumen label 1..n: nuclei in its wall, endothelial ones, outer endothelial ones,
    and the fraction of the lumen's outline lined by endothelial nuclei of the inner layer
    and of an outer layer."""
    n = len(centres[0])
    counts: dict[str, np.ndarray] = {
        k: np.zeros(n, np.int32) for k in ("n_wall_nuclei", "n_endothelial", "n_outer_endothelial")
    }
    counts["lining_coverage"] = np.zeros(n)
    counts["outer_lining_coverage"] = np.zeros(n)
    if n == 0 or near["r"].size == 0:
        return counts
    dist, (ir, ic) = ndimage.distance_transform_edt(lum == 0, return_indices=True)
    r = np.clip(np.rint(near["r"]).astype(np.int64), 0, lum.shape[0] - 1)
    c = np.clip(np.rint(near["c"]).astype(np.int64), 0, lum.shape[1] - 1)
    d_um = dist[r, c] * px_um
    owner = lum[ir[r, c], ic[r, c]]
    in_wall = (d_um > 0) & (d_um <= params.wall_um) & (owner > 0)
    # radial unit vector from the nearest lumen pixel to the nucleus, (row, col)
    dr, dc = near["r"] - ir[r, c], near["c"] - ic[r, c]
    norm = np.hypot(dr, dc)
    norm[norm == 0] = 1
    # the major axis direction in (row, col) is (cos t, sin t) (scikit-image's convention:
    # t = pi/4 runs down and to the right)
    radial = np.abs(dr / norm * np.cos(near["theta"]) + dc / norm * np.sin(near["theta"]))
    with np.errstate(divide="ignore", invalid="ignore"):
        elong = near["major"] / near["minor"]
    endo = (
        in_wall
        & (elong >= params.wall_min_elongation)
        & (radial <= math.sin(math.radians(params.wall_max_angle_deg)))
    )
    outer = endo & (d_um > params.inner_wall_um)
    # lining: the sectors (of 8 around the lumen's centre) that hold an endothelial nucleus
    # of the inner layer, and of an outer one
    cy, cx = centres
    for key, layer in (("lining_coverage", endo & ~outer), ("outer_lining_coverage", outer)):
        own = owner[layer] - 1
        ang = np.arctan2(near["r"][layer] - cy[own], near["c"][layer] - cx[own])
        sector = np.minimum((ang + np.pi) / (2 * np.pi) * SECTORS, SECTORS - 1).astype(int)
        hit = np.zeros((n, SECTORS), bool)
        hit[own, sector] = True
        counts[key] = hit.mean(axis=1)
    for key, m in (
        ("n_wall_nuclei", in_wall),
        ("n_endothelial", endo),
        ("n_outer_endothelial", outer),
    ):
        counts[key] = np.bincount(owner[m] - 1, minlength=n)[:n].astype(np.int32)
    return counts
