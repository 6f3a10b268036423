"""Per-slide calibration: white point, counterstain level, thresholds that follow the stain,
one calibration per slide whatever region or tile is analysed, and the round trip through
summary.json (``analyze --calibration``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from napari_gbm import Slide
from napari_gbm.cli import main
from napari_gbm.detect.calibration import (
    CalibrationParams,
    SlideCalibration,
    calibrate_pixels,
    calibrate_slide,
    estimate_white_point,
    load_calibration,
)
from napari_gbm.detect.cells import CellParams, slide_calibration
from napari_gbm.detect.nucleus_params import NucleusParams
from napari_gbm.detect.segment import segment_nuclei
from napari_gbm.detect.stain import HDAB, HE, reconvolve

MPP = 0.5


def _field(
    h_conc: float,
    *,
    n: int = 60,
    size: int = 400,
    dab_every: int = 0,
    dab_conc: float = 1.2,
    pos_h_conc: float | None = None,
    white: tuple[int, int, int] = (255, 255, 255),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An H&E (or H-DAB with ``dab_every``) field of ``n`` round nuclei (radius 3.5 µm) of
    hematoxylin ``h_conc`` on a faint eosin / counterstain background, seen through a
    light of colour ``white``, with a strip of clear glass (a lumen) on the left.
    Returns (rgb, centres (x, y), positive flags)."""
    rng = np.random.default_rng(seed)
    r_px = 3.5 / MPP
    centres: list[tuple[float, float]] = []
    while len(centres) < n:
        c = rng.uniform(2 * r_px, size - 2 * r_px, 2)
        if all(np.hypot(*(c - np.asarray(o))) > 3 * r_px for o in centres):
            centres.append((float(c[0]), float(c[1])))
    yy, xx = np.mgrid[:size, :size]
    hem = np.zeros((size, size))
    dab = np.zeros((size, size))
    positive = np.zeros(n, bool)
    for i, (cx, cy) in enumerate(centres):
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r_px**2
        hem[disc] = h_conc
        if dab_every and i % dab_every == 0:
            dab[disc] = dab_conc
            hem[disc] = h_conc if pos_h_conc is None else pos_h_conc
            positive[i] = True
    hem = ndi.gaussian_filter(hem, 0.6) + rng.normal(0, 0.01, hem.shape)
    second = 0.12 + rng.normal(0, 0.01, hem.shape)  # eosin, or DAB-free counterstain haze
    second[:, : size // 10] = 0  # a lumen: clear glass
    stains = HDAB if dab_every else HE
    conc = {"hematoxylin": hem, stains.names[1]: (dab if dab_every else second)}
    rgb = reconvolve(conc, stains).astype(np.float64)
    rgb = np.clip(np.rint(rgb * np.asarray(white) / 255.0), 0, 255).astype(np.uint8)
    return rgb, np.asarray(centres), positive


def _found(labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Which centres fall on a detected nucleus."""
    x = np.clip(np.rint(centres[:, 0]).astype(int), 0, labels.shape[1] - 1)
    y = np.clip(np.rint(centres[:, 1]).astype(int), 0, labels.shape[0] - 1)
    return labels[y, x] > 0


def test_white_point_of_a_tinted_field_is_recovered() -> None:
    rgb, _, _ = _field(0.5, white=(232, 226, 210))
    white, ok = estimate_white_point(rgb.reshape(-1, 3))
    assert ok
    np.testing.assert_allclose(white, (232, 226, 210), atol=1.5)
    # a field with no bright pixel at all keeps 255 (and says so)
    dark = np.full((50, 50, 3), 90, np.uint8)
    assert estimate_white_point(dark) == ((255.0, 255.0, 255.0), False)


def test_level_follows_the_stain_and_detection_with_it() -> None:
    """A field stained a quarter as strongly has about a quarter of the counterstain level
    (Otsu on a noisy image: between 0.2 and 0.45 of it); with the
    calibration every nucleus is found in both, where the fixed 0.25 OD peak misses the
    pale field's nuclei."""
    p = NucleusParams()
    dark, centres, _ = _field(0.6)
    pale, _, _ = _field(0.15)
    cal_dark = calibrate_pixels([dark], MPP, HE, p)
    cal_pale = calibrate_pixels([pale], MPP, HE, p)
    assert 0.2 < cal_pale.level_od / cal_dark.level_od < 0.45
    for rgb, cal in ((dark, cal_dark), (pale, cal_pale)):
        seg = segment_nuclei(rgb, MPP, HE, p, cal)
        assert _found(seg.nuclei, centres).all()
        assert seg.n_nuclei == len(centres)  # nothing split, nothing from the haze
    fixed = segment_nuclei(pale, MPP, HE, p)
    assert _found(fixed.nuclei, centres).mean() < 0.5


def test_ihc_level_is_that_of_the_negatives() -> None:
    """On H-DAB the level is measured without DAB pixels: pale counterstained negatives
    are all found next to dark brown positives, and a camera's yellow light is removed."""
    p = NucleusParams()
    # brown nuclei hold hematoxylin too (and, through imperfect vectors, show more of it)
    rgb, centres, positive = _field(0.12, dab_every=3, pos_h_conc=0.5, white=(236, 232, 208))
    cal = calibrate_pixels([rgb], MPP, HDAB, p)
    assert cal.stains.background == pytest.approx((236, 232, 208), abs=2)
    seg = segment_nuclei(rgb, MPP, HDAB, p, cal)
    found = _found(seg.nuclei, centres)
    assert found[~positive].all() and found[positive].all()
    # with the DAB pixels in, the level would be that of the brown nuclei
    with_dab = calibrate_pixels([rgb], MPP, HDAB, p, CalibrationParams(dab_exclude_od=10.0))
    assert with_dab.level_od > 1.5 * cal.level_od
    # the positives grade positive and the negatives do not (nucleus DAB OD mean >= 0.2)
    idx = seg.nuclei[np.rint(centres[:, 1]).astype(int), np.rint(centres[:, 0]).astype(int)]
    dab_mean = np.asarray(ndi.mean(seg.stains["dab"], seg.nuclei, idx))
    assert ((dab_mean >= 0.2) == positive).all()


def test_a_few_dark_nuclei_do_not_lift_the_level() -> None:
    """Pale nuclei among a third as many very dark ones (lymphocytes): the level comes
    from Otsu after clipping the top 5 %, so the pale ones are all found; a plain Otsu
    split lands between the pale and the dark and loses the pale ones."""
    p = NucleusParams()
    rgb, centres, dark = _field(0.15, dab_every=3, dab_conc=0.0, pos_h_conc=1.5)
    cal = calibrate_pixels([rgb], MPP, HDAB, p)
    plain = calibrate_pixels([rgb], MPP, HDAB, p, CalibrationParams(clip_quantile=1.0))
    assert plain.level_od > 2 * cal.level_od
    assert _found(segment_nuclei(rgb, MPP, HDAB, p, cal).nuclei, centres).all()
    lost = ~_found(segment_nuclei(rgb, MPP, HDAB, p, plain).nuclei, centres)
    assert lost[~dark].mean() > 0.5 and not lost[dark].any()


def test_thresholds_without_and_with_a_level() -> None:
    p = NucleusParams(threshold_od=0.1, peak_threshold_od=0.25, threshold_rel=0.75, peak_rel=1.2)
    assert p.thresholds(None) == (0.1, 0.25)
    assert p.thresholds(0.0) == (0.1, 0.25)  # a calibration that measured nothing
    assert p.thresholds(0.4) == pytest.approx((0.3, 0.48))
    assert p.thresholds(0.01) == (p.floor_od, p.floor_od)


def test_calibration_is_the_slides_whatever_the_region(synthetic_he: Path) -> None:
    """A region of the slide and the whole slide use one calibration: the region's cells
    are exactly the whole-slide run's cells there."""
    from napari_gbm.detect.cells import analyze_cells
    from napari_gbm.detect.region import analyze_region
    from napari_gbm.wsi.tiling import TilingParams, make_tile_grid
    from napari_gbm.wsi.tissue import detect_tissue

    slide = Slide(synthetic_he)
    params = CellParams(texture=False)
    a = calibrate_slide(slide, "he", params.nucleus)
    b = calibrate_slide(slide, "he", params.nucleus)
    assert a == b and a.level_od > 0 and a.source == "sample"
    assert a.details["sample_tiles"] >= 4
    box = (600.0, 500.0, 700.0, 600.0)
    region = analyze_region(slide, box, params, outlines=False)
    grid = make_tile_grid(
        slide, detect_tissue(slide), TilingParams(tile_size_px=1024, overlap_px=128)
    )
    whole = analyze_cells(slide, grid, params)
    x, y = whole.centroid_x_px, whole.centroid_y_px
    inside = whole[(x >= 600) & (x < 1300) & (y >= 500) & (y < 1100)]
    assert len(region.cells) == len(inside) > 50
    np.testing.assert_allclose(
        np.sort(region.cells.nucleus_area_um2.to_numpy()),
        np.sort(inside.nucleus_area_um2.to_numpy()),
        rtol=1e-5,
    )
    # calibration off: the preset on 255 white, fixed thresholds
    off = CellParams(calibration=CalibrationParams(enabled=False))
    assert slide_calibration(slide, off, target_mpp=0.5) is None


def test_summary_carries_the_calibration_and_gives_it_back(
    synthetic_ki67: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """analyze stores the calibration; --calibration reuses it as is for another image;
    a bad file is a clear error with exit 2."""
    out = tmp_path / "a"
    assert main(["analyze", str(synthetic_ki67), "--stain", "hdab", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    cal = SlideCalibration.from_dict(summary["calibration"])
    assert cal.source == "sample" and cal.level_od > 0
    assert summary["parameters"]["stain_vectors"] == cal.stains.to_dict()
    import pyarrow.parquet as pq

    from napari_gbm.io import METADATA_KEY

    pmeta = json.loads(pq.read_schema(out / "cells.parquet").metadata[METADATA_KEY])
    assert SlideCalibration.from_dict(pmeta["calibration"]) == cal

    # a camera field (plain PNG) analysed with the slide's calibration
    crop = Slide(synthetic_ki67).read_region((800, 600), 0, (600, 600))
    Image.fromarray(crop).save(tmp_path / "field.png")
    out2 = tmp_path / "b"
    args = ["analyze", str(tmp_path / "field.png"), "--mpp", "0.5", "--stain", "hdab"]
    assert main([*args, "--out", str(out2), "--calibration", str(out / "summary.json")]) == 0
    used = json.loads((out2 / "summary.json").read_text())["calibration"]
    assert SlideCalibration.from_dict(used) == cal and used["source"] == "file"
    assert load_calibration(out / "summary.json") == cal

    out3 = tmp_path / "c"
    assert main([*args, "--out", str(out3), "--no-calibration"]) == 0
    assert json.loads((out3 / "summary.json").read_text())["calibration"] is None
    capsys.readouterr()
    assert main([*args, "--out", str(out3), "--calibration", str(out3 / "summary.json")]) == 2
    assert "ran without calibration" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert (
        main([*args, "--out", str(tmp_path / "d"), "--calibration", str(tmp_path / "bad.json")])
        == 2
    )
    assert "not a JSON calibration" in capsys.readouterr().err
    (tmp_path / "other.json").write_text('{"level_od": 0.2}')
    assert (
        main([*args, "--out", str(tmp_path / "d"), "--calibration", str(tmp_path / "other.json")])
        == 2
    )
    assert "stain_vectors" in capsys.readouterr().err
    assert not (tmp_path / "d" / "summary.json").exists()


def test_cohort_parameters_carry_a_fixed_calibration() -> None:
    """A calibration given for a cohort travels to the workers in the parameter dict."""
    from napari_gbm.cohort import params_from_dict
    from napari_gbm.pipeline import AnalyzeParams

    rgb, _, _ = _field(0.3, white=(240, 236, 230))
    cal = calibrate_pixels([rgb], MPP, HE, NucleusParams())
    params = AnalyzeParams(fixed_calibration=cal.to_dict())
    back = params_from_dict(json.loads(json.dumps(params.to_dict())))
    assert SlideCalibration.from_dict(back.fixed_calibration) == cal
    off = AnalyzeParams(cells=CellParams(calibration=CalibrationParams(enabled=False)))
    assert params_from_dict(off.to_dict()).cells.calibration.enabled is False


def test_an_analysis_from_before_calibration_still_opens(
    synthetic_he: Path, tmp_path: Path
) -> None:
    """A folder written before calibration existed (no "calibration" in summary.json)
    opens in napari with its cells."""
    from napari_gbm._napari._reader import read_analysis_folder

    out = tmp_path / "old"
    crop = Slide(synthetic_he).read_region((600, 400), 0, (500, 500))
    Image.fromarray(crop).save(tmp_path / "field.png")
    assert main(["analyze", str(tmp_path / "field.png"), "--mpp", "0.5", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    del summary["calibration"]
    del summary["parameters"]["cells"]["calibration"]
    (out / "summary.json").write_text(json.dumps(summary))
    layers = read_analysis_folder(str(out))
    kinds = {meta.get("metadata", {}).get("napari_gbm", {}).get("kind") for _, meta, _ in layers}
    assert "cells" in kinds, kinds
    cells = next(d for d, m, t in layers if t == "points")
    assert len(cells) == summary["n_cells"] > 10


def test_an_analysis_folder_finds_its_slide_from_anywhere(
    synthetic_he: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Analysed with a relative path, opened from another working directory, and after
    moving slide and results together: the folder still finds its slide (and not another
    file of the same name and a different size)."""
    import shutil

    from napari_gbm._napari._reader import read_analysis_folder
    from napari_gbm.outputs import find_analysed_slide

    project = tmp_path / "project"
    (project / "slides").mkdir(parents=True)
    crop = Slide(synthetic_he).read_region((600, 400), 0, (400, 400))
    Image.fromarray(crop).save(project / "slides" / "field.png")
    monkeypatch.chdir(project)
    args = ["analyze", "slides/field.png", "--mpp", "0.5", "--out", "results/field"]
    assert main(args) == 0
    summary = json.loads((project / "results/field/summary.json").read_text())
    assert Path(summary["input"]["path"]).is_absolute()
    monkeypatch.chdir(tmp_path)  # napari started elsewhere
    kinds = [t for _, _, t in read_analysis_folder(str(project / "results/field"))]
    assert kinds[0] == "image"  # the slide comes first
    moved = tmp_path / "moved"
    shutil.move(project, moved)
    folder = moved / "results/field"
    assert find_analysed_slide(folder, summary) == (moved / "slides/field.png").resolve()
    # a different file under the same name is not taken for the slide
    (moved / "slides/field.png").unlink()
    Image.fromarray(crop[:200]).save(moved / "results/field.png")
    assert find_analysed_slide(folder, summary) is None
    kinds = [t for _, _, t in read_analysis_folder(str(folder))]
    assert "image" not in kinds[:1] and "points" in kinds
