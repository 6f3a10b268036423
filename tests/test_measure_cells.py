"""measure_cells' table contract (schema, units, validation) and measure_compartments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_gbm.features.compartments import measure_compartments
from napari_gbm.features.measure import measure_cells

ROOT = Path(__file__).resolve().parents[1]


def small_case() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    labels = np.zeros((12, 14), np.int32)
    labels[1:5, 1:6] = 3
    labels[6:11, 2:5] = 8
    labels[7, 9:13] = 20
    labels[0, 13] = 21
    labels[3, 7:9] = 3  # a second piece of label 3
    image = np.arange(labels.size, dtype=np.float64).reshape(labels.shape) % 7 / 10
    return labels, {"dab": image}


def test_columns_order_and_dtypes() -> None:
    labels, images = small_case()
    table = measure_cells(labels, images)
    assert list(table["label"]) == [3, 8, 20, 21]
    assert list(table.columns[:7]) == [
        "label",
        "centroid_x_px",
        "centroid_y_px",
        "bbox_x0_px",
        "bbox_y0_px",
        "bbox_x1_px",
        "bbox_y1_px",
    ]
    for name in ["area_px", "perimeter_px", "max_caliper_px", "dab_median", "dab_range"]:
        assert name in table
    assert table["label"].dtype == np.int64 and table["bbox_x0_px"].dtype == np.int64
    assert (
        table.drop(columns=[c for c in table if c == "label" or "bbox" in c]).dtypes == np.float64
    ).all()
    row = table.set_index("label").loc[8]
    assert (row["area_px"], row["bbox_x0_px"], row["bbox_y0_px"], row["bbox_x1_px"]) == (
        15,
        2,
        6,
        5,
    )
    assert (row["centroid_x_px"], row["centroid_y_px"]) == (3.0, 8.0)


def test_micrometre_names() -> None:
    labels, images = small_case()
    table = measure_cells(labels, images, mpp=0.5)
    for name in ["area_um2", "convex_area_um2", "perimeter_um", "min_caliper_um", "centroid_x_px"]:
        assert name in table
    assert not any(
        name.endswith("_px") and "centroid" not in name and "bbox" not in name for name in table
    )
    assert table["area_um2"].iloc[0] == (20 + 2) * 0.25


@pytest.mark.parametrize("mpp", [None, 0.5])
def test_empty_image_has_all_columns(mpp: float | None) -> None:
    labels, images = small_case()
    full = measure_cells(labels, images, mpp=mpp)
    empty = measure_cells(np.zeros_like(labels), images, mpp=mpp)
    assert len(empty) == 0
    assert list(empty.columns) == list(full.columns)
    pd.testing.assert_series_equal(empty.dtypes, full.dtypes)
    assert len(measure_cells(np.zeros((0, 5), np.uint8))) == 0


def test_huge_and_unsigned_label_values() -> None:
    labels, images = small_case()
    base = measure_cells(labels, images)
    for big in (labels.astype(np.uint64) * 2**40, labels.astype(np.uint16)):
        table = measure_cells(big, images)
        np.testing.assert_array_equal(table["label"], base["label"] * (big.max() // labels.max()))
        pd.testing.assert_frame_equal(table.drop(columns="label"), base.drop(columns="label"))
    # no background at all, values too sparse for a lookup table
    covered = measure_cells((labels.astype(np.uint64) + 1) * 2**40, images)
    dense = measure_cells(labels + 1, images)
    np.testing.assert_array_equal(covered["label"], dense["label"] * 2**40)
    assert covered["area_px"].sum() == labels.size
    pd.testing.assert_frame_equal(covered.drop(columns="label"), dense.drop(columns="label"))


@pytest.mark.parametrize(
    ("labels", "images", "kwargs", "message"),
    [
        (np.zeros((2, 3, 4), int), None, {}, "2-D label image"),
        (np.zeros((3, 4), float), None, {}, "integer dtype"),
        (np.zeros((3, 4), bool), None, {}, "integer dtype"),
        (-np.ones((3, 4), int), None, {}, "non-negative"),
        (np.zeros((3, 4), int), {"h": np.zeros((4, 3))}, {}, "shape"),
        (np.zeros((3, 4), int), {"h": np.zeros((3, 4, 3))}, {}, "2-D"),
        (np.zeros((3, 4), int), {"h": np.full((3, 4), np.nan)}, {}, "NaN or infinite"),
        (np.zeros((3, 4), int), {"h": np.zeros((3, 4), complex)}, {}, "real-valued"),
        (np.zeros((3, 4), int), [np.zeros((3, 4))], {}, "dict"),
        (np.zeros((3, 4), int), None, {"mpp": -1.0}, "mpp"),
        (np.zeros((3, 4), int), None, {"n_threads": 0}, "n_threads"),
    ],
)
def test_validation_errors(labels: np.ndarray, images: object, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        measure_cells(labels, images, **kwargs)  # type: ignore[arg-type]


def test_no_jit_gives_same_table(tmp_path: Path) -> None:
    """The kernels run as plain Python (NUMBA_DISABLE_JIT=1) with the same results."""
    script = (
        "import json, numpy as np, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_measure_cells import small_case\n"
        "from napari_gbm.features.measure import measure_cells\n"
        "labels, images = small_case()\n"
        "for threads in (1, 2):\n"
        "    t = measure_cells(labels, images, n_threads=threads)\n"
        "    print(json.dumps(t.to_dict('list')))\n"
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    labels, images = small_case()
    jitted = measure_cells(labels, images)
    for line in result.stdout.splitlines():
        plain = pd.DataFrame(json.loads(line)).astype(jitted.dtypes.to_dict())
        pd.testing.assert_frame_equal(plain, jitted, rtol=1e-12)


# --- compartments -----------------------------------------------------------------------


def cell_case() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Cell 1: 6x6 square with a 3x3 nucleus; cell 2 = its nucleus (no cytoplasm);
    nucleus 4 has no cell; cell 5 has no nucleus."""
    nuclei = np.zeros((10, 20), np.int32)
    cells = np.zeros_like(nuclei)
    cells[1:7, 1:7] = 1
    nuclei[2:5, 2:5] = 1
    cells[1:3, 9:13] = 2
    nuclei[1:3, 9:13] = 2
    nuclei[8, 15] = 4
    cells[5:8, 15:18] = 5
    hema = np.zeros(nuclei.shape)
    hema[2:5, 2:5] = [[0.2], [0.4], [0.6]]  # rows of the nucleus
    hema[(cells == 1) & (nuclei == 0)] = 0.1
    hema[cells == 2] = 0.8
    dab = np.where(cells == 1, 0.3, 0.0)
    return nuclei, cells, {"hematoxylin": hema, "dab": dab}


def test_compartments_known_values() -> None:
    nuclei, cells, images = cell_case()
    table = measure_compartments(nuclei, cells, images, mpp=0.5).set_index("label")
    assert list(table.index) == [1, 2, 4]
    one = table.loc[1]
    assert one["nucleus_area_um2"] == 9 * 0.25 and one["cell_area_um2"] == 36 * 0.25
    assert one["nucleus_cell_area_ratio"] == 0.25
    assert (one["centroid_x_px"], one["centroid_y_px"]) == (3.0, 3.0)
    assert one["nucleus_hematoxylin_od_mean"] == pytest.approx(0.4)
    assert one["nucleus_hematoxylin_od_std"] == pytest.approx(np.sqrt(0.08 / 3))
    assert one["nucleus_hematoxylin_od_min"] == 0.2 and one["nucleus_hematoxylin_od_max"] == 0.6
    assert one["nucleus_hematoxylin_od_sum"] == pytest.approx(3.6)
    assert one["nucleus_hematoxylin_od_median"] == 0.4
    assert one["nucleus_hematoxylin_od_range"] == pytest.approx(0.4)
    assert one["cytoplasm_hematoxylin_od_mean"] == pytest.approx(0.1)
    assert one["cytoplasm_hematoxylin_od_sum"] == pytest.approx(27 * 0.1)
    assert one["cell_hematoxylin_od_sum"] == pytest.approx(3.6 + 2.7)
    assert one["cell_dab_od_mean"] == pytest.approx(0.3)
    assert one["cell_dab_od_std"] == pytest.approx(0, abs=1e-15)
    assert one["nucleus_extent"] == 1 and one["cell_solidity"] == 1
    assert one["cell_max_caliper_um"] == pytest.approx(np.hypot(6, 5) * 0.5)  # see _caliper
    assert one["cell_equivalent_diameter_um"] == pytest.approx(np.sqrt(4 * 36 / np.pi) * 0.5)
    two = table.loc[2]
    assert two["nucleus_cell_area_ratio"] == 1
    assert two["cell_hematoxylin_od_mean"] == pytest.approx(0.8)
    assert np.isnan(two[[c for c in table if c.startswith("cytoplasm_")]].astype(float)).all()
    four = table.loc[4]
    assert four["nucleus_area_um2"] == 0.25
    assert np.isnan(four[[c for c in table if c.startswith("cell_")]].astype(float)).all()


def test_compartments_columns_and_reuse() -> None:
    nuclei, cells, images = cell_case()
    table = measure_compartments(nuclei, cells, images, mpp=0.5, n_threads=2)
    for prefix in ("nucleus", "cell"):
        for suffix in [
            "perimeter_um",
            "circularity",
            "eccentricity",
            "major_axis_um",
            "minor_axis_um",
            "orientation_rad",
            "min_caliper_um",
            "equivalent_diameter_um",
        ]:
            assert f"{prefix}_{suffix}" in table
    assert "cytoplasm_dab_od_median" in table and "cytoplasm_area_um2" not in table
    direct = measure_cells(nuclei, images, mpp=0.5)
    np.testing.assert_array_equal(table["nucleus_perimeter_um"], direct["perimeter_um"])
    empty = measure_compartments(np.zeros_like(nuclei), cells, images, mpp=0.5)
    assert len(empty) == 0 and list(empty.columns) == list(table.columns)


def test_compartments_validation() -> None:
    nuclei, cells, images = cell_case()
    with pytest.raises(ValueError, match="nuclei have shape"):
        measure_compartments(nuclei, cells[:5], images, mpp=0.5)
    with pytest.raises(ValueError, match="mpp"):
        measure_compartments(nuclei, cells, images, mpp=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cells must have an integer dtype"):
        measure_compartments(nuclei, cells.astype(float), images, mpp=0.5)
