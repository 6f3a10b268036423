"""Human-readable outputs of an evaluation: the per-image point table and the summary
table printed by the command line."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from napari_gbm.evaluation.dataset import Truth
from napari_gbm.evaluation.detections import Detections
from napari_gbm.evaluation.matching import Matching

__all__ = ["POINT_COLUMNS", "point_table", "summary_table"]

POINT_COLUMNS = (
    "x",
    "y",
    "source",
    "matched",
    "distance_um",
    "matched_4um",
    "true_positive",
    "pred_positive",
)


def point_table(
    truth: Truth, dets: Detections, m6: Matching, m4: Matching, mpp: float
) -> pd.DataFrame:
    """One row per prediction (``source`` = ``pred``) and per unmatched truth (``true``).

    Parameters
    ----------
    truth : Truth
        The annotation.
    dets : Detections
        The detections.
    m6, m4 : Matching
        Matchings of `dets` to `truth` at 6 µm and at 4 µm.
    mpp : float
        Pixel size, µm/px (for ``distance_um``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`POINT_COLUMNS`: ``x``, ``y`` (pixels of the image); ``matched`` and
        ``distance_um`` (the match at 6 µm and its distance, µm); ``matched_4um``;
        ``true_positive``: the Ki-67 class of the matched (or missed) truth (1 / 0, empty
        when not graded or no truth); ``pred_positive``: the detector's (empty when it does
        not grade).
    """
    partner = m6.pred_partner()
    t_pos = truth.positive
    pred_t = pd.array([pd.NA] * len(dets), dtype="Int8")
    if t_pos is not None:
        has = partner >= 0
        vals = t_pos[partner[has]].astype(float)
        arr = np.full(len(dets), np.nan)
        arr[has] = vals
        arr[arr < 0] = np.nan
        pred_t = pd.array(arr, dtype="Float64").astype("Int8")
    pred = pd.DataFrame(
        {
            "x": dets.x,
            "y": dets.y,
            "source": "pred",
            "matched": partner >= 0,
            "distance_um": m6.pred_distance() * mpp,
            "matched_4um": m4.pred_partner() >= 0,
            "true_positive": pred_t,
            "pred_positive": (
                pd.array(dets.positive, dtype="boolean")
                if dets.positive is not None
                else pd.array([pd.NA] * len(dets), dtype="boolean")
            ),
        }
    )
    missed = np.flatnonzero(m6.true_partner() < 0)
    if t_pos is not None:
        tp = t_pos[missed].astype(float)
        tp[tp < 0] = np.nan
        miss_t = pd.array(tp, dtype="Float64").astype("Int8")
    else:
        miss_t = pd.array([pd.NA] * missed.size, dtype="Int8")
    true = pd.DataFrame(
        {
            "x": truth.x[missed],
            "y": truth.y[missed],
            "source": "true",
            "matched": False,
            "distance_um": np.nan,
            "matched_4um": m4.true_partner()[missed] >= 0,
            "true_positive": miss_t,
            "pred_positive": pd.array([pd.NA] * missed.size, dtype="boolean"),
        }
    )
    parts = [df for df in (pred, true) if len(df)]
    if not parts:
        return pred
    return pd.concat(parts, ignore_index=True)[list(POINT_COLUMNS)]


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def summary_table(result: dict[str, Any]) -> str:
    """A few text lines per set: ours vs the baseline.

    Parameters
    ----------
    result : dict
        The result of :func:`~napari_gbm.evaluation.evaluate.evaluate_dataset`.

    Returns
    -------
    str
        Header and one row per detector: P / R / F1 at 6 µm, Ki-67 index MAE (matched
        nuclei, percentage points), AJI, PQ and megapixels per second; ``-`` where
        undefined.
    """
    agg = result["aggregate"]
    lines = [
        f"{result['dataset']}: {agg['n_images']} images, {agg['n_true']} annotated nuclei, "
        f"stain {result['stain']}",
        f"  {'detector':<14}{'P@6':>7}{'R@6':>7}{'F1@6':>7}{'LI MAE':>8}{'AJI':>7}{'PQ':>7}"
        f"{'MP/s':>8}",
    ]
    rows = [(result["detector"], agg)]
    if result.get("baseline") is not None:
        rows.append((result["parameters"]["baseline"], result["baseline"]))
    for name, a in rows:
        lines.append(
            f"  {name:<14}{_fmt(a['precision@6'], '.3f'):>7}{_fmt(a['recall@6'], '.3f'):>7}"
            f"{_fmt(a['f1@6'], '.3f'):>7}{_fmt(a['li_mae'], '.1f'):>8}"
            f"{_fmt(a['aji'], '.3f'):>7}{_fmt(a['pq'], '.3f'):>7}{_fmt(a['mp_per_s'], '.2f'):>8}"
        )
    return "\n".join(lines)
