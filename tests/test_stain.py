"""Optical density, stain vectors, colour deconvolution and Macenko estimation."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import separate_stains

from napari_gbm.detect.stain import (
    HDAB,
    HE,
    StainVectors,
    deconvolve,
    estimate_macenko,
    optical_density,
    reconvolve,
    rgb_from_optical_density,
)


def _angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    cos = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))))


def test_optical_density_qupath_convention() -> None:
    rgb = np.array([[[255, 127, 0]]], np.uint8)
    od = optical_density(rgb)
    assert od.dtype == np.float32 and od.shape == (1, 1, 3)
    np.testing.assert_allclose(od[0, 0], [0.0, -np.log10(128 / 256), np.log10(256)], rtol=1e-6)
    # Per-channel background, and float input on the same scale gives the same numbers.
    od_bg = optical_density(rgb, background=(240, 250, 255))
    assert od_bg[0, 0, 0] < 0  # brighter than the background
    np.testing.assert_allclose(optical_density(rgb.astype(np.float64)), od, rtol=1e-6)


def test_optical_density_inverse_is_exact_for_uint8() -> None:
    values = np.arange(256, dtype=np.uint8)
    rgb = np.stack([values, values[::-1], values], axis=1)[None]
    assert np.array_equal(rgb_from_optical_density(optical_density(rgb)), rgb)
    bg = (230, 240, 250)
    # Pixels brighter than the background keep a negative OD, so this is exact too.
    assert np.array_equal(rgb_from_optical_density(optical_density(rgb, bg), bg), rgb)


def test_presets_are_unit_rows_with_cross_product_residual() -> None:
    for sv in (HE, HDAB):
        np.testing.assert_allclose(np.linalg.norm(sv.matrix, axis=1), 1.0)
        third = np.cross(sv.matrix[0], sv.matrix[1])
        np.testing.assert_allclose(sv.matrix[2], third / np.linalg.norm(third))
        assert not sv.matrix.flags.writeable
    np.testing.assert_allclose(HE.matrix[0], np.array([0.65, 0.70, 0.29]) / 0.9981, atol=2e-4)
    assert HE.names == ("hematoxylin", "eosin", "residual")
    assert HDAB.names == ("hematoxylin", "dab", "residual")


def test_to_dict_round_trip_and_validation() -> None:
    d = HDAB.to_dict()
    assert d["names"] == ["hematoxylin", "dab", "residual"]
    again = StainVectors.from_dict(d)
    assert again == HDAB and hash(again) == hash(HDAB)
    assert again != HE
    with pytest.raises(ValueError, match="lacks 'vectors'"):
        StainVectors.from_dict({"names": ["a", "b", "c"], "background": 255})
    with pytest.raises(ValueError, match="linearly dependent"):
        StainVectors.from_vectors(("a", "b", "c"), [[1, 0, 0], [2, 0, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match="zero vector"):
        StainVectors.from_vectors(("a", "b", "c"), [[0, 0, 0], [1, 0, 0]])
    with pytest.raises(ValueError, match="shape"):
        StainVectors.from_vectors(("a", "b", "c"), [[1, 0, 0]])
    with pytest.raises(ValueError, match="no stain 'dab'"):
        HE.index("dab")


def test_deconvolve_hand_computed_pixel() -> None:
    rgb = np.array([[[120, 80, 160]]], np.uint8)
    od = -np.log10((np.array([120, 80, 160]) + 1) / 256)
    # c @ M = od  <=>  M.T @ c = od
    expected = np.linalg.solve(HE.matrix.T, od)
    conc = deconvolve(rgb, HE)
    assert list(conc) == ["hematoxylin", "eosin", "residual"]
    got = [conc[n][0, 0] for n in HE.names]
    assert all(conc[n].dtype == np.float32 for n in HE.names)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_deconvolve_against_skimage_separate_stains() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(30, 256, size=(40, 50, 3), dtype=np.uint8)
    sk = separate_stains(rgb, HE.inverse)
    # skimage: -log(I/255) / -log(1e-6) = OD/6 with OD = -log10(I/255), clipped at 0.
    od_plain = -np.log10(rgb / 255.0)
    np.testing.assert_allclose(sk * 6, np.maximum(od_plain @ HE.inverse, 0), atol=1e-9)
    ours = deconvolve(rgb, HE)
    stacked = np.stack([ours[n] for n in HE.names], axis=-1)
    # Ours keeps negatives and uses (I + 1) / 256; the two agree within 0.05 OD here.
    np.testing.assert_allclose(np.maximum(stacked, 0), sk * 6, atol=0.05)


def test_concentration_rgb_round_trip() -> None:
    rng = np.random.default_rng(1)
    h = rng.uniform(0, 1.0, (64, 64))
    d = rng.uniform(0, 1.0, (64, 64))
    rgb = reconvolve({"hematoxylin": h, "dab": d}, HDAB)
    back = deconvolve(rgb, HDAB)
    # uint8 quantisation: half a grey level at OD ~1.6 per channel is ~0.03 OD.
    np.testing.assert_allclose(back["hematoxylin"], h, atol=0.04)
    np.testing.assert_allclose(back["dab"], d, atol=0.04)
    assert np.abs(back["residual"]).max() < 0.04
    with pytest.raises(ValueError, match="unknown stains"):
        reconvolve({"eosin": h}, HDAB)


@pytest.mark.parametrize(
    ("first", "second", "names"),
    [
        (HE.matrix[0], HE.matrix[1], ("hematoxylin", "eosin", "residual")),
        (HDAB.matrix[0], HDAB.matrix[1], ("hematoxylin", "dab", "residual")),
        ([0.55, 0.76, 0.34], [0.07, 0.99, 0.11], ("hematoxylin", "eosin", "residual")),
    ],
)
def test_macenko_recovers_known_vectors(first: object, second: object, names: tuple) -> None:
    true = StainVectors.from_vectors(names, [first, second])
    rng = np.random.default_rng(2)
    n = 40_000
    # Tissue: every pixel has some of both stains (a cloud between the two vectors),
    # plus 20 % glass that the OD threshold must ignore.
    c1 = rng.gamma(2.0, 0.3, n) * (rng.random(n) < 0.9)
    c2 = rng.gamma(2.0, 0.25, n) + 0.02
    c1[: n // 5] = c2[: n // 5] = 0.0
    rgb = reconvolve({names[0]: c1.reshape(200, 200), names[1]: c2.reshape(200, 200)}, true)
    est = estimate_macenko(rgb, names=names)
    assert est.names == names
    assert _angle_deg(est.matrix[0], true.matrix[0]) < 4.0
    assert _angle_deg(est.matrix[1], true.matrix[1]) < 4.0
    np.testing.assert_allclose(np.linalg.norm(est.matrix, axis=1), 1.0)


def test_macenko_too_few_tissue_pixels() -> None:
    with pytest.raises(ValueError, match="too little stained tissue"):
        estimate_macenko(np.full((50, 50, 3), 250, np.uint8))
    with pytest.raises(ValueError, match="alpha"):
        estimate_macenko(np.zeros((50, 50, 3), np.uint8), alpha=60)


def test_macenko_on_real_ihc_orders_hematoxylin_first() -> None:
    from skimage.data import immunohistochemistry

    est = estimate_macenko(immunohistochemistry(), names=("hematoxylin", "dab", "residual"))
    # Hematoxylin (blue) absorbs red most; DAB (brown) absorbs blue most.
    assert est.matrix[0, 0] > est.matrix[0, 2]
    assert est.matrix[1, 2] > est.matrix[1, 0]
    assert _angle_deg(est.matrix[0], HDAB.matrix[0]) < 15
    assert _angle_deg(est.matrix[1], HDAB.matrix[1]) < 15


def test_rgb_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"\(h, w, 3\)"):
        optical_density(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="background"):
        optical_density(np.zeros((4, 4, 3), np.uint8), background=0)
