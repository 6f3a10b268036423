"""Compartment choice for cell positivity, the membrane ring, marker presets and ATRX loss
(issue 18)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels, find_boundaries

from napari_gbm.biomarkers.ihc import (
    POSITIVITY_COMPARTMENTS,
    PositivityParams,
    positive_class,
)
from napari_gbm.biomarkers.marker_loss import (
    LOSS_KEYS,
    InternalControlParams,
    internal_controls,
    loss_summary,
)
from napari_gbm.biomarkers.markers import (
    MARKERS,
    _preset_table,
    get_marker,
    marker_positivity,
    marker_summary,
)
from napari_gbm.features.compartments import (
    COMPARTMENTS,
    measure_compartments,
    membrane_labels,
)
from napari_gbm.schema import cell_table_columns

DOCS = Path(__file__).resolve().parents[1] / "docs" / "MARKERS.md"

# --- the membrane ring ----------------------------------------------------------------


def square_cell() -> tuple[np.ndarray, np.ndarray]:
    """One 10 x 10 cell at rows/cols 2..11 of a 14 x 16 image, its 2 x 2 nucleus at the
    centre; a second cell (4 x 4) touching it on the right, its nucleus covering a corner."""
    cells = np.zeros((14, 16), np.int32)
    nuclei = np.zeros_like(cells)
    cells[2:12, 2:12] = 1
    nuclei[6:8, 6:8] = 1
    cells[2:6, 12:16] = 2
    nuclei[2:4, 14:16] = 2
    return nuclei, cells


def test_membrane_ring_of_a_square_by_hand() -> None:
    nuclei, cells = square_cell()
    # 1 µm at 0.5 µm/px: the two outer pixel rows of the 10 x 10 square, 100 - 6 x 6 = 64
    ring = membrane_labels(nuclei, cells, mpp=0.5, width_um=1.0)
    one = ring == 1
    assert one.sum() == 64
    expected = np.zeros_like(one)
    expected[2:12, 2:12] = True
    expected[4:10, 4:10] = False
    np.testing.assert_array_equal(one, expected)
    # 1.5 µm: three rows deep, 100 - 4 x 4 = 84 (the nucleus lies inside, untouched)
    assert (membrane_labels(nuclei, cells, mpp=0.5, width_um=1.5) == 1).sum() == 84
    # 2.5 µm: five rows reach the whole cell, less its 4 nucleus pixels
    assert (membrane_labels(nuclei, cells, mpp=0.5, width_um=2.5) == 1).sum() == 96
    # cell 2 (rows 2-5, cols 12-15), one pixel deep: its top and bottom rows and its left
    # column (shared with cell 1), not its right column (the image edge is no boundary),
    # not its nucleus (rows 2-3, cols 14-15)
    two = membrane_labels(nuclei, cells, mpp=0.5, width_um=0.5) == 2
    expected = np.zeros_like(two)
    expected[2, 12:14] = expected[5, 12:16] = expected[3:5, 12] = True
    np.testing.assert_array_equal(two, expected)


def test_membrane_matches_skimage_boundaries_and_a_distance_transform() -> None:
    """Our ring = cell pixels less than width/mpp from skimage's inner boundaries
    (connectivity 1), less the nucleus, on a crowded Voronoi-like label image."""
    rng = np.random.default_rng(3)
    seeds = np.zeros((150, 170), np.int32)
    pts = rng.integers(0, [150, 170], size=(60, 2))
    seeds[pts[:, 0], pts[:, 1]] = np.arange(1, 61)
    cells = expand_labels(seeds, 10)
    grown = expand_labels(seeds, 3)
    nuclei = np.where(grown == cells, grown, 0)
    edges = find_boundaries(cells, connectivity=1, mode="inner")
    distance = ndi.distance_transform_edt(~edges)
    for width_um, mpp in [(1.5, 0.5), (1.0, 0.25), (2.0, 0.5), (0.25, 0.5)]:
        expected = np.where(
            (cells != 0) & (nuclei != cells) & (distance < width_um / mpp), cells, 0
        )
        got = membrane_labels(nuclei, cells, mpp=mpp, width_um=width_um)
        np.testing.assert_array_equal(got, expected)


def test_membrane_columns_measured_like_the_other_compartments() -> None:
    nuclei, cells = square_cell()
    dab = np.zeros(cells.shape)
    dab[cells == 1] = 0.1
    dab[2:12, 2:12][[0, 1, -2, -1], :] = 0.9  # the top and bottom two rows of cell 1
    dab[2:12, 2:12][:, [0, 1, -2, -1]] = 0.9  # and its left and right two columns
    hema = np.where(cells > 0, 0.3, 0.0)
    table = measure_compartments(
        nuclei, cells, {"hematoxylin": hema, "dab": dab}, mpp=0.5, membrane_width_um=1.0
    ).set_index("label")
    one = table.loc[1]
    assert one["membrane_dab_od_mean"] == pytest.approx(0.9)
    assert one["membrane_dab_od_sum"] == pytest.approx(64 * 0.9)
    assert one["membrane_dab_od_max"] == pytest.approx(0.9)
    assert one["membrane_hematoxylin_od_mean"] == pytest.approx(0.3)
    assert one["cytoplasm_dab_od_mean"] == pytest.approx((64 * 0.9 + 32 * 0.1) / 96)
    assert one["nucleus_dab_od_mean"] == pytest.approx(0.1)
    for stat in ("mean", "std", "min", "max", "sum", "median", "range"):
        assert f"membrane_dab_od_{stat}" in table
    assert "membrane_area_um2" not in table  # intensities only, as the cytoplasm
    with pytest.raises(ValueError, match="membrane width"):
        measure_compartments(nuclei, cells, {"dab": dab}, mpp=0.5, membrane_width_um=0)


def test_membrane_is_nan_without_ring_pixels_and_in_the_schema() -> None:
    nuclei = np.zeros((6, 6), np.int32)
    nuclei[1:4, 1:4] = 1
    cells = nuclei.copy()  # the cell is its nucleus: no cytoplasm, no ring
    table = measure_compartments(nuclei, cells, {"dab": np.ones((6, 6))}, mpp=0.5)
    assert np.isnan(table["membrane_dab_od_mean"].iloc[0])
    names = [c.name for c in cell_table_columns(("hematoxylin", "dab"))]
    assert "membrane_dab_od_max" in names and "membrane_hematoxylin_od_median" in names
    assert names.index("cell_dab_od_range") < names.index("membrane_hematoxylin_od_mean")
    assert POSITIVITY_COMPARTMENTS == COMPARTMENTS  # the light copy of the features' list


# --- compartment and statistic -----------------------------------------------------------


def test_positivity_compartment_and_statistic_name_the_column() -> None:
    assert PositivityParams().column == "nucleus_dab_od_mean"
    p = PositivityParams(compartment="membrane", statistic="max", thresholds=(0.3,))
    assert (p.column, p.thresholds, p.graded) == ("membrane_dab_od_max", (0.3,), False)
    assert PositivityParams(compartment="cytoplasm").column == "cytoplasm_dab_od_mean"
    assert PositivityParams(statistic="max").column == "nucleus_dab_od_max"
    # the column alone still works, and tells its compartment and statistic
    c = PositivityParams(column="cell_dab_od_max")
    assert (c.compartment, c.statistic) == ("cell", "max")
    other = PositivityParams(column="nucleus_hematoxylin_od_mean")
    assert other.compartment is None and other.statistic is None
    assert PositivityParams(column="cell_dab_od_max", compartment="cell") == c
    assert PositivityParams(**asdict(p)) == p  # through summary.json and back
    with pytest.raises(ValueError, match="not both"):
        PositivityParams(column="cell_dab_od_max", compartment="nucleus")
    with pytest.raises(ValueError, match="compartment must be one of"):
        PositivityParams(compartment="nuclei")
    with pytest.raises(ValueError, match="statistic must be one of"):
        PositivityParams(statistic="median")


# --- presets and precedence ---------------------------------------------------------------


def test_presets_as_the_issue_asks() -> None:
    where = {m.name: (m.kind, m.compartment, m.reports) for m in MARKERS.values()}
    assert where == {
        "ki67": ("cell", "nucleus", "positive"),
        "p53": ("cell", "nucleus", "positive"),
        "olig2": ("cell", "nucleus", "positive"),
        "atrx": ("cell", "nucleus", "loss"),
        "idh1": ("cell", "cytoplasm", "positive"),
        "gfap": ("cell", "cytoplasm", "positive"),
        "egfr": ("cell", "membrane", "positive"),
        "cd31": ("vessel", None, "positive"),
        "cd34": ("vessel", None, "positive"),
    }
    for m in MARKERS.values():
        assert m.sources and m.target and m.note
        if m.kind == "cell":
            assert m.positivity().column == f"{m.compartment}_dab_od_{m.statistic}"
        else:
            with pytest.raises(ValueError, match="grades no cells"):
                m.positivity()
    assert json.loads(json.dumps(MARKERS["atrx"].to_dict()))["thresholds"] == [0.2]
    assert get_marker("ATRX") is MARKERS["atrx"]
    with pytest.raises(ValueError, match="ki67, p53"):
        get_marker("mgmt")


def test_marker_positivity_explicit_wins_over_the_preset() -> None:
    assert marker_positivity() == PositivityParams()
    assert marker_positivity("egfr") == MARKERS["egfr"].positivity()
    atrx = marker_positivity("atrx", thresholds=(0.3,))
    assert (atrx.column, atrx.thresholds) == ("nucleus_dab_od_mean", (0.3,))
    idh1 = marker_positivity("idh1", compartment="cell")  # keeps the preset's statistic
    assert (idh1.column, idh1.thresholds) == ("cell_dab_od_mean", MARKERS["idh1"].thresholds)
    assert marker_positivity("egfr", statistic="max").column == "membrane_dab_od_max"
    assert marker_positivity("atrx", column="cell_dab_od_median").thresholds == (0.2,)
    assert marker_positivity("cd31") == PositivityParams()  # vessels grade no cells
    with pytest.raises(ValueError, match="not both"):
        marker_positivity("atrx", column="cell_dab_od_max", compartment="cell")


def test_docs_table_and_sources_are_the_code() -> None:
    doc = DOCS.read_text(encoding="utf-8")
    assert _preset_table(MARKERS) in doc
    for m in MARKERS.values():
        for source in m.sources:
            assert source in doc, (m.name, source)


# --- the command line ---------------------------------------------------------------------


def _params(argv: list[str]) -> Any:  # AnalyzeParams, loaded with the pipeline
    from napari_gbm.cli import build_parser
    from napari_gbm.cli._common import analyze_params

    return analyze_params(build_parser().parse_args(argv))


@pytest.mark.parametrize(
    ("flags", "column", "thresholds"),
    [
        ([], "nucleus_dab_od_mean", (0.2, 0.4, 0.6)),
        (["--marker", "egfr"], "membrane_dab_od_mean", (0.2, 0.4, 0.6)),
        (["--marker", "atrx"], "nucleus_dab_od_mean", (0.2,)),
        (["--marker", "atrx", "--thresholds", "0.3"], "nucleus_dab_od_mean", (0.3,)),
        (["--marker", "idh1", "--compartment", "cell"], "cell_dab_od_mean", (0.2, 0.4, 0.6)),
        (["--marker", "egfr", "--statistic", "max"], "membrane_dab_od_max", (0.2, 0.4, 0.6)),
        (["--compartment", "membrane", "--thresholds", "0.25"], "membrane_dab_od_mean", (0.25,)),
        (["--marker", "atrx", "--positivity-column", "cell_dab_od_max"], "cell_dab_od_max", (0.2,)),
    ],
)
def test_cli_flags_given_win_over_the_marker(
    flags: list[str], column: str, thresholds: tuple[float, ...]
) -> None:
    for command in (["analyze", "s.svs", "--out", "o"], ["cohort", "m.csv", "--out", "o"]):
        params = _params([*command, *flags])
        pos = params.biomarkers.positivity
        assert (pos.column, pos.thresholds) == (column, thresholds)
        marker = flags[1] if flags[:1] == ["--marker"] else None
        assert params.marker == marker
        assert params.cells.stain == ("hdab" if marker else "he")  # a marker implies H-DAB


def test_cli_refuses_a_marker_on_he_and_a_column_with_a_compartment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from napari_gbm.cli import main

    out = tmp_path / "o"
    assert main(["analyze", "s.svs", "--out", str(out), "--marker", "p53", "--stain", "he"]) == 2
    assert "--marker p53 grades DAB" in capsys.readouterr().err
    argv = ["analyze", "s.svs", "--out", str(out), "--positivity-column", "x", "--statistic", "max"]
    assert main(argv) == 2
    assert "not both" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["analyze", "s.svs", "--out", str(out), "--marker", "mgmt"])
    assert "invalid choice" in capsys.readouterr().err
    assert not out.exists()


def test_analyze_params_marker_is_validated() -> None:
    from napari_gbm.pipeline import AnalyzeParams

    assert AnalyzeParams(marker="ATRX").marker == "atrx"
    with pytest.raises(ValueError, match="the presets are ki67, p53, olig2, atrx"):
        AnalyzeParams(marker="mgmt")


# --- ATRX loss ----------------------------------------------------------------------------


def hand_table() -> pd.DataFrame:
    """10 tumour nuclei (6 negative), 5 endothelial (all positive), 3 lymphocytes (2
    positive), 1 tumour nucleus not graded, and boundary cases of the proxy."""
    rows = (
        [(50.0, 9.0, 7.0, 0)] * 6  # tumour, negative
        + [(50.0, 9.0, 7.0, 2)] * 4  # tumour, positive
        + [(28.0, 12.0, 3.0, 1)] * 5  # endothelial: 4x elongated, 3 µm thin
        + [(20.0, 5.2, 4.9, 3)] * 2  # lymphocytes
        + [(20.0, 5.2, 4.9, 0)]
        + [(50.0, 9.0, 7.0, -1)]  # not graded: left out
        + [(40.0, 10.0, 4.0, 0)]  # elongation 2.5, minor 4 µm: endothelial (>=, <=)
        + [(30.0, 6.0, 5.0, 0)]  # area exactly 30 µm²: not a lymphocyte (<): tumour
    )
    return pd.DataFrame(
        rows,
        columns=[
            "nucleus_area_um2",
            "nucleus_major_axis_um",
            "nucleus_minor_axis_um",
            "positive_class",
        ],
    )


def test_internal_controls_by_hand() -> None:
    controls = internal_controls(hand_table())
    expected = [False] * 10 + [True] * 8 + [False] + [True] + [False]
    np.testing.assert_array_equal(controls, expected)
    with pytest.raises(ValueError, match="nucleus_minor_axis_um"):
        internal_controls(hand_table().drop(columns="nucleus_minor_axis_um"))


def test_loss_summary_by_hand() -> None:
    few = InternalControlParams(min_controls=5)
    entries, warnings = loss_summary(hand_table(), few)
    # tumour: 10 + the 30-µm² nucleus, all negative but 4 positive; controls: 5 + 3 + 1
    assert entries == {
        "loss_fraction": 7 / 11,
        "loss_callable": True,
        "n_tumour_nuclei_graded": 11,
        "n_tumour_nuclei_negative": 7,
        "n_internal_control": 9,
        "n_internal_control_positive": 7,
        "internal_control_positive_fraction": 7 / 9,
    }
    assert warnings == []
    # the default asks for 20 controls: not enough to check the stain
    entries, warnings = loss_summary(hand_table())
    assert entries["loss_fraction"] == 7 / 11 and entries["loss_callable"] is False
    assert len(warnings) == 1 and "9 internal-control nuclei" in warnings[0]
    # controls mostly negative: the stain failed
    failed = hand_table()
    failed.loc[10:14, "positive_class"] = 0
    entries, warnings = loss_summary(failed, few)
    assert entries["internal_control_positive_fraction"] == 2 / 9
    assert entries["loss_callable"] is False and "stain seems to have failed" in warnings[0]


def test_marker_summary_entries() -> None:
    none, warnings = marker_summary(None)
    assert none == {"marker": None, "marker_preset": None, **dict.fromkeys(LOSS_KEYS)}
    ki67, _ = marker_summary("ki67", hand_table())
    assert ki67["marker_preset"]["compartment"] == "nucleus" and ki67["loss_fraction"] is None
    atrx, _ = marker_summary("atrx", hand_table(), InternalControlParams(min_controls=5))
    assert atrx["marker"] == "atrx" and atrx["loss_fraction"] == 7 / 11
    he = hand_table().assign(positive_class=-1)
    entries, warnings = marker_summary("atrx", he)
    assert entries["loss_fraction"] is None and "no cell was graded" in warnings[0]


# --- end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hdab_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from napari_gbm.synthetic import make_synthetic_slide

    path = tmp_path_factory.mktemp("markers") / "hdab.tif"
    make_synthetic_slide(path, size_px=(1024, 1024), stain="hdab", seed=1)
    return path


def test_analyze_with_a_marker_end_to_end(hdab_slide: Path, tmp_path: Path) -> None:
    from napari_gbm.cli import main

    out = tmp_path / "egfr"
    assert main(["analyze", str(hdab_slide), "--out", str(out), "--marker", "egfr"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["marker"] == "egfr"
    assert summary["marker_preset"] == MARKERS["egfr"].to_dict()
    assert summary["parameters"]["marker"] == "egfr"
    assert summary["parameters"]["cells"]["stain"] == "hdab"
    pos = summary["parameters"]["biomarkers"]["positivity"]
    assert pos["column"] == "membrane_dab_od_mean" and pos["compartment"] == "membrane"
    assert summary["loss_fraction"] is None
    cells = pd.read_parquet(out / "cells.parquet")
    # every cell graded on the preset's column with the preset's thresholds
    expected = positive_class(cells["membrane_dab_od_mean"], MARKERS["egfr"].thresholds)
    np.testing.assert_array_equal(cells["positive_class"], expected)
    assert summary["n_graded"] == int((expected >= 0).sum()) > 0
    # the ring is not the nucleus: it measures something else
    assert not np.allclose(cells["membrane_dab_od_mean"], cells["nucleus_dab_od_mean"])


def test_analyze_p53_and_atrx_loss_end_to_end(hdab_slide: Path, tmp_path: Path) -> None:
    from napari_gbm.cli import main

    out = tmp_path / "p53"
    assert main(["analyze", str(hdab_slide), "--out", str(out), "--marker", "p53"]) == 0
    p53 = json.loads((out / "summary.json").read_text())
    assert p53["marker"] == "p53" and p53["marker_preset"]["name"] == "p53"
    assert p53["parameters"]["biomarkers"]["positivity"]["column"] == "nucleus_dab_od_mean"
    assert "loss_fraction" in p53 and p53["loss_fraction"] is None

    out = tmp_path / "atrx"
    assert main(["analyze", str(hdab_slide), "--out", str(out), "--marker", "atrx"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    cells = pd.read_parquet(out / "cells.parquet")
    assert set(np.unique(cells["positive_class"])) <= {0, 1}  # one threshold: no grades
    tumour = ~internal_controls(cells) & (cells["positive_class"].to_numpy() >= 0)
    positive = (cells["positive_class"].to_numpy() > 0)[tumour]
    assert summary["n_tumour_nuclei_graded"] == int(tumour.sum()) > 0
    assert summary["loss_fraction"] == pytest.approx(1 - positive.mean())
    n_controls = summary["n_internal_control"]
    assert n_controls + summary["n_tumour_nuclei_graded"] == summary["n_graded"]
    if not summary["loss_callable"]:
        assert any("ATRX loss" in w for w in summary["warnings"])
