"""Per-tile and per-slide biomarkers from a cell table, a tile table and the tissue mask.

Densities are per mm² of tissue (a tile's tissue area = its core area x its tissue
fraction). Each tile gets a region class from its biomarkers:

=====  ==================  ==========================================================
code   name                rule (first that applies)
=====  ==================  ==========================================================
0      background          no tissue (tissue fraction < 5 %) or tile not analysed
3      necrosis            necrosis covers >= 50 % of its tissue
4      pseudopalisading    dense rims around necrosis cover >= 15 % of its tissue
5      microvascular       microvascular proliferation covers >= 10 % of its tissue
                           (H&E with vessels analysed, :mod:`.vascular`)
1      cellular_tumour     cell density >= 2,500 / mm²
2      infiltrating        the rest: viable tissue with fewer cells (infiltrating or
                           leading edge, normal brain)
=====  ==================  ==========================================================

(classes named after the Ivy GAP anatomic regions; 2,500 / mm² lies under viable GBM's
2,700-5,800 and above infiltrated brain's ~1,000-2,000, REFERENCE.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from napari_gbm.biomarkers.heterogeneity import morans_i, spread
from napari_gbm.biomarkers.ihc import PositivityParams, ihc_scores, positive_class
from napari_gbm.biomarkers.pleomorphism import GIANT_NUCLEUS_UM2, pleomorphism
from napari_gbm.biomarkers.spatial import GridMaps, SpatialParams, spatial_biomarkers
from napari_gbm.biomarkers.vascular import (
    VascularParams,
    VascularResult,
    empty_summary,
    vascular_biomarkers,
)

__all__ = [
    "REGION_CLASSES",
    "BiomarkerParams",
    "SlideBiomarkers",
    "slide_biomarkers",
    "tile_map",
]

REGION_CLASSES = {
    0: "background",
    1: "cellular_tumour",
    2: "infiltrating",
    3: "necrosis",
    4: "pseudopalisading",
    5: "microvascular",
}

#: cell-table columns the biomarkers read (``positivity.column`` besides)
CELL_COLUMNS = (
    "tile_id",
    "centroid_x_um",
    "centroid_y_um",
    "nucleus_area_um2",
    "nucleus_circularity",
)

#: per-tile biomarkers whose spread and Moran's I describe the slide's heterogeneity
HETEROGENEITY_OF = ("cell_density_per_mm2", "positive_percent", "nucleus_area_um2_mean")


@dataclass(frozen=True)
class BiomarkerParams:
    """Parameters of :func:`slide_biomarkers`.

    Parameters
    ----------
    positivity : PositivityParams, default PositivityParams()
        Which cell-table column grades a cell and the grade thresholds.
    spatial : SpatialParams, default SpatialParams()
        Grid maps, hotspot, necrosis and pseudopalisade parameters.
    giant_nucleus_um2 : float, default GIANT_NUCLEUS_UM2 (150 µm²)
        Nucleus area from which a nucleus counts as giant, µm².
    cellular_min_density_per_mm2 : float, default 2500.0
        A tile of at least this cell density (cells per mm² of tissue) is cellular tumour.
    min_tissue_fraction : float, default 0.05
        Tiles with a smaller tissue fraction (0-1) are background.
    necrosis_tile_fraction : float, default 0.5
        A tile is necrosis when necrosis covers at least this fraction of its tissue bins.
    palisade_tile_fraction : float, default 0.15
        A tile is pseudopalisading when pseudopalisades cover at least this fraction of its
        tissue bins.
    heterogeneity_min_cells : int, default 20
        Tiles with fewer cells take no part in the heterogeneity measures.
    vascular : VascularParams, default VascularParams()
        Microvessel density, its hotspot, microvascular proliferation and the tile fraction
        that makes a tile microvascular.
    """

    positivity: PositivityParams = field(default_factory=PositivityParams)
    spatial: SpatialParams = field(default_factory=SpatialParams)
    giant_nucleus_um2: float = GIANT_NUCLEUS_UM2
    cellular_min_density_per_mm2: float = 2500.0
    min_tissue_fraction: float = 0.05
    necrosis_tile_fraction: float = 0.5
    palisade_tile_fraction: float = 0.15
    heterogeneity_min_cells: int = 20
    vascular: VascularParams = field(default_factory=VascularParams)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SlideBiomarkers:
    """Biomarkers of one slide, as returned by :func:`slide_biomarkers`.

    Attributes
    ----------
    tiles : pandas.DataFrame
        The tile table with per-tile biomarkers added (``tissue_area_mm2``, ``n_cells``,
        ``cell_density_per_mm2``, ``positive_percent``, ``h_score``,
        ``nucleus_area_um2_mean``, ``necrosis_fraction``, ``region_class``, ...).
    summary : dict of str to Any
        Slide-level values, JSON-ready; None where undefined.
    maps : GridMaps
        Fine per-bin maps over the slide.
    vascular : VascularResult or None
        Vessels (with their MVP focus) and MVP foci, when vessels were given.
    """

    tiles: pd.DataFrame
    summary: dict[str, Any]
    maps: GridMaps
    vascular: VascularResult | None = None


def _positivity(cells: pd.DataFrame, params: BiomarkerParams) -> np.ndarray:
    col = params.positivity.column
    if "positive_class" in cells and col not in cells:
        return cells["positive_class"].to_numpy().astype(np.int8)
    if col not in cells:
        return np.full(len(cells), -1, np.int8)  # e.g. H&E: nothing to grade
    return positive_class(cells[col].to_numpy(), params.positivity.thresholds)


def slide_biomarkers(
    cells: pd.DataFrame,
    tiles: pd.DataFrame,
    tissue_mask: np.ndarray,
    slide_size_um: tuple[float, float],
    params: BiomarkerParams | None = None,
    vessels: pd.DataFrame | None = None,
    vessel_source: str | None = None,
) -> SlideBiomarkers:
    """Biomarkers of one slide.

    Parameters
    ----------
    cells : pandas.DataFrame
        The cell table: at least :data:`CELL_COLUMNS` (centroids in µm, nucleus area in µm²)
        and either ``params.positivity.column`` or a ``positive_class`` column. With neither,
        no cell is graded (e.g. H&E) and the IHC scores are None.
    tiles : pandas.DataFrame
        The tile table (``tiles.parquet`` of the tiling): ``tile_id`` running 0..n-1 in row
        order, ``row``, ``col``, ``selected``, ``tissue_fraction`` and the core rectangle
        (``core_x0_um``, ``core_y0_um``, ``core_width_um``, ``core_height_um``).
    tissue_mask : numpy.ndarray of bool, 2-D
        Tissue mask covering the whole slide, at any (low) resolution.
    slide_size_um : tuple of float
        ``(width, height)`` of level 0, µm.
    params : BiomarkerParams, optional
        None uses ``BiomarkerParams()``.
    vessels : pandas.DataFrame, optional
        The slide's vessel objects (:func:`napari_gbm.detect.vessels.find_vessels` given the
        tiles' grid, so each has its ``tile_id``); with them the summary has vessel density,
        its hotspot and (H&E) microvascular proliferation, the tiles ``vessel_count``,
        ``vessel_density_per_mm2`` and ``microvascular_fraction``; without, those are None /
        NaN.
    vessel_source : {"he", "cd31", "cd34"}, optional
        What `vessels` are (see :func:`~napari_gbm.biomarkers.vascular.vascular_biomarkers`);
        required with `vessels`.

    Returns
    -------
    SlideBiomarkers
        Per-tile table, slide summary (counts, densities per mm², IHC scores, spatial,
        vascular and pleomorphism measures, region fractions, heterogeneity) and grid maps.

    Raises
    ------
    ValueError
        If the cell table lacks a column of :data:`CELL_COLUMNS`, the tile ids do not run
        0..n-1 in row order, or a cell refers to a tile id the tile table lacks.
    """
    params = params or BiomarkerParams()
    missing = [c for c in CELL_COLUMNS if c not in cells.columns]
    if missing:
        raise ValueError(
            f"the cell table lacks {missing}; it has {list(cells.columns)[:10]} ... "
            "(is it a napari-gbm cells.parquet?)"
        )
    classes = _positivity(cells, params)
    graded = bool((classes >= 0).any())
    x = cells["centroid_x_um"].to_numpy()
    y = cells["centroid_y_um"].to_numpy()
    maps = spatial_biomarkers(
        x,
        y,
        tissue_mask,
        slide_size_um,
        positive=(classes > 0) if graded else None,
        params=params.spatial,
        nucleus_area_um2=cells["nucleus_area_um2"].to_numpy(),
    )
    vascular = None
    if vessels is not None:
        if vessel_source is None:
            raise ValueError("give vessel_source ('he', 'cd31' or 'cd34') with vessels")
        if "tile_id" not in vessels.columns:
            raise ValueError(
                "the vessel table has no tile_id: find its vessels with the tile grid "
                "(find_vessels(..., grid=grid))"
            )
        t_area = tiles["core_width_um"] * tiles["core_height_um"] * tiles["tissue_fraction"]
        analysed_mm2 = float(t_area.where(tiles["selected"], 0.0).sum()) / 1e6
        vascular = vascular_biomarkers(
            vessels,
            vessel_source,
            np.isfinite(maps.maps["cell_density_per_mm2"]),
            maps.bin_um,
            analysed_mm2,
            params.vascular,
        )
        maps.maps.update(vascular.maps)
    tiles = _tile_table(cells, classes, tiles, maps, params, graded, vascular)

    tissue_mm2 = float(tiles["tissue_area_mm2"].sum())
    total_mask_mm2 = float(tissue_mask.mean() * slide_size_um[0] * slide_size_um[1] / 1e6)
    n = len(cells)
    summary: dict[str, Any] = {
        "n_cells": n,
        "tissue_area_mm2": total_mask_mm2,
        "analysed_tissue_area_mm2": tissue_mm2,
        "cell_density_per_mm2": n / tissue_mm2 if tissue_mm2 > 0 else None,
    }
    scores = ihc_scores(classes, graded=params.positivity.graded)
    summary.update(scores)
    summary["positive_cells_per_mm2"] = (
        scores["n_positive"] / tissue_mm2 if graded and tissue_mm2 > 0 else None
    )
    summary.update(maps.summary)
    summary.update(vascular.summary if vascular is not None else empty_summary())
    summary.update(
        pleomorphism(
            cells["nucleus_area_um2"].to_numpy(),
            cells["nucleus_circularity"].to_numpy(),
            giant_um2=params.giant_nucleus_um2,
        )
    )
    sel = tiles[tiles["region_class"] > 0]
    for code, name in REGION_CLASSES.items():
        if code:
            area = float(sel.loc[sel["region_class"] == code, "tissue_area_mm2"].sum())
            summary[f"region_{name}_fraction"] = area / tissue_mm2 if tissue_mm2 > 0 else None
    summary["heterogeneity"] = _heterogeneity(tiles, params)
    summary["positive_class_names"] = {
        "-1": "not graded",
        "0": "negative",
        "1": "1+",
        "2": "2+",
        "3": "3+",
    }
    summary["region_classes"] = {str(k): v for k, v in REGION_CLASSES.items()}
    return SlideBiomarkers(tiles, summary, maps, vascular)


def _tile_table(
    cells: pd.DataFrame,
    classes: np.ndarray,
    tiles: pd.DataFrame,
    maps: GridMaps,
    params: BiomarkerParams,
    graded: bool,
    vascular: VascularResult | None = None,
) -> pd.DataFrame:
    t = tiles.copy()
    n_t = len(t)
    ids = t["tile_id"].to_numpy()
    if n_t and not np.array_equal(ids, np.arange(n_t)):
        raise ValueError("tile_id must run 0..n-1 in row order (a napari-gbm tiles table)")
    tid = cells["tile_id"].to_numpy().astype(np.int64)
    if tid.size and (tid.min() < 0 or tid.max() >= n_t):
        raise ValueError("cells refer to tile ids the tile table does not have")
    t["tissue_area_mm2"] = (
        t["core_width_um"] * t["core_height_um"] * t["tissue_fraction"] / 1e6
    ).where(t["selected"], 0.0)
    area = t["tissue_area_mm2"].to_numpy()
    n = np.bincount(tid, minlength=n_t).astype(np.int64)
    t["n_cells"] = n
    with np.errstate(invalid="ignore", divide="ignore"):
        t["cell_density_per_mm2"] = np.where(area > 0, n / area, np.nan)
        grades = np.stack([np.bincount(tid[classes == g], minlength=n_t) for g in range(4)], axis=1)
        n_graded = grades.sum(1)
        n_pos = grades[:, 1:].sum(1)
        t["n_positive"] = n_pos if graded else 0
        nan = np.full(n_t, np.nan)
        t["positive_percent"] = (
            np.where(n_graded > 0, 100 * n_pos / n_graded, np.nan) if graded else nan
        )
        hs = 100 * (grades[:, 1] + 2 * grades[:, 2] + 3 * grades[:, 3]) / n_graded
        t["h_score"] = (
            np.where(n_graded > 0, hs, np.nan) if graded and params.positivity.graded else nan
        )
        t["positive_cells_per_mm2"] = np.where(area > 0, n_pos / area, np.nan) if graded else nan
        a = cells["nucleus_area_um2"].to_numpy().astype(np.float64)
        s1 = np.bincount(tid, weights=a, minlength=n_t)
        s2 = np.bincount(tid, weights=a * a, minlength=n_t)
        mean = s1 / n
        var = (s2 - n * mean**2) / np.maximum(n - 1, 1)
        t["nucleus_area_um2_mean"] = np.where(n > 0, mean, np.nan)
        t["nucleus_area_um2_cv"] = np.where(n > 1, np.sqrt(np.maximum(var, 0)) / mean, np.nan)
        t["giant_nucleus_fraction"] = np.where(
            n > 0, np.bincount(tid[a >= params.giant_nucleus_um2], minlength=n_t) / n, np.nan
        )
    b = maps.bin_um
    for name in ("necrosis", "pseudopalisade"):
        t[f"{name}_fraction"] = _box_mean(maps.maps[name], maps.maps["cell_density_per_mm2"], t, b)
    _vascular_columns(t, vascular, maps)
    region = np.where(
        t["cell_density_per_mm2"].fillna(0) >= params.cellular_min_density_per_mm2, 1, 2
    )
    region = np.where(
        t["microvascular_fraction"].fillna(0) >= params.vascular.mvp_tile_fraction, 5, region
    )
    region = np.where(
        t["pseudopalisade_fraction"].fillna(0) >= params.palisade_tile_fraction, 4, region
    )
    region = np.where(t["necrosis_fraction"].fillna(0) >= params.necrosis_tile_fraction, 3, region)
    bg = ~t["selected"].to_numpy() | (t["tissue_fraction"].to_numpy() < params.min_tissue_fraction)
    t["region_class"] = np.where(bg, 0, region).astype(np.int8)
    t["region_name"] = pd.Series(t["region_class"].map(REGION_CLASSES), dtype="str")
    return t


def _vascular_columns(t: pd.DataFrame, vascular: VascularResult | None, maps: GridMaps) -> None:
    """``vessel_count``, ``vessel_density_per_mm2`` and ``microvascular_fraction`` per tile
    (NaN without vessels; each vessel counted in its ``tile_id``, the tile whose core holds
    its centre)."""
    nan = np.full(len(t), np.nan)
    if vascular is None:
        t["vessel_count"] = nan
        t["vessel_density_per_mm2"] = nan
        t["microvascular_fraction"] = nan
        return
    tid = vascular.vessels["tile_id"].to_numpy().astype(np.int64)
    count = np.bincount(tid[tid >= 0], minlength=len(t))[: len(t)]
    area = t["tissue_area_mm2"].to_numpy()
    t["vessel_count"] = np.where(area > 0, count, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        t["vessel_density_per_mm2"] = np.where(area > 0, count / area, np.nan)
    if "microvascular" in maps.maps:
        t["microvascular_fraction"] = _box_mean(
            maps.maps["microvascular"], maps.maps["cell_density_per_mm2"], t, maps.bin_um
        )
    else:
        t["microvascular_fraction"] = nan


def _box_mean(flag: np.ndarray, density: np.ndarray, t: pd.DataFrame, b: float) -> np.ndarray:
    """Fraction of each tile core's tissue bins (finite density) where ``flag`` is set."""
    tissue = np.isfinite(density)
    h, w = flag.shape
    ii_f = np.zeros((h + 1, w + 1))
    ii_t = np.zeros((h + 1, w + 1))
    ii_f[1:, 1:] = (flag.astype(bool) & tissue).cumsum(0).cumsum(1)
    ii_t[1:, 1:] = tissue.cumsum(0).cumsum(1)
    x0 = np.clip(np.floor(t["core_x0_um"].to_numpy() / b).astype(int), 0, w)
    y0 = np.clip(np.floor(t["core_y0_um"].to_numpy() / b).astype(int), 0, h)
    x1 = np.clip(np.ceil((t["core_x0_um"] + t["core_width_um"]).to_numpy() / b).astype(int), 0, w)
    y1 = np.clip(np.ceil((t["core_y0_um"] + t["core_height_um"]).to_numpy() / b).astype(int), 0, h)

    def box(ii: np.ndarray) -> np.ndarray:
        return ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]

    ft, tt = box(ii_f), box(ii_t)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tt > 0, ft / tt, np.nan)


def _heterogeneity(tiles: pd.DataFrame, params: BiomarkerParams) -> dict[str, Any]:
    use = (tiles["region_class"] > 0) & (tiles["n_cells"] >= params.heterogeneity_min_cells)
    out: dict[str, Any] = {"n_tiles": int(use.sum())}
    for col in HETEROGENEITY_OF:
        vals = tiles[col].where(use)
        out[col] = {**spread(vals.to_numpy()), "morans_i": morans_i(tile_map(tiles, vals))}
    return out


def tile_map(tiles: pd.DataFrame, values: str | pd.Series) -> np.ndarray:
    """A per-tile value as a 2-D array on the tile grid.

    In napari: ``Image(tile_map(...), scale=(tile_um, tile_um), translate=(y0 + tile_um / 2,
    x0 + tile_um / 2))`` in µm, with tile_um the core size and (x0, y0) the first core's
    corner.

    Parameters
    ----------
    tiles : pandas.DataFrame
        Tile table with integer ``row`` and ``col`` columns.
    values : str or pandas.Series
        A column of `tiles`, or a series aligned with its rows; non-numeric values become
        NaN.

    Returns
    -------
    numpy.ndarray of float32, shape (rows, cols)
        Spanning the tiles' row and column range; NaN where there is no tile or no value.
        ``(0, 0)`` for an empty tile table.
    """
    v = tiles[values] if isinstance(values, str) else values
    rows = tiles["row"].to_numpy()
    cols = tiles["col"].to_numpy()
    if len(tiles) == 0:
        return np.zeros((0, 0), np.float32)
    r0, c0 = rows.min(), cols.min()
    out = np.full((rows.max() - r0 + 1, cols.max() - c0 + 1), np.nan, np.float32)
    out[rows - r0, cols - c0] = pd.to_numeric(v, errors="coerce").to_numpy(dtype=np.float64)
    return out
