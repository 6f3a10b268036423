"""The ``napari-gbm`` command line: the same pipeline as the plugin, without a display.

Commands::

    napari-gbm info SLIDE [--mpp M] [--json]
    napari-gbm tile SLIDE --out DIR [--mpp M] [--target-mpp 0.5] [--tile-size 1024] ...
    napari-gbm make-sample --out PATH [--stain he|hdab|cd31] [--size PX] [--seed N]
    napari-gbm analyze PATH --out DIR [--mpp M] [--stain he|hdab] [--target-mpp 0.5] ...
                       [--marker ki67|p53|olig2|atrx|idh1|gfap|egfr|cd31|cd34]
    napari-gbm demo --out DIR          the main job on the bundled sample data
    napari-gbm stratify TABLE --time COL --event COL --out DIR [--clinical CSV]
                        [--model cox|mlp|mil] [--tiles PATH] ...
    napari-gbm cohort INPUT --out DIR [--scheduler ADDRESS] [--workers N] ...
    napari-gbm evaluate DIR --out OUT [--stain he|hdab] [--mpp M] [--baseline skimage|none] ...
    napari-gbm export DIR --to csv|tsv|parquet|geojson|anndata --out PATH
                      [--names ours|qupath|histomicstk] [--combine]
    napari-gbm spots DIR --positions CSV --scalefactors JSON --out FILE [--transform JSON]

One module per group of commands: ``_slide`` (info, tile, analyze, make-sample, demo),
``_cohort`` (cohort, stratify), ``_evaluate``, ``_export``; ``_common`` holds the shared
options. Heavy modules (torch, numba kernels, dask) load when a command needs them, so
``--help`` and ``info`` stay fast.

Errors about the input (a missing or unreadable slide, no pixel size where one is needed,
no tissue) print one line naming the file and what to do, and exit with status 2; nothing
is written.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_gbm import __version__
from napari_gbm.cli import _cohort, _evaluate, _export, _slide, _spots
from napari_gbm.cli._common import UsageError
from napari_gbm.outputs import check_output_folder
from napari_gbm.wsi.slide import SlideError

__all__ = ["UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-gbm`` argument parser: one subcommand per command.

    Returns
    -------
    argparse.ArgumentParser
        Each subcommand sets ``func``, the function that runs it.
    """
    parser = argparse.ArgumentParser(
        prog="napari-gbm",
        description="Glioblastoma tissue biomarkers from whole-slide images.",
    )
    parser.add_argument("--version", action="version", version=f"napari-gbm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _slide.add_parsers(sub)
    _cohort.add_parsers(sub)
    _evaluate.add_parsers(sub)
    _export.add_parsers(sub)
    _spots.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``napari-gbm`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after ``napari-gbm``; default: ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 done, 1 a cohort with failed slides, 2 an input error (one
        line on stderr; nothing written), 130 interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    out = getattr(args, "out", None)

    def note(message: Any, *_: Any, **__: Any) -> None:  # one line, not a source location
        print(f"napari-gbm {args.command}: note: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = note
            if isinstance(out, Path) and args.command not in ("make-sample", "export"):  # files
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
