"""Neighbourhood features against hand-computed values on regular lattices."""

from __future__ import annotations

import numpy as np
import pytest

from napari_gbm.features.neighbourhood import NEIGHBOURHOOD_COLUMNS, neighbourhood_features


def _hex_lattice(n: int, d: float) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:n, 0:n]
    x = cols * d + (rows % 2) * d / 2
    y = rows * d * np.sqrt(3) / 2
    return x.ravel().astype(float), y.ravel().astype(float)


def test_hexagonal_lattice_interior_has_six_neighbours_at_d() -> None:
    d = 10.0
    x, y = _hex_lattice(20, d)
    f = neighbourhood_features(x, y, radius_um=45.0, max_edge_um=15.0)
    interior = (x > 3 * d) & (x < 16 * d) & (y > 3 * d) & (y < 15 * d)
    assert (f.delaunay_neighbours[interior] == 6).all()
    np.testing.assert_allclose(f.delaunay_distance_mean_um[interior], d, rtol=1e-5)
    np.testing.assert_allclose(f.delaunay_distance_min_um[interior], d, rtol=1e-5)
    np.testing.assert_allclose(f.nearest_neighbour_um, d, rtol=1e-5)
    # density: one cell per sqrt(3)/2 d² -> 1e6 / 86.6 = 11547 cells/mm²; the disc count
    # is a lattice-point count, within a few % of the area estimate
    expected = 1e6 / (np.sqrt(3) / 2 * d**2)
    assert np.median(f.density_per_mm2[interior]) == pytest.approx(expected, rel=0.05)


def test_long_edges_are_not_neighbours() -> None:
    # two clusters 1 mm apart: no neighbour across the gap
    x = np.array([0, 10, 5, 1000, 1010, 1005], float)
    y = np.array([0, 0, 8, 0, 0, 8], float)
    f = neighbourhood_features(x, y, max_edge_um=50)
    assert f.delaunay_neighbours.tolist() == [2] * 6
    assert f.delaunay_distance_max_um.max() < 12


def test_hand_computed_triangle() -> None:
    f = neighbourhood_features(np.array([0.0, 3.0, 0.0]), np.array([0.0, 0.0, 4.0]), radius_um=4.5)
    assert f.delaunay_neighbours.tolist() == [2, 2, 2]
    np.testing.assert_allclose(f.delaunay_distance_mean_um, [3.5, 4.0, 4.5])
    np.testing.assert_allclose(f.nearest_neighbour_um, [3, 3, 4])
    # within 4.5 µm: point 0 sees 1 and 2; point 1 sees 0 only (5 µm to 2); point 2 sees 0
    disc = np.pi * 4.5**2 / 1e6
    np.testing.assert_allclose(f.density_per_mm2, np.array([2, 1, 1]) / disc, rtol=1e-6)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_few_points(n: int) -> None:
    f = neighbourhood_features(np.arange(n, dtype=float), np.zeros(n))
    assert list(f.columns) == list(NEIGHBOURHOOD_COLUMNS) and len(f) == n
    if n == 2:
        assert f.delaunay_neighbours.tolist() == [1, 1]


def test_collinear_points() -> None:
    f = neighbourhood_features(np.arange(5) * 10.0, np.zeros(5))
    assert f.delaunay_neighbours.tolist() == [1, 2, 2, 2, 1]


def test_translation_and_order_invariance() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 500, 300), rng.uniform(0, 500, 300)
    a = neighbourhood_features(x, y)
    b = neighbourhood_features(x + 1234.5, y - 77.0)
    perm = rng.permutation(300)
    c = neighbourhood_features(x[perm], y[perm])
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-4, equal_nan=True)
    np.testing.assert_allclose(
        a.to_numpy(float)[perm], c.to_numpy(float), rtol=1e-6, equal_nan=True
    )


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="length"):
        neighbourhood_features(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        neighbourhood_features(np.array([np.nan]), np.array([0.0]))
