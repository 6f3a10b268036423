"""Nuclear pleomorphism: how much nuclei vary in size and shape.

A pathologist grades pleomorphism by eye; these are its measurable parts, over all nuclei
of a tile or slide: the coefficient of variation of nucleus area (std / mean), the
robust spread (IQR / median), the spread of circularity, and the fraction of giant
nuclei (area >= 150 µm² by default: about 3x the median nucleus of cellular GBM, 40-60 µm²,
and the lower bound of the giant cells of giant-cell glioblastoma).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["GIANT_NUCLEUS_UM2", "pleomorphism"]

GIANT_NUCLEUS_UM2 = 150.0


def pleomorphism(
    area_um2: Any, circularity: Any = None, *, giant_um2: float = GIANT_NUCLEUS_UM2
) -> dict[str, float | None]:
    """Pleomorphism measures of a set of nuclei.

    Parameters
    ----------
    area_um2 : array_like
        Nucleus areas in µm²; non-finite values are dropped.
    circularity : array_like, optional
        Nucleus circularities (4π area / perimeter², 1 for a circle); non-finite values are
        dropped. None (the default) leaves ``nucleus_circularity_std`` None.
    giant_um2 : float, default GIANT_NUCLEUS_UM2 (150 µm²)
        Area in µm² from which a nucleus counts as giant (``>=``).

    Returns
    -------
    dict
        ``nucleus_area_um2_mean``, ``nucleus_area_um2_median`` (µm²),
        ``nucleus_area_um2_cv`` (sample std / mean, ddof 1), ``nucleus_area_iqr_ratio``
        (IQR / median), ``nucleus_circularity_std`` (ddof 1; None with fewer than 2
        circularities) and ``giant_nucleus_fraction`` (0-1). Every value is None with fewer
        than 2 finite areas; the two ratios are None when their denominator is 0.

    Raises
    ------
    ValueError
        If `giant_um2` is not positive.
    """
    if not giant_um2 > 0:
        raise ValueError(f"giant nucleus area must be positive, got {giant_um2}")
    a = np.asarray(area_um2, dtype=np.float64)
    a = a[np.isfinite(a)]
    out: dict[str, float | None] = {
        "nucleus_area_um2_mean": None,
        "nucleus_area_um2_median": None,
        "nucleus_area_um2_cv": None,
        "nucleus_area_iqr_ratio": None,
        "nucleus_circularity_std": None,
        "giant_nucleus_fraction": None,
    }
    if a.size < 2:
        return out
    mean, med = float(a.mean()), float(np.median(a))
    q1, q3 = np.percentile(a, [25, 75])
    out.update(
        nucleus_area_um2_mean=mean,
        nucleus_area_um2_median=med,
        nucleus_area_um2_cv=float(a.std(ddof=1) / mean) if mean > 0 else None,
        nucleus_area_iqr_ratio=float((q3 - q1) / med) if med > 0 else None,
        giant_nucleus_fraction=float((a >= giant_um2).mean()),
    )
    if circularity is not None:
        c = np.asarray(circularity, dtype=np.float64)
        c = c[np.isfinite(c)]
        out["nucleus_circularity_std"] = float(c.std(ddof=1)) if c.size >= 2 else None
    return out
