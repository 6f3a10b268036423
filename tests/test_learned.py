"""The learned nucleus detector: shipped weights, tile independence, post-processing,
training data and the training script, against synthetic truth and hand-made maps."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from napari_gbm import Slide
from napari_gbm.detect.cells import CellParams, analyze_cells
from napari_gbm.detect.learned import (
    WeightsError,
    load_model,
    model_card,
    nuclei_from_maps,
    predict_maps,
    weights_path,
)
from napari_gbm.detect.nucleus_net import (
    DIST_CAP_UM,
    RECEPTIVE_RADIUS_PX,
    NucleusNet,
    instance_targets,
)
from napari_gbm.detect.nucleus_params import NucleusParams, halo_um
from napari_gbm.evaluation.matching import match_points
from napari_gbm.synthetic.patches import training_patch
from napari_gbm.wsi.tiling import TileGrid, TilingParams, make_tile_grid
from napari_gbm.wsi.tissue import detect_tissue

ROOT = Path(__file__).resolve().parents[1]
LEARNED = NucleusParams(detector="learned")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _match(a: np.ndarray, b: np.ndarray, max_dist: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairs within max_dist (the evaluation's Hungarian matching, itself tested
    against scipy in test_evaluate.py)."""
    m = match_points(a, b, max_dist)
    return m.pred_index, m.true_index


# -- the shipped weights -----------------------------------------------------------------


def test_shipped_weights_match_their_record_and_load_without_pickle() -> None:
    path = weights_path()
    card = model_card()
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == card["sha256"]
    assert len(data) <= 20e6 and card["bytes"] == len(data)
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    net = load_model()
    assert not net.training
    assert sum(p.numel() for p in net.parameters()) == card["architecture"]["parameters"]
    # provenance: the annotated (non-commercial) sets were not trained on
    assert card["annotated_sets_used"] is False
    assert all("annotated" not in s["path"] for s in card["self_training_sources"])


def test_corrupt_or_missing_weights_are_refused_with_what_to_do(tmp_path: Path) -> None:
    bad = tmp_path / "nucleus_net.pt"
    shutil.copy(weights_path(), bad)
    shutil.copy(weights_path().with_suffix(".json"), tmp_path / "nucleus_net.json")
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match=r"checksum.*reinstall"):
        load_model(str(bad))
    with pytest.raises(WeightsError, match=r"missing.*--detector classical"):
        load_model(str(tmp_path / "absent.pt"))


# -- the network and tile independence ----------------------------------------------------


@pytest.mark.parametrize("offset", [0, 3, 7])
def test_receptive_field_is_within_the_declared_radius(offset: int) -> None:
    torch.manual_seed(0)
    net = NucleusNet().eval()
    n, c = 256, 128 + offset
    x = torch.randn(1, 3, n, n, requires_grad=True)
    net(x)[0, :, c, c].sum().backward()
    assert x.grad is not None
    rows, cols = np.nonzero(x.grad.abs().sum((0, 1)).numpy())
    reach = max(c - rows.min(), rows.max() - c, c - cols.min(), cols.max() - c)
    assert 30 < reach <= RECEPTIVE_RADIUS_PX, reach
    # the halo a tile is read with covers it
    assert halo_um(LEARNED) >= RECEPTIVE_RADIUS_PX * 0.5 + 2 * np.sqrt(400 / np.pi)


def test_predictions_do_not_depend_on_where_the_tile_starts(cmu_path: Path) -> None:
    with Slide(cmu_path) as slide:
        rgb = np.asarray(slide.read_region((700, 1500), 0, (600, 520)))[..., :3].copy()
    p_a, d_a = predict_maps(rgb, origin=(700, 1500))
    # a tile starting 37 / 61 px further on, not on the stride: its own chunking and padding
    p_b, d_b = predict_maps(rgb[61:, 37:].copy(), origin=(737, 1561))
    m = RECEPTIVE_RADIUS_PX  # away from both tiles' edges
    inner = (slice(61 + m, 520 - m), slice(37 + m, 600 - m))
    inner_b = (slice(m, 520 - 61 - m), slice(m, 600 - 37 - m))
    np.testing.assert_allclose(p_a[inner], p_b[inner_b], atol=1e-4)
    np.testing.assert_allclose(d_a[inner], d_b[inner_b], atol=1e-3)
    assert (p_a > 0.5).mean() > 0.01  # the field has nuclei


def test_learned_results_do_not_depend_on_the_tile_grid(synthetic_he: Path) -> None:
    slide = Slide(synthetic_he)
    tissue = detect_tissue(slide)
    params = CellParams(texture=False, nucleus=LEARNED)
    from napari_gbm.detect.cells import needed_overlap_px

    ov = needed_overlap_px(params, 0.5)
    # a window of the slide keeps the test short
    grid_a = make_tile_grid(slide, tissue, TilingParams(tile_size_px=512, overlap_px=ov))
    grid_b = make_tile_grid(
        slide, tissue, TilingParams(tile_size_px=700, overlap_px=ov, offset_px=(230, 117))
    )
    box = (1000, 600, 2000, 1400)

    def window(grid: TileGrid) -> TileGrid:  # the tiles whose core meets the box
        t = grid.tiles
        inside = (t.core_x1_px > box[0]) & (t.core_y1_px > box[1]) & (t.core_x0_px < box[2])
        return replace(grid, tiles=t[inside & (t.core_y0_px < box[3])])

    a = analyze_cells(slide, window(grid_a), params)
    b = analyze_cells(slide, window(grid_b), params)

    def sel(t: pd.DataFrame) -> pd.DataFrame:  # away from the window's edges
        x, y = t.centroid_x_px, t.centroid_y_px
        return t[(x > 1100) & (x < 1900) & (y > 700) & (y < 1300)]

    a, b = sel(a), sel(b)
    ia, ib = _match(
        a[["centroid_x_px", "centroid_y_px"]].to_numpy(),
        b[["centroid_x_px", "centroid_y_px"]].to_numpy(),
        0.5,
    )
    assert len(a) > 100
    assert len(ia) >= 0.99 * max(len(a), len(b)), (len(a), len(b), len(ia))
    np.testing.assert_allclose(
        a["nucleus_area_um2"].to_numpy()[ia], b["nucleus_area_um2"].to_numpy()[ib], rtol=1e-4
    )


def test_analyze_with_the_learned_detector_finds_the_synthetic_truth(
    synthetic_he: Path, tmp_path: Path
) -> None:
    from napari_gbm.cli import main

    out = tmp_path / "run"
    assert main(["analyze", str(synthetic_he), "--out", str(out), "--no-texture",
                 "--detector", "learned"]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"]["cells"]["nucleus"]["detector"] == "learned"
    assert summary["software"]["nucleus_net_sha256"] == model_card()["sha256"]
    cells = pd.read_parquet(out / "cells.parquet")
    truth = pd.read_parquet(synthetic_he.with_name(synthetic_he.stem + ".nuclei.parquet"))
    ours = cells[["centroid_x_px", "centroid_y_px"]].to_numpy() * 0.5
    ref = truth[["centroid_x_px", "centroid_y_px"]].to_numpy() * 0.5
    ia, ib = _match(ours, ref, 4.0)
    precision, recall = len(ia) / len(ours), len(ib) / len(ref)
    assert precision > 0.8 and recall > 0.8, (precision, recall)
    # matched nuclei: areas agree with the drawn ones
    rel = cells.nucleus_area_um2.to_numpy()[ia] / truth.area_um2.to_numpy()[ib] - 1
    assert abs(np.median(rel)) < 0.2


# -- post-processing, by hand -------------------------------------------------------------


def _disc_maps(centres: list[tuple[float, float]], r: float, n: int = 64) -> tuple:
    yy, xx = np.mgrid[0:n, 0:n] + 0.5
    labels = np.zeros((n, n), np.int32)
    for i, (cx, cy) in enumerate(centres, start=1):
        labels[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = i
    fg, dist = instance_targets(labels, 0.5)
    return fg, dist * DIST_CAP_UM, labels


def test_two_touching_nuclei_are_split_and_one_is_not() -> None:
    fg, dist, truth = _disc_maps([(20, 32), (36, 32)], 9)  # 4.5 µm radius, touching
    labels = nuclei_from_maps(fg, dist, 0.5, LEARNED)
    assert labels.max() == 2
    for i in (1, 2):  # each label lies on one drawn disc, up to the seam
        on = np.bincount(truth[labels == i], minlength=3)
        assert on.max() >= 0.95 * on.sum(), on
    fg, dist, _ = _disc_maps([(32, 32)], 9)
    assert nuclei_from_maps(fg, dist, 0.5, LEARNED).max() == 1
    # below learned_threshold: nothing; under min_area_um2 (10 µm²): dropped
    assert nuclei_from_maps(fg * 0.4, dist, 0.5, LEARNED).max() == 0
    fg, dist, _ = _disc_maps([(32, 32)], 3)  # 1.5 µm radius = 7 µm²
    assert nuclei_from_maps(fg, dist, 0.5, LEARNED).max() == 0


def test_instance_targets_by_hand() -> None:
    labels = np.zeros((21, 21), np.int32)
    labels[5:16, 5:16] = 3  # an 11 x 11 square
    fg, dist = instance_targets(labels, 0.5)
    assert fg.sum() == 121
    # centre pixel: 6 px from the nearest outside pixel = 3 µm, / 4 µm cap
    assert dist[10, 10] == pytest.approx(6 * 0.5 / DIST_CAP_UM)
    assert dist[5, 10] == pytest.approx(1 * 0.5 / DIST_CAP_UM) and dist[0, 0] == 0


# -- training data and the training script -------------------------------------------------


@pytest.mark.parametrize("stain", ["he", "hdab"])
def test_training_patches_are_reproducible_and_nuclei_are_darker(stain: str) -> None:
    from napari_gbm.detect.stain import HDAB, HE, deconvolve

    a = training_patch(np.random.default_rng(5), stain, 96)
    b = training_patch(np.random.default_rng(5), stain, 96)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    od_inside, od_outside = [], []
    for seed in range(12):
        rgb, lab = training_patch(np.random.default_rng(seed), stain, 96)
        assert rgb.shape == (96, 96, 3) and rgb.dtype == np.uint8 and lab.shape == (96, 96)
        conc = deconvolve(rgb, HE if stain == "he" else HDAB)
        nuclear = conc["hematoxylin"] + (np.maximum(conc["dab"], 0) if stain == "hdab" else 0)
        if (lab > 0).any():
            od_inside.append(nuclear[lab > 0].mean())
            od_outside.append(nuclear[lab == 0].mean())
    assert len(od_inside) >= 8
    assert np.mean(np.array(od_inside) > np.array(od_outside)) >= 0.9
    with pytest.raises(ValueError, match="stain"):
        training_patch(np.random.default_rng(0), "pas")


def test_training_script_writes_loadable_reproducible_weights(tmp_path: Path) -> None:
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        cmd = [
            sys.executable,
            str(ROOT / "scripts" / "train_detector.py"),
            "--out",
            str(out),
            "--steps",
            "3",
            "--synthetic",
            "6",
            "--batch",
            "4",
            "--size",
            "64",
            "--no-real",
            "--threads",
            "1",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        card = json.loads((out / "nucleus_net.json").read_text())
        assert card["sha256"] == hashlib.sha256((out / "nucleus_net.pt").read_bytes()).hexdigest()
        assert card["annotated_sets_used"] is False and card["steps"] == 3
        load_model(str(out / "nucleus_net.pt"))
        digests.append(card["sha256"])
    assert digests[0] == digests[1]  # same seed, same weights


def test_the_wheel_ships_the_weights(tmp_path: Path) -> None:
    """``pip wheel .`` packs the weights and their record, byte for byte (offline use:
    scripts/check_offline_install.sh runs analyze from such a wheel with no network)."""
    import zipfile

    cmd = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
           "-q", "-w", str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("napari_gbm-*.whl")
    with zipfile.ZipFile(wheel) as z:
        data = z.read("napari_gbm/detect/weights/nucleus_net.pt")
        card = json.loads(z.read("napari_gbm/detect/weights/nucleus_net.json"))
    assert hashlib.sha256(data).hexdigest() == card["sha256"] == model_card()["sha256"]
