"""Whole-slide cell analysis: the analyze contract, tile independence, ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from napari_gbm import Slide
from napari_gbm.cli import main
from napari_gbm.detect.cells import Cancelled, CellParams, analyze_cells
from napari_gbm.schema import cell_table_columns
from napari_gbm.wsi.tiling import TilingParams, make_tile_grid
from napari_gbm.wsi.tissue import detect_tissue


def _match(a: np.ndarray, b: np.ndarray, max_dist: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of points a to points b within max_dist (Hungarian on the
    candidate pairs)."""
    tree = cKDTree(b)
    pairs = tree.sparse_distance_matrix(cKDTree(a), max_dist, output_type="coo_matrix")
    if pairs.nnz == 0:
        return np.zeros(0, int), np.zeros(0, int)
    cost = np.full((len(a), len(b)), 1e6)
    cost[pairs.col, pairs.row] = pairs.data
    ia, ib = linear_sum_assignment(cost)
    ok = cost[ia, ib] <= max_dist
    return ia[ok], ib[ok]


@pytest.fixture(scope="module")
def he_run(synthetic_he: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("analyze") / "he"
    assert main(["analyze", str(synthetic_he), "--out", str(out), "--tile-size", "768"]) == 0
    return out


def test_analyze_outputs_follow_the_contract(he_run: Path) -> None:
    cells = pd.read_parquet(he_run / "cells.parquet")
    summary = json.loads((he_run / "summary.json").read_text())
    expected = [c.name for c in cell_table_columns(("hematoxylin", "eosin"))]
    assert list(cells.columns[: len(expected)]) == expected
    assert summary["n_cells"] == len(cells) > 1000
    assert cells.cell_id.tolist() == list(range(1, len(cells) + 1))
    from napari_gbm.detect.nucleus_params import NucleusParams

    assert summary["parameters"]["cells"]["nucleus"]["sigma_um"] == NucleusParams().sigma_um
    assert summary["parameters"]["stain_vectors"]["names"][0] == "hematoxylin"
    assert summary["input"]["algorithm"].startswith("sha256")
    assert summary["cell_density_per_mm2"] == pytest.approx(len(cells) / summary["tissue_area_mm2"])
    tiles = pd.read_parquet(he_run / "tiles.parquet")
    assert tiles.n_cells.sum() == len(cells)
    # each cell lies in the core of its tile
    t = tiles.set_index("tile_id").loc[cells.tile_id]
    assert (
        (cells.centroid_x_px.to_numpy() >= t.core_x0_px.to_numpy())
        & (cells.centroid_x_px.to_numpy() < t.core_x1_px.to_numpy())
    ).all()


def test_detection_against_ground_truth(he_run: Path, synthetic_he: Path) -> None:
    cells = pd.read_parquet(he_run / "cells.parquet")
    truth = pd.read_parquet(synthetic_he.with_name(synthetic_he.stem + ".nuclei.parquet"))
    mpp = 0.5
    ours = cells[["centroid_x_px", "centroid_y_px"]].to_numpy() * mpp
    ref = truth[["centroid_x_px", "centroid_y_px"]].to_numpy() * mpp
    ia, ib = _match(ours, ref, 4.0)  # 4 µm centroid match
    precision, recall = len(ia) / len(ours), len(ib) / len(ref)
    assert precision > 0.8 and recall > 0.8, (precision, recall)
    # matched nuclei: areas agree with the drawn ones
    rel = cells.nucleus_area_um2.to_numpy()[ia] / truth.area_um2.to_numpy()[ib] - 1
    assert abs(np.median(rel)) < 0.2


def test_results_do_not_depend_on_the_tile_grid(synthetic_he: Path) -> None:
    slide = Slide(synthetic_he)
    tissue = detect_tissue(slide)
    params = CellParams(texture=False)
    a = analyze_cells(
        slide, make_tile_grid(slide, tissue, TilingParams(tile_size_px=512, overlap_px=64)), params
    )
    b = analyze_cells(
        slide,
        make_tile_grid(
            slide, tissue, TilingParams(tile_size_px=700, overlap_px=64, offset_px=(230, 117))
        ),
        params,
    )
    pa = a[["centroid_x_px", "centroid_y_px"]].to_numpy()
    pb = b[["centroid_x_px", "centroid_y_px"]].to_numpy()
    ia, ib = _match(pa, pb, 0.5)
    # the same cells come out of both tilings...
    assert len(ia) >= 0.99 * max(len(a), len(b)), (len(a), len(b), len(ia))
    # ...with the same measurements
    for col in (
        "nucleus_area_um2",
        "nucleus_perimeter_um",
        "nucleus_hematoxylin_od_mean",
        "cell_area_um2",
    ):
        np.testing.assert_allclose(
            a[col].to_numpy()[ia], b[col].to_numpy()[ib], rtol=1e-4, atol=1e-4
        )


def test_plain_image_at_another_pixel_size_maps_back_to_its_pixels(
    synthetic_he: Path, tmp_path: Path
) -> None:
    """A 0.25 µm/px PNG is analysed at 0.5 µm/px; coordinates come back in its pixels."""
    from PIL import Image

    crop = Slide(synthetic_he).read_region((1024, 512), 0, (512, 512))
    Image.fromarray(crop).save(tmp_path / "field_05.png")
    Image.fromarray(crop).resize((1024, 1024), Image.Resampling.BICUBIC).save(
        tmp_path / "field_025.png"
    )
    assert (
        main(
            [
                "analyze",
                str(tmp_path / "field_05.png"),
                "--mpp",
                "0.5",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "analyze",
                str(tmp_path / "field_025.png"),
                "--mpp",
                "0.25",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    a = pd.read_parquet(tmp_path / "a" / "cells.parquet")
    b = pd.read_parquet(tmp_path / "b" / "cells.parquet")
    assert len(a) > 20
    assert abs(len(a) - len(b)) <= 0.1 * len(a)
    # b's pixels are half the size: its coordinates are twice a's
    pa = a[["centroid_x_px", "centroid_y_px"]].to_numpy() * 2 + 0.5
    pb = b[["centroid_x_px", "centroid_y_px"]].to_numpy()
    ia, _ = _match(pa, pb, 3.0)
    assert len(ia) >= 0.85 * len(a)


@pytest.mark.parametrize(
    ("name", "pixels", "reason"),
    [
        ("glass", np.full((600, 600, 3), 245, np.uint8), "no cells found in the whole image"),
        ("black", np.zeros((600, 600, 3), np.uint8), "no cells found"),
        ("one-pixel", np.full((1, 1, 3), 120, np.uint8), "1 x 1 px: too small"),
    ],
)
def test_an_image_without_cells_is_a_failure_not_an_empty_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, pixels: np.ndarray, reason: str
) -> None:
    """Glass, an all-black image or a 1x1 image: exit 2 with the reason, as ``tile`` does,
    and no folder that could pass for a result (issue 14)."""
    from PIL import Image

    Image.fromarray(pixels).save(tmp_path / f"{name}.png")
    out = tmp_path / "o"
    assert main(["analyze", str(tmp_path / f"{name}.png"), "--mpp", "0.5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert reason in err and "Traceback" not in err
    assert not out.exists()


def test_the_cell_streamer_writes_an_empty_table_with_its_columns(tmp_path: Path) -> None:
    """No cell in any tile: the Parquet file still has every column (the schema)."""
    from PIL import Image

    from napari_gbm.detect.cells import CellParams, analyze_cells_to_parquet
    from napari_gbm.wsi.slide import Slide
    from napari_gbm.wsi.tiling import TilingParams, make_tile_grid

    Image.fromarray(np.full((600, 600, 3), 245, np.uint8)).save(tmp_path / "glass.png")
    with Slide(tmp_path / "glass.png", mpp=0.5) as slide:
        grid = make_tile_grid(slide, None, TilingParams(overlap_px=96))
        analyze_cells_to_parquet(slide, grid, tmp_path / "cells.parquet", CellParams())
    cells = pd.read_parquet(tmp_path / "cells.parquet")
    assert len(cells) == 0
    assert list(cells.columns) == [c.name for c in cell_table_columns(("hematoxylin", "eosin"))]


def test_analyze_without_mpp_says_how(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(tmp_path / "x.png")
    assert main(["analyze", str(tmp_path / "x.png"), "--out", str(tmp_path / "o")]) == 2
    assert "--mpp" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_progress_and_cancel(synthetic_he: Path) -> None:
    slide = Slide(synthetic_he)
    grid = make_tile_grid(slide, detect_tissue(slide), TilingParams(tile_size_px=512))
    seen: list[tuple[int, int, int]] = []
    with pytest.raises(Cancelled):
        analyze_cells(
            slide,
            grid,
            CellParams(texture=False),
            progress=lambda d, t, n: seen.append((d, t, n)),
            cancel=lambda: len(seen) >= 2,
        )
    assert [s[0] for s in seen] == [1, 2] and seen[0][1] == len(grid.selected)


def test_measure_cells_is_exported() -> None:
    import napari_gbm

    labels = np.zeros((10, 10), np.int32)
    labels[2:5, 2:6] = 3
    table = napari_gbm.measure_cells(labels)
    assert table.label.tolist() == [3]
    assert table.area_px.tolist() == [12]


def test_streamed_parquet_equals_in_memory_table(synthetic_he: Path, tmp_path: Path) -> None:
    from napari_gbm.detect.cells import analyze_cells_to_parquet

    slide = Slide(synthetic_he)
    grid = make_tile_grid(
        slide, detect_tissue(slide), TilingParams(tile_size_px=512, overlap_px=98)
    )
    params = CellParams(texture=False)
    in_memory = analyze_cells(slide, grid, params, slide_id="s")
    # tiny row groups, so the second pass has to stitch many of them
    per_tile = analyze_cells_to_parquet(
        slide,
        grid,
        tmp_path / "cells.parquet",
        params,
        slide_id="s",
        row_group_rows=500,
        metadata={"k": 1},
    )
    streamed = pd.read_parquet(tmp_path / "cells.parquet")
    pd.testing.assert_frame_equal(streamed, in_memory, check_dtype=True)
    assert per_tile.sum() == len(in_memory)
    assert (np.bincount(in_memory.tile_id, minlength=len(per_tile)) == per_tile).all()
    from napari_gbm.io import read_parquet_metadata

    assert read_parquet_metadata(tmp_path / "cells.parquet") == {"k": 1}


def test_cancelled_stream_leaves_nothing(synthetic_he: Path, tmp_path: Path) -> None:
    from napari_gbm.detect.cells import analyze_cells_to_parquet

    slide = Slide(synthetic_he)
    grid = make_tile_grid(slide, detect_tissue(slide), TilingParams(tile_size_px=512))
    calls: list[int] = []
    with pytest.raises(Cancelled):
        analyze_cells_to_parquet(
            slide,
            grid,
            tmp_path / "cells.parquet",
            CellParams(texture=False),
            progress=lambda d, t, n: calls.append(d),
            cancel=lambda: len(calls) >= 3,
        )
    assert list(tmp_path.iterdir()) == []  # no table, no temporary folder


def test_cells_off_the_tissue_are_not_counted(synthetic_ki67: Path) -> None:
    """The synthetic Ki-67 slide has dark objects outside its tissue (its black edge
    strip): detections there were counted and graded. With the tissue mask given, every
    cell lies on tissue (within the mask's margin), and exactly those off it are gone."""
    from napari_gbm.detect.cells import CellParams, analyze_cells
    from napari_gbm.pipeline import AnalyzeParams
    from napari_gbm.wsi.slide import Slide
    from napari_gbm.wsi.tiling import make_tile_grid
    from napari_gbm.wsi.tissue import detect_tissue

    params = AnalyzeParams(cells=CellParams(stain="hdab", texture=False))
    with Slide(synthetic_ki67) as slide:
        tissue = detect_tissue(slide)
        grid = make_tile_grid(slide, tissue, params.resolved_tiling())
        every = analyze_cells(slide, grid, params.cells)
        kept = analyze_cells(slide, grid, params.cells, tissue=tissue)
    on = tissue.on_tissue(every["centroid_x_px"].to_numpy(), every["centroid_y_px"].to_numpy())
    assert (~on).sum() > 0  # the slide has such detections: the test can fail
    assert len(kept) == int(on.sum())
    assert tissue.on_tissue(
        kept["centroid_x_px"].to_numpy(), kept["centroid_y_px"].to_numpy()
    ).all()
    np.testing.assert_allclose(
        np.sort(kept["centroid_x_px"].to_numpy()), np.sort(every["centroid_x_px"].to_numpy()[on])
    )


def test_on_tissue_margin_by_hand() -> None:
    from napari_gbm.wsi.tissue import TissueMask

    mask = np.zeros((10, 10), bool)
    mask[4:6, 4:6] = True  # level-0 px 64-96 at 16 px per mask pixel (8 µm at 0.5)
    t = TissueMask(mask, 16.0, 0.5, False, 0.1, (160, 160))
    x = np.array([70.0, 100.0, 120.0, 150.0, -5.0])
    y = np.full(5, 70.0)
    # 100 is in the first ring (8 µm), 120 in the second (16 µm), 150 beyond, -5 outside
    np.testing.assert_array_equal(
        t.on_tissue(x, y, margin_um=0), [True, False, False, False, False]
    )
    np.testing.assert_array_equal(t.on_tissue(x, y), [True, True, True, False, False])


def test_real_slide_cells_do_not_depend_on_the_tile_size(cmu_path: Path, tmp_path: Path) -> None:
    """CMU-1 analysed with 1024- and 512-px tiles: the same cells with the same
    measurements. Before cells off the tissue were dropped, 0.14 % of cells (isolated
    detections on glass that only one grid's tiles reached) differed (issue 14)."""
    runs = []
    for size in (1024, 512):
        out = tmp_path / f"t{size}"
        assert main(["analyze", str(cmu_path), "--out", str(out), "--tile-size", str(size),
                     "--no-texture"]) == 0  # fmt: skip
        cells = pd.read_parquet(out / "cells.parquet")
        runs.append(cells.sort_values(["centroid_x_px", "centroid_y_px"]).reset_index(drop=True))
    a, b = runs
    assert len(a) == len(b) > 3000
    skip = ("cell_id", "tile_id")
    for col in a.columns:
        if col in skip or a[col].dtype.kind not in "fiu":
            continue
        np.testing.assert_allclose(a[col], b[col], rtol=1e-5, atol=1e-6, err_msg=col)


def test_on_tissue_equals_growing_the_whole_mask() -> None:
    """on_tissue grows only a window around the points; the answer equals growing the
    whole mask with scipy (the reference), for spread and clustered points."""
    import math

    from scipy import ndimage as ndi

    from napari_gbm.wsi.tissue import TissueMask

    rng = np.random.default_rng(0)
    mask = ndi.binary_opening(rng.random((300, 400)) > 0.6)
    t = TissueMask(mask, 16.0, 0.5, False, 0.1, (6400, 4800))
    for margin in (0.0, 8.0, 16.0, 40.0):
        grow = math.ceil(margin / t.mask_mpp) if margin > 0 else 0
        full = ndi.binary_dilation(mask, iterations=grow) if grow else mask
        for lo, hi in (((-100, -100), (6500, 4900)), ((1000, 2000), (1500, 2300))):
            x = rng.uniform(lo[0], hi[0], 3000)
            y = rng.uniform(lo[1], hi[1], 3000)
            r, c = np.floor(y / 16).astype(int), np.floor(x / 16).astype(int)
            ok = (r >= 0) & (r < 300) & (c >= 0) & (c < 400)
            ref = np.zeros(x.size, bool)
            ref[ok] = full[r[ok], c[ok]]
            np.testing.assert_array_equal(t.on_tissue(x, y, margin), ref)
