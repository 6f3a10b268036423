"""One slide at a time: ``info``, ``tile``, ``analyze``, ``make-sample`` and ``demo``."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from napari_gbm import __version__
from napari_gbm.cli._cohort import print_stratify
from napari_gbm.cli._common import (
    UsageError,
    add_analysis_args,
    add_tiling_args,
    analyze_params,
    open_slide,
    positive_float,
)
from napari_gbm.io import write_json, write_parquet, write_png
from napari_gbm.survival.stratify_params import StratifyParams
from napari_gbm.survival.table_input import load_table
from napari_gbm.wsi.overview import render_overview
from napari_gbm.wsi.tiling import TilingParams
from napari_gbm.wsi.tissue import TissueParams, detect_tissue

__all__ = ["add_parsers", "analyze", "write_tiles"]


def add_parsers(sub: Any) -> None:
    """The subcommands ``info``, ``tile``, ``analyze``, ``make-sample`` and ``demo``."""
    p = sub.add_parser("info", help="describe a slide: format, levels, pixel size, tissue")
    p.add_argument("slide", type=Path)
    p.add_argument(
        "--mpp", type=positive_float, help="pixel size of level 0 in µm/px (overrides metadata)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--no-tissue", action="store_true", help="skip tissue detection")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "tile", help="detect tissue and tile it; writes tiles.parquet and overview.png"
    )
    p.add_argument("slide", type=Path)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_tiling_args(p)
    p.set_defaults(func=cmd_tile)

    p = sub.add_parser(
        "analyze",
        help="detect and measure every cell; writes cells.parquet, tiles.parquet, summary.json",
    )
    p.add_argument("path", type=Path, help="a slide, or a plain image (PNG, JPEG, TIFF) with --mpp")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--stain",
        choices=("he", "hdab"),
        default=None,
        help="H&E or H-DAB (Ki-67 ...; default he, hdab with --marker)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads: tiles analysed at once, the rest in the feature kernels (1)",
    )
    add_analysis_args(p)
    add_tiling_args(p)
    # the halo must cover everything a cell's detection depends on (segment.halo_um)
    p.set_defaults(func=cmd_analyze, overlap=None)

    p = sub.add_parser("make-sample", help="write a synthetic GBM slide with ground truth")
    p.add_argument("--out", type=Path, required=True, help="output .tif path")
    p.add_argument(
        "--stain",
        choices=("he", "hdab", "cd31"),
        default="he",
        help="H&E, Ki-67 (H-DAB) or CD31 (H-DAB vessels, with vessel truth)",
    )
    p.add_argument(
        "--size", type=int, default=8192, help="width and height in pixels (default 8192)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mpp", type=positive_float, default=0.5, help="pixel size in µm/px (default 0.5)"
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


def cmd_info(args: argparse.Namespace) -> int:
    """``napari-gbm info``: print what the slide is (text or JSON)."""
    slide = open_slide(args.slide, args.mpp)
    info = slide.info()
    if not args.no_tissue:
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
    """``napari-gbm tile``: the tissue mask and the tile grid of a slide."""
    tiling = TilingParams(
        target_mpp=args.target_mpp,
        tile_size_px=args.tile_size,
        overlap_px=TilingParams().overlap_px if args.overlap is None else args.overlap,
        min_tissue_fraction=args.min_tissue,
    )
    tissue = TissueParams(resolution_um=args.tissue_resolution)
    write_tiles(args.slide, args.out, tissue, tiling, mpp=args.mpp)
    return 0


def write_tiles(
    path: Path, out: Path, tissue_params: TissueParams, tiling: TilingParams, mpp: float | None
) -> None:
    """Tile one slide into ``out``: tiles.parquet, tissue_mask.png, overview.png and
    tiling.json; one line on stdout."""
    # numba: the pipeline loads the cell kernels on import
    from napari_gbm.pipeline import NoTissueError, tile_slide

    t_start = time.perf_counter()
    slide = open_slide(path, mpp)
    try:
        tissue, grid = tile_slide(slide, tissue_params, tiling)
    except NoTissueError as exc:
        raise UsageError(f"{exc}. Nothing was written.") from exc
    overview = render_overview(slide, tissue, grid)
    meta: dict[str, Any] = {
        "software": {"napari_gbm": __version__},
        "slide": slide.info(),
        "tissue": tissue.summary(),
        "tiling": grid.metadata(),
    }
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
    print(
        f"{slide.path.name}: tissue {100 * tissue.tissue_fraction:.1f} % "
        f"({tissue.tissue_area_mm2:.2f} mm²), {len(grid.selected)} of {len(grid.tiles)} tiles "
        f"selected at {grid.effective_mpp:.3g} µm/px -> {out}"
    )


def cmd_analyze(args: argparse.Namespace) -> int:
    """``napari-gbm analyze``: every cell of a slide, its tiles' and its biomarkers."""
    analyze(args.path, args.out, analyze_params(args), mpp=args.mpp)
    return 0


def analyze(path: Path, out: Path, params: Any, mpp: float | None) -> None:
    """Analyse one slide into ``out`` (:func:`napari_gbm.pipeline.analyze_slide`) with a
    progress line on stderr and a summary line on stdout."""
    from napari_gbm.pipeline import analyze_slide  # numba

    t_start = time.perf_counter()
    name = path.name

    def progress(done: int, total: int, n_cells: int) -> None:
        rate = n_cells / max(time.perf_counter() - t_start, 1e-9)
        print(
            f"\r{name}: tile {done}/{total}, {n_cells} cells ({rate:.0f}/s)",
            end="",
            file=sys.stderr,
            flush=True,
        )

    try:
        summary = analyze_slide(path, out, params, mpp=mpp, progress=progress)
    finally:
        print(file=sys.stderr)  # end the progress line, also before an error message
    line = f"{name}: {summary['n_cells']} cells"
    if summary.get("cell_density_per_mm2") is not None:
        line += f", {summary['cell_density_per_mm2']:.0f} cells/mm²"
    if summary.get("positive_percent") is not None:
        line += f", positive {summary['positive_percent']:.1f} %"
    if summary.get("h_score") is not None:
        line += f", H-score {summary['h_score']:.0f}"
    if summary.get("loss_fraction") is not None:
        line += (
            f", {summary['marker'].upper()} loss {100 * summary['loss_fraction']:.1f} % of "
            "tumour nuclei"
        )
    if summary.get("microvessel_density_per_mm2") is not None:  # CD31 / CD34
        line += (
            f", {summary['n_vessels']} vessels, MVD {summary['microvessel_density_per_mm2']:.0f}"
            f"/mm² (hotspot {summary['microvessel_hotspot_density_per_mm2'] or 0:.0f}/mm²)"
        )
    elif summary.get("mvp_fraction") is not None:  # H&E
        line += (
            f", {summary['n_vessels']} vessels, MVP {summary['n_mvp_foci']} foci "
            f"({summary['microvascular_area_mm2']:.3f} mm²)"
        )
    cal = summary.get("calibration")
    if cal:
        white = ", ".join(f"{v:.0f}" for v in cal["stain_vectors"]["background"])
        line += f"; calibrated: counterstain level {cal['level_od']:.3f} OD, white ({white})"
    print(f"{line} -> {out}")
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)


def cmd_make_sample(args: argparse.Namespace) -> int:
    """``napari-gbm make-sample``: a synthetic GBM slide with its ground truth."""
    from napari_gbm.synthetic import make_synthetic_slide  # numba

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
    if info.n_vessels is not None:
        print(f"{info.n_vessels} vessels drawn; truth in {info.truth_path.name}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``napari-gbm demo``: tile and analyse the sample slides (the CMU-1 region and two
    synthetic slides, made here), then stratify a synthetic cohort."""
    # dispatch: numba (kernels of the generators and the pipeline), scipy.stats, torch
    from napari_gbm.detect.cells import CellParams
    from napari_gbm.pipeline import AnalyzeParams
    from napari_gbm.samples import cmu1_path
    from napari_gbm.survival.stratify import run_stratify
    from napari_gbm.synthetic import make_synthetic_cohort, make_synthetic_slide

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    slides = [("cmu-1-small-region", cmu1_path(), "he")]
    for stain, name in (("he", "synthetic-gbm-he"), ("hdab", "synthetic-gbm-ki67")):
        path = out / f"{name}.tif"
        if not path.exists():
            print(f"generating {path.name} ({args.size} x {args.size} px, with ground truth) ...")
            make_synthetic_slide(path, size_px=(args.size, args.size), stain=stain, seed=0)
        slides.append((name, path, stain))
    for name, path, stain in slides:
        # a re-run redoes each folder: tiles, then the analysis (tiling refuses to write
        # into a finished analysis, so the old one is marked unfinished first)
        (out / name / "summary.json").unlink(missing_ok=True)
        write_tiles(path, out / name, TissueParams(), TilingParams(), mpp=None)
        # the defaults of `napari-gbm analyze --stain <stain>`
        analyze(path, out / name, AnalyzeParams(cells=CellParams(stain=stain)), mpp=None)
    # stratification on a synthetic cohort whose survival follows a known model
    cohort = make_synthetic_cohort(n_patients=200, seed=0)
    cohort.slides.to_csv(out / "cohort_slides.csv", index=False)
    cohort.clinical.to_csv(out / "cohort_clinical.csv", index=False)
    print("stratifying a synthetic cohort of 200 patients (true Ki-67 HR 1.73 per SD) ...")
    params = StratifyParams(
        time_col="time_months",
        event_col="event",
        covariates=("positive_percent", "age", "mgmt_methylated", "idh_mutant"),
        cv_folds=3,
    )
    metrics = run_stratify(
        load_table(out / "cohort_slides.csv"),
        out / "stratify",
        params,
        clinical=load_table(out / "cohort_clinical.csv"),
    )
    print_stratify(metrics, out / "stratify")
    print(
        f"done: open {out}/*/overview.png and {out}/stratify/km.png, or the analysis folders "
        f"in napari: napari {out}/synthetic-gbm-ki67 --plugin napari-gbm (see README)"
    )
    return 0
