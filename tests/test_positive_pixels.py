"""Area-based positivity (positive pixel count): a hand computation on a real IHC image,
the whole-slide stream, and the pipeline's summary for H-DAB and H&E slides."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import skimage.data

from napari_gbm.biomarkers.positive_pixels import (
    PositivePixelParams,
    positive_pixel_count,
    positive_pixel_summary,
    slide_positive_pixels,
)
from napari_gbm.detect.cells import CellParams
from napari_gbm.detect.stain import HDAB, deconvolve
from napari_gbm.pipeline import AnalyzeParams, analyze_slide
from napari_gbm.wsi.slide import Slide
from napari_gbm.wsi.tissue import TissueParams, detect_tissue, tissue_mask_from_rgb

UNMIX = functools.partial(deconvolve, stains=HDAB)
THRESHOLDS = (0.2, 0.4, 0.6)


def _hand_stains(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hematoxylin and DAB OD and the OD sum, in float64 numpy from the definitions:
    OD = -log10((I + 1) / 256) (QuPath's, white 255), Ruifrok's H-DAB vectors normalised,
    the residual their cross product, concentrations = OD @ inv(vectors)."""
    h = np.array([0.65, 0.70, 0.29])
    d = np.array([0.27, 0.57, 0.78])
    h, d = h / np.linalg.norm(h), d / np.linalg.norm(d)
    r = np.cross(h, d)
    m = np.stack([h, d, r / np.linalg.norm(r)])
    od = -np.log10((rgb.astype(np.float64) + 1.0) / 256.0)
    conc = od.reshape(-1, 3) @ np.linalg.inv(m)
    shape = rgb.shape[:2]
    return conc[:, 0].reshape(shape), conc[:, 1].reshape(shape), od.sum(axis=2)


def test_counts_match_a_hand_computation_on_skimage_ihc() -> None:
    rgb = skimage.data.immunohistochemistry()  # a real IHC image shipped in the wheel
    hem, dab, od_sum = _hand_stains(rgb)
    tissue = od_sum > 0.15
    got = positive_pixel_count(rgb, tissue, unmix=UNMIX)
    t = dab[tissue]
    hand = {
        "n_tissue": int(tissue.sum()),
        "n_negative": int((t < 0.2).sum()),
        "n_weak": int(((t >= 0.2) & (t < 0.4)).sum()),
        "n_moderate": int(((t >= 0.4) & (t < 0.6)).sum()),
        "n_strong": int((t >= 0.6).sum()),
        "n_stained": int(((t >= 0.2) | (hem[tissue] >= 0.1)).sum()),
    }
    # float32 (ours) vs float64 (here) may only disagree on pixels at a threshold
    near = int(sum((np.abs(t - v) < 1e-5).sum() for v in THRESHOLDS))
    for key, value in hand.items():
        assert abs(got[key] - value) <= near, key
    n = hand["n_tissue"]
    pos = n - hand["n_negative"]
    assert got["positive_fraction"] == pytest.approx(pos / n, abs=near / n + 1e-12)
    assert got["strong_fraction"] == pytest.approx(hand["n_strong"] / n, abs=near / n + 1e-12)
    # the classes partition the tissue; the cumulative fractions are ordered
    parts = ("negative", "weak", "moderate", "strong")
    assert sum(got[f"{p}_fraction"] for p in parts) == pytest.approx(1.0, abs=1e-12)
    assert got["positive_fraction"] >= got["moderate_or_strong_fraction"] >= got["strong_fraction"]
    assert got["stained_fraction"] == pytest.approx(pos / hand["n_stained"], rel=1e-3)
    assert got["dab_od_mean"] == pytest.approx(t[t >= 0.2].mean(), rel=1e-5)
    # the values this image gives (reported in docs/NOTES.md)
    assert got["positive_fraction"] == pytest.approx(0.6412, abs=1e-4)
    assert got["strong_fraction"] == pytest.approx(0.2080, abs=1e-4)


def test_default_tissue_is_the_tissue_detection_rule() -> None:
    rgb = skimage.data.immunohistochemistry()
    params = PositivePixelParams()
    mask = tissue_mask_from_rgb(rgb, params.resolution_um, TissueParams())[0]
    assert positive_pixel_count(rgb, None, params, unmix=UNMIX) == positive_pixel_count(
        rgb, mask, params, unmix=UNMIX
    )
    with pytest.raises(ValueError, match="shape"):
        positive_pixel_count(rgb, mask[1:], unmix=UNMIX)
    with pytest.raises(ValueError, match="three increasing"):
        PositivePixelParams(thresholds=(0.4, 0.2, 0.6))


def test_slide_stream_is_tile_invariant_with_a_map(synthetic_ki67) -> None:
    with Slide(synthetic_ki67) as slide:
        tissue = detect_tissue(slide)
        big = slide_positive_pixels(slide, tissue, UNMIX, 25.0)
        small = slide_positive_pixels(slide, tissue, UNMIX, 25.0, PositivePixelParams(tile_px=100))
    assert big.counts == small.counts
    np.testing.assert_allclose(big.positive_fraction_map, small.positive_fraction_map)
    c = big.counts
    assert c["n_tissue"] > 0 and 0 < c["positive_fraction"] < 0.5
    assert big.positive_fraction_map.shape == (41, 62)  # 1024 x 1536 µm in 25-µm bins
    on = np.isfinite(big.positive_fraction_map)
    assert on.any() and np.nanmax(big.positive_fraction_map) <= 1.0


@pytest.mark.slow
def test_pipeline_reports_positive_pixels_for_hdab_only(
    synthetic_ki67, synthetic_he, tmp_path
) -> None:
    def run(path, stain):
        params = AnalyzeParams(cells=CellParams(stain=stain, texture=False))
        return analyze_slide(path, tmp_path / stain, params)

    s = run(synthetic_ki67, "hdab")
    assert 0 < s["positive_pixel_fraction"] < 1
    assert (
        s["positive_pixel_fraction"]
        >= s["positive_pixel_moderate_or_strong_fraction"]
        >= s["positive_pixel_strong_fraction"]
        > 0
    )
    assert s["positive_pixel_tissue_area_mm2"] == pytest.approx(s["tissue_area_mm2"], rel=0.05)
    assert tuple(s["parameters"]["positive_pixels"]["thresholds"]) == THRESHOLDS
    maps = np.load(tmp_path / "hdab" / "maps.npz")
    assert maps["positive_pixel_fraction"].shape == maps["cell_density_per_mm2"].shape
    he = run(synthetic_he, "he")
    keys = [k for k in s if k.startswith("positive_pixel")]
    assert keys and all(he[k] is None for k in keys)  # H&E: null, as the cell IHC scores
    assert set(keys) == set(positive_pixel_summary(None))
    assert "positive_pixel_fraction" not in np.load(tmp_path / "he" / "maps.npz").files
