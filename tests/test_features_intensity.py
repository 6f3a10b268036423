"""Intensity columns of measure_cells vs scikit-image, NumPy/SciPy and HistomicsTK."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage import io
from skimage.draw import ellipse
from skimage.measure import regionprops_table

from napari_gbm.features.measure import measure_cells

DATA = Path(__file__).resolve().parent / "data" / "histomicstk_easy1"


def reference_stats(values: np.ndarray) -> dict[str, float]:
    """HistomicsTK's compute_intensity_features definitions, written out with NumPy/SciPy."""
    median = np.median(values)
    hist, _ = np.histogram(values, bins=10)
    prob = hist / hist.sum()
    constant = np.ptp(values) == 0
    return {
        "mean": values.mean(),
        "std": values.std(),
        "min": values.min(),
        "max": values.max(),
        "sum": values.sum(),
        "median": median,
        "range": np.ptp(values),
        "iqr": scipy.stats.iqr(values),
        "mad": np.median(np.abs(values - median)),
        "skewness": np.nan if constant else scipy.stats.skew(values),
        "kurtosis": np.nan if constant else scipy.stats.kurtosis(values),
        "hist_energy": np.sum(prob**2),
        "hist_entropy": scipy.stats.entropy(prob),
    }


def reference_table(labels: np.ndarray, image: np.ndarray, name: str) -> pd.DataFrame:
    rows = [reference_stats(image[labels == lab].astype(np.float64)) for lab in np.unique(labels)]
    table = pd.DataFrame(rows[1:] if (labels == 0).any() else rows)
    return table.add_prefix(f"{name}_")


def blobs(seed: int, shape: tuple[int, int] = (120, 140)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for value in rng.choice(np.arange(1, 1000), size=40, replace=False):
        rr, cc = ellipse(*rng.uniform(0, shape), *rng.uniform(1, 10, 2), shape=shape)
        labels[rr, cc] = value
    labels[5, 5] = 1001  # one pixel
    image = rng.gamma(2.0, 0.2, shape)
    image[labels == labels[60, 70]] = 0.37  # a constant object (if any)
    return labels, image


def test_matches_regionprops_intensity() -> None:
    labels, image = blobs(0)
    table = measure_cells(labels, {"od": image})
    ref = pd.DataFrame(
        regionprops_table(
            labels,
            image,
            properties=[
                "intensity_mean",
                "intensity_min",
                "intensity_max",
                "intensity_std",
                "intensity_median",
            ],
        )
    )
    for stat in ["mean", "min", "max", "std", "median"]:
        np.testing.assert_allclose(table[f"od_{stat}"], ref[f"intensity_{stat}"], rtol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8, np.uint16])
def test_matches_numpy_scipy_definitions(dtype: type) -> None:
    labels, image = blobs(1)
    image = (image * 100 if np.dtype(dtype).kind == "u" else image).astype(dtype)
    table = measure_cells(labels, {"h": image})
    ref = reference_table(labels, image, "h")
    for name in ref:
        np.testing.assert_allclose(table[name], ref[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_easy1_matches_histomicstk() -> None:
    labels = io.imread(DATA / "Easy1_nuclei_labels_htk1.4.0_kofahi.png")
    image = io.imread(DATA / "Easy1_hematoxylin_channel_htk1.4.0.png")
    table = measure_cells(labels, {"hematoxylin": image})
    ref = pd.read_csv(DATA / "Easy1_nuclei_intensity_features.csv")
    pairs = {
        "Min": "min",
        "Max": "max",
        "Mean": "mean",
        "Median": "median",
        "Std": "std",
        "IQR": "iqr",
        "MAD": "mad",
        "Skewness": "skewness",
        "Kurtosis": "kurtosis",
        "HistEnergy": "hist_energy",
        "HistEntropy": "hist_entropy",
    }
    for ref_name, stat in pairs.items():
        np.testing.assert_allclose(
            table[f"hematoxylin_{stat}"], ref[f"Intensity.{ref_name}"], atol=1e-2, err_msg=stat
        )
    np.testing.assert_allclose(
        table["hematoxylin_mean"] - table["hematoxylin_median"],
        ref["Intensity.MeanMedianDiff"],
        atol=1e-2,
    )


def test_constant_and_single_pixel_objects() -> None:
    labels = np.zeros((4, 6), np.uint16)
    labels[0, 0] = 1
    labels[1:3, 2:5] = 2
    table = measure_cells(labels, {"x": np.full(labels.shape, 0.25)}).set_index("label")
    for lab in (1, 2):
        row = table.loc[lab]
        assert row["x_mean"] == row["x_median"] == row["x_min"] == 0.25
        assert row["x_std"] == row["x_range"] == row["x_iqr"] == row["x_mad"] == 0
        assert np.isnan(row["x_skewness"]) and np.isnan(row["x_kurtosis"])  # documented
        assert row["x_hist_energy"] == 1 and row["x_hist_entropy"] == 0
    assert table.loc[2, "x_sum"] == 6 * 0.25


def test_intensity_stats_subset() -> None:
    labels, image = blobs(3)
    full = measure_cells(labels, {"v": image})
    for stats in (["std", "mean"], ["median"], "max"):
        table = measure_cells(labels, {"v": image}, intensity_stats=stats)
        chosen = [c for c in full if c.startswith("v_") and c[2:] in stats]  # table order
        assert [c for c in table if c.startswith("v_")] == chosen
        pd.testing.assert_frame_equal(table[chosen], full[chosen])
    with pytest.raises(ValueError, match="unknown intensity statistics"):
        measure_cells(labels, {"v": image}, intensity_stats=["mean", "average"])


def test_tiny_values_do_not_raise() -> None:
    # found by hypothesis: m2² underflows to 0 (division by zero must give inf, not raise)
    labels = np.ones((3, 3), np.uint8)
    image = np.full((3, 3), 8.5e-101)
    image[0, 0] = 8.6e-101
    row = measure_cells(labels, {"v": image}).iloc[0]
    assert row["v_mean"] == pytest.approx(image.mean(), rel=1e-12)
    assert np.isnan(row["v_kurtosis"])  # m2² underflows: undefined, not an error


def test_several_images_and_threads() -> None:
    labels, image = blobs(2)
    images = {"a": image, "b": image[::-1].copy() * 3}
    serial = measure_cells(labels, images)
    pd.testing.assert_frame_equal(serial, measure_cells(labels, images, n_threads=2))
    np.testing.assert_array_equal(serial["a_mean"], measure_cells(labels, {"a": image})["a_mean"])


@settings(max_examples=40, deadline=None, database=None)
@given(
    labels=arrays(np.uint8, (9, 7), elements=st.integers(0, 3)),
    image=arrays(np.float64, (9, 7), elements=st.floats(-5, 5, allow_subnormal=False)),
)
def test_random_matches_reference(labels: np.ndarray, image: np.ndarray) -> None:
    table = measure_cells(labels, {"v": image})
    ref = reference_table(labels, image, "v") if labels.any() else None
    if ref is None:
        assert len(table) == 0
        return
    for name in ref:
        if name.endswith(("skewness", "kurtosis")):
            # near-constant objects: both sides are ratios of rounding noise
            ok = ~ref["v_std"].lt(1e-6).to_numpy()
            np.testing.assert_allclose(table[name][ok], ref[name][ok], rtol=1e-6, atol=1e-9)
        else:
            np.testing.assert_allclose(table[name], ref[name], rtol=1e-9, atol=1e-12, err_msg=name)
