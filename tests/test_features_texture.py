"""Haralick texture features: HistomicsTK's reference table, scikit-image's GLCM, a
brute-force NumPy reference written here from the definitions, and properties."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from skimage.feature import graycomatrix, graycoprops
from skimage.io import imread

from napari_gbm.features.texture import (
    DEFAULT_OFFSETS,
    HARALICK_FEATURES,
    haralick_columns,
    haralick_features,
)

EASY1 = Path(__file__).resolve().parent / "data" / "histomicstk_easy1"
HTK_NAMES = {
    "asm": "ASM",
    "contrast": "Contrast",
    "correlation": "Correlation",
    "sum_of_squares": "SumOfSquares",
    "idm": "IDM",
    "sum_average": "SumAverage",
    "sum_variance": "SumVariance",
    "sum_entropy": "SumEntropy",
    "entropy": "Entropy",
    "difference_variance": "DifferenceVariance",
    "difference_entropy": "DifferenceEntropy",
    "imc1": "IMC1",
    "imc2": "IMC2",
}
LOG_GUARD = 1e-5
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- reference
def _reference_glcm(win, dr, dc, levels, symmetric, normalize):
    h, w = win.shape
    rows = np.arange(max(0, -dr), h - max(0, dr))
    cols = np.arange(max(0, -dc), w - max(0, dc))
    g = np.zeros((levels, levels))
    if rows.size and cols.size:
        a = win[np.ix_(rows, cols)].ravel()
        b = win[np.ix_(rows + dr, cols + dc)].ravel()
        np.add.at(g, (a, b), 1.0)
    if symmetric:
        g = g + g.T
    if normalize and g.sum() > 0:
        g = g / g.sum()
    return g


def _entropy(p):
    return -np.sum(p * np.log2(p + LOG_GUARD))


def _reference_features(g):
    n = g.shape[0]
    i, j = np.indices(g.shape)
    k = np.arange(n)
    px, py = g.sum(axis=1), g.sum(axis=0)
    p_sum = np.bincount((i + j).ravel(), weights=g.ravel(), minlength=2 * n - 1)
    p_diff = np.bincount(np.abs(i - j).ravel(), weights=g.ravel(), minlength=n)
    mu = np.sum(k * px)
    var = np.sum(k**2 * px) - mu**2
    ks = np.arange(2 * n - 1)
    sum_avg = np.sum(ks * p_sum)
    pxy = np.outer(px, py)
    hxy = _entropy(g)
    hxy1 = -np.sum(g * np.log2(pxy + LOG_GUARD))
    return [
        np.sum(g**2),
        np.sum(k**2 * p_diff),
        (np.sum(i * j * g) - mu**2) / var,
        var,
        np.sum(g / (1.0 + (i - j) ** 2)),
        sum_avg,
        np.sum(ks**2 * p_sum) - sum_avg**2,
        _entropy(p_sum),
        hxy,
        np.var(p_diff),
        _entropy(p_diff),
        (hxy - hxy1) / max(_entropy(px), _entropy(py)),
        np.sqrt(max(0.0, 1.0 - np.exp(-2.0 * (_entropy(pxy) - hxy)))),
    ]


def reference(
    labels,
    image,
    levels=32,
    grey_limits=(0, 255),
    offsets=DEFAULT_OFFSETS,
    symmetric=True,
    normalize=True,
):
    """Per object, straight from the definitions: slow, obviously HistomicsTK's recipe."""
    lo, hi = grey_limits
    q = np.round((image.astype(float) - lo) / (hi - lo) * (levels - 1))
    q = np.clip(q, 0, levels - 1).astype(int)
    rows = []
    values = np.unique(labels[labels > 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        for value in values:
            rr, cc = np.nonzero(labels == value)
            win = q[rr.min() : rr.max() + 2, cc.min() : cc.max() + 2]
            per_offset = np.array(
                [
                    _reference_features(_reference_glcm(win, dr, dc, levels, symmetric, normalize))
                    for dr, dc in offsets
                ]
            )
            row = np.empty(2 * len(HARALICK_FEATURES))
            row[0::2] = per_offset.mean(axis=0)
            row[1::2] = np.ptp(per_offset, axis=0)
            rows.append(row)
    out = pd.DataFrame(np.array(rows).reshape(-1, 26), columns=haralick_columns())
    out.insert(0, "label", values.astype(np.int64))
    return out


def assert_frames_close(got, want, rtol=1e-9, atol=1e-12):
    assert list(got.columns) == list(want.columns)
    np.testing.assert_array_equal(got["label"].to_numpy(), want["label"].to_numpy())
    for col in got.columns[1:]:
        # imc2 = sqrt(1 - exp(-2 x)) with x ~ 0 (independent p_x, p_y) is sqrt of rounding
        # noise: ~1e-8 apart in any two summation orders, HistomicsTK's included
        col_atol = 1e-7 if "imc2" in col else atol
        np.testing.assert_allclose(
            got[col].to_numpy(),
            want[col].to_numpy(),
            rtol=rtol,
            atol=col_atol,
            equal_nan=True,
            err_msg=col,
        )


# --------------------------------------------------------------------------- HistomicsTK
def test_matches_histomicstk_easy1_reference_table() -> None:
    labels = imread(EASY1 / "Easy1_nuclei_labels_htk1.4.0_kofahi.png")
    image = imread(EASY1 / "Easy1_hematoxylin_channel_htk1.4.0.png")
    want = pd.read_csv(EASY1 / "Easy1_nuclei_haralick_features.csv")
    got = haralick_features(labels, image, levels=32, grey_limits=(0, 255))
    assert len(got) == len(want) == 64
    np.testing.assert_array_equal(got["label"], np.arange(1, 65))
    errors = {}
    for name, htk in HTK_NAMES.items():
        for stat, htk_stat in (("mean", "Mean"), ("range", "Range")):
            a = got[f"haralick_{name}_{stat}"].to_numpy()
            b = want[f"Haralick.{htk}.{htk_stat}"].to_numpy()
            errors[f"{name}_{stat}"] = float(np.max(np.abs(a - b)))
            np.testing.assert_allclose(a, b, atol=1e-2)  # HistomicsTK's own tolerance
            # same definitions: agreement to rounding, not just to the tolerance
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert max(errors.values()) < 1e-12, errors


def test_matches_bruteforce_reference_on_easy1_crop() -> None:
    labels = imread(EASY1 / "Easy1_nuclei_labels_htk1.4.0_kofahi.png")[:300, :400]
    image = imread(EASY1 / "Easy1_hematoxylin_channel_htk1.4.0.png")[:300, :400]
    offsets = ((0, 2), (2, 0), (-1, 3))
    got = haralick_features(labels, image, levels=16, grey_limits=(30, 200), offsets=offsets)
    assert_frames_close(got, reference(labels, image, 16, (30, 200), offsets))


# --------------------------------------------------------------------------- scikit-image
# skimage's pixel pair at angle t is (r, c), (r + round(sin t), c + round(cos t))
SKIMAGE_ANGLES = {0.0: (0, 1), np.pi / 4: (1, 1), np.pi / 2: (1, 0), 3 * np.pi / 4: (1, -1)}


@pytest.mark.parametrize("symmetric", [True, False])
def test_glcm_matches_skimage_for_object_filling_its_window(symmetric: bool) -> None:
    # one label over the whole image: the window (bbox + 1 row/col, clipped) is the image
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (23, 17)).astype(np.uint8)
    labels = np.ones(image.shape, np.int32)
    levels = 32
    q = np.round(image / 255.0 * (levels - 1)).astype(np.uint8)
    glcm = graycomatrix(
        q, [1], list(SKIMAGE_ANGLES), levels=levels, symmetric=symmetric, normed=True
    )
    props = ["contrast", "ASM", "homogeneity"] + (["correlation"] if symmetric else [])
    for a, offset in enumerate(SKIMAGE_ANGLES.values()):
        got = haralick_features(labels, image, offsets=[offset], symmetric=symmetric)
        # skimage's homogeneity is 1 / (1 + (i-j)^2): HistomicsTK's IDM
        for prop, name in zip(props, ["contrast", "asm", "idm", "correlation"], strict=False):
            want = graycoprops(glcm, prop)[0, a]
            assert got[f"haralick_{name}_mean"].iloc[0] == pytest.approx(want, rel=1e-12)
            assert got[f"haralick_{name}_range"].iloc[0] == 0.0


# --------------------------------------------------------------------------- properties
label_images = hnp.arrays(
    np.int32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12), elements=st.integers(0, 4)
)


@FAST
@given(labels=label_images, data=st.data(), levels=st.sampled_from([2, 8, 32]))
def test_matches_bruteforce_reference(labels: np.ndarray, data: st.DataObject, levels: int) -> None:
    image = data.draw(hnp.arrays(np.uint8, labels.shape))
    got = haralick_features(labels, image, levels=levels)
    assert_frames_close(got, reference(labels, image, levels))


@FAST
@given(labels=label_images, data=st.data())
def test_float_image_and_clipping_match_reference(labels: np.ndarray, data: st.DataObject) -> None:
    image = data.draw(hnp.arrays(np.float64, labels.shape, elements=st.floats(-0.5, 1.5)))
    got = haralick_features(labels, image, levels=8, grey_limits=(0.0, 1.0), symmetric=False)
    want = reference(labels, image, 8, (0.0, 1.0), symmetric=False)
    # an asymmetric GLCM whose p_x has one level: correlation is x/0, and the sign and
    # size of the rounding noise in 0 decide between +-inf and +-1e14: compare only that
    cols = ["haralick_correlation_mean", "haralick_correlation_range"]
    ill = (np.abs(want[cols].to_numpy()) > 1e6).any(axis=1)
    g = got.loc[ill, cols].to_numpy()
    assert (~np.isfinite(g) | (np.abs(g) > 1e6)).all()
    got.loc[ill, cols] = want.loc[ill, cols] = np.nan
    assert_frames_close(got, want)


@FAST
@given(labels=label_images, data=st.data())
def test_translation_invariance(labels: np.ndarray, data: st.DataObject) -> None:
    # a clear last row and column: no window is clipped by the image edge
    labels = np.pad(labels, ((0, 1), (0, 1)))
    image = data.draw(hnp.arrays(np.uint8, labels.shape))
    dy, dx = data.draw(st.integers(0, 5)), data.draw(st.integers(0, 5))
    big_labels = np.zeros((labels.shape[0] + 7, labels.shape[1] + 6), np.int32)
    big_image = data.draw(hnp.arrays(np.uint8, big_labels.shape))
    big_labels[dy : dy + labels.shape[0], dx : dx + labels.shape[1]] = labels
    big_image[dy : dy + labels.shape[0], dx : dx + labels.shape[1]] = image
    a = haralick_features(labels, image)
    b = haralick_features(big_labels, big_image)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@FAST
@given(value=st.integers(0, 255), levels=st.integers(2, 64), side=st.integers(1, 6))
def test_constant_object_degenerate_values(value: int, levels: int, side: int) -> None:
    # HistomicsTK 1.4: correlation is 0/0 = NaN when the window has one grey level
    labels = np.zeros((side + 3, side + 3), np.int32)
    labels[1 : side + 1, 1 : side + 1] = 7
    image = np.full(labels.shape, value, np.uint8)
    row = haralick_features(labels, image, levels=levels).iloc[0]
    level = np.round(value / 255 * (levels - 1))
    log_guard = -np.log2(1 + LOG_GUARD)
    expected = {
        "asm": 1.0,
        "contrast": 0.0,
        "sum_of_squares": 0.0,
        "idm": 1.0,
        "sum_average": 2 * level,
        "sum_variance": 0.0,
        "sum_entropy": log_guard,
        "entropy": log_guard,
        "difference_variance": (levels - 1) / levels**2,
        "difference_entropy": log_guard,
        "imc1": 0.0,
        "imc2": 0.0,
    }
    assert row["label"] == 7
    assert np.isnan(row["haralick_correlation_mean"])
    assert np.isnan(row["haralick_correlation_range"])
    for name, value_expected in expected.items():
        assert row[f"haralick_{name}_mean"] == pytest.approx(value_expected, abs=1e-15)
        assert row[f"haralick_{name}_range"] == pytest.approx(0.0, abs=1e-15)


def test_one_pixel_objects() -> None:
    image = np.array([[10, 200, 30], [40, 50, 60], [70, 80, 250]], np.uint8)
    labels = np.zeros((3, 3), np.int32)
    labels[0, 0] = 1  # window 2 x 2: pairs with its neighbours count
    labels[2, 2] = 2  # bottom-right corner: window 1 x 1, no pair at all
    got = haralick_features(labels, image)
    assert_frames_close(got, reference(labels, image))
    corner = got.iloc[1]
    for name in HARALICK_FEATURES:
        for stat in ("mean", "range"):
            v = corner[f"haralick_{name}_{stat}"]
            if name in ("correlation", "imc1"):
                assert np.isnan(v)  # 0/0, as HistomicsTK
            else:
                assert v == 0.0


def test_label_gaps_and_large_label_values() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50)).astype(np.uint8)
    dense = np.zeros((40, 50), np.int64)
    dense[2:9, 3:12], dense[15:30, 20:26], dense[31:39, 40:49] = 1, 2, 3
    want = haralick_features(dense, image)
    for values in ([5, 9, 200], [7, 2**40, 2**40 + 3]):  # the second: sparse label path
        gapped = np.select([dense == 1, dense == 2, dense == 3], values, 0)
        got = haralick_features(gapped, image)
        np.testing.assert_array_equal(got["label"], values)
        pd.testing.assert_frame_equal(got.drop(columns="label"), want.drop(columns="label"))


def test_empty_label_image_gives_typed_zero_rows() -> None:
    for shape in [(5, 6), (0, 0)]:
        df = haralick_features(np.zeros(shape, np.uint16), np.zeros(shape, np.uint8), prefix="n_")
        assert len(df) == 0
        assert list(df.columns) == ["label", *haralick_columns("n_")]
        assert df["label"].dtype == np.int64
        assert (df.dtypes.iloc[1:] == np.float64).all()
    assert len(haralick_columns()) == 26


def test_serial_equals_parallel() -> None:
    labels = imread(EASY1 / "Easy1_nuclei_labels_htk1.4.0_kofahi.png")
    image = imread(EASY1 / "Easy1_hematoxylin_channel_htk1.4.0.png")
    labels[-1, -1] = 65  # plus a one-pixel corner object: NaN correlation and imc1
    serial = haralick_features(labels, image, n_threads=1)
    parallel = haralick_features(labels, image, n_threads=2)
    pd.testing.assert_frame_equal(serial, parallel, check_exact=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": np.zeros((3, 3, 3), int)}, "2-D"),
        ({"image": np.zeros((4, 3))}, "differs"),
        ({"labels": np.zeros((3, 3), float)}, "integer array"),
        ({"labels": -np.ones((3, 3), int)}, "non-negative"),
        ({"image": np.zeros((3, 3), bool)}, "integer or float"),
        ({"image": np.full((3, 3), np.nan)}, "NaN"),
        ({"levels": 1}, "between 2 and 256"),
        ({"levels": 2.5}, "integer"),
        ({"grey_limits": (5, 5)}, "low < high"),
        ({"grey_limits": (0,)}, "two numbers"),
        ({"offsets": [(1, 0, 0)]}, "shape"),
        ({"offsets": [(0.5, 1.0)]}, "integers"),
        ({"n_threads": 0}, ">= 1"),
    ],
)
def test_invalid_input_raises(kwargs: dict, match: str) -> None:
    args = {"labels": np.ones((3, 3), np.int32), "image": np.zeros((3, 3), np.uint8)}
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    with pytest.raises(ValueError, match=match):
        haralick_features(args["labels"], args["image"], **kwargs)


def test_pure_python_kernels_agree(tmp_path: Path) -> None:
    # the same kernels run by the interpreter (NUMBA_DISABLE_JIT=1) on a tiny case
    script = (
        "import numpy as np\n"
        "from napari_gbm.features.texture import haralick_features\n"
        "rng = np.random.default_rng(1)\n"
        "labels = rng.integers(0, 3, (9, 8)); image = rng.integers(0, 256, (9, 8))\n"
        "np.save('out.npy', haralick_features(labels, image, n_threads=2).to_numpy())\n"
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True)
    rng = np.random.default_rng(1)
    labels, image = rng.integers(0, 3, (9, 8)), rng.integers(0, 256, (9, 8))
    np.testing.assert_allclose(
        np.load(tmp_path / "out.npy"),
        haralick_features(labels, image).to_numpy(),
        rtol=1e-12,
        atol=1e-15,
        equal_nan=True,
    )
