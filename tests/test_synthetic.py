"""Tests of the synthetic glioblastoma slide generator (napari_gbm.synthetic)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

openslide = pytest.importorskip("openslide")

from napari_gbm.synthetic import (  # noqa: E402
    REGION_NAMES,
    SyntheticSlideInfo,
    make_synthetic_slide,
)

MPP = 0.5


def _read_level(path, level: int = 0) -> np.ndarray:
    with openslide.OpenSlide(str(path)) as s:
        w, h = s.level_dimensions[level]
        return np.asarray(s.read_region((0, 0), level, (w, h)).convert("RGB"))


def _od(img: np.ndarray) -> np.ndarray:
    """H, DAB OD via skimage's colour deconvolution with the standard H-DAB matrix.

    ``separate_stains`` divides log(I) by log(1e-6), i.e. returns OD10 / 6: scale back.
    """
    from skimage.color import hdx_from_rgb, separate_stains

    return separate_stains(img, hdx_from_rgb) * 6.0


def _ellipse_mean(img_plane: np.ndarray, row, shrink: float = 0.8) -> float:
    """Mean of a plane inside the truth ellipse of a nucleus (shrunk, to skip JPEG edges)."""
    a = row.major_axis_um / 2 / MPP * shrink
    b = row.minor_axis_um / 2 / MPP * shrink
    cx, cy, th = row.centroid_x_px, row.centroid_y_px, row.orientation_rad
    r = int(np.ceil(a)) + 1
    y0, x0 = max(0, int(cy) - r), max(0, int(cx) - r)
    patch = img_plane[y0 : int(cy) + r + 1, x0 : int(cx) + r + 1]
    yy, xx = np.mgrid[0 : patch.shape[0], 0 : patch.shape[1]]
    dx, dy = xx + x0 + 0.5 - cx, yy + y0 + 0.5 - cy
    u = dx * np.cos(th) + dy * np.sin(th)
    v = -dx * np.sin(th) + dy * np.cos(th)
    m = (u / a) ** 2 + (v / b) ** 2 < 1
    return float(patch[m].mean()) if m.any() else np.nan


@pytest.fixture(scope="module")
def he_slide(tmp_path_factory) -> SyntheticSlideInfo:
    out = tmp_path_factory.mktemp("he") / "gbm_he.tif"
    return make_synthetic_slide(out, size_px=(3072, 3072), stain="he", seed=1, mpp=MPP)


@pytest.fixture(scope="module")
def hdab_slide(tmp_path_factory) -> SyntheticSlideInfo:
    out = tmp_path_factory.mktemp("hdab") / "gbm_ki67.tiff"
    return make_synthetic_slide(out, size_px=(2560, 2048), stain="hdab", seed=2, mpp=MPP)


def test_openslide_reads_pyramid(he_slide):
    with openslide.OpenSlide(str(he_slide.path)) as s:
        assert s.properties["openslide.vendor"] == "aperio"
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(MPP, abs=1e-6)
        assert float(s.properties["openslide.mpp-y"]) == pytest.approx(MPP, abs=1e-6)
        assert float(s.properties["openslide.objective-power"]) == pytest.approx(20)
        assert s.dimensions == (3072, 3072)
        assert s.level_count > 1
        assert s.level_dimensions == he_slide.level_dimensions
        assert s.level_downsamples[1] == pytest.approx(4.0)
        assert "thumbnail" in s.associated_images
    for p in (he_slide.nuclei_path, he_slide.regions_path, he_slide.truth_path):
        assert p.exists()
    assert he_slide.nuclei_path.name == "gbm_he.nuclei.parquet"


def test_pyramid_level1_matches_downsampled_level0(he_slide):
    l0 = _read_level(he_slide.path, 0).astype(np.float32)
    l1 = _read_level(he_slide.path, 1).astype(np.float32)
    h, w = l1.shape[:2]
    down = l0[: h * 4, : w * 4].reshape(h, 4, w, 4, 3).mean(axis=(1, 3))
    assert np.abs(down - l1).mean() < 4.0


def test_three_level_pyramid(tmp_path):
    info = make_synthetic_slide(tmp_path / "wide.tif", size_px=(4608, 640), seed=4)
    assert info.level_dimensions == ((4608, 640), (1152, 160), (288, 40))
    with openslide.OpenSlide(str(info.path)) as s:
        assert s.level_count == 3
        assert s.level_downsamples == pytest.approx((1.0, 4.0, 16.0))
    l1 = _read_level(info.path, 1).astype(np.float32)
    l2 = _read_level(info.path, 2).astype(np.float32)
    down = l1.reshape(40, 4, 288, 4, 3).mean(axis=(1, 3))
    assert np.abs(down - l2).mean() < 4.0


def test_truth_table_schema_and_bounds(he_slide):
    df = pd.read_parquet(he_slide.nuclei_path)
    assert list(df.columns) == [
        "nucleus_id",
        "centroid_x_px",
        "centroid_y_px",
        "area_px",
        "area_um2",
        "major_axis_um",
        "minor_axis_um",
        "orientation_rad",
        "region",
        "dab_grade",
        "dab_od_mean",
    ]
    assert df["nucleus_id"].dtype == np.int64
    assert (df["nucleus_id"].to_numpy() == np.arange(1, len(df) + 1)).all()
    for c in ("centroid_x_px", "centroid_y_px", "area_px", "area_um2", "major_axis_um"):
        assert df[c].dtype == np.float64
    assert df["dab_grade"].dtype == np.int8
    assert df["dab_od_mean"].dtype == np.float32
    assert isinstance(df["region"].dtype, pd.CategoricalDtype)
    assert set(df["region"].cat.categories) == set(REGION_NAMES)
    w, h = he_slide.size_px
    assert df["centroid_x_px"].between(0, w).all() and df["centroid_y_px"].between(0, h).all()
    assert (df["area_um2"] == df["area_px"] * MPP**2).all()
    assert df["area_um2"].between(2, 400).all()
    assert (df["major_axis_um"] >= df["minor_axis_um"]).all()
    # H&E: no DAB anywhere.
    assert (df["dab_grade"] == 0).all() and (df["dab_od_mean"] == 0).all()
    assert len(df) == he_slide.n_nuclei
    # No nucleus appears twice (block ownership across tiles).
    assert not df.duplicated(["centroid_x_px", "centroid_y_px"]).any()


def test_regions_present_and_densities(he_slide):
    doc = json.loads(he_slide.truth_path.read_text())
    assert doc["region_codes"] == {str(i): n for i, n in enumerate(REGION_NAMES)}
    assert 0.45 <= doc["tissue_fraction"] <= 0.75
    regions = doc["regions"]
    for name in REGION_NAMES[1:]:
        assert regions[name]["area_mm2"] > 0, name
        assert regions[name]["nucleus_count"] > 0, name
    ranges = {
        "cellular_tumor": (3800, 6000),
        "pseudopalisade": (5500, 10000),
        "infiltrating": (1300, 2800),
        "normal_brain": (700, 1600),
        "necrosis": (0, 600),
    }
    for name, (lo, hi) in ranges.items():
        assert lo <= regions[name]["density_per_mm2"] <= hi, (name, regions[name])
    df = pd.read_parquet(he_slide.nuclei_path)
    counts = df["region"].value_counts()
    for name in REGION_NAMES:
        assert regions[name]["nucleus_count"] == counts.get(name, 0)
    # The region map is the documented low-resolution label image.
    from skimage.io import imread

    codes = imread(he_slide.regions_path)
    ds = doc["region_downsample"]
    assert codes.shape == (-(-3072 // ds), -(-3072 // ds))
    assert set(np.unique(codes)) == set(range(len(REGION_NAMES)))
    assert len(doc["debris"]) > 0 and doc["border"]["width_px"] > 0
    assert len(doc["stain_vectors"]["rows"]) == 3


def test_nuclei_are_where_truth_says(he_slide):
    img = _read_level(he_slide.path, 0)
    hema = _od(img)[..., 0]
    df = pd.read_parquet(he_slide.nuclei_path)
    df = df[df["area_um2"] > 12]
    cx = df["centroid_x_px"].astype(int).to_numpy()
    cy = df["centroid_y_px"].astype(int).to_numpy()
    at_nuclei = np.median(hema[cy, cx])
    # Random tissue pixels far from every truth centroid.
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 3072, size=(20000, 2))
    d, _ = cKDTree(np.c_[df["centroid_x_px"], df["centroid_y_px"]]).query(pts)
    far = pts[d > 14 / MPP].astype(int)
    vals = hema[far[:, 1], far[:, 0]]
    tissue = vals[img[far[:, 1], far[:, 0]].mean(axis=1) < 225]
    assert tissue.size > 100
    assert at_nuclei > 0.4
    assert at_nuclei > 3 * np.median(tissue)


def test_hdab_grades_measured_through_openslide(hdab_slide):
    df = pd.read_parquet(hdab_slide.nuclei_path)
    assert set(df["dab_grade"].unique()) == {0, 1, 2, 3}
    # The truth value itself lies in its grade's band for almost every nucleus.
    truth_grade = np.digitize(df["dab_od_mean"], [0.2, 0.4, 0.6])
    assert (truth_grade == df["dab_grade"]).mean() >= 0.98
    dab = _od(_read_level(hdab_slide.path, 0))[..., 1]
    sub = df.sample(n=min(len(df), 1500), random_state=0)
    measured = np.array([_ellipse_mean(dab, r) for r in sub.itertuples()])
    grade = np.digitize(measured, [0.2, 0.4, 0.6])
    assert (grade == sub["dab_grade"].to_numpy()).mean() >= 0.95
    for g in range(4):
        sel = sub["dab_grade"].to_numpy() == g
        assert abs(np.median(measured[sel]) - np.median(sub["dab_od_mean"][sel])) < 0.08
    # Per-region positive fractions in truth.json equal the table's.
    doc = json.loads(hdab_slide.truth_path.read_text())
    for name, grp in df.groupby("region", observed=True):
        frac = (grp["dab_grade"] >= 1).mean()
        assert doc["regions"][name]["positive_fraction"] == pytest.approx(frac)
        counts = np.bincount(grp["dab_grade"], minlength=4).tolist()
        assert doc["regions"][name]["grade_counts"] == counts
    tumour = doc["regions"]["cellular_tumor"]["positive_fraction"]
    assert 0.2 < tumour < 0.4
    assert doc["regions"]["normal_brain"]["positive_fraction"] < 0.05


def test_deterministic_by_seed(tmp_path):
    a = make_synthetic_slide(tmp_path / "a.tif", size_px=(1024, 768), seed=5, stain="hdab")
    b = make_synthetic_slide(tmp_path / "b.tif", size_px=(1024, 768), seed=5, stain="hdab")
    c = make_synthetic_slide(tmp_path / "c.tif", size_px=(1024, 768), seed=6, stain="hdab")
    assert np.array_equal(_read_level(a.path), _read_level(b.path))
    assert not np.array_equal(_read_level(a.path), _read_level(c.path))
    da, db = pd.read_parquet(a.nuclei_path), pd.read_parquet(b.nuclei_path)
    pd.testing.assert_frame_equal(da, db)
    assert a.nuclei_path.read_bytes() == b.nuclei_path.read_bytes()
    assert a.regions_path.read_bytes() == b.regions_path.read_bytes()
    assert len(da) != len(pd.read_parquet(c.nuclei_path)) or not da.equals(
        pd.read_parquet(c.nuclei_path)
    )


def test_tile_size_does_not_change_content(tmp_path):
    a = make_synthetic_slide(tmp_path / "a.tif", size_px=(768, 640), seed=9, tile_px=256)
    b = make_synthetic_slide(tmp_path / "b.tif", size_px=(768, 640), seed=9, tile_px=512)
    pd.testing.assert_frame_equal(pd.read_parquet(a.nuclei_path), pd.read_parquet(b.nuclei_path))
    diff = np.abs(_read_level(a.path).astype(int) - _read_level(b.path).astype(int))
    assert diff.mean() < 1.0  # identical before JPEG; block alignment differs


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size_px": (256, 1024)}, "size_px"),
        ({"stain": "pas"}, "stain"),
        ({"mpp": 0}, "mpp"),
        ({"mpp": -1.0}, "mpp"),
        ({"tile_px": 100}, "tile_px"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_slide(tmp_path / "x.tif", **kwargs)
    assert os.listdir(tmp_path) == []


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match=r"\.tif"):
        make_synthetic_slide(tmp_path / "x.png", size_px=(512, 512))
    with pytest.raises(ValueError, match="parent directory"):
        make_synthetic_slide(tmp_path / "missing" / "x.tif", size_px=(512, 512))


def test_interrupted_run_leaves_nothing(tmp_path):
    calls = []

    def progress(f: float) -> None:
        calls.append(f)
        if len(calls) == 2:
            raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        make_synthetic_slide(tmp_path / "x.tif", size_px=(2048, 1024), progress=progress)
    assert os.listdir(tmp_path) == []


def test_progress_reaches_one(tmp_path):
    seen: list[float] = []
    make_synthetic_slide(tmp_path / "p.tif", size_px=(1024, 1024), progress=seen.append)
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 2


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_memory_does_not_hold_level0(tmp_path):
    """Peak RSS of a 4096 x 2048 run stays far below a full level-0 array plus overhead.

    VmHWM is read in the child: ru_maxrss would include the forked pytest parent.
    """
    code = (
        "from napari_gbm.synthetic import make_synthetic_slide\n"
        f"make_synthetic_slide({str(tmp_path / 'm.tif')!r}, size_px=(4096, 2048))\n"
        "print([ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0])\n"
    )
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(src), env.get("PYTHONPATH", "")])
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    peak_mb = int(res.stdout.split()[-2]) / 1024
    assert peak_mb < 600, peak_mb
