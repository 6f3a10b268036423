"""Scores of detections against annotations: detection, Ki-67 and segmentation.

Conventions (the same everywhere in :mod:`napari_gbm.evaluation`):

- a ratio whose denominator is 0 is NaN (undefined), never 0 or 1: precision with no
  prediction, recall with no truth, a Ki-67 index of no cell;
- F1 is ``2 TP / (2 TP + FP + FN)``: 0 when there are truths or predictions but no match,
  NaN only when there is neither (such an image is skipped by per-image means, but its
  counts still enter the summed counts);
- per-set detection scores are micro-averaged: TP / FP / FN summed over images first.

Ki-67: a truth's ``positive`` is an int8 array, 1 positive, 0 negative, -1 not graded.
A prediction's is a bool array, or None when the detector did not grade.

Segmentation (label images, 0 = background, each other value one instance):

- **mean IoU**: instances of the two label images paired by :func:`match_points` of their
  centroids (pixel means) within a radius; the mean IoU of those pairs;
- **AJI**, aggregated Jaccard index (Kumar et al., IEEE TMI 2017): each true instance
  ``G`` is paired with the predicted instance ``S`` of highest IoU with it (a prediction
  may be chosen by several truths); ``C`` sums ``|G ∩ S|``, ``U`` sums ``|G ∪ S|``; a
  truth overlapping no prediction adds ``|G|`` to ``U``; every prediction chosen by no
  truth adds its area to ``U``. AJI = C / U;
- **PQ**, panoptic quality (Kirillov et al., CVPR 2019): pairs with IoU > 0.5 (unique,
  as instances of one label image do not overlap); SQ = mean IoU of those pairs (NaN with
  none), DQ = TP / (TP + FP / 2 + FN / 2), PQ = SQ · DQ (0 when there are objects but
  no pair, NaN when neither image has any).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_gbm.evaluation.matching import match_points

__all__ = [
    "LabelOverlaps",
    "aji",
    "cohen_kappa",
    "detection_scores",
    "ki67_index",
    "label_centroids",
    "mean_matched_iou",
    "panoptic_quality",
    "posneg_confusion",
    "posneg_scores",
]


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def detection_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 from detection counts.

    Parameters
    ----------
    tp, fp, fn : int
        True positives (matched pairs), false positives (unmatched predictions) and false
        negatives (unmatched truths).

    Returns
    -------
    dict of str to float
        ``precision`` = TP / (TP + FP), ``recall`` = TP / (TP + FN) and
        ``f1`` = 2 TP / (2 TP + FP + FN); NaN where the denominator is 0.
    """
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def ki67_index(positive: npt.ArrayLike) -> float:
    """Percent positive of the graded cells (the Ki-67 labelling index).

    Parameters
    ----------
    positive : array_like
        Per cell: 1 / True positive, 0 / False negative, -1 not graded (left out).

    Returns
    -------
    float
        100 x positive / graded, 0-100; NaN with no graded cell.
    """
    p = np.asarray(positive).astype(np.int8).ravel()
    graded = p >= 0
    return 100.0 * _ratio(int((p[graded] == 1).sum()), int(graded.sum()))


def posneg_confusion(true_positive: npt.ArrayLike, pred_positive: npt.ArrayLike) -> np.ndarray:
    """2 x 2 confusion counts of paired cells' positivity.

    Parameters
    ----------
    true_positive : array_like
        Per pair, the truth's class: 1 positive, 0 negative, -1 not graded (left out).
    pred_positive : array_like of bool
        Per pair, the prediction's positivity; same length as `true_positive`.

    Returns
    -------
    numpy.ndarray of int64, shape (2, 2)
        ``[[TN, FP], [FN, TP]]``: rows truth, columns prediction.

    Raises
    ------
    ValueError
        If the two arrays differ in length.
    """
    t = np.asarray(true_positive).astype(np.int8).ravel()
    p = np.asarray(pred_positive).astype(bool).ravel()
    if t.shape != p.shape:
        raise ValueError(f"{t.size} truths but {p.size} predictions")
    graded = t >= 0
    t, p = t[graded] == 1, p[graded]
    return np.array(
        [[int((~t & ~p).sum()), int((~t & p).sum())], [int((t & ~p).sum()), int((t & p).sum())]],
        np.int64,
    )


def cohen_kappa(confusion: npt.ArrayLike) -> float:
    """Cohen's kappa of a square confusion matrix.

    Parameters
    ----------
    confusion : array_like, shape (k, k)
        Counts; rows one rater, columns the other.

    Returns
    -------
    float
        (p_o - p_e) / (1 - p_e); NaN when the matrix is empty or when chance agreement p_e
        is 1 (both raters used one and the same class only).
    """
    c = np.asarray(confusion, dtype=np.float64)
    n = c.sum()
    if n == 0:
        return math.nan
    po = np.trace(c) / n
    pe = float((c.sum(axis=0) * c.sum(axis=1)).sum()) / n**2
    return _ratio(po - pe, 1.0 - pe) if pe < 1.0 else math.nan


def posneg_scores(confusion: npt.ArrayLike) -> dict[str, float]:
    """Agreement scores of a :func:`posneg_confusion` matrix.

    Parameters
    ----------
    confusion : array_like, shape (2, 2)
        ``[[TN, FP], [FN, TP]]``.

    Returns
    -------
    dict
        ``posneg_n`` (pairs, int), ``posneg_accuracy``, ``sensitivity`` (positives found
        positive), ``specificity`` (negatives found negative), all fractions 0-1, and
        ``kappa`` (:func:`cohen_kappa`); NaN where undefined.
    """
    c = np.asarray(confusion, dtype=np.int64)
    (tn, fp), (fn, tp) = c
    return {
        "posneg_n": int(c.sum()),
        "posneg_accuracy": _ratio(tp + tn, c.sum()),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "kappa": cohen_kappa(c),
    }


# -- label images -----------------------------------------------------------------------


@dataclass(frozen=True)
class LabelOverlaps:
    """Areas of the instances of two label images and their pairwise intersections.

    Build one with :meth:`LabelOverlaps.of`, which raises ``ValueError`` if the label images
    differ in shape, are not 2-D, or hold negative values.

    Attributes
    ----------
    true_ids, pred_ids : ndarray of int64
        Instance values present (sorted, 0 excluded).
    true_area, pred_area : ndarray of int64
        Their areas, pixels.
    pairs_t, pairs_p : ndarray of int64
        For every overlapping (truth, prediction) pair, the index into `true_ids` and
        `pred_ids`.
    inter : ndarray of int64
        Intersection of each pair, pixels.
    iou : ndarray of float64
        Intersection over union of each pair.
    """

    true_ids: npt.NDArray[np.int64]
    true_area: npt.NDArray[np.int64]
    pred_ids: npt.NDArray[np.int64]
    pred_area: npt.NDArray[np.int64]
    pairs_t: npt.NDArray[np.int64]
    pairs_p: npt.NDArray[np.int64]
    inter: npt.NDArray[np.int64]
    iou: npt.NDArray[np.float64]

    @classmethod
    def of(cls, true_labels: npt.ArrayLike, pred_labels: npt.ArrayLike) -> LabelOverlaps:
        t = np.asarray(true_labels)
        p = np.asarray(pred_labels)
        if t.shape != p.shape or t.ndim != 2:
            raise ValueError(f"label images differ in shape: {t.shape} and {p.shape}")
        t = t.astype(np.int64).ravel()
        p = p.astype(np.int64).ravel()
        if (t.size and t.min() < 0) or (p.size and p.min() < 0):
            raise ValueError("label images must not hold negative values")
        t_count = np.bincount(t) if t.size else np.zeros(1, np.int64)
        p_count = np.bincount(p) if p.size else np.zeros(1, np.int64)
        t_ids = np.flatnonzero(t_count[1:]) + 1
        p_ids = np.flatnonzero(p_count[1:]) + 1
        both = (t > 0) & (p > 0)
        base = int(p_count.size)
        keys, inter = np.unique(t[both] * base + p[both], return_counts=True)
        kt, kp = keys // base, keys % base
        ti = np.searchsorted(t_ids, kt)
        pi = np.searchsorted(p_ids, kp)
        t_area = t_count[t_ids]
        p_area = p_count[p_ids]
        iou = inter / (t_area[ti] + p_area[pi] - inter)
        return cls(t_ids, t_area, p_ids, p_area, ti, pi, inter.astype(np.int64), iou)


def panoptic_quality(
    true_labels: npt.ArrayLike, pred_labels: npt.ArrayLike, *, iou_threshold: float = 0.5
) -> dict[str, float]:
    """Panoptic quality of two label images (see the module docstring).

    Parameters
    ----------
    true_labels, pred_labels : array_like, 2-D, same shape
        Instance label images (0 = background).
    iou_threshold : float, default 0.5
        Pairs with IoU strictly above this are matches. At least 0.5, where pairs are
        unique.

    Returns
    -------
    dict
        ``pq``, ``sq``, ``dq`` (float; see the module docstring for when they are 0 or NaN)
        and the counts ``pq_tp``, ``pq_fp``, ``pq_fn`` (int).

    Raises
    ------
    ValueError
        If `iou_threshold` < 0.5, or the label images are invalid (see
        :class:`LabelOverlaps`).
    """
    if iou_threshold < 0.5:
        raise ValueError("iou_threshold must be >= 0.5 (pairs are unique only then)")
    ov = LabelOverlaps.of(true_labels, pred_labels)
    hit = ov.iou > iou_threshold
    tp = int(hit.sum())
    fp = ov.pred_ids.size - tp
    fn = ov.true_ids.size - tp
    sq = float(ov.iou[hit].mean()) if tp else math.nan
    dq = _ratio(tp, tp + 0.5 * fp + 0.5 * fn)
    pq = _ratio(float(ov.iou[hit].sum()), tp + 0.5 * fp + 0.5 * fn)
    return {"pq": pq, "sq": sq, "dq": dq, "pq_tp": tp, "pq_fp": fp, "pq_fn": fn}


def aji(true_labels: npt.ArrayLike, pred_labels: npt.ArrayLike) -> float:
    """Aggregated Jaccard index (Kumar et al. 2017), see the module docstring.

    Parameters
    ----------
    true_labels, pred_labels : array_like, 2-D, same shape
        Instance label images (0 = background).

    Returns
    -------
    float
        AJI, 0-1; NaN when both images are empty. Ties of IoU go to the lowest prediction
        id.

    Raises
    ------
    ValueError
        If the label images are invalid (see :class:`LabelOverlaps`).
    """
    ov = LabelOverlaps.of(true_labels, pred_labels)
    # for each truth, its overlapping prediction of highest IoU (lowest id on ties)
    order = np.lexsort((ov.pairs_p, -ov.iou, ov.pairs_t))
    first = (
        order[np.r_[True, ov.pairs_t[order][1:] != ov.pairs_t[order][:-1]]] if order.size else order
    )
    t_sel, p_sel, inter = ov.pairs_t[first], ov.pairs_p[first], ov.inter[first]
    c = int(inter.sum())
    u = int((ov.true_area[t_sel] + ov.pred_area[p_sel] - inter).sum())
    paired_true = np.zeros(ov.true_ids.size, bool)
    paired_true[t_sel] = True
    used_pred = np.zeros(ov.pred_ids.size, bool)
    used_pred[p_sel] = True
    u += int(ov.true_area[~paired_true].sum()) + int(ov.pred_area[~used_pred].sum())
    return _ratio(c, u)


def label_centroids(labels: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], np.ndarray]:
    """Instance values of a label image and their centroids.

    Parameters
    ----------
    labels : array_like, 2-D
        Instance label image (0 = background, non-negative).

    Returns
    -------
    ids : ndarray of int64, shape (n,)
        Instance values present, sorted, 0 excluded.
    xy : ndarray of float64, shape (n, 2)
        Centroids as ``(x, y)`` = (column, row) pixel means.
    """
    lab = np.asarray(labels).astype(np.int64)
    flat = lab.ravel()
    count = np.bincount(flat)
    ids = np.flatnonzero(count[1:]) + 1
    rows, cols = np.indices(lab.shape)
    sy = np.bincount(flat, weights=rows.ravel(), minlength=count.size)
    sx = np.bincount(flat, weights=cols.ravel(), minlength=count.size)
    return ids, np.column_stack([sx[ids] / count[ids], sy[ids] / count[ids]])


def mean_matched_iou(
    true_labels: npt.ArrayLike, pred_labels: npt.ArrayLike, radius_px: float
) -> dict[str, Any]:
    """Mean IoU of the instance pairs matched by centroid.

    Instances are paired one-to-one by :func:`match_points` of their centroids; a matched
    pair that does not overlap counts with IoU 0.

    Parameters
    ----------
    true_labels, pred_labels : array_like, 2-D, same shape
        Instance label images (0 = background).
    radius_px : float
        Largest centroid distance of a pair, pixels.

    Returns
    -------
    dict
        ``mean_iou`` (float, NaN with no pair) and ``iou_pairs`` (int, the number of pairs).

    Raises
    ------
    ValueError
        If the label images are invalid (see :class:`LabelOverlaps`).
    """
    ov = LabelOverlaps.of(true_labels, pred_labels)
    t_ids, t_xy = label_centroids(true_labels)
    p_ids, p_xy = label_centroids(pred_labels)
    m = match_points(p_xy, t_xy, radius_px)
    if m.tp == 0:
        return {"mean_iou": math.nan, "iou_pairs": 0}
    # IoU of each matched pair; pairs that do not overlap have IoU 0
    base = max(int(ov.pred_ids.max(initial=0)), int(p_ids.max(initial=0))) + 1
    lookup = dict(
        zip(
            (ov.true_ids[ov.pairs_t] * base + ov.pred_ids[ov.pairs_p]).tolist(),
            ov.iou.tolist(),
            strict=True,
        )
    )
    keys = (t_ids[m.true_index] * base + p_ids[m.pred_index]).tolist()
    ious = np.array([lookup.get(k, 0.0) for k in keys])
    return {"mean_iou": float(ious.mean()), "iou_pairs": int(m.tp)}
