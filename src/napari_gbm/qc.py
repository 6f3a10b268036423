"""Plausibility of a result: warnings a pathologist should see before trusting numbers.

The commonest silent error is a wrong pixel size (typed by hand, or a scanner's metadata
off by a factor of 2): every size in µm and every density is then wrong, and detection,
which works in µm, finds few or no nuclei. Nucleus sizes and cell density reveal it.

Norms, with their sources:

- nucleus area: QuPath's positive cell detection keeps 10-400 µm² by default; the median
  nucleus area napari-gbm measures on the six human-annotated sets (H&E and Ki-67,
  BENCHMARKS.md) is 25-55 µm², and 25 µm² on CMU-1. A median below 15 µm² or above
  150 µm² (a factor of about 2 in length outside the norm) points at the pixel size. As
  detection drops objects below its minimum area (10 µm²), a pixel size stated too small
  truncates the distribution rather than shifting its median: on CMU-1 given 0.2 instead of
  0.499 µm/px the median is 16 µm² but 48 % of nuclei lie below 1.5x the minimum (17 % at
  the right pixel size; at most 26 % in any image of the three annotated Ki-67 sets), so
  40 % there is the second sign.
- cell density: 2,700-5,800 cells/mm² in glioblastoma (REFERENCE.md); below 200 /mm² in a
  region of at least 0.01 mm², tissue is barely detected (glass, a wrong stain, or the
  pixel size).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from napari_gbm.detect.nucleus_params import NucleusParams

__all__ = [
    "CROWDED_AT_MIN_FRACTION",
    "MEDIAN_NUCLEUS_AREA_UM2",
    "MIN_DENSITY_PER_MM2",
    "result_warnings",
]

#: plausible median nucleus area (µm²); outside it the pixel size is suspect
MEDIAN_NUCLEUS_AREA_UM2 = (15.0, 150.0)
#: below this density (cells/mm²) in at least ``MIN_AREA_MM2`` of tissue, say so
MIN_DENSITY_PER_MM2 = 200.0
MIN_AREA_MM2 = 0.01
#: this fraction of nuclei below 1.5x the minimum area kept by detection: too small
CROWDED_AT_MIN_FRACTION = 0.4
#: fewer cells than this give no reliable median size
MIN_CELLS_FOR_SIZE = 20


def result_warnings(
    nucleus_area_um2: npt.ArrayLike,
    area_mm2: float | None,
    mpp: float | None,
    min_area_um2: float | None = None,
) -> list[str]:
    """Warnings about implausible nucleus sizes or cell density (see the module docstring).

    Parameters
    ----------
    nucleus_area_um2 : array_like
        Nucleus area of each detected cell, µm²; non-finite values are dropped.
    area_mm2 : float or None
        Tissue area the cells were detected in, mm²; None skips the density check (as
        does an area under 0.01 mm²).
    mpp : float or None
        The slide's pixel size, µm/px, quoted in the messages; None if unknown.
    min_area_um2 : float, optional
        Smallest nucleus area detection keeps, µm²; None uses
        :class:`~napari_gbm.detect.nucleus_params.NucleusParams`' default.

    Returns
    -------
    list of str
        Plain sentences; empty when all is plausible. The size check needs at least 20
        nuclei.
    """
    if min_area_um2 is None:
        min_area_um2 = NucleusParams().min_area_um2
    areas = np.asarray(nucleus_area_um2, dtype=np.float64)
    areas = areas[np.isfinite(areas)]
    n = int(areas.size)
    px = f"{mpp:g} µm/px" if mpp else "unknown"
    out: list[str] = []
    lo, hi = MEDIAN_NUCLEUS_AREA_UM2
    if n >= MIN_CELLS_FOR_SIZE:
        med = float(np.median(areas))
        crowded = float(np.mean(areas < 1.5 * min_area_um2))
        if med < lo or med > hi or crowded >= CROWDED_AT_MIN_FRACTION:
            # nuclei measured too small: the stated µm/px is smaller than the true one
            side, truth = ("large", "smaller") if med > hi else ("small", "larger")
            near = f", {100 * crowded:.0f} % near the smallest kept" if side == "small" else ""
            out.append(
                f"nuclei are {side} for tissue (median {med:.0f} µm²{near}; usually "
                f"25-55 µm²): the pixel size ({px}) may be wrong, the true one {truth}"
            )
    if area_mm2 is not None and area_mm2 >= MIN_AREA_MM2:
        density = n / area_mm2
        if density < MIN_DENSITY_PER_MM2:
            out.append(
                f"only {n} cell{'' if n == 1 else 's'} in {area_mm2:.3f} mm² "
                f"({density:.0f}/mm²; glioblastoma has 2,700-5,800/mm²): check that the region "
                f"is on tissue, the stain is right and the pixel size ({px}) is right"
            )
    return out
