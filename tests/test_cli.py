"""The command line: info and tile on real slides, outputs checked by reading them back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from napari_gbm.cli import main
from napari_gbm.io import read_parquet_metadata
from napari_gbm.wsi.tiling import TILE_COLUMNS


def test_info_text(cmu_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(cmu_path)]) == 0
    out = capsys.readouterr().out
    assert "aperio" in out and "2220 x 2967" in out and "0.499" in out and "20x" in out
    assert "label, macro, thumbnail" in out
    assert "Tissue:" in out


def test_info_json_without_mpp(tcga_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tcga_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["mpp"] is None and info["mpp_source"] is None
    assert info["stored_level_count"] == 2
    assert info["tissue"]["mpp_assumed"] is True
    assert 0.5 < info["tissue"]["tissue_fraction"] < 0.75


def test_tile_writes_consistent_outputs(cmu_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    assert (
        main(["tile", str(cmu_path), "--out", str(out), "--tile-size", "512", "--overlap", "32"])
        == 0
    )
    tiles = pd.read_parquet(out / "tiles.parquet")
    assert list(tiles.columns) == list(TILE_COLUMNS)
    assert {c: str(t) for c, t in tiles.dtypes.items()} == TILE_COLUMNS
    # cores cover the slide exactly
    area = ((tiles.core_x1_px - tiles.core_x0_px) * (tiles.core_y1_px - tiles.core_y0_px)).sum()
    assert area == pytest.approx(2220 * 2967)
    assert ((tiles.x1_px - tiles.x0_px) == 512 + 64).all()
    assert tiles.selected.sum() == (tiles.tissue_fraction > 0).sum() > 0
    meta = read_parquet_metadata(out / "tiles.parquet")
    assert meta["tiling"]["params"]["tile_size_px"] == 512
    assert meta["slide"]["mpp"] == pytest.approx(0.499)
    summary = json.loads((out / "tiling.json").read_text())
    assert summary["tiling"]["n_selected"] == int(tiles.selected.sum())
    # tissue fraction by area: the tiles' tissue adds up to the slide's tissue
    tissue_px = (
        (tiles.core_x1_px - tiles.core_x0_px)
        * (tiles.core_y1_px - tiles.core_y0_px)
        * tiles.tissue_fraction
    ).sum()
    assert tissue_px / (2220 * 2967) == pytest.approx(
        summary["tissue"]["tissue_fraction"], rel=1e-6
    )
    ov = np.asarray(Image.open(out / "overview.png"))
    assert ov.ndim == 3 and ov.shape[0] > 500 and ov.std() > 20
    # the overview draws the tile grid in blue and the tissue outline in green
    assert ((ov[..., 0] == 30) & (ov[..., 1] == 90) & (ov[..., 2] == 230)).sum() > 100
    assert ((ov[..., 0] == 0) & (ov[..., 1] == 170) & (ov[..., 2] == 60)).sum() > 100
    mask = np.asarray(Image.open(out / "tissue_mask.png"))
    assert set(np.unique(mask)) <= {0, 255}
    assert not list(out.glob(".*.tmp")), "temporary files left behind"


def test_tile_with_user_mpp_on_slide_without_one(tcga_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "t"
    assert (
        main(["tile", str(tcga_path), "--mpp", "0.25", "--out", str(out), "--tile-size", "256"])
        == 0
    )
    meta = read_parquet_metadata(out / "tiles.parquet")
    assert meta["slide"]["mpp_source"] == "user"
    assert meta["tiling"]["scale"] == 2.0


def test_console_script_installed(cmu_path: Path) -> None:
    exe = Path(sys.executable).parent / "napari-gbm"
    proc = subprocess.run(
        [str(exe), "info", str(cmu_path), "--no-tissue"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "0.499" in proc.stdout


def test_make_sample_writes_slide_and_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import openslide

    out = tmp_path / "ki67.tif"
    assert (
        main(["make-sample", "--out", str(out), "--stain", "hdab", "--size", "1024", "--seed", "3"])
        == 0
    )
    osr = openslide.OpenSlide(str(out))
    assert osr.dimensions == (1024, 1024)
    assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(0.5)
    truth = pd.read_parquet(tmp_path / "ki67.nuclei.parquet")
    assert {"centroid_x_px", "centroid_y_px", "area_um2", "region", "dab_grade"} <= set(
        truth.columns
    )
    assert truth.dab_grade.isin([0, 1, 2, 3]).all() and (truth.dab_grade > 0).any()
    assert (tmp_path / "ki67.truth.json").exists() and (tmp_path / "ki67.regions.png").exists()
    # its --out is a file: writing it again is allowed (the folder check is not for it)
    assert main(["make-sample", "--out", str(out), "--size", "512"]) == 0
    assert openslide.OpenSlide(str(out)).dimensions == (512, 512)


def test_make_sample_rejects_tiny_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["make-sample", "--out", str(tmp_path / "x.tif"), "--size", "100"]) == 2
    assert "512" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_demo_runs_the_main_job(tmp_path: Path) -> None:
    """README command 1: every sample gets an overview, a tile table and a cell table."""
    assert main(["demo", "--out", str(tmp_path), "--size", "1024"]) == 0
    for name in ("cmu-1-small-region", "synthetic-gbm-he", "synthetic-gbm-ki67"):
        folder = tmp_path / name
        summary = json.loads((folder / "summary.json").read_text())
        cells = pd.read_parquet(folder / "cells.parquet")
        assert summary["n_cells"] == len(cells) > 0
        assert (folder / "overview.png").stat().st_size > 10_000
    ki67 = json.loads((tmp_path / "synthetic-gbm-ki67" / "summary.json").read_text())
    assert ki67["parameters"]["stain_vectors"]["names"][:2] == ["hematoxylin", "dab"]
    # run again into the same folder (tile refuses finished analyses: the demo redoes them)
    assert main(["demo", "--out", str(tmp_path), "--size", "1024"]) == 0
    again = json.loads((tmp_path / "synthetic-gbm-ki67" / "summary.json").read_text())
    assert again["n_cells"] == ki67["n_cells"]


def test_cli_defaults_are_the_parameter_dataclasses() -> None:
    """A default is written once, in its dataclass: the CLI's agree with them (issue 16)."""
    from napari_gbm.biomarkers.ihc import PositivityParams
    from napari_gbm.cli import build_parser
    from napari_gbm.cli._common import positivity_params
    from napari_gbm.wsi.tiling import TilingParams
    from napari_gbm.wsi.tissue import TissueParams

    t, r, pos = TilingParams(), TissueParams(), PositivityParams()
    parser = build_parser()
    for argv in (["tile", "s.svs", "--out", "o"], ["analyze", "s.svs", "--out", "o"]):
        args = parser.parse_args(argv)
        assert args.target_mpp == t.target_mpp and args.tile_size == t.tile_size_px
        assert args.min_tissue == t.min_tissue_fraction
        assert args.tissue_resolution == r.resolution_um
    args = parser.parse_args(["analyze", "s.svs", "--out", "o"])
    # the positivity flags are None unless given (a --marker's preset fills them): their
    # defaults are PositivityParams'
    assert positivity_params(args) == pos
    text = " ".join(_analyze_help(parser).split())  # argparse wraps the lines
    assert pos.column in text and ",".join(f"{v:g}" for v in pos.thresholds) in text
    assert args.overlap is None  # analyze: the halo detection needs (resolved_tiling)


def _analyze_help(parser: Any) -> str:
    """The help text of ``napari-gbm analyze``."""
    sub = next(a for a in parser._actions if a.dest == "command")
    return str(sub.choices["analyze"].format_help())


def test_time_and_event_flags_are_spelled_alike_in_stratify_and_cohort() -> None:
    """`stratify --time` and `cohort --time-col` both take either spelling (issue 16)."""
    from napari_gbm.cli import build_parser

    parser = build_parser()
    for flags in (["--time", "os", "--event", "dead"], ["--time-col", "os", "--event-col", "dead"]):
        s = parser.parse_args(["stratify", "t.csv", "--out", "o", *flags])
        assert (s.time, s.event) == ("os", "dead")
        c = parser.parse_args(["cohort", "m.csv", "--out", "o", *flags])
        assert (c.time_col, c.event_col) == ("os", "dead")


def test_stratify_flags_default_to_stratify_params() -> None:
    """`stratify`'s defaults and choices come from StratifyParams, written once (issue 16)."""
    from napari_gbm.cli import build_parser
    from napari_gbm.survival._loss import TIES
    from napari_gbm.survival.stratify_params import TIES as PARAM_TIES
    from napari_gbm.survival.stratify_params import StratifyParams

    assert PARAM_TIES == TIES  # the light copy of the torch module's list
    argv = ["stratify", "t.csv", "--time", "t", "--event", "e", "--out", "o"]
    args = build_parser().parse_args(argv)
    for name in ("model", "ties", "id_col", "cutoff", "l2", "cv_folds", "seed", "dropna"):
        assert getattr(args, name) == StratifyParams.default(name), name
    assert args.covariates is None and args.tiles is None and args.tile_features is None


def test_demo_analyses_with_the_analyze_defaults() -> None:
    """`demo` calls the library with AnalyzeParams(cells=CellParams(stain=...)): the same
    parameters as `napari-gbm analyze --stain ...` with no other option."""
    from napari_gbm.cli import build_parser
    from napari_gbm.cli._common import analyze_params
    from napari_gbm.detect.cells import CellParams
    from napari_gbm.pipeline import AnalyzeParams

    parser = build_parser()
    for stain in ("he", "hdab"):
        args = parser.parse_args(["analyze", "s.svs", "--stain", stain, "--out", "o"])
        demo = AnalyzeParams(cells=CellParams(stain=stain))
        assert analyze_params(args).to_dict() == demo.to_dict()


def test_help_and_info_do_not_load_torch(cmu_path: Path) -> None:
    """`napari-gbm --help` and `info` stay fast: no torch, numba kernels or dask."""
    code = (
        "import sys\n"
        "from napari_gbm.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"main(['info', {str(cmu_path)!r}, '--no-tissue'])\n"
        "print(sorted(m for m in ('torch', 'numba', 'distributed', 'matplotlib') "
        "if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    version = [sys.executable, "-m", "napari_gbm.cli", "--version"]
    proc = subprocess.run(version, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("napari-gbm ")
