"""Parameters of the vessel detection (:mod:`napari_gbm.detect.vessels`, whose docstring
says what each one does), the nuclei a vessel wall is judged by, and the vessel table's
columns."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["NUCLEUS_POINT_COLUMNS", "SECTORS", "VESSEL_COLUMNS", "NucleusPoints", "VesselParams"]

#: the cell-table columns a vessel wall is judged by (:class:`NucleusPoints`)
NUCLEUS_POINT_COLUMNS = (
    "centroid_x_um",
    "centroid_y_um",
    "nucleus_major_axis_um",
    "nucleus_minor_axis_um",
    "nucleus_orientation_rad",
)

#: columns of the vessel table (``vessels.parquet``), in order; the H&E wall columns are
#: NaN / -1 for DAB vessels and the DAB one NaN for lumina
VESSEL_COLUMNS = (
    "vessel_id",
    "tile_id",
    "kind",
    "centroid_x_um",
    "centroid_y_um",
    "area_um2",
    "equivalent_diameter_um",
    "lumen_area_um2",
    "solidity",
    "enclosure",
    "surround_empty",
    "dab_od_mean",
    "n_wall_nuclei",
    "n_endothelial",
    "n_outer_endothelial",
    "lining_coverage",
    "outer_lining_coverage",
    "is_vessel",
)
#: sectors around a lumen whose lining is checked (``lining_coverage`` is a multiple of 1/8)
SECTORS = 8


@dataclass(frozen=True)
class VesselParams:
    """Parameters of :func:`find_vessels` (the module docstring says what each one does).

    Parameters
    ----------
    resolution_um : float, default 1.0
        Pixel size the slide is read at, µm/px.
    tile_px : int, default 1024
        Tile core side, pixels at `resolution_um`.
    halo_um : float, default 80.0
        Halo read around each tile core, µm: objects up to this size are found whole.
    lumen_max_od : float, default 0.25
        A pixel is empty (lumen or glass) below this optical density summed over R, G and
        B (glass ~0.05, pale neuropil ~0.4 and more), OD units.
    lumen_max_hole_um2 : float, default 150.0
        Stained holes inside an empty area up to this size (red cells, plasma clumps) are
        part of the lumen, µm².
    lumen_min_area_um2, lumen_max_area_um2 : float, default 30.0, 30000.0
        Lumen area range, µm² (a capillary of 6 µm to a vessel of ~200 µm across).
    lumen_min_solidity : float, default 0.8
        Area over convex area; tears and gaps between fibres are less solid.
    lumen_max_elongation : float, default 4.0
        Largest major / minor axis ratio: a vessel cut at 75 degrees to its axis is still
        an ellipse of ratio ~4; a crack is a slit.
    lumen_max_surround_empty : float, default 0.3
        Largest empty fraction (0-1) of the band 3-8 µm around a lumen: a vessel stands in
        tissue, a fat cell among other fat cells' vacuoles.
    blood_min_eosin_od : float, default 0.5
        Red cells: eosin OD at least this (OD units) ...
    blood_max_h_ratio : float, default 0.4
        ... and hematoxylin OD at most this times the eosin OD; they fill a lumen with the
        empty pixels.
    lumen_min_empty_fraction : float, default 0.1
        Fraction (0-1) of a lumen that must be empty (not blood): a blood clot or a
        haemorrhage is no lumen.
    lumen_min_enclosure : float, default 0.8
        Fraction (0-1) of a 2-µm ring around the lumen that must be stained tissue.
    wall_um : float, default 15.0
        Nuclei within this distance of the lumen belong to its wall, µm.
    inner_wall_um : float, default 7.5
        Endothelial nuclei farther than this from the lumen are an outer layer, µm.
    wall_min_elongation : float, default 1.6
        Major / minor axis ratio from which a wall nucleus can be endothelial.
    wall_max_angle_deg : float, default 30.0
        Largest angle between an endothelial nucleus' major axis and the lumen's tangent,
        degrees.
    vessel_min_endothelial : int, default 2
        Endothelial nuclei a lumen needs to be a vessel.
    vessel_min_lining : float, default 0.5
        Fraction (0-1) of the 8 sectors around a lumen that must hold an endothelial
        nucleus of the inner layer (within `inner_wall_um`): an endothelium lines the
        whole lumen, the fibroblasts along a gap in stroma line one side.
    dab_threshold : float, default 0.2
        DAB OD from which a pixel is vessel stain (QuPath's 1+ cell threshold), OD units.
    dab_smooth_um : float, default 1.0
        Gaussian sigma applied to the DAB OD before thresholding, µm.
    closing_um : float, default 1.5
        Radius of the closing that joins one vessel's stained pieces, µm.
    dab_max_hole_um2 : float, default 2000.0
        Unstained holes up to this size inside a stained object are its lumen, µm².
    dab_min_area_um2 : float, default 15.0
        Smallest DAB object counted as a vessel, µm² (an endothelial cell ~ 20-40 µm²).

    Raises
    ------
    ValueError
        If a size or threshold is not positive, or the area range is empty.
    """

    resolution_um: float = 1.0
    tile_px: int = 1024
    halo_um: float = 80.0
    lumen_max_od: float = 0.25
    lumen_max_hole_um2: float = 150.0
    lumen_min_area_um2: float = 30.0
    lumen_max_area_um2: float = 30000.0
    lumen_min_solidity: float = 0.8
    lumen_max_elongation: float = 4.0
    lumen_max_surround_empty: float = 0.3
    blood_min_eosin_od: float = 0.5
    blood_max_h_ratio: float = 0.4
    lumen_min_empty_fraction: float = 0.1
    lumen_min_enclosure: float = 0.8
    wall_um: float = 15.0
    inner_wall_um: float = 7.5
    wall_min_elongation: float = 1.6
    wall_max_angle_deg: float = 30.0
    vessel_min_endothelial: int = 2
    vessel_min_lining: float = 0.5
    dab_threshold: float = 0.2
    dab_smooth_um: float = 1.0
    closing_um: float = 1.5
    dab_max_hole_um2: float = 2000.0
    dab_min_area_um2: float = 15.0

    def __post_init__(self) -> None:
        for name in (
            "resolution_um",
            "halo_um",
            "lumen_max_od",
            "lumen_min_area_um2",
            "wall_um",
            "dab_threshold",
            "dab_min_area_um2",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.lumen_max_area_um2 > self.lumen_min_area_um2:
            raise ValueError("lumen_max_area_um2 must exceed lumen_min_area_um2")
        if int(self.tile_px) < 64:
            raise ValueError(f"tile_px must be at least 64, got {self.tile_px}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NucleusPoints:
    """The detected nuclei a vessel wall is judged by (from the cell table).

    Attributes
    ----------
    x_um, y_um : numpy.ndarray of float
        Nucleus centroids, µm from the slide's top-left corner.
    major_um, minor_um : numpy.ndarray of float
        Major and minor axis lengths, µm.
    orientation_rad : numpy.ndarray of float
        scikit-image's orientation: angle between the row axis and the major axis.
    """

    x_um: np.ndarray
    y_um: np.ndarray
    major_um: np.ndarray
    minor_um: np.ndarray
    orientation_rad: np.ndarray

    @classmethod
    def from_table(cls, cells: pd.DataFrame) -> NucleusPoints:
        """From a cell table with ``centroid_x_um``, ``centroid_y_um``,
        ``nucleus_major_axis_um``, ``nucleus_minor_axis_um``, ``nucleus_orientation_rad``."""
        return cls(*(cells[c].to_numpy(np.float64) for c in NUCLEUS_POINT_COLUMNS))
