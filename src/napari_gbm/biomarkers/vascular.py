"""Vascular biomarkers of a slide from its vessel objects: microvessel density and its
hotspot (CD31 / CD34), vessels and microvascular proliferation (H&E).

The vessel objects come from :func:`napari_gbm.detect.vessels.find_vessels` (one row per
lumen or DAB object, ``is_vessel`` marking the vessels).

**Microvessel density** (MVD): vessels per mm² of analysed tissue, and in the *hotspot*,
the disc of ``hotspot_area_mm2`` (0.74 mm² by default: Weidner's 200x field, N Engl J Med
1991;324:1-8; about a field of 0.97 mm across) holding the most vessels among discs that
are at least ``hotspot_min_tissue`` tissue. Weidner counts vessels in that field; the
hotspot density is that count over the disc's tissue area.

**Microvascular proliferation** (MVP, H&E), the second histological hallmark of
glioblastoma (WHO CNS5): vessels with a *multilayered* wall (at least
``multilayer_min_outer`` endothelial nuclei in an outer layer, all round the lumen:
``multilayer_min_lining`` of its sectors; see
:class:`~napari_gbm.detect.vessels.VesselParams`) and *glomeruloid* tufts (at least
``glomeruloid_min_vessels`` vessels whose lumina lie within ``cluster_link_um`` of each
other). A focus is a group of linked vessels holding a multilayered vessel or forming a
tuft; its outline is the circle around its vessels' lumina widened by ``margin_um`` (the
multilayered wall and the perivascular cuff: the round region a pathologist outlines
around a tuft; a convex hull of a few lumina covered 20-50 % of the drawn synthetic MVP
regions, this circle 70-110 % on four synthetic slides). ``microvascular_area_mm2`` sums
the foci, ``mvp_fraction`` is that area over the analysed tissue area. A tile is of the
*microvascular* region class when MVP covers at least ``mvp_tile_fraction`` of its
tissue (:mod:`napari_gbm.biomarkers.whole_slide`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import ConvexHull, QhullError, cKDTree
from skimage.draw import polygon as draw_polygon

from napari_gbm.biomarkers.markers import get_marker
from napari_gbm.biomarkers.spatial import disc_kernel, disc_sum, grid_counts

__all__ = [
    "VASCULAR_SUMMARY_KEYS",
    "VESSEL_SOURCES",
    "VascularParams",
    "VascularResult",
    "empty_summary",
    "vascular_biomarkers",
    "vessel_source",
]

#: what the vessel objects are: lumina on H&E, or DAB objects of a vessel marker
VESSEL_SOURCES = ("he", "cd31", "cd34")

#: vessel-table columns :func:`vascular_biomarkers` reads (and the area: lumen on H&E)
VESSEL_INPUT_COLUMNS = (
    "is_vessel",
    "centroid_x_um",
    "centroid_y_um",
    "equivalent_diameter_um",
    "n_outer_endothelial",
    "outer_lining_coverage",
)
#: summary.json keys, every slide (None where they do not apply)
VASCULAR_SUMMARY_KEYS = (
    "vessel_source",
    "n_vessels",
    "vessel_density_per_mm2",
    "vessel_area_fraction",
    "microvessel_density_per_mm2",
    "microvessel_hotspot_density_per_mm2",
    "microvessel_hotspot_count",
    "microvessel_hotspot_x_um",
    "microvessel_hotspot_y_um",
    "microvessel_hotspot_area_mm2",
    "microvascular_area_mm2",
    "mvp_fraction",
    "n_mvp_foci",
    "n_multilayered_vessels",
)


@dataclass(frozen=True)
class VascularParams:
    """Parameters of :func:`vascular_biomarkers` (see the module docstring).

    Parameters
    ----------
    hotspot_area_mm2 : float, default 0.74
        Area of the hotspot disc, mm² (Weidner's 200x field).
    hotspot_min_tissue : float, default 0.5
        Fraction (0-1) of a candidate disc that must be tissue.
    multilayer_min_outer : int, default 3
        Outer-layer endothelial nuclei that make a vessel wall multilayered ...
    multilayer_min_lining : float, default 0.5
        ... lining at least this fraction (0-1) of the 8 sectors around the lumen: a second
        layer goes round the vessel; a few elongated nuclei near a lumen in crowded tissue
        do not.
    glomeruloid_min_vessels : int, default 3
        Linked vessels that make a glomeruloid tuft.
    cluster_link_um : float, default 75.0
        Vessels whose lumina are this close (edge to edge) belong to one group, µm.
    margin_um : float, default 30.0
        Width added around a focus' lumina for its outline, µm: the multilayered wall and
        the perivascular cuff a pathologist includes when outlining an MVP region.
    mvp_tile_fraction : float, default 0.1
        A tile is microvascular when MVP covers at least this fraction (0-1) of its tissue.

    Raises
    ------
    ValueError
        If an area, distance or count is not positive, or a fraction is outside [0, 1].
    """

    hotspot_area_mm2: float = 0.74
    hotspot_min_tissue: float = 0.5
    multilayer_min_outer: int = 3
    multilayer_min_lining: float = 0.5
    glomeruloid_min_vessels: int = 3
    cluster_link_um: float = 75.0
    margin_um: float = 30.0
    mvp_tile_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("hotspot_area_mm2", "cluster_link_um", "multilayer_min_outer"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.glomeruloid_min_vessels < 2:
            raise ValueError("glomeruloid_min_vessels must be at least 2")
        for name in ("hotspot_min_tissue", "mvp_tile_fraction", "multilayer_min_lining"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a fraction in [0, 1], got {getattr(self, name)}")
        if self.margin_um < 0:
            raise ValueError(f"margin_um must be >= 0, got {self.margin_um}")

    @property
    def hotspot_radius_um(self) -> float:
        return math.sqrt(self.hotspot_area_mm2 / math.pi) * 1000.0


@dataclass
class VascularResult:
    """What :func:`vascular_biomarkers` returns.

    Attributes
    ----------
    vessels : pandas.DataFrame
        The vessel objects with ``mvp_focus`` added (the focus id, -1 outside MVP) and
        ``multilayered``.
    foci : pandas.DataFrame
        One row per MVP focus: ``mvp_focus``, ``n_vessels``, ``area_um2``, centroid
        (``centroid_x_um``, ``centroid_y_um``) and its outline (``outline_x_um``,
        ``outline_y_um``: lists of vertices, µm).
    maps : dict of str to numpy.ndarray
        On the biomarker grid: ``vessel_density_per_mm2`` (vessels per mm² of tissue in the
        hotspot disc around each bin, NaN where the disc is not enough tissue) and, for
        H&E, ``microvascular`` (uint8: bin centre inside an MVP focus).
    summary : dict of str to Any
        :data:`VASCULAR_SUMMARY_KEYS`.
    """

    vessels: pd.DataFrame
    foci: pd.DataFrame
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def empty_summary() -> dict[str, Any]:
    """The vascular keys of a slide without vessel analysis: every one None."""
    return dict.fromkeys(VASCULAR_SUMMARY_KEYS)


def vascular_biomarkers(
    vessels: pd.DataFrame,
    source: str,
    tissue_bins: np.ndarray,
    bin_um: float,
    tissue_area_mm2: float,
    params: VascularParams | None = None,
) -> VascularResult:
    """Microvessel density, its hotspot and microvascular proliferation of one slide.

    Parameters
    ----------
    vessels : pandas.DataFrame
        Vessel objects (:data:`~napari_gbm.detect.vessels.VESSEL_COLUMNS`).
    source : {"he", "cd31", "cd34"}
        What they are: lumina on H&E (MVP is assessed), or a vessel marker's DAB objects
        (microvessel density and hotspot).
    tissue_bins : numpy.ndarray of bool, 2-D
        Tissue on the biomarker grid (bin (i, j) covers x in [j, j+1) * bin_um, y likewise).
    bin_um : float
        Side of a grid bin, µm.
    tissue_area_mm2 : float
        The analysed tissue area densities refer to, mm².
    params : VascularParams, optional
        None uses ``VascularParams()``.

    Returns
    -------
    VascularResult

    Raises
    ------
    ValueError
        If `source` is unknown, `bin_um` is not positive, or the table lacks a column it
        needs (:data:`VESSEL_INPUT_COLUMNS`).
    """
    params = params or VascularParams()
    if source not in VESSEL_SOURCES:
        raise ValueError(f"source must be one of {VESSEL_SOURCES}, got {source!r}")
    if not bin_um > 0:
        raise ValueError(f"bin_um must be positive, got {bin_um}")
    needed = [*VESSEL_INPUT_COLUMNS, "lumen_area_um2" if source == "he" else "area_um2"]
    missing = [c for c in needed if c not in vessels.columns]
    if missing:
        raise ValueError(
            f"the vessel table lacks {missing}; it has {list(vessels.columns)} (is it a "
            "napari-gbm vessels.parquet, from find_vessels?)"
        )
    v = vessels[vessels["is_vessel"].astype(bool)].reset_index(drop=True)
    n = len(v)
    per_mm2 = n / tissue_area_mm2 if tissue_area_mm2 > 0 else None
    area_key = "lumen_area_um2" if source == "he" else "area_um2"
    area_frac = float(v[area_key].sum()) / (tissue_area_mm2 * 1e6) if tissue_area_mm2 > 0 else None
    summary = empty_summary()
    summary.update(
        vessel_source=source,
        n_vessels=n,
        vessel_density_per_mm2=per_mm2,
        vessel_area_fraction=area_frac,
    )
    density, hotspot = _hotspot(v, tissue_bins, bin_um, params)
    maps = {"vessel_density_per_mm2": density}
    if source == "he":
        v, foci = _mvp_foci(v, params)
        maps["microvascular"] = _rasterise(foci, tissue_bins.shape, bin_um)
        mvp_mm2 = float(foci["area_um2"].sum()) / 1e6
        summary.update(
            microvascular_area_mm2=mvp_mm2,
            mvp_fraction=mvp_mm2 / tissue_area_mm2 if tissue_area_mm2 > 0 else None,
            n_mvp_foci=len(foci),
            n_multilayered_vessels=int(v["multilayered"].sum()),
        )
    else:
        v = v.assign(mvp_focus=np.full(n, -1, np.int64), multilayered=np.zeros(n, bool))
        foci = _empty_foci()
        summary.update(microvessel_density_per_mm2=per_mm2, **hotspot)
    return VascularResult(v, foci, maps, summary)


def _hotspot(
    v: pd.DataFrame, tissue_bins: np.ndarray, bin_um: float, params: VascularParams
) -> tuple[np.ndarray, dict[str, Any]]:
    shape = tissue_bins.shape
    r = params.hotspot_radius_um / bin_um
    counts = grid_counts(
        v["centroid_x_um"].to_numpy(), v["centroid_y_um"].to_numpy(), shape, bin_um
    )
    tis = tissue_bins.astype(float)
    full = disc_kernel(r).sum()  # the bins of a whole disc
    tissue_disc = disc_sum(tis, r)
    n_disc = disc_sum(counts, r)
    bin_mm2 = (bin_um / 1000.0) ** 2
    # a disc qualifies when its tissue is at least the fraction of a whole disc's area
    ok = (tissue_disc >= params.hotspot_min_tissue * full) & tissue_bins
    density = np.where(ok, n_disc / np.maximum(tissue_disc, 1e-9) / bin_mm2, np.nan)
    out: dict[str, Any] = {
        "microvessel_hotspot_density_per_mm2": None,
        "microvessel_hotspot_count": None,
        "microvessel_hotspot_x_um": None,
        "microvessel_hotspot_y_um": None,
        "microvessel_hotspot_area_mm2": params.hotspot_area_mm2,
    }
    if ok.any() and len(v):
        i, j = np.unravel_index(np.argmax(np.where(ok, n_disc, -1.0)), shape)
        out.update(
            microvessel_hotspot_density_per_mm2=float(density[i, j]),
            microvessel_hotspot_count=round(float(n_disc[i, j])),
            microvessel_hotspot_x_um=float((j + 0.5) * bin_um),
            microvessel_hotspot_y_um=float((i + 0.5) * bin_um),
        )
    return density.astype(np.float32), out


def _empty_foci() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "mvp_focus": pd.Series([], dtype=np.int64),
            "n_vessels": pd.Series([], dtype=np.int64),
            "area_um2": pd.Series([], dtype=np.float64),
            "centroid_x_um": pd.Series([], dtype=np.float64),
            "centroid_y_um": pd.Series([], dtype=np.float64),
            "outline_x_um": pd.Series([], dtype=object),
            "outline_y_um": pd.Series([], dtype=object),
        }
    )


def _mvp_foci(v: pd.DataFrame, params: VascularParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Group linked vessels; a group with a multilayered vessel or enough vessels is MVP."""
    n = len(v)
    v = v.assign(
        multilayered=(v["n_outer_endothelial"].to_numpy() >= params.multilayer_min_outer)
        & (v["outer_lining_coverage"].to_numpy() >= params.multilayer_min_lining),
        mvp_focus=np.full(n, -1, np.int64),
    )
    if n == 0:
        return v, _empty_foci()
    xy = v[["centroid_x_um", "centroid_y_um"]].to_numpy()
    r = v["equivalent_diameter_um"].to_numpy() / 2
    pairs = cKDTree(xy).query_pairs(
        2 * float(r.max()) + params.cluster_link_um, output_type="ndarray"
    )
    if len(pairs):
        gap = np.hypot(*(xy[pairs[:, 0]] - xy[pairs[:, 1]]).T) - r[pairs[:, 0]] - r[pairs[:, 1]]
        pairs = pairs[gap <= params.cluster_link_um]
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    rows: list[dict[str, Any]] = []
    focus = np.full(n, -1, np.int64)
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        if (
            len(members) < params.glomeruloid_min_vessels
            and not v["multilayered"].iloc[members].any()
        ):
            continue
        ox, oy = _outline(xy[members], r[members] + params.margin_um)
        fid = len(rows)
        focus[members] = fid
        rows.append(
            {
                "mvp_focus": fid,
                "n_vessels": len(members),
                "area_um2": _polygon_area(ox, oy),
                "centroid_x_um": float(ox.mean()),
                "centroid_y_um": float(oy.mean()),
                "outline_x_um": ox.tolist(),
                "outline_y_um": oy.tolist(),
            }
        )
    v["mvp_focus"] = focus
    foci = pd.DataFrame(rows) if rows else _empty_foci()
    return v, foci


def _outline(
    xy: np.ndarray, radius: np.ndarray, n_points: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """The outline of a focus: the circle, centred on the convex hull of the discs
    (centre, radius), that holds them all; ``n_points`` vertices, counter-clockwise."""
    a = np.linspace(0, 2 * np.pi, n_points, endpoint=False)
    px = (xy[:, :1] + radius[:, None] * np.cos(a)).ravel()
    py = (xy[:, 1:] + radius[:, None] * np.sin(a)).ravel()
    try:
        hull = ConvexHull(np.column_stack([px, py]))
    except QhullError:  # degenerate (cannot happen with discs of positive radius)
        return px, py
    hx, hy = px[hull.vertices], py[hull.vertices]
    cx, cy = hx.mean(), hy.mean()
    rad = np.hypot(hx - cx, hy - cy).max()
    return cx + rad * np.cos(a), cy + rad * np.sin(a)


def _polygon_area(x: np.ndarray, y: np.ndarray) -> float:
    """Shoelace area of a simple polygon, in the square of its units."""
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _rasterise(foci: pd.DataFrame, shape: tuple[int, int], bin_um: float) -> np.ndarray:
    """uint8 map: 1 where a grid bin's centre lies inside an MVP focus."""
    out = np.zeros(shape, np.uint8)
    for ox, oy in zip(foci["outline_x_um"], foci["outline_y_um"], strict=True):
        rr, cc = draw_polygon(
            np.asarray(oy) / bin_um - 0.5, np.asarray(ox) / bin_um - 0.5, shape=shape
        )
        out[rr, cc] = 1
    return out


def vessel_source(stain: str, marker: str | None) -> str | None:
    """What vessels a slide's analysis finds: ``"he"`` (lumina) on H&E, the marker's name
    for a vessel marker (CD31, CD34) on H-DAB, None otherwise (e.g. Ki-67).

    Parameters
    ----------
    stain : {"he", "hdab"}
        The analysis' stain.
    marker : str or None
        The IHC marker (a name of :data:`~napari_gbm.biomarkers.markers.MARKERS`).

    Returns
    -------
    str or None
        One of :data:`VESSEL_SOURCES`, or None.

    Raises
    ------
    ValueError
        For an unknown marker.
    """
    if stain == "he":
        return "he"
    if marker is not None and get_marker(marker).kind == "vessel":
        return get_marker(marker).name
    return None
