"""Evaluation of nucleus detection against human annotations.

``evaluate_dataset(path, out)`` runs a detector (ours by default) and a plain
scikit-image baseline on every image of an annotated set and scores both: detection
precision / recall / F1 at 4 and 6 µm, Ki-67 index error and positive / negative
agreement, and segmentation (mean IoU, AJI, PQ) where there are instance masks. The
command line is ``napari-gbm evaluate DIR --out OUT``.

Modules: :mod:`.dataset` (reading a set), :mod:`.geojson` (QuPath GeoJSON),
:mod:`.detections` / :mod:`.detectors` (what is evaluated), :mod:`.baseline`,
:mod:`.matching`, :mod:`.metrics`, :mod:`.overlay`, :mod:`.report`, :mod:`.evaluate`.
No napari or Qt here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_gbm._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "DatasetError": "dataset",
        "load_dataset": "dataset",
        "Detections": "detections",
        "DETECTORS": "detectors",
        "get_detector": "detectors",
        "register_detector": "detectors",
        "evaluate_dataset": "evaluate",
        "Matching": "matching",
        "match_points": "matching",
    },
)

if TYPE_CHECKING:
    from napari_gbm.evaluation.dataset import DatasetError, load_dataset
    from napari_gbm.evaluation.detections import Detections
    from napari_gbm.evaluation.detectors import DETECTORS, get_detector, register_detector
    from napari_gbm.evaluation.evaluate import evaluate_dataset
    from napari_gbm.evaluation.matching import Matching, match_points
