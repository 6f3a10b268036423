"""Many slides and patients: ``cohort`` (dask.distributed) and ``stratify``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from napari_gbm.cli._common import (
    UsageError,
    add_analysis_args,
    add_tiling_args,
    analyze_params,
    comma_list,
    positive_float,
)
from napari_gbm.survival.bags import load_tile_table
from napari_gbm.survival.stratify_params import CUTOFFS, MODELS, TIES, StratifyParams
from napari_gbm.survival.table_input import load_table

__all__ = ["add_parsers", "print_stratify"]

_P = StratifyParams


def _help(name: str, shown: Any = None) -> str:
    """A parameter's help text with its default, from :class:`StratifyParams`."""
    default = _P.default(name) if shown is None else shown
    return f"{_P.help(name)} ({default})"


def add_parsers(sub: Any) -> None:
    """The subcommands ``stratify`` and ``cohort``."""
    _add_stratify_parser(sub)
    _add_cohort_parser(sub)


def _add_stratify_parser(sub: Any) -> None:
    p = sub.add_parser(
        "stratify",
        help="stratify patients: Cox / MLP / attention-MIL risk, risk groups, Kaplan-Meier, "
        "log-rank, C-index",
    )
    p.add_argument(
        "table",
        type=Path,
        help="CSV/TSV/Parquet, one row per patient (or slide), or a cohort output folder "
        "(its patients.parquet; with --model mil also its tiles)",
    )
    p.add_argument("--clinical", type=Path, help="clinical CSV/TSV/Parquet joined by patient id")
    # --time-col / --event-col as in `cohort` (one spelling works in both commands)
    p.add_argument("--time", "--time-col", dest="time", required=True, help=_P.help("time_col"))
    p.add_argument("--event", "--event-col", dest="event", required=True, help=_P.help("event_col"))
    p.add_argument("--covariates", help="comma-separated " + _P.help("covariates"))
    p.add_argument("--model", choices=MODELS, default=_P.default("model"), help=_help("model"))
    p.add_argument("--ties", choices=TIES, default=_P.default("ties"), help=_help("ties"))
    p.add_argument("--id-col", default=_P.default("id_col"), help=_help("id_col"))
    p.add_argument("--cutoff", choices=CUTOFFS, default=_P.default("cutoff"), help=_help("cutoff"))
    p.add_argument("--cuts", help="comma-separated " + _P.help("cuts"))
    p.add_argument("--group-by", help=_P.help("group_by"))
    p.add_argument("--l2", type=float, default=_P.default("l2"), help=_help("l2"))
    p.add_argument("--cv-folds", type=int, default=_P.default("cv_folds"), help=_help("cv_folds"))
    p.add_argument("--seed", type=int, default=_P.default("seed"), help=_help("seed"))
    p.add_argument("--dropna", action="store_true", help=_P.help("dropna"))
    p.add_argument(
        "--tiles",
        type=Path,
        metavar="PATH",
        help="--model mil: each patient's tiles: the output folder of `napari-gbm cohort`, or "
        "a CSV/Parquet tile table (one row per tile: patient id, per-tile biomarkers); "
        "default: TABLE, when it is a cohort folder",
    )
    p.add_argument("--tile-features", help="comma-separated " + _P.help("tile_features"))
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=cmd_stratify)


def _tiles(args: argparse.Namespace) -> Any:
    """The tile table of ``--model mil`` (None for the other models)."""
    if args.model != "mil":
        if args.tiles is not None or args.tile_features:
            raise UsageError("--tiles and --tile-features are for --model mil")
        return None
    source = args.tiles
    if source is None:
        if not args.table.is_dir():
            raise UsageError(
                "--model mil learns from each patient's tiles, which a table of patients "
                "does not hold: give the output folder of `napari-gbm cohort` as TABLE (the "
                "tiles of its slides/<slide_id>/tiles.parquet are the bags), or a tile table "
                "with --tiles (one row per tile: the patient id and per-tile biomarkers)"
            )
        source = args.table
    return load_tile_table(source)


def cmd_stratify(args: argparse.Namespace) -> int:
    """``napari-gbm stratify``: risk, risk groups and their survival, from a table."""
    from napari_gbm.survival.stratify import run_stratify  # scipy.stats; torch when fitting

    table = load_table(args.table)
    clinical = load_table(args.clinical) if args.clinical else None
    try:
        cuts = [float(v) for v in args.cuts.split(",")] if args.cuts else None
    except ValueError:
        raise UsageError(f"--cuts: give numbers separated by commas, got {args.cuts!r}") from None
    if args.cutoff == "manual" and not cuts:
        raise UsageError("--cutoff manual needs --cuts, e.g. --cuts 20 or --cuts 10,30")
    tiles = _tiles(args)
    params = StratifyParams(
        time_col=args.time,
        event_col=args.event,
        covariates=comma_list(args.covariates),
        model=args.model,
        ties=args.ties,
        id_col=args.id_col,
        cutoff=args.cutoff,
        cuts=cuts,
        group_by=args.group_by,
        l2=args.l2,
        cv_folds=args.cv_folds,
        seed=args.seed,
        dropna=args.dropna,
        tile_features=comma_list(args.tile_features),
    )
    metrics = run_stratify(table, args.out, params, clinical=clinical, tiles=tiles)
    print_stratify(metrics, args.out)
    return 0


def print_stratify(m: dict[str, Any], out: Path) -> None:
    """A stratification's one-line result on stdout, its notes on stderr."""
    cv = m.get("cv_c_index_mean")
    print(
        f"{m['n']} patients, {m['n_events']} events: C-index {m['c_index']:.3f}"
        + (f" (CV {cv:.3f})" if cv is not None else "")
        + (f", log-rank p {m['logrank_p']:.3g}" if m["logrank_p"] is not None else "")
        + f" -> {out}"
    )
    for note in m["notes"]:
        print(f"note: {note}", file=sys.stderr)


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
        type=positive_float,
        default=60.0,
        help="seconds to wait for a first worker on --scheduler (60)",
    )
    p.add_argument(
        "--stain", choices=("he", "hdab"), default="he", help="default stain (manifest: stain)"
    )
    add_analysis_args(p)
    add_tiling_args(p)
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
    p.add_argument(
        "--model",
        choices=MODELS,
        default=_P.default("model"),
        help=f"survival model for stratification ({_P.default('model')}; mil learns from the "
        "tiles of the analysed slides)",
    )
    p.set_defaults(func=cmd_cohort, overlap=None)


def cmd_cohort(args: argparse.Namespace) -> int:
    """``napari-gbm cohort``: analyse every slide, then the slide and patient tables."""
    # dask.distributed: loaded for a cohort run only
    from napari_gbm.cohort import WorkerEnvironmentError, print_progress, run_cohort

    if args.scheduler is not None and args.workers is not None:
        raise UsageError("--workers sets up a local cluster; with --scheduler, scale that cluster")
    try:
        result = run_cohort(
            args.input,
            args.out,
            analyze_params(args),
            mpp=args.mpp,
            scheduler=args.scheduler,
            n_workers=args.workers,
            threads_per_worker=args.threads_per_worker,
            retries=args.retries,
            worker_timeout_s=args.worker_timeout,
            time_col=args.time_col,
            event_col=args.event_col,
            covariates=comma_list(args.covariates),
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
