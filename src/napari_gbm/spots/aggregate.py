"""The cells under each spot: counts, density, Ki-67 positivity, nucleus size and
pleomorphism, and region classes, one row per spot.

A cell belongs to a spot when its centroid lies in the spot's disc (boundary included) or,
for a Visium HD bin, in its square; membership is decided in the full-resolution frame where
Space Ranger defines the spots, so a rotated or scaled slide (``transform``) keeps them
round and square. A k-d tree of the spot centres (:class:`scipy.spatial.cKDTree`) gives each
cell its nearest spot in one vectorised query: a million cells under 5,000 spots take well
under a second. Spots do not overlap (55 µm on a 100 µm grid; bins tile the plane); if a
larger ``spot_diameter_um`` makes them overlap, a cell counts for its nearest spot only.

The scores reuse the slide's own: :func:`~napari_gbm.biomarkers.ihc.ihc_scores` (the
positive fraction is its ``n_positive / n_graded``: NaN where no cell is graded, as on H&E)
and :func:`~napari_gbm.biomarkers.pleomorphism.pleomorphism`.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from napari_gbm import __version__
from napari_gbm.biomarkers.ihc import ihc_scores
from napari_gbm.biomarkers.pleomorphism import pleomorphism
from napari_gbm.biomarkers.whole_slide import REGION_CLASSES
from napari_gbm.spots.spaceranger import SpotGeometry, plausibility, transform_scale

__all__ = [
    "CELL_COLUMNS",
    "OBS_COLUMNS",
    "SpotParams",
    "SpotTable",
    "aggregate_spots",
    "assign_cells",
    "feature_units",
]

#: cell-table columns the aggregation reads (``tile_id`` too, for region classes)
CELL_COLUMNS = (
    "centroid_x_px",
    "centroid_y_px",
    "nucleus_area_um2",
    "nucleus_circularity",
    "positive_class",
)
#: per-spot columns that are not features: Space Ranger's, then the centre on the slide
OBS_COLUMNS = (
    "barcode",
    "in_tissue",
    "array_row",
    "array_col",
    "centre_x_px",
    "centre_y_px",
    "centre_x_um",
    "centre_y_um",
)
_BASE_UNITS = {
    "n_cells": "",
    "cell_density_per_mm2": "1/mm²",
    "n_graded": "",
    "n_positive": "",
    "positive_fraction": "",
    "h_score": "",
    "nucleus_area_um2_mean": "µm²",
    "nucleus_area_um2_median": "µm²",
    "nucleus_area_um2_cv": "",
    "nucleus_area_iqr_ratio": "",
    "nucleus_circularity_std": "",
    "giant_nucleus_fraction": "",
}


def feature_units(regions: bool = True) -> dict[str, str]:
    """The per-spot features, in order, with their units.

    Parameters
    ----------
    regions : bool, default True
        Include ``region_<name>_fraction`` for every class of
        :data:`~napari_gbm.biomarkers.whole_slide.REGION_CLASSES`.

    Returns
    -------
    dict of str to str
        Feature name -> unit (``""`` for counts and fractions, 0-1).
    """
    units = dict(_BASE_UNITS)
    if regions:
        units.update({f"region_{name}_fraction": "" for name in REGION_CLASSES.values()})
    return units


@dataclass(frozen=True)
class SpotParams:
    """Parameters of the spot aggregation.

    Parameters
    ----------
    spot_diameter_um : float or None, default None
        Diameter (bin side) in µm of the area whose cells a spot takes; None uses
        ``spot_diameter_fullres`` of the scale factors (Space Ranger >= 1.3 writes a
        65 µm spot there; give 55 for the capture area itself).
    all_spots : bool, default False
        Keep the spots off tissue (``in_tissue`` 0) too; by default only those over
        tissue, the rows of Space Ranger's filtered matrix.
    tolerance : float, default 0.2
        Relative difference (0.2 = 20 %) of spot size or spacing beyond which the
        placement is reported as implausible.
    """

    spot_diameter_um: float | None = None
    all_spots: bool = False
    tolerance: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SpotTable:
    """Spots with the summary of their cells, as returned by :func:`aggregate_spots`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per spot: :data:`OBS_COLUMNS`, then the features.
    units : dict of str to str
        Feature name -> unit, in column order (the features are its keys).
    metadata : dict
        JSON-ready: ``kind`` ("spots"), ``shape``, ``diameter_um``, ``slide_mpp``, the
        transform, Space Ranger's scale factors, counts, ``warnings``, parameters, software.
    """

    table: pd.DataFrame
    units: dict[str, str]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        """The feature columns, in order."""
        return list(self.units)


def _to_fullres(xy_px: np.ndarray, transform: np.ndarray | None) -> np.ndarray:
    if transform is None:
        return xy_px
    inv = np.linalg.inv(transform)
    return xy_px @ inv[:2, :2].T + inv[:2, 2]


def assign_cells(
    cells_xy_px: np.ndarray,
    spots_xy_fullres: np.ndarray,
    diameter_fullres: float,
    shape: str = "disc",
    transform: np.ndarray | None = None,
) -> np.ndarray:
    """The spot each cell lies in, or -1.

    Parameters
    ----------
    cells_xy_px : numpy.ndarray
        (n, 2) cell centroids (x, y) in level-0 pixels.
    spots_xy_fullres : numpy.ndarray
        (m, 2) spot centres (x = ``pxl_col_in_fullres``, y = ``pxl_row_in_fullres``).
    diameter_fullres : float
        Spot diameter (square side) in full-resolution pixels.
    shape : {"disc", "square"}, default "disc"
        A disc (boundary included) or an axis-aligned square of the full-resolution frame.
    transform : numpy.ndarray, optional
        (3, 3) affine from full-resolution to level-0 pixels; None for the identity.

    Returns
    -------
    numpy.ndarray
        (n,) int64 spot index per cell; -1 for a cell under no spot.
    """
    n = len(cells_xy_px)
    if n == 0 or len(spots_xy_fullres) == 0:
        return np.full(n, -1, np.int64)
    xy = _to_fullres(np.asarray(cells_xy_px, np.float64), transform)
    radius = diameter_fullres / 2.0
    reach = radius * (1.0 + 1e-9) + 1e-9  # the boundary belongs to the spot
    p = np.inf if shape == "square" else 2.0
    dist, idx = cKDTree(spots_xy_fullres).query(xy, k=1, p=p, distance_upper_bound=reach * 1.001)
    return np.where(dist <= reach, idx, -1).astype(np.int64)


def _spot_scores(
    spot: np.ndarray, n_spots: int, classes: np.ndarray, area: np.ndarray, circ: np.ndarray,
    graded: bool,
) -> dict[str, np.ndarray]:  # fmt: skip
    """IHC scores and pleomorphism of each spot's cells (NaN for a spot without them)."""
    template = {**ihc_scores(np.empty(0, np.int8), graded=graded), **pleomorphism(np.empty(0))}
    out = {k: np.full(n_spots, np.nan) for k in template}
    order = np.argsort(spot, kind="stable")
    counts = np.bincount(spot, minlength=n_spots)
    starts = np.concatenate([[0], np.cumsum(counts)])
    for j in np.flatnonzero(counts):
        members = order[starts[j] : starts[j + 1]]
        values = ihc_scores(classes[members], graded=graded)
        if counts[j] >= 2:
            values.update(pleomorphism(area[members], circ[members]))
        for k, v in values.items():
            if v is not None:
                out[k][j] = v
    return out


def aggregate_spots(
    cells: pd.DataFrame,
    positions: pd.DataFrame,
    geometry: SpotGeometry,
    *,
    slide_mpp: float,
    transform: np.ndarray | None = None,
    tile_regions: pd.Series | None = None,
    graded: bool = True,
    slide_dimensions: tuple[int, int] | None = None,
    params: SpotParams | None = None,
) -> SpotTable:
    """Summarise the cells under each spot.

    Parameters
    ----------
    cells : pandas.DataFrame
        The cell table, at least :data:`CELL_COLUMNS` (and ``tile_id`` for regions).
    positions : pandas.DataFrame
        Space Ranger's spots (:func:`~napari_gbm.spots.spaceranger.read_positions`).
    geometry : SpotGeometry
        Spot shape and size (:func:`~napari_gbm.spots.spaceranger.read_scalefactors`).
    slide_mpp : float
        The slide's pixel size, µm/px.
    transform : numpy.ndarray, optional
        (3, 3) affine from full-resolution to level-0 pixels; None: they are the same.
    tile_regions : pandas.Series, optional
        Region class code (:data:`~napari_gbm.biomarkers.whole_slide.REGION_CLASSES`)
        indexed by ``tile_id``; None leaves out the region fractions.
    graded : bool, default True
        Whether ``positive_class`` holds grades 0-3 (three thresholds): the H-score needs
        them.
    slide_dimensions : tuple of int, optional
        Level-0 (width, height), for the check that the spots lie on the slide.
    params : SpotParams, optional
        Default: ``SpotParams()``.

    Returns
    -------
    SpotTable
        One row per spot (over tissue only unless ``params.all_spots``), in the order of
        `positions`. Fractions are 0-1; ``cell_density_per_mm2`` is per mm² of spot area.

    Raises
    ------
    ValueError
        Naming the columns `cells` lacks, or if `slide_mpp` is not positive.

    Warns
    -----
    UserWarning
        For each implausible placement (:func:`~napari_gbm.spots.spaceranger.plausibility`)
        and when no cell lies under any spot.
    """
    params = params or SpotParams()
    missing = [c for c in CELL_COLUMNS if c not in cells.columns]
    if missing:
        raise ValueError(f"the cell table lacks the columns {', '.join(missing)}")
    if not slide_mpp > 0:
        raise ValueError(f"the slide's pixel size must be positive, got {slide_mpp}")
    all_pos = positions
    if not params.all_spots:
        positions = positions[positions["in_tissue"] > 0]
    positions = positions.reset_index(drop=True)
    scale = transform_scale(transform)
    d_fullres = geometry.diameter_fullres
    if params.spot_diameter_um is not None:
        d_fullres = params.spot_diameter_um / (scale * slide_mpp)
    d_um = d_fullres * scale * slide_mpp
    fr = positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(np.float64)
    centres = fr if transform is None else fr @ transform[:2, :2].T + transform[:2, 2]
    every = all_pos[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(np.float64)
    if transform is not None:
        every = every @ transform[:2, :2].T + transform[:2, 2]
    checks = plausibility(
        geometry, every, slide_mpp, slide_dimensions, transform, tolerance=params.tolerance
    )
    xy = cells[["centroid_x_px", "centroid_y_px"]].to_numpy(np.float64)
    spot = assign_cells(xy, fr, d_fullres, geometry.shape, transform)
    inside = spot >= 0
    s = spot[inside]
    n_spots = len(positions)
    n = np.bincount(s, minlength=n_spots)
    area_mm2 = (d_um**2 if geometry.shape == "square" else np.pi * (d_um / 2) ** 2) / 1e6
    units = feature_units(regions=tile_regions is not None)
    table = positions[list(OBS_COLUMNS[:4])].copy()
    table["centre_x_px"], table["centre_y_px"] = centres[:, 0], centres[:, 1]
    table["centre_x_um"], table["centre_y_um"] = (
        centres[:, 0] * slide_mpp,
        centres[:, 1] * slide_mpp,
    )
    table["n_cells"] = n
    table["cell_density_per_mm2"] = n / area_mm2
    area = cells["nucleus_area_um2"].to_numpy(np.float64)[inside]
    scores = _spot_scores(
        s,
        n_spots,
        cells["positive_class"].to_numpy(np.int64)[inside],
        area,
        cells["nucleus_circularity"].to_numpy(np.float64)[inside],
        graded,
    )
    ok = np.isfinite(area)
    n_area = np.bincount(s[ok], minlength=n_spots)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_area = np.bincount(s[ok], weights=area[ok], minlength=n_spots) / n_area
        table["n_graded"] = scores["n_graded"]
        table["n_positive"] = scores["n_positive"]
        table["positive_fraction"] = scores["n_positive"] / scores["n_graded"]
    table["h_score"] = scores["h_score"]
    for k in list(_BASE_UNITS)[6:]:
        table[k] = scores[k]
    table["nucleus_area_um2_mean"] = np.where(n_area > 0, mean_area, np.nan)
    table[["n_graded", "n_positive"]] = table[["n_graded", "n_positive"]].fillna(0)
    if tile_regions is not None:
        tile_ids = cells["tile_id"].to_numpy()[inside]
        codes = pd.Series(tile_regions).reindex(tile_ids).to_numpy(np.float64)
        for code, name in REGION_CLASSES.items():
            hit = codes == code
            with np.errstate(invalid="ignore", divide="ignore"):
                table[f"region_{name}_fraction"] = np.bincount(s[hit], minlength=n_spots) / n
    table = table.astype(dict.fromkeys(units, np.float64)).astype(
        {"n_cells": np.int64, "n_graded": np.int64, "n_positive": np.int64}
    )
    if len(cells) and not inside.any():
        checks.append(
            f"none of the {len(cells)} cells lies under any of the {n_spots} spots: the "
            "spots are not in this slide's frame (see --transform)"
        )
    for message in checks:
        warnings.warn(message, UserWarning, stacklevel=2)
    metadata = {
        "kind": "spots",
        "shape": geometry.shape,
        "diameter_um": d_um,
        "diameter_px": d_fullres * scale,
        "bin_size_um": geometry.bin_size_um,
        "spot_area_mm2": area_mm2,
        "slide_mpp": slide_mpp,
        "transform": None if transform is None else np.asarray(transform).tolist(),
        "spaceranger_scalefactors": geometry.scalefactors,
        "n_spots": n_spots,
        "n_spots_with_cells": int((n > 0).sum()),
        "n_cells": len(cells),
        "n_cells_under_spots": int(inside.sum()),
        "graded": bool(graded and table["n_graded"].sum() > 0),
        "units": units,
        "warnings": checks,
        "parameters": params.to_dict(),
        "software": {"napari_gbm": __version__},
    }
    return SpotTable(table=table, units=units, metadata=metadata)
