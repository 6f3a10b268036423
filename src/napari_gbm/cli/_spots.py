"""``napari-gbm spots``: the cells of an analysis summarised under each Visium spot or
Visium HD bin (:mod:`napari_gbm.spots`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from napari_gbm.cli._common import UsageError, positive_float
from napari_gbm.outputs import check_output_folder

__all__ = ["add_parsers"]

#: the suffixes ``--out`` takes (napari_gbm.spots.run.OUTPUT_SUFFIXES, not imported here:
#: the command's stage loads when it runs)
SUFFIXES = (".h5ad", ".parquet", ".csv")


def add_parsers(sub: Any) -> None:
    """The subcommand ``spots``."""
    # no defaults here: an option not given leaves SpotParams' default (rule 4)
    p = sub.add_parser(
        "spots",
        help="summarise the cells of an analysis under each Visium spot (or Visium HD bin): "
        "counts, density, Ki-67 positive fraction, nucleus size, pleomorphism, regions",
    )
    p.add_argument("dir", type=Path, help="an analysis folder (napari-gbm analyze --out)")
    p.add_argument(
        "--positions",
        type=Path,
        required=True,
        help="Space Ranger's tissue_positions.csv (or tissue_positions_list.csv, or Visium "
        "HD's tissue_positions.parquet)",
    )
    p.add_argument(
        "--scalefactors",
        type=Path,
        required=True,
        help="Space Ranger's scalefactors_json.json of the same run",
    )
    p.add_argument(
        "--out",
        dest="out_file",  # a file, not the output folder the other commands check
        type=Path,
        required=True,
        help="output file: .h5ad (AnnData), .parquet (opens in napari) or .csv",
    )
    p.add_argument(
        "--transform",
        type=Path,
        help="JSON affine from Space Ranger's full-resolution pixels to the slide's level-0 "
        'pixels: {"matrix": [[a, b, c], [d, e, f], [0, 0, 1]]} or {"scale": s, "offset": '
        "[ox, oy]}; default: the image Space Ranger used is the slide",
    )
    p.add_argument(
        "--spot-diameter-um",
        type=positive_float,
        metavar="D",
        help="take the cells within this diameter (bin side), µm; default: "
        "spot_diameter_fullres of the scale factors (Space Ranger >= 1.3 writes a 65 µm "
        "spot there; 55 is the capture area)",
    )
    p.add_argument(
        "--all-spots",
        action="store_true",
        help="keep the spots off tissue too (default: in_tissue spots only)",
    )
    p.set_defaults(func=cmd_spots)


def cmd_spots(args: argparse.Namespace) -> int:
    """``napari-gbm spots``: aggregate, write, print one line of counts."""
    out: Path = args.out_file
    if out.suffix.lower() not in SUFFIXES:
        raise UsageError(f"--out {out}: give a file ending in {', '.join(SUFFIXES)}")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file ending in {', '.join(SUFFIXES)}")
    check_output_folder(out.parent, what="--out's folder")
    # dispatch: the stage (scipy, pyarrow, the biomarkers) loads when the command runs
    from napari_gbm.spots import SpotParams, spots_from_analysis, write_spots

    params = SpotParams(spot_diameter_um=args.spot_diameter_um, all_spots=args.all_spots)
    spots = spots_from_analysis(
        args.dir, args.positions, args.scalefactors, transform=args.transform, params=params
    )
    write_spots(spots, out)
    m = spots.metadata
    print(
        f"{m['n_spots']} spots ({m['shape']}, {m['diameter_um']:.3g} µm), "
        f"{m['n_spots_with_cells']} with cells; {m['n_cells_under_spots']} of "
        f"{m['n_cells']} cells under a spot; wrote {out}",
        file=sys.stdout,
    )
    return 0
