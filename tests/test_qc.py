"""Plausibility warnings: a wrong pixel size or an empty region is said, not hidden."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_gbm.qc import MEDIAN_NUCLEUS_AREA_UM2, result_warnings


def test_plausible_results_give_no_warning() -> None:
    areas = np.full(500, 40.0)  # 500 nuclei of 40 µm² in 0.1 mm²: 5,000/mm²
    assert result_warnings(areas, 0.1, 0.5) == []


@pytest.mark.parametrize(
    ("median", "word", "truth"), [(6.0, "small", "larger"), (300.0, "large", "smaller")]
)
def test_nucleus_size_outside_the_norm_points_at_the_pixel_size(median, word, truth) -> None:
    areas = np.full(500, median)
    [warning] = result_warnings(areas, 0.1, 0.25)
    assert f"nuclei are {word}" in warning and f"median {median:.0f} µm²" in warning
    assert "0.25 µm/px" in warning and f"the true one {truth}" in warning


def test_the_size_norm_edges() -> None:
    lo, hi = MEDIAN_NUCLEUS_AREA_UM2
    assert result_warnings(np.full(100, lo), None, 0.5, min_area_um2=lo / 2) == []
    assert result_warnings(np.full(100, hi), None, 0.5) == []
    assert len(result_warnings(np.full(100, lo - 0.5), None, 0.5, min_area_um2=lo / 2)) == 1
    # too few cells for a median: no size verdict (NaN areas do not count)
    assert result_warnings(np.r_[np.full(19, 2.0), np.full(50, np.nan)], None, 0.5) == []


def test_few_cells_in_a_real_area_are_flagged() -> None:
    [warning] = result_warnings(np.full(1, 40.0), 0.5, 0.5)
    assert warning.startswith("only 1 cell in 0.500 mm² (2/mm²")
    assert result_warnings(np.zeros(0), 0.005, 0.5) == []  # a tiny region: no verdict


def test_a_wrong_pixel_size_is_reported_by_analyze(tmp_path: Path, capsys) -> None:
    """CMU-1 (0.499 µm/px) analysed as if it were 0.2 µm/px: nuclei measure about a sixth
    of their area, and the summary, the CLI and the cohort row say so; at its own pixel
    size, nothing is said."""
    from napari_gbm.cli import main
    from napari_gbm.cohort import flatten_summary
    from napari_gbm.samples import cmu1_path

    right, wrong = tmp_path / "right", tmp_path / "wrong"
    assert main(["analyze", str(cmu1_path()), "--out", str(right)]) == 0
    assert json.loads((right / "summary.json").read_text())["warnings"] == []
    capsys.readouterr()
    assert main(["analyze", str(cmu1_path()), "--out", str(wrong), "--mpp", "0.2"]) == 0
    summary = json.loads((wrong / "summary.json").read_text())
    assert any("pixel size (0.2 µm/px) may be wrong" in w for w in summary["warnings"])
    assert "warning: " in capsys.readouterr().err
    assert "0.2 µm/px" in flatten_summary(summary)["warnings"]


def test_nuclei_piled_at_the_minimum_area_count_as_small() -> None:
    # median 20 µm², but 45 % under 15 µm² (1.5x a 10 µm² minimum): a truncated distribution
    areas = np.r_[np.full(45, 12.0), np.full(55, 30.0)]
    [warning] = result_warnings(areas, None, 0.2, min_area_um2=10.0)
    assert "nuclei are small" in warning and "45 % near the smallest kept" in warning
    assert result_warnings(np.r_[np.full(35, 12.0), np.full(65, 30.0)], None, 0.2, 10.0) == []
