"""``napari-gbm export``: an analysis or cohort folder's cells to other tools' formats
(:mod:`napari_gbm.export.folders`, the writers of the napari widget's export)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from napari_gbm.export.folders import export_results, open_results
from napari_gbm.export.formats import COMBINABLE, EXPORT_FORMATS, NAMES

__all__ = ["add_parsers"]

_DESCRIPTION = """\
Write the cells of an analysis folder (napari-gbm analyze --out) or of a cohort folder
(napari-gbm cohort --out) for other tools, with the same writers as the Biomarkers dock.

formats (--to):
  csv, tsv, parquet  the cell table, one row per cell as cells.parquet; metadata (the
                     slide's summary.json, software version, column names) in the Parquet
                     schema or, for CSV/TSV, in a <file>.json beside it
  geojson            QuPath GeoJSON: a FeatureCollection of objectType "cell" with
                     nucleusGeometry, classification (Ki-67 grade: Negative, 1+, 2+, 3+)
                     and measurements. The analysis folder keeps no nucleus outlines, so
                     each nucleus is its moment ellipse and each cell a circle of its
                     equivalent diameter (areas preserved)
  anndata            .h5ad for scanpy/squidpy: X the numeric features (float32), obs the
                     ids and classes (positive_class, the tile's region), obsm["spatial"]
                     the centroids in µm, uns the summary.json (a cohort's: per slide)
  spatialdata        a .zarr store for napari-spatialdata, all in µm: the slide as a
                     multiscale image (~2 µm/px and coarser), the nuclei as ellipses and
                     the cells as circles (shapes), and the AnnData above as a table
                     annotating the nuclei; needs the optional extra
                     pip install 'napari-gbm[spatialdata]' and the slide (found where
                     the analysis recorded it, or beside the folder)

--out:
  an analysis folder: the file to write (ending in the format's extension), or an
    existing folder, which gets <slide_id>.<ext>
  a cohort folder: a folder (created if needed) that gets one <slide_id>.<ext> per
    analysed slide; with --combine (csv, tsv, parquet, anndata) one file instead, every
    slide's cells with slide_id and patient_id columns (an existing folder gets
    cells.<ext>; the cohort's cells are held in memory together)
  Files of the same name are replaced; each is written atomically (never half-written).
  Slides the cohort failed to analyse have no cells and are left out (a note says so).

column names (--names): ours (default for tables and AnnData), qupath ('Nucleus: Area
  µm^2'; the default for GeoJSON measurements) or histomicstk ('Size.Area_um2'; tables
  only). Names a tool lacks keep ours behind a prefix ('napari_gbm: ...').
"""


def add_parsers(sub: Any) -> None:
    """The subcommand ``export``."""
    p = sub.add_parser(
        "export",
        help="write an analysis or cohort folder's cells as CSV, TSV, Parquet, QuPath "
        "GeoJSON, AnnData or SpatialData",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "dir",
        type=Path,
        metavar="ANALYSIS_DIR",
        help="the --out folder of napari-gbm analyze, or of napari-gbm cohort",
    )
    p.add_argument("--to", required=True, choices=tuple(EXPORT_FORMATS), help="the format")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the file to write, or a folder (see above)",
    )
    p.add_argument(
        "--names",
        choices=NAMES,
        help="column names: ours, QuPath's or HistomicsTK's (default: ours; QuPath's in GeoJSON)",
    )
    p.add_argument(
        "--combine",
        action="store_true",
        help=f"a cohort's slides in one file with slide_id and patient_id columns "
        f"({', '.join(COMBINABLE)})",
    )
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """``napari-gbm export``: check the folder and the target, then write the files."""
    results = open_results(args.dir)

    def progress(done: int, total: int, path: Path, n_cells: int) -> None:
        where = f"[{done}/{total}] " if total > 1 else ""
        print(f"{where}-> {path} ({n_cells} cells)", flush=True)

    done = export_results(
        results, args.out, args.to, names=args.names, combine=args.combine, progress=progress
    )
    for note in done.notes:
        print(f"napari-gbm export: note: {note}", file=sys.stderr)
    if len(done.paths) > 1:
        print(f"{len(done.paths)} files, {done.n_cells} cells")
    return 0
