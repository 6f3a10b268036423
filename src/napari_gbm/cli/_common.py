"""What the commands share: the input error, number parsing, the tiling and analysis
options (their defaults taken from the parameter dataclasses, written once there)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_gbm.biomarkers.ihc import (
    POSITIVITY_COMPARTMENTS,
    POSITIVITY_STATISTICS,
    PositivityParams,
)
from napari_gbm.biomarkers.markers import MARKERS, marker_positivity
from napari_gbm.detect.nucleus_params import DETECTORS, NucleusParams
from napari_gbm.wsi.slide import Slide
from napari_gbm.wsi.tiling import TilingParams
from napari_gbm.wsi.tissue import TissueParams

__all__ = [
    "UsageError",
    "add_analysis_args",
    "add_tiling_args",
    "analyze_params",
    "comma_list",
    "open_slide",
    "positive_float",
    "positivity_params",
]


class UsageError(Exception):
    """An input problem to report in one line (exit status 2)."""


def positive_float(text: str) -> float:
    """A number > 0 from a command-line value (argparse ``type``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def comma_list(text: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; None stays None."""
    return [c.strip() for c in text.split(",")] if text else None


def open_slide(path: Path, mpp: float | None) -> Slide:
    """The slide at ``path``, with ``mpp`` overriding its metadata."""
    return Slide(path, mpp=mpp)


def add_analysis_args(p: argparse.ArgumentParser) -> None:
    """The options of a cell analysis, shared by ``analyze`` and ``cohort``."""
    p.add_argument("--no-texture", action="store_true", help="skip Haralick texture features")
    p.add_argument(
        "--detector",
        choices=DETECTORS,
        default=NucleusParams().detector,
        help="nucleus detector: classical (calibrated watershed, the default) or learned "
        "(the small network shipped in the package; runs offline). See docs/MODEL_CARD.md",
    )
    p.add_argument(
        "--estimate-stains",
        action="store_true",
        help="estimate each slide's stain vectors (Macenko) instead of QuPath's defaults",
    )
    p.add_argument(
        "--calibration",
        type=Path,
        metavar="JSON",
        help="use this calibration for every slide (a summary.json of an earlier analysis, "
        "or its 'calibration' object) instead of calibrating each slide",
    )
    p.add_argument(
        "--no-calibration",
        action="store_true",
        help="no per-slide calibration: preset stain vectors on 255 white and fixed OD "
        "thresholds (the behaviour of napari-gbm 0.1)",
    )
    # None everywhere below: "not given", so a --marker's preset fills it and an explicit
    # flag wins over the preset (positivity_params); the defaults are PositivityParams'
    pos = PositivityParams()
    thresholds = ",".join(f"{v:g}" for v in pos.thresholds)
    p.add_argument(
        "--marker",
        choices=list(MARKERS),
        help="IHC marker preset: sets the compartment, statistic and thresholds cells are "
        "graded on (given flags win) and implies --stain hdab; atrx reports loss. "
        "See docs/MARKERS.md",
    )
    p.add_argument(
        "--thresholds",
        help="DAB positivity: three values for 1+/2+/3+ or one for positive/negative "
        f"(default {thresholds}, QuPath's, or the --marker's)",
    )
    p.add_argument(
        "--compartment",
        choices=POSITIVITY_COMPARTMENTS,
        help=f"where a cell's DAB is graded (default {pos.compartment}, or the --marker's); "
        "membrane: a ring at the cell boundary",
    )
    p.add_argument(
        "--statistic",
        choices=POSITIVITY_STATISTICS,
        help=f"mean or max DAB OD of the compartment (default {pos.statistic}, or the --marker's)",
    )
    p.add_argument(
        "--positivity-column",
        help=f"any cell-table column to grade instead of --compartment/--statistic "
        f"(default {pos.column})",
    )
    # the commands' --stain: None unless given (a --marker implies hdab)
    p.set_defaults(stain=None)


def positivity_params(args: argparse.Namespace) -> PositivityParams:
    """The cell grading of the analysis options: explicit flags over the ``--marker``
    preset over :class:`PositivityParams`' defaults (:func:`marker_positivity`)."""
    thresholds = None
    if args.thresholds is not None:
        try:
            thresholds = tuple(positive_float(v) for v in args.thresholds.split(","))
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--thresholds: {exc} (give e.g. 0.2,0.4,0.6 or 0.3)") from None
    if args.positivity_column is not None and (
        args.compartment is not None or args.statistic is not None
    ):
        raise UsageError(
            "--positivity-column names the graded column itself: give it, or --compartment "
            "and --statistic, not both"
        )
    try:
        return marker_positivity(
            args.marker,
            compartment=args.compartment,
            statistic=args.statistic,
            column=args.positivity_column,
            thresholds=thresholds,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def add_tiling_args(p: argparse.ArgumentParser) -> None:
    """The tile grid and tissue options, shared by ``tile``, ``analyze`` and ``cohort``."""
    t, r = TilingParams(), TissueParams()
    p.add_argument(
        "--mpp", type=positive_float, help="pixel size of level 0 in µm/px (overrides metadata)"
    )
    p.add_argument(
        "--target-mpp",
        type=positive_float,
        default=t.target_mpp,
        help=f"tile resolution, µm/px ({t.target_mpp:g})",
    )
    p.add_argument(
        "--tile-size",
        type=int,
        default=t.tile_size_px,
        help=f"tile core size in pixels at target-mpp ({t.tile_size_px})",
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=None,
        help=f"halo on each side, pixels at target-mpp (tile: {t.overlap_px}; analyze: what "
        "detection needs, also the least it accepts)",
    )
    p.add_argument(
        "--min-tissue",
        type=float,
        default=t.min_tissue_fraction,
        help="keep tiles whose tissue fraction is above this "
        f"({t.min_tissue_fraction:g}: any tissue)",
    )
    p.add_argument(
        "--tissue-resolution",
        type=positive_float,
        default=r.resolution_um,
        help=f"resolution of tissue detection, µm/px ({r.resolution_um:g})",
    )


def analyze_params(args: argparse.Namespace) -> Any:
    """The AnalyzeParams of the analysis options (shared by ``analyze`` and ``cohort``)."""
    # numba (cell kernels) and scipy.stats (slide biomarkers): loaded for an analysis only
    from napari_gbm.biomarkers.whole_slide import BiomarkerParams
    from napari_gbm.detect.calibration import CalibrationParams, load_calibration
    from napari_gbm.detect.cells import CellParams, needed_overlap_px
    from napari_gbm.pipeline import AnalyzeParams

    if args.calibration is not None and args.no_calibration:
        raise UsageError("--calibration and --no-calibration exclude each other; pick one")
    if args.marker is not None and args.stain == "he":
        raise UsageError(
            f"--marker {args.marker} grades DAB on an H-DAB slide: drop --stain he "
            "(a marker implies --stain hdab)"
        )
    stain = args.stain
    if stain is None:
        stain = "hdab" if args.marker is not None else CellParams().stain
    positivity = positivity_params(args)
    fixed = None
    if args.calibration is not None:
        try:
            fixed = load_calibration(args.calibration).to_dict()
        except ValueError as exc:
            raise UsageError(f"--calibration: {exc}") from None
    cells = CellParams(
        stain=stain,
        nucleus=NucleusParams(detector=args.detector),
        texture=not args.no_texture,
        n_threads=getattr(args, "threads", 1),
        calibration=CalibrationParams(enabled=not args.no_calibration),
    )
    return AnalyzeParams(
        cells=cells,
        tiling=TilingParams(
            target_mpp=args.target_mpp,
            tile_size_px=args.tile_size,
            overlap_px=(
                needed_overlap_px(cells, args.target_mpp) if args.overlap is None else args.overlap
            ),
            min_tissue_fraction=args.min_tissue,
        ),
        tissue=TissueParams(resolution_um=args.tissue_resolution),
        biomarkers=BiomarkerParams(positivity=positivity),
        estimate_stains=args.estimate_stains,
        fixed_calibration=fixed,
        marker=args.marker,
    )
