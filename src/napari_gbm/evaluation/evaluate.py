"""Evaluate a nucleus detector on an annotated set: :func:`evaluate_dataset`.

Every image is run through the detector and, in the same process on the same image, the
baseline; both are scored against the annotation (:mod:`.metrics`):

- detection at 4 and 6 µm (one-to-one matching, :mod:`.matching`): TP / FP / FN,
  precision, recall, F1; per set micro-averaged;
- Ki-67, where the truth has a positive class and the detector grades: the index of the
  truth (over annotated nuclei), of all predictions (``li_pred_all``) and of the
  predictions matched at 6 µm to graded annotated nuclei (``li_pred_matched``); positive
  / negative accuracy, sensitivity, specificity and Cohen's kappa of the matched pairs.
  The set's ``li_mae`` is the mean over images of ``|li_pred_matched - li_true|``, in
  points: several sets annotate only tumour nuclei, so the index over all detections
  also counts unannotated stroma and lymphocytes and measures the annotation protocol as
  much as the detector; ``li_mae_all`` (over all predictions) is reported beside it;
- segmentation, where the truth has instance labels and the detector a label image:
  mean IoU of pairs matched at 6 µm, AJI and PQ / SQ / DQ; per set the mean over images.

``evaluation.json`` has every key in every run: a value that does not apply or is
undefined (no Ki-67 class, no labels, a ratio with denominator 0) is ``null``. Outputs
are written atomically and ``evaluation.json`` last (an older one is removed first), so
an interrupted run never leaves one that looks complete.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from napari_gbm import __version__
from napari_gbm.evaluation.dataset import AnnotatedImage, Truth, load_dataset
from napari_gbm.evaluation.detections import Detections
from napari_gbm.evaluation.detectors import Detector, get_detector
from napari_gbm.evaluation.matching import Matching, match_points
from napari_gbm.evaluation.metrics import (
    aji,
    detection_scores,
    ki67_index,
    mean_matched_iou,
    panoptic_quality,
    posneg_confusion,
    posneg_scores,
)
from napari_gbm.evaluation.overlay import draw_overlay
from napari_gbm.evaluation.report import point_table
from napari_gbm.io import write_csv, write_json, write_png
from napari_gbm.wsi.slide import Slide

__all__ = ["RADII_UM", "ImageScore", "aggregate", "evaluate_dataset", "score_image"]

#: match radii in µm; the last is the primary one (Ki-67, IoU, summaries)
RADII_UM = (4.0, 6.0)
PQ_IOU_THRESHOLD = 0.5


def _key(name: str, radius_um: float) -> str:
    return f"{name}@{radius_um:g}"


@dataclass
class ImageScore:
    """The scores of one detector on one image.

    Attributes
    ----------
    record : dict of str to Any
        The per-image numbers of ``evaluation.json`` (NaN where undefined).
    matchings : dict of float to Matching
        Point matchings per radius in µm (:data:`RADII_UM`).
    confusion : numpy.ndarray or None
        The pos/neg confusion of pairs matched at the primary radius (see
        :func:`~napari_gbm.evaluation.metrics.posneg_confusion`); None where Ki-67 does not
        apply.
    megapixels : float
        The image's size, megapixels.
    seconds : float
        Detection time, seconds.
    """

    record: dict[str, Any]
    matchings: dict[float, Matching]
    confusion: np.ndarray | None
    megapixels: float
    seconds: float


def score_image(
    truth: Truth,
    dets: Detections,
    mpp: float,
    *,
    megapixels: float = math.nan,
    seconds: float = math.nan,
) -> ImageScore:
    """Score detections against an image's annotation (see the module docstring).

    Parameters
    ----------
    truth : Truth
        The annotation; centres in pixels.
    dets : Detections
        The detector's output; centroids in pixels of the same image.
    mpp : float
        Pixel size, µm/px: converts the match radii :data:`RADII_UM` (µm) to pixels.
    megapixels : float, default NaN
        The image's size, megapixels (for throughput).
    seconds : float, default NaN
        Detection time, seconds.

    Returns
    -------
    ImageScore
        ``record`` holds ``n_true``, ``n_pred``, ``tp@R`` / ``fp@R`` / ``fn@R`` /
        ``precision@R`` / ``recall@R`` / ``f1@R`` per radius R (µm), ``li_true``,
        ``li_pred_all``, ``li_pred_matched`` (percent), the pos/neg scores, ``mean_iou``,
        ``iou_pairs``, ``aji``, ``pq``, ``sq``, ``dq`` and ``seconds``; NaN where a value
        does not apply.
    """
    rec: dict[str, Any] = {"n_true": len(truth), "n_pred": len(dets)}
    matchings = {}
    for r in RADII_UM:
        m = match_points(dets.xy, truth.xy, r / mpp)
        matchings[r] = m
        rec.update({_key("tp", r): m.tp, _key("fp", r): m.fp, _key("fn", r): m.fn})
        rec.update({_key(k, r): v for k, v in detection_scores(m.tp, m.fp, m.fn).items()})
    m6 = matchings[RADII_UM[-1]]

    nan = math.nan
    graded_truth = truth.positive is not None and bool((truth.positive >= 0).any())
    rec["li_true"] = ki67_index(truth.positive) if graded_truth else nan  # type: ignore[arg-type]
    rec["li_pred_all"] = ki67_index(dets.positive) if dets.positive is not None else nan
    confusion = None
    rec["li_pred_matched"] = nan
    if graded_truth and dets.positive is not None:
        t_pos = truth.positive[m6.true_index]  # type: ignore[index]
        p_pos = dets.positive[m6.pred_index]
        graded = t_pos >= 0
        rec["li_pred_matched"] = ki67_index(p_pos[graded])
        confusion = posneg_confusion(t_pos, p_pos)
    rec.update(
        posneg_scores(confusion)
        if confusion is not None
        else dict.fromkeys(("posneg_accuracy", "sensitivity", "specificity", "kappa"), nan)
        | {"posneg_n": 0}
    )

    seg: dict[str, Any] = dict.fromkeys(("mean_iou", "aji", "pq", "sq", "dq"), nan)
    seg["iou_pairs"] = 0
    if truth.labels is not None and dets.labels is not None:
        seg.update(mean_matched_iou(truth.labels, dets.labels, RADII_UM[-1] / mpp))
        seg["aji"] = aji(truth.labels, dets.labels)
        pq = panoptic_quality(truth.labels, dets.labels, iou_threshold=PQ_IOU_THRESHOLD)
        seg.update({k: pq[k] for k in ("pq", "sq", "dq")})
    rec.update(seg)
    rec["seconds"] = seconds
    return ImageScore(rec, matchings, confusion, megapixels, seconds)


def _nanmean(values: list[float]) -> float:
    v = np.asarray([x for x in values if not math.isnan(x)], np.float64)
    return float(v.mean()) if v.size else math.nan


def aggregate(scores: list[ImageScore]) -> dict[str, Any]:
    """Per-set numbers of a detector's per-image scores (see the module docstring).

    Parameters
    ----------
    scores : list of ImageScore
        One per image.

    Returns
    -------
    dict of str to Any
        Summed counts and micro-averaged detection scores per radius; ``li_mae`` and
        ``li_mae_all`` (mean absolute Ki-67 index error over images, percentage points) with
        ``li_images``; the pos/neg scores of the summed confusion; per-image means of the
        segmentation scores with ``label_images``; ``megapixels``, ``seconds``, ``mp_per_s``
        and ``mp_per_s_warm`` (without the first image). NaN where undefined.
    """
    recs = [s.record for s in scores]
    out: dict[str, Any] = {
        "n_images": len(scores),
        "n_true": sum(r["n_true"] for r in recs),
        "n_pred": sum(r["n_pred"] for r in recs),
    }
    for r in RADII_UM:
        tp, fp, fn = (sum(rec[_key(k, r)] for rec in recs) for k in ("tp", "fp", "fn"))
        out.update({_key("tp", r): tp, _key("fp", r): fp, _key("fn", r): fn})
        out.update({_key(k, r): v for k, v in detection_scores(tp, fp, fn).items()})

    def mae(pred_key: str) -> tuple[float, int]:
        err = [
            abs(rec[pred_key] - rec["li_true"])
            for rec in recs
            if not (math.isnan(rec[pred_key]) or math.isnan(rec["li_true"]))
        ]
        return (float(np.mean(err)) if err else math.nan), len(err)

    out["li_mae"], out["li_images"] = mae("li_pred_matched")
    out["li_mae_all"], _ = mae("li_pred_all")
    out["li_true_mean"] = _nanmean([rec["li_true"] for rec in recs])
    out["li_pred_matched_mean"] = _nanmean([rec["li_pred_matched"] for rec in recs])
    conf = [s.confusion for s in scores if s.confusion is not None]
    out.update(
        posneg_scores(np.sum(conf, axis=0))
        if conf
        else dict.fromkeys(("posneg_accuracy", "sensitivity", "specificity", "kappa"), math.nan)
        | {"posneg_n": 0}
    )
    for k in ("mean_iou", "aji", "pq", "sq", "dq"):
        out[k] = _nanmean([rec[k] for rec in recs])
    out["label_images"] = sum(not math.isnan(rec["aji"]) for rec in recs)
    mp = sum(s.megapixels for s in scores)
    secs = sum(s.seconds for s in scores)
    out["megapixels"] = mp
    out["seconds"] = secs
    out["mp_per_s"] = mp / secs if secs > 0 else math.nan
    # the first image also pays one-time start-up (imports, numba cache): without it
    warm_s = sum(s.seconds for s in scores[1:])
    warm_mp = sum(s.megapixels for s in scores[1:])
    out["mp_per_s_warm"] = warm_mp / warm_s if warm_s > 0 else math.nan
    return out


def _clean(obj: Any) -> Any:
    """NaN -> None (JSON null), numpy scalars -> Python, recursively."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _software() -> dict[str, Any]:
    def ver(dist: str) -> str | None:
        try:
            return version(dist)
        except PackageNotFoundError:
            return None

    return {
        "napari_gbm": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": ver("scipy"),
        "scikit-image": ver("scikit-image"),
    }


def _run(detect: Detector, item: AnnotatedImage, truth: Truth) -> tuple[ImageScore, Detections]:
    t0 = time.perf_counter()
    dets = detect(item.path, item.mpp, item.stain)
    seconds = time.perf_counter() - t0
    if not isinstance(dets, Detections):
        raise TypeError(f"a detector must return Detections, got {type(dets).__name__}")
    if dets.labels is not None and dets.labels.shape != (item.height, item.width):
        raise ValueError(
            f"{item.name}: the detector's label image is {dets.labels.shape}, the image "
            f"{(item.height, item.width)}"
        )
    score = score_image(truth, dets, item.mpp, megapixels=item.megapixels, seconds=seconds)
    return score, dets


def _write_image_outputs(
    out: Path,
    item: AnnotatedImage,
    rgb: np.ndarray,
    truth: Truth,
    dets: Detections,
    score: ImageScore,
    suffix: str,
) -> None:
    m6, m4 = score.matchings[RADII_UM[-1]], score.matchings[RADII_UM[0]]
    table = point_table(truth, dets, m6, m4, item.mpp)
    write_csv(table, out / "images" / f"{item.name}{suffix}.csv", float_format="%.6g")
    overlay = draw_overlay(
        rgb,
        item.mpp,
        dets.xy,
        m6.pred_partner() >= 0,
        truth.xy,
        m6.true_partner() >= 0,
        pred_positive=dets.positive,
        true_positive=truth.positive,
    )
    write_png(overlay, out / "overlays" / f"{item.name}{suffix}.png")


def evaluate_dataset(
    path: str | Path,
    out: str | Path | None = None,
    *,
    stain: str | None = None,
    mpp: float | None = None,
    detector: str = "classical",
    baseline: str | None = "skimage",
    images: int | None = None,
    split: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate a detector (and the baseline) on an annotated set.

    Parameters
    ----------
    path : str or pathlib.Path
        The set's folder (see :mod:`napari_gbm.evaluation.dataset`).
    out : str or pathlib.Path, optional
        Output folder for ``evaluation.json``, ``images/<name>.csv`` (and
        ``<name>_baseline.csv``), ``overlays/<name>.png`` (and ``<name>_baseline.png``).
        None writes nothing.
    stain : {"he", "hdab"}, optional
        Overrides the manifest's stain.
    mpp : float, optional
        Pixel size, µm/px; overrides the manifest's (required without a manifest).
    detector : str, default "classical"
        Name of the detector to evaluate (:mod:`.detectors`).
    baseline : str or None, default "skimage"
        The detector run beside it; None or ``"none"`` runs none.
    images : int, optional
        Only the first `images` images (manifest order); None runs all.
    split : str, optional
        Only the manifest rows whose split column equals this; None runs all.
    progress : callable, optional
        Called as ``progress(images_done, images_total, image_name)`` after each image.

    Returns
    -------
    dict
        The content of ``evaluation.json`` (module docstring); None where a value does not
        apply or is undefined.

    Raises
    ------
    DatasetError
        A problem with the input, found before anything is detected or written.
    ValueError
        If `detector` or `baseline` names no detector, or a detector's label image does not
        match its image's size.
    TypeError
        If a detector does not return :class:`Detections`.
    """
    detect = get_detector(detector)
    base_name = None if baseline in (None, "none") else str(baseline)
    base = get_detector(base_name) if base_name is not None else None
    ds = load_dataset(path, stain=stain, mpp=mpp, images=images, split=split)
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "evaluation.json").unlink(missing_ok=True)

    ours: list[ImageScore] = []
    theirs: list[ImageScore] = []
    per_image: list[dict[str, Any]] = []
    for k, item in enumerate(ds.images):
        truth = item.load_truth()
        rec: dict[str, Any] = {
            "name": item.name,
            "mpp": item.mpp,
            "stain": item.stain,
            "width": item.width,
            "height": item.height,
            "annotation": truth.source,
        }
        runs = [("", detect, ours)] + ([("_baseline", base, theirs)] if base else [])
        rgb = None
        for suffix, fn, scores in runs:
            score, dets = _run(fn, item, truth)
            scores.append(score)
            if suffix:
                rec["baseline"] = score.record
            else:
                rec.update(score.record)
            if out_dir is not None:
                if rgb is None:
                    with Slide(item.path, mpp=item.mpp) as slide:
                        rgb = slide.read_region((0, 0), 0, (item.width, item.height))
                _write_image_outputs(out_dir, item, rgb, truth, dets, score, suffix)
        rec.setdefault("baseline", None)
        per_image.append(rec)
        if progress is not None:
            progress(k + 1, len(ds.images), item.name)

    stains = sorted({item.stain for item in ds.images})
    result = {
        "dataset": ds.name,
        "path": str(ds.path.resolve()),
        "detector": detector,
        "stain": stains[0] if len(stains) == 1 else "mixed",
        "parameters": {
            "radii_um": list(RADII_UM),
            "primary_radius_um": RADII_UM[-1],
            "pq_iou_threshold": PQ_IOU_THRESHOLD,
            "baseline": base_name,
            "mpp": mpp,
            "stain": stain,
            "images": images,
            "split": split,
            "split_column": ds.split_column,
            "manifest": str(ds.manifest) if ds.manifest is not None else None,
        },
        "software": _software(),
        "notes": list(ds.notes),
        "aggregate": aggregate(ours),
        "baseline": aggregate(theirs) if base is not None else None,
        "images": per_image,
    }
    result = _clean(result)
    if out_dir is not None:
        write_json(result, out_dir / "evaluation.json")
    return result
