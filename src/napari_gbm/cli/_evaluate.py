"""``napari-gbm evaluate``: nucleus detection against human annotations
(:mod:`napari_gbm.evaluation`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from napari_gbm.cli._common import UsageError, positive_float

__all__ = ["add_parsers"]


def add_parsers(sub: Any) -> None:
    """The subcommand ``evaluate``."""
    p = sub.add_parser(
        "evaluate",
        help="score nucleus detection (ours and a scikit-image baseline) against human "
        "annotations; writes evaluation.json, per-image CSVs and overlays",
    )
    p.add_argument(
        "dir",
        type=Path,
        help="an annotated set: images/<name>.png|.jpg, points/<name>_points.csv "
        "(x,y[,positive]) and/or labels/<name>_labels.png or images/<name>.geojson "
        "(QuPath), manifest.csv (image, mpp, stain[, split])",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--stain", choices=("he", "hdab"), help="stain of every image (overrides the manifest)"
    )
    p.add_argument(
        "--mpp",
        type=positive_float,
        help="µm/px of every image (overrides the manifest; required without one)",
    )
    p.add_argument(
        "--baseline",
        choices=("skimage", "none"),
        default="skimage",
        help="detector run beside ours for comparison (skimage)",
    )
    p.add_argument(
        "--detector",
        default="classical",
        help="detector to evaluate: classical (the calibrated watershed, also called "
        "napari-gbm), learned (the shipped network) or skimage",
    )
    p.add_argument(
        "--images", type=int, metavar="N", help="only the first N images (manifest order)"
    )
    p.add_argument(
        "--split", metavar="S", help="only the manifest rows whose split column equals S"
    )
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``napari-gbm evaluate``: score the detectors, print the summary table."""
    # dispatch: the evaluation stage (scikit-image, scipy, numba) loads when the command runs
    from napari_gbm.evaluation import DatasetError, evaluate_dataset
    from napari_gbm.evaluation.report import summary_table

    def progress(done: int, total: int, name: str) -> None:
        print(
            f"\r{args.dir.name}: image {done}/{total} ({name})",
            end="",
            file=sys.stderr,
            flush=True,
        )

    try:
        result = evaluate_dataset(
            args.dir,
            args.out,
            stain=args.stain,
            mpp=args.mpp,
            detector=args.detector,
            baseline=args.baseline,
            images=args.images,
            split=args.split,
            progress=progress,
        )
    except DatasetError as exc:
        raise UsageError(f"{exc}. Nothing was written.") from None
    print(file=sys.stderr)
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(summary_table(result))
    print(f"-> {args.out / 'evaluation.json'}")
    return 0
