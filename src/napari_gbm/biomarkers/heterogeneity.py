"""Spatial heterogeneity of a per-tile biomarker: spread (CV, IQR) and spatial
autocorrelation (Moran's I on the tile grid, rook neighbours).

Moran's I = (N / W) * sum_ij w_ij (x_i - m)(x_j - m) / sum_i (x_i - m)^2 with w_ij = 1 for
tiles sharing an edge (both with a value); +1 clustered (hot and cold regions), about
-1/(N-1) random, negative checkerboard-like. Definition as in PySAL's ``esda.Moran``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["morans_i", "spread"]


def morans_i(grid: np.ndarray) -> float | None:
    """Moran's I of a 2-D grid of per-tile values, rook (edge-sharing) neighbours.

    Parameters
    ----------
    grid : array_like, shape (rows, cols)
        One value per tile; NaN (or inf) marks a tile without a value, which takes no part
        in the mean, the variance or any neighbour pair.

    Returns
    -------
    float or None
        Moran's I (about +1 clustered, about -1/(N-1) random, negative checkerboard-like);
        None when undefined: fewer than 3 values, no neighbouring pair of valued tiles, or
        no variance.
    """
    v = np.asarray(grid, dtype=np.float64)
    ok = np.isfinite(v)
    n = int(ok.sum())
    if n < 3:
        return None
    m = v[ok].mean()
    z = np.where(ok, v - m, 0.0)
    denom = float((z[ok] ** 2).sum())
    if denom <= 0:
        return None
    num = 0.0
    w = 0
    for a, b, oa, ob in (
        (z[:, :-1], z[:, 1:], ok[:, :-1], ok[:, 1:]),
        (z[:-1, :], z[1:, :], ok[:-1, :], ok[1:, :]),
    ):
        both = oa & ob
        num += 2.0 * float((a[both] * b[both]).sum())  # each pair counted both ways
        w += 2 * int(both.sum())
    if w == 0:
        return None
    return float(n / w * num / denom)


def spread(values: Any) -> dict[str, float | None]:
    """Mean, coefficient of variation and interquartile range of the finite values.

    Parameters
    ----------
    values : array_like
        Any shape; non-finite values (NaN, inf) are dropped.

    Returns
    -------
    dict
        ``{"mean", "cv", "iqr"}``: ``cv`` is std / mean with the population std (ddof 0),
        None when the mean is 0; ``iqr`` is the 75th minus the 25th percentile, in the
        values' units. All three are None when no value is finite.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "cv": None, "iqr": None}
    mean = float(v.mean())
    q1, q3 = np.percentile(v, [25, 75])
    return {
        "mean": mean,
        "cv": float(v.std() / mean) if mean != 0 else None,
        "iqr": float(q3 - q1),
    }
