"""The ``napari-gbm`` command line: the same pipeline as the plugin, without a display.

Commands::

    napari-gbm info SLIDE [--mpp M] [--json]
    napari-gbm tile SLIDE --out DIR [--mpp M] [--target-mpp 0.5] [--tile-size 1024] ...
    napari-gbm make-sample --out PATH [--stain he|hdab] [--size PX] [--seed N]
    napari-gbm analyze PATH --out DIR [--mpp M] [--stain he|hdab] [--target-mpp 0.5] ...
    napari-gbm demo --out DIR          the main job on the bundled sample data
    napari-gbm stratify TABLE --time COL --event COL --out DIR [--clinical CSV] ...
    napari-gbm cohort INPUT --out DIR [--scheduler ADDRESS] [--workers N] ...
    napari-gbm evaluate DIR --out OUT [--stain he|hdab] [--mpp M] [--baseline skimage|none] ...

Errors about the input (a missing or unreadable slide, no pixel size where one is needed,
no tissue) print one line naming the file and what to do, and exit with status 2; nothing
is written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_gbm import __version__

__all__ = ["main"]


class UsageError(Exception):
    """An input problem to report in one line (exit status 2)."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-gbm",
        description="Glioblastoma tissue biomarkers from whole-slide images.",
    )
    parser.add_argument("--version", action="version", version=f"napari-gbm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="describe a slide: format, levels, pixel size, tissue")
    p.add_argument("slide", type=Path)
    p.add_argument(
        "--mpp", type=_positive_float, help="pixel size of level 0 in µm/px (overrides metadata)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--no-tissue", action="store_true", help="skip tissue detection")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "tile", help="detect tissue and tile it; writes tiles.parquet and overview.png"
    )
    p.add_argument("slide", type=Path)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    _add_tiling_args(p)
    p.set_defaults(func=cmd_tile)

    p = sub.add_parser(
        "analyze",
        help="detect and measure every cell; writes cells.parquet, tiles.parquet, summary.json",
    )
    p.add_argument("path", type=Path, help="a slide, or a plain image (PNG, JPEG, TIFF) with --mpp")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--stain", choices=("he", "hdab"), default="he", help="H&E or H-DAB (Ki-67)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads: tiles analysed at once, the rest in the feature kernels (1)",
    )
    _add_analysis_args(p)
    _add_tiling_args(p)
    # the halo must cover everything a cell's detection depends on (segment.halo_um)
    p.set_defaults(func=cmd_analyze, overlap=None)

    p = sub.add_parser(
        "stratify",
        help="stratify patients: Cox / MLP risk, risk groups, Kaplan-Meier, log-rank, C-index",
    )
    p.add_argument(
        "table",
        type=Path,
        help="CSV/TSV/Parquet, one row per patient (or slide), or a cohort folder",
    )
    p.add_argument("--clinical", type=Path, help="clinical CSV/TSV/Parquet joined by patient id")
    # --time-col / --event-col as in `cohort` (one spelling works in both commands)
    p.add_argument("--time", "--time-col", dest="time", required=True,
                   help="follow-up time column")  # fmt: skip
    p.add_argument(
        "--event",
        "--event-col",
        dest="event",
        required=True,
        help="event column (1/0, yes/no, true/false, dead/alive: event / censored)",
    )
    p.add_argument("--covariates", help="comma-separated covariate columns (default: biomarkers)")
    p.add_argument("--model", choices=("cox", "mlp"), default="cox")
    p.add_argument("--ties", choices=("efron", "breslow"), default="efron")
    p.add_argument("--id-col", default="patient_id", help="patient id column (patient_id)")
    p.add_argument(
        "--cutoff",
        choices=("median", "tertiles", "quartiles", "optimal", "manual"),
        default="median",
        help="how risk groups are cut (optimal: maximally selected log-rank, corrected p)",
    )
    p.add_argument("--cuts", help="comma-separated cut values for --cutoff manual")
    p.add_argument("--group-by", help="cut this column into groups instead of the model's risk")
    p.add_argument("--l2", type=float, default=0.0, help="ridge penalty of the Cox model (0)")
    p.add_argument("--cv-folds", type=int, default=5, help="patient-grouped CV folds (5; 0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dropna", action="store_true", help="leave out patients with missing values")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=cmd_stratify)

    p = sub.add_parser("make-sample", help="write a synthetic GBM slide with ground truth")
    p.add_argument("--out", type=Path, required=True, help="output .tif path")
    p.add_argument("--stain", choices=("he", "hdab"), default="he", help="H&E or Ki-67 (H-DAB)")
    p.add_argument(
        "--size", type=int, default=8192, help="width and height in pixels (default 8192)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mpp", type=_positive_float, default=0.5, help="pixel size in µm/px (default 0.5)"
    )
    p.set_defaults(func=cmd_make_sample)

    p = sub.add_parser(
        "demo",
        help="run the pipeline (tissue, tiles, cells) on the bundled sample data: the real "
        "CMU-1 slide and a synthetic GBM H&E and Ki-67 slide (with ground truth)",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--size", type=int, default=4096, help="synthetic slide size in pixels (4096)")
    p.set_defaults(func=cmd_demo)
    _add_cohort_parser(sub)
    _add_evaluate_parser(sub)
    return parser


def _add_analysis_args(p: argparse.ArgumentParser) -> None:
    """The options of a cell analysis, shared by ``analyze`` and ``cohort``."""
    p.add_argument("--no-texture", action="store_true", help="skip Haralick texture features")
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
    from napari_gbm.biomarkers.ihc import PositivityParams

    pos = PositivityParams()
    thresholds = ",".join(f"{v:g}" for v in pos.thresholds)
    p.add_argument(
        "--thresholds",
        default=thresholds,
        help="DAB positivity: three values for 1+/2+/3+ or one for positive/negative "
        f"(default {thresholds}, QuPath's)",
    )
    p.add_argument(
        "--positivity-column",
        default=pos.column,
        help=f"the cell measurement graded for positivity ({pos.column})",
    )


def _add_tiling_args(p: argparse.ArgumentParser) -> None:
    # defaults come from the parameter dataclasses: written once, there
    from napari_gbm.wsi.tiling import TilingParams
    from napari_gbm.wsi.tissue import TissueParams

    t, r = TilingParams(), TissueParams()
    p.add_argument(
        "--mpp", type=_positive_float, help="pixel size of level 0 in µm/px (overrides metadata)"
    )
    p.add_argument(
        "--target-mpp",
        type=_positive_float,
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
        type=_positive_float,
        default=r.resolution_um,
        help=f"resolution of tissue detection, µm/px ({r.resolution_um:g})",
    )


def _open(path: Path, mpp: float | None) -> Any:
    from napari_gbm.wsi.slide import Slide

    return Slide(path, mpp=mpp)


def cmd_info(args: argparse.Namespace) -> int:
    import warnings

    slide = _open(args.slide, args.mpp)
    info = slide.info()
    if not args.no_tissue:
        from napari_gbm.wsi.tissue import detect_tissue

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tissue = detect_tissue(slide)
        info["tissue"] = tissue.summary()
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    lines = [
        f"File:        {slide.path}",
        f"Format:      {slide.format} (read with {slide.backend_name})",
        f"Dimensions:  {slide.dimensions[0]} x {slide.dimensions[1]} px",
        "Levels:      "
        + ", ".join(
            f"{w}x{h} (/{ds:.4g}){'' if i < slide.stored_level_count else ' built'}"
            for i, ((w, h), ds) in enumerate(
                zip(slide.level_dimensions, slide.level_downsamples, strict=True)
            )
        ),
        f"Pixel size:  {slide.mpp_message}",
        "Objective:   " + (f"{slide.objective_power:g}x" if slide.objective_power else "unknown"),
        "Associated:  " + (", ".join(slide.associated_image_names) or "none"),
    ]
    if "tissue" in info:
        t = info["tissue"]
        note = " (area assumes 0.5 µm/px)" if t["mpp_assumed"] else ""
        lines.append(
            f"Tissue:      {100 * t['tissue_fraction']:.2f} % of the slide, "
            f"{t['tissue_area_mm2']:.3f} mm²{note}"
        )
    print("\n".join(lines))
    return 0


def cmd_tile(args: argparse.Namespace) -> int:
    from napari_gbm.io import write_json, write_parquet, write_png
    from napari_gbm.pipeline import NoTissueError, tile_slide
    from napari_gbm.wsi.overview import render_overview
    from napari_gbm.wsi.tiling import TilingParams
    from napari_gbm.wsi.tissue import TissueParams

    t_start = time.perf_counter()
    params = TilingParams(
        target_mpp=args.target_mpp,
        tile_size_px=args.tile_size,
        overlap_px=TilingParams().overlap_px if args.overlap is None else args.overlap,
        min_tissue_fraction=args.min_tissue,
    )
    slide = _open(args.slide, args.mpp)
    try:
        tissue, grid = tile_slide(slide, TissueParams(resolution_um=args.tissue_resolution), params)
    except NoTissueError as exc:
        raise UsageError(f"{exc}. Nothing was written.") from exc
    overview = render_overview(slide, tissue, grid)
    meta = {
        "software": {"napari_gbm": __version__},
        "slide": slide.info(),
        "tissue": tissue.summary(),
        "tiling": grid.metadata(),
    }
    out: Path = args.out
    if (out / "summary.json").is_file():
        # its tiles.parquet and overview.png belong to the analysis: replacing them would
        # leave a folder that reads as complete with another run's tiles
        raise UsageError(
            f"{out} holds a finished analysis (summary.json): write the tiles to another folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(grid.tiles, out / "tiles.parquet", metadata=meta)
    write_png((tissue.mask * 255).astype("uint8"), out / "tissue_mask.png")
    write_png(overview, out / "overview.png")
    meta["elapsed_s"] = round(time.perf_counter() - t_start, 3)
    write_json(meta, out / "tiling.json")
    n_sel = len(grid.selected)
    print(
        f"{slide.path.name}: tissue {100 * tissue.tissue_fraction:.1f} % "
        f"({tissue.tissue_area_mm2:.2f} mm²), {n_sel} of {len(grid.tiles)} tiles selected "
        f"at {grid.effective_mpp:.3g} µm/px -> {out}"
    )
    return 0


def _analyze_params(args: argparse.Namespace) -> Any:
    """The AnalyzeParams of the analysis options (shared by ``analyze`` and ``cohort``)."""
    from napari_gbm.biomarkers import BiomarkerParams, PositivityParams
    from napari_gbm.detect.calibration import CalibrationParams, load_calibration
    from napari_gbm.detect.cells import CellParams
    from napari_gbm.pipeline import AnalyzeParams, needed_overlap_px
    from napari_gbm.wsi.tiling import TilingParams
    from napari_gbm.wsi.tissue import TissueParams

    if args.calibration is not None and args.no_calibration:
        raise UsageError("--calibration and --no-calibration exclude each other; pick one")
    fixed = None
    if args.calibration is not None:
        try:
            fixed = load_calibration(args.calibration).to_dict()
        except ValueError as exc:
            raise UsageError(f"--calibration: {exc}") from None
    cells = CellParams(
        stain=args.stain,
        texture=not args.no_texture,
        n_threads=getattr(args, "threads", 1),
        calibration=CalibrationParams(enabled=not args.no_calibration),
    )
    try:
        thresholds = tuple(_positive_float(v) for v in args.thresholds.split(","))
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"--thresholds: {exc} (give e.g. 0.2,0.4,0.6 or 0.3)") from None
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
        biomarkers=BiomarkerParams(
            positivity=PositivityParams(column=args.positivity_column, thresholds=thresholds)
        ),
        estimate_stains=args.estimate_stains,
        fixed_calibration=fixed,
    )


def cmd_analyze(args: argparse.Namespace) -> int:
    from napari_gbm.pipeline import analyze_slide

    t_start = time.perf_counter()
    params = _analyze_params(args)
    name = args.path.name

    def progress(done: int, total: int, n_cells: int) -> None:
        rate = n_cells / max(time.perf_counter() - t_start, 1e-9)
        print(
            f"\r{name}: tile {done}/{total}, {n_cells} cells ({rate:.0f}/s)",
            end="",
            file=sys.stderr,
            flush=True,
        )

    try:
        summary = analyze_slide(args.path, args.out, params, mpp=args.mpp, progress=progress)
    finally:
        print(file=sys.stderr)  # end the progress line, also before an error message
    line = f"{name}: {summary['n_cells']} cells"
    if summary.get("cell_density_per_mm2") is not None:
        line += f", {summary['cell_density_per_mm2']:.0f} cells/mm²"
    if summary.get("positive_percent") is not None:
        line += f", positive {summary['positive_percent']:.1f} %"
    if summary.get("h_score") is not None:
        line += f", H-score {summary['h_score']:.0f}"
    cal = summary.get("calibration")
    if cal:
        white = ", ".join(f"{v:.0f}" for v in cal["stain_vectors"]["background"])
        line += f"; calibrated: counterstain level {cal['level_od']:.3f} OD, white ({white})"
    print(f"{line} -> {args.out}")
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_stratify(args: argparse.Namespace) -> int:
    from napari_gbm.survival.stratify import load_table, run_stratify

    table = load_table(args.table)
    clinical = load_table(args.clinical) if args.clinical else None
    covariates = [c.strip() for c in args.covariates.split(",")] if args.covariates else None
    try:
        cuts = [float(v) for v in args.cuts.split(",")] if args.cuts else None
    except ValueError:
        raise UsageError(f"--cuts: give numbers separated by commas, got {args.cuts!r}") from None
    if args.cutoff == "manual" and not cuts:
        raise UsageError("--cutoff manual needs --cuts, e.g. --cuts 20 or --cuts 10,30")
    m = run_stratify(
        table,
        args.out,
        time_col=args.time,
        event_col=args.event,
        covariates=covariates,
        model=args.model,
        ties=args.ties,
        id_col=args.id_col,
        clinical=clinical,
        cutoff=args.cutoff,
        cuts=cuts,
        group_by=args.group_by,
        l2=args.l2,
        cv_folds=args.cv_folds,
        seed=args.seed,
        dropna=args.dropna,
    )
    cv = m.get("cv_c_index_mean")
    print(
        f"{m['n']} patients, {m['n_events']} events: C-index {m['c_index']:.3f}"
        + (f" (CV {cv:.3f})" if cv is not None else "")
        + (f", log-rank p {m['logrank_p']:.3g}" if m["logrank_p"] is not None else "")
        + f" -> {args.out}"
    )
    for note in m["notes"]:
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_make_sample(args: argparse.Namespace) -> int:
    from napari_gbm.synthetic import make_synthetic_slide

    if args.size < 512:
        raise UsageError(f"--size must be at least 512 pixels, got {args.size}")

    def progress(frac: float) -> None:
        print(
            f"\rwriting {args.out.name}: {100 * frac:5.1f} %", end="", file=sys.stderr, flush=True
        )

    info = make_synthetic_slide(
        args.out,
        size_px=(args.size, args.size),
        stain=args.stain,
        seed=args.seed,
        mpp=args.mpp,
        progress=progress,
    )
    print(file=sys.stderr)
    print(f"wrote {info}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from napari_gbm.samples import cmu1_path
    from napari_gbm.synthetic import make_synthetic_slide

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    slides = [("cmu-1-small-region", cmu1_path(), "he")]
    for stain, name in (("he", "synthetic-gbm-he"), ("hdab", "synthetic-gbm-ki67")):
        path = out / f"{name}.tif"
        if not path.exists():
            print(f"generating {path.name} ({args.size} x {args.size} px, with ground truth) ...")
            make_synthetic_slide(path, size_px=(args.size, args.size), stain=stain, seed=0)
        slides.append((name, path, stain))
    parser = build_parser()
    for name, path, stain in slides:
        folder = str(out / name)
        # a re-run redoes each folder: tiles, then the analysis (tile refuses to write
        # into a finished analysis, so the old one is marked unfinished first)
        (out / name / "summary.json").unlink(missing_ok=True)
        cmd_tile(parser.parse_args(["tile", str(path), "--out", folder]))
        cmd_analyze(parser.parse_args(["analyze", str(path), "--stain", stain, "--out", folder]))
    # stratification on a synthetic cohort whose survival follows a known model
    from napari_gbm.synthetic import make_synthetic_cohort

    cohort = make_synthetic_cohort(n_patients=200, seed=0)
    cohort.slides.to_csv(out / "cohort_slides.csv", index=False)
    cohort.clinical.to_csv(out / "cohort_clinical.csv", index=False)
    print("stratifying a synthetic cohort of 200 patients (true Ki-67 HR 1.73 per SD) ...")
    cmd_stratify(
        parser.parse_args(
            [
                "stratify",
                str(out / "cohort_slides.csv"),
                "--clinical",
                str(out / "cohort_clinical.csv"),
                "--time",
                "time_months",
                "--event",
                "event",
                "--covariates",
                "positive_percent,age,mgmt_methylated,idh_mutant",
                "--cv-folds",
                "3",
                "--out",
                str(out / "stratify"),
            ]
        )
    )
    print(
        f"done: open {out}/*/overview.png and {out}/stratify/km.png, or the analysis folders "
        f"in napari: napari {out}/synthetic-gbm-ki67 --plugin napari-gbm (see README)"
    )
    return 0


# --- napari-gbm cohort: many slides on dask.distributed (napari_gbm.cohort) ---


def _add_cohort_parser(sub: Any) -> None:
    p = sub.add_parser(
        "cohort",
        help="analyse every slide of a folder or manifest CSV on dask.distributed; writes "
        "slides.parquet, patients.parquet, failures.csv and each slide's outputs",
    )
    p.add_argument(
        "input",
        type=Path,
        help="a folder of slides, or a manifest CSV (slide_path, patient_id; optional slide_id, "
        "mpp, stain; other columns are clinical)",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (re-run to resume)")
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="address of a running dask scheduler (tcp://host:8786); default: a local cluster",
    )
    p.add_argument(
        "--workers", type=int, help="local cluster: worker processes (default: cores, memory)"
    )
    p.add_argument(
        "--threads-per-worker",
        type=int,
        default=1,
        help="local cluster: threads per worker, one slide each (1)",
    )
    p.add_argument(
        "--retries", type=int, default=2, help="reruns of a task that fails unexpectedly (2)"
    )
    p.add_argument(
        "--worker-timeout",
        type=_positive_float,
        default=60.0,
        help="seconds to wait for a first worker on --scheduler (60)",
    )
    p.add_argument(
        "--stain", choices=("he", "hdab"), default="he", help="default stain (manifest: stain)"
    )
    _add_analysis_args(p)
    _add_tiling_args(p)
    p.add_argument(
        "--time-col",
        "--time",
        dest="time_col",
        help="manifest column of survival time (default: time_months, if present)",
    )
    p.add_argument(
        "--event-col",
        "--event",
        dest="event_col",
        help="manifest column of the event indicator (default: event, if present)",
    )
    p.add_argument(
        "--covariates",
        help="comma-separated patient columns for the survival model (default: "
        "the stratification's own choice)",
    )
    p.add_argument("--model", default="cox", help="survival model for stratification (cox)")
    p.set_defaults(func=cmd_cohort, overlap=None)


def cmd_cohort(args: argparse.Namespace) -> int:
    from napari_gbm.cohort import WorkerEnvironmentError, print_progress, run_cohort

    if args.scheduler is not None and args.workers is not None:
        raise UsageError("--workers sets up a local cluster; with --scheduler, scale that cluster")
    covariates = [c.strip() for c in args.covariates.split(",")] if args.covariates else None
    try:
        result = run_cohort(
            args.input,
            args.out,
            _analyze_params(args),
            mpp=args.mpp,
            scheduler=args.scheduler,
            n_workers=args.workers,
            threads_per_worker=args.threads_per_worker,
            retries=args.retries,
            worker_timeout_s=args.worker_timeout,
            time_col=args.time_col,
            event_col=args.event_col,
            covariates=covariates,
            model=args.model,
            progress=print_progress,
        )
    except WorkerEnvironmentError as exc:
        raise UsageError(str(exc)) from None
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    n_cells = int(result.slides["n_cells"].sum()) if "n_cells" in result.slides else 0
    line = (
        f"cohort: {result.n_analysed} analysed, {result.n_skipped} skipped, "
        f"{result.n_failed} failed; {n_cells:,} cells"
    )
    if result.patients is not None:
        line += f", {len(result.patients)} patients"
    print(f"{line} -> {args.out} ({result.elapsed_s:.0f} s)")
    if result.n_failed:
        print(f"failed slides and why: {args.out / 'failures.csv'}", file=sys.stderr)
        return 1
    return 0


# --- napari-gbm evaluate: nucleus detection against annotations (napari_gbm.evaluation) ---


def _add_evaluate_parser(sub: Any) -> None:
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
        type=_positive_float,
        help="µm/px of every image (overrides the manifest; required without one)",
    )
    p.add_argument(
        "--baseline",
        choices=("skimage", "none"),
        default="skimage",
        help="detector run beside ours for comparison (skimage)",
    )
    p.add_argument(
        "--detector", default="napari-gbm", help="detector to evaluate (napari-gbm, skimage)"
    )
    p.add_argument(
        "--images", type=int, metavar="N", help="only the first N images (manifest order)"
    )
    p.add_argument(
        "--split", metavar="S", help="only the manifest rows whose split column equals S"
    )
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
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


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    from napari_gbm.outputs import check_output_folder
    from napari_gbm.wsi.slide import SlideError

    parser = build_parser()
    args = parser.parse_args(argv)
    out = getattr(args, "out", None)

    def note(message: Any, *_: Any, **__: Any) -> None:  # one line, not a source location
        print(f"napari-gbm {args.command}: note: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = note
            if isinstance(out, Path) and args.command != "make-sample":  # that one's is a file
                check_output_folder(out)  # a file, under a file, read-only: before any work
            return int(args.func(args))
    except (SlideError, UsageError, ValueError, FileNotFoundError) as exc:
        print(f"napari-gbm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # each output file is written atomically and the completion marker last, so the
        # folder does not look finished; it is not emptied either (a cohort keeps its
        # finished slides for the next run)
        where = (
            f"; {out} is incomplete: run the same command again to finish it"
            if isinstance(out, Path) and out.is_dir()
            else "; nothing was written"
        )
        print(f"napari-gbm {args.command}: interrupted{where}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
