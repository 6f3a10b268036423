"""Tissue detection: synthetic ground truth (H&E and IHC colours, black border, debris),
exact tile fractions, and the three real slides."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_gbm import Slide
from napari_gbm.wsi.tissue import TissueMask, TissueParams, detect_tissue, tissue_mask_from_rgb

PIXEL_UM = 2.0


def _scene(
    tissue_rgb: tuple[int, int, int], nuclei_rgb: tuple[int, int, int], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """800 x 600 px at 2 µm/px: glass, a tissue disc with nuclei, a black border strip on
    the left, and three small debris specks. Returns the image and the true tissue."""
    rng = np.random.default_rng(seed)
    h, w = 600, 800
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.float32)
    img[:] = (244, 244, 246)
    truth = (yy - 300) ** 2 + (xx - 420) ** 2 < 200**2
    img[truth] = tissue_rgb
    # nuclei: small dark dots inside the tissue
    for cy, cx in rng.integers([120, 240], [480, 600], size=(400, 2)):
        if truth[cy, cx]:
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < 9] = nuclei_rgb
    img[:, :25] = (15, 15, 15)  # black scanner border, 50 µm wide
    for cy, cx in [(50, 700), (560, 100), (80, 120)]:  # debris, ~50 µm² each
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 12] = (90, 60, 110)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), truth


@pytest.mark.parametrize(
    "stain, tissue_rgb, nuclei_rgb",
    [
        ("H&E", (225, 160, 205), (90, 60, 140)),
        ("pale H&E", (236, 205, 225), (120, 90, 160)),
        ("IHC hematoxylin + DAB", (205, 205, 222), (120, 80, 40)),
    ],
)
def test_mask_matches_ground_truth(
    stain: str, tissue_rgb: tuple[int, int, int], nuclei_rgb: tuple[int, int, int]
) -> None:
    img, truth = _scene(tissue_rgb, nuclei_rgb)
    mask, _ = tissue_mask_from_rgb(img, PIXEL_UM)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.97, f"{stain}: IoU {iou:.3f}"
    assert not mask[:, :25].any(), "black border taken for tissue"
    for cy, cx in [(50, 700), (560, 100), (80, 120)]:
        assert not mask[cy, cx], "debris taken for tissue"


def test_holes_filled_and_small_objects_dropped_by_area_in_um2() -> None:
    img = np.full((400, 400, 3), 245, np.uint8)
    img[100:300, 100:300] = (210, 140, 190)
    img[190:200, 190:200] = 245  # a 20 x 20 µm hole (400 µm²): filled
    img[20:40, 20:40] = (210, 140, 190)  # 40 x 40 µm = 1600 µm² fragment: dropped
    img[20:80, 300:360] = (210, 140, 190)  # 120 x 120 µm = 14400 µm²: kept
    mask, _ = tissue_mask_from_rgb(img, PIXEL_UM, TissueParams(smooth_um=0))
    assert mask[195, 195]
    assert not mask[30, 30]
    assert mask[50, 330]
    # the same fragment at a finer scale (0.5 µm/px: 100 µm²) is debris too, and at a
    # coarser scale (10 µm/px: 40000 µm²) it is tissue: the cut is in µm², not pixels
    mask_coarse, _ = tissue_mask_from_rgb(img, 10.0, TissueParams(smooth_um=0))
    assert mask_coarse[30, 30]


def test_threshold_stays_in_bounds_on_all_tissue() -> None:
    rng = np.random.default_rng(3)
    img = np.clip(rng.normal((200, 120, 180), 25, (300, 300, 3)), 0, 255).astype(np.uint8)
    mask, thr = tissue_mask_from_rgb(img, PIXEL_UM)
    assert TissueParams().od_bounds[0] <= thr <= TissueParams().od_bounds[1]
    assert mask.mean() > 0.99


def test_blank_glass_gives_empty_mask() -> None:
    rng = np.random.default_rng(4)
    img = np.clip(rng.normal(245, 2, (300, 300, 3)), 0, 255).astype(np.uint8)
    mask, _ = tissue_mask_from_rgb(img, PIXEL_UM)
    assert not mask.any()


def _mask_obj(mask: np.ndarray, downsample: float) -> TissueMask:
    h, w = mask.shape
    return TissueMask(mask, downsample, 0.5, False, 0.1, (int(w * downsample), int(h * downsample)))


def test_fraction_in_boxes_exact_against_brute_force() -> None:
    rng = np.random.default_rng(5)
    mask = rng.random((40, 50)) > 0.6
    tm = _mask_obj(mask, 4.0)
    full = np.kron(mask, np.ones((4, 4), bool))  # level-0 mask, 200 x 160
    boxes = []
    expected = []
    for _ in range(200):
        x0, y0 = rng.integers(0, 190), rng.integers(0, 150)
        x1, y1 = x0 + rng.integers(1, 200 - x0), y0 + rng.integers(1, 160 - y0)
        boxes.append((x0, y0, x1, y1))
        expected.append(full[y0:y1, x0:x1].mean())
    np.testing.assert_allclose(tm.fraction_in_boxes(np.array(boxes)), expected, atol=1e-9)


def test_fraction_outside_slide_counts_as_no_tissue() -> None:
    tm = _mask_obj(np.ones((10, 10), bool), 2.0)
    # half of this box lies beyond the right edge (x >= 20)
    assert tm.fraction_in_boxes(np.array([[10, 0, 30, 20]]))[0] == pytest.approx(0.5)
    assert tm.tissue_fraction == 1.0
    assert tm.tissue_area_um2 == pytest.approx(100 * (2.0 * 0.5) ** 2)


@pytest.mark.parametrize(
    "which, mpp, low, high",
    [
        ("cmu", None, 0.30, 0.48),
        ("tcga", 0.25, 0.55, 0.72),
        ("kidney", None, 0.002, 0.01),
    ],
)
def test_real_slides_tissue_fraction(
    which: str,
    mpp: float | None,
    low: float,
    high: float,
    cmu_path: Path,
    tcga_path: Path,
    kidney_path: Path,
) -> None:
    path = {"cmu": cmu_path, "tcga": tcga_path, "kidney": kidney_path}[which]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tm = detect_tissue(Slide(path, mpp=mpp))
    assert low < tm.tissue_fraction < high
    assert tm.mpp_assumed == (Slide(path, mpp=mpp).mpp is None)


def test_unknown_mpp_warns_and_is_flagged(kidney_path: Path) -> None:
    with pytest.warns(UserWarning, match="pixel size"):
        tm = detect_tissue(Slide(kidney_path))
    assert tm.mpp_assumed and tm.summary()["mpp_assumed"]


def test_reads_a_low_resolution_level_of_a_pyramid(tmp_path: Path) -> None:
    """On a pyramid, detection reads a reduced level, not level 0."""
    from napari_gbm.wsi import _backends

    base = np.full((4096, 4096, 3), 244, np.uint8)
    base[1000:3000, 1000:3000] = (210, 140, 190)
    p = tmp_path / "pyr.tif"
    with tifffile.TiffWriter(p) as tw:
        for i, ds in enumerate((1, 4, 16)):
            tw.write(
                base[::ds, ::ds],
                tile=(256, 256),
                photometric="rgb",
                compression="zlib",
                subfiletype=0 if i == 0 else 1,
                resolution=(1e4 / (0.5 * ds), 1e4 / (0.5 * ds)),
                resolutionunit="CENTIMETER",
            )
    slide = Slide(p)
    assert slide.level_count == 3
    calls: list[int] = []
    orig = _backends.OpenSlideBackend.read_region

    def spy(self: object, loc: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        calls.append(level)
        return orig(self, loc, level, size)  # type: ignore[arg-type]

    _backends.OpenSlideBackend.read_region = spy  # type: ignore[method-assign]
    try:
        tm = detect_tissue(slide)
    finally:
        _backends.OpenSlideBackend.read_region = orig  # type: ignore[method-assign]
    assert calls and 0 not in calls
    assert tm.tissue_fraction == pytest.approx(2000 * 2000 / 4096**2, rel=0.03)


@pytest.mark.parametrize("which", ["synthetic_he", "synthetic_ki67"])
def test_synthetic_slides_against_their_drawn_tissue(
    which: str, request: pytest.FixtureRequest
) -> None:
    """H&E and Ki-67 variants of the same synthetic GBM: the mask matches the drawn
    tissue (necrosis included, debris and the black edge strip excluded)."""
    import json

    from PIL import Image

    path: Path = request.getfixturevalue(which)
    truth = json.loads(path.with_name(path.stem + ".truth.json").read_text())
    regions = np.asarray(Image.open(path.with_name(path.stem + ".regions.png")))
    tm = detect_tissue(Slide(path))
    assert tm.tissue_fraction == pytest.approx(truth["tissue_fraction"], abs=0.02)
    # compare on the truth grid: mask pixels sampled at region-pixel centres
    ds = truth["region_downsample"]
    ys = ((np.arange(regions.shape[0]) + 0.5) * ds / tm.downsample).astype(int)
    xs = ((np.arange(regions.shape[1]) + 0.5) * ds / tm.downsample).astype(int)
    ours = tm.mask[
        np.ix_(np.minimum(ys, tm.mask.shape[0] - 1), np.minimum(xs, tm.mask.shape[1] - 1))
    ]
    drawn = regions > 0
    iou = (ours & drawn).sum() / (ours | drawn).sum()
    assert iou > 0.93
    codes = {name: int(code) for code, name in truth["region_codes"].items()}
    necrosis = regions == codes["necrosis"]
    assert necrosis.sum() > 20
    assert ours[necrosis].mean() > 0.95  # pale necrosis is tissue
    # debris specks and the black edge strip are not
    for speck in truth["debris"]:
        r, c = int(speck["y_px"] / tm.downsample), int(speck["x_px"] / tm.downsample)
        assert not tm.mask[r, c]
    strip = max(1, int(truth["border"]["width_px"] / tm.downsample))
    edge = {
        "right": tm.mask[:, -strip:],
        "left": tm.mask[:, :strip],
        "top": tm.mask[:strip],
        "bottom": tm.mask[-strip:],
    }[truth["border"]["side"]]
    assert not edge.any()


def test_sampled_on_a_thumbnail_grid() -> None:
    mask = np.zeros((4, 4), bool)
    mask[:2, :] = True  # top half of an 8 x 8 level-0 slide (mask pixel = 2 px)
    tm = TissueMask(mask, 2.0, 0.5, False, 0.1, (8, 8))
    np.testing.assert_array_equal(tm.sampled(2, 2), [[True, True], [False, False]])
    thumb = tm.sampled(3, 5)  # non-square grid: rows by the slide's height
    assert thumb.shape == (3, 5)
    np.testing.assert_array_equal(thumb[:, 0], [True, False, False])


def test_on_grid_against_the_level0_mask() -> None:
    """A window of a coarser grid takes the mask pixel under each grid pixel's centre
    (brute force on the level-0 mask); off the slide it is False."""
    rng = np.random.default_rng(3)
    mask = rng.random((40, 50)) > 0.5
    tm = _mask_obj(mask, 4.0)
    full = np.kron(mask, np.ones((4, 4), bool))  # level-0 mask, 200 x 160
    for ds in (2.0, 3.0, 5.0):
        for x0, y0 in ((0, 0), (7, 3), (-4, -2), (30, 40)):
            got = tm.on_grid(x0, y0, (12, 15), ds)
            cy = np.floor((np.arange(12) + y0 + 0.5) * ds).astype(int)
            cx = np.floor((np.arange(15) + x0 + 0.5) * ds).astype(int)
            inside = (cy[:, None] >= 0) & (cy[:, None] < 160) & (cx >= 0) & (cx < 200)
            want = np.where(inside, full[np.clip(cy, 0, 159)][:, np.clip(cx, 0, 199)], False)
            np.testing.assert_array_equal(got, want, err_msg=f"ds {ds}, at {x0}, {y0}")
