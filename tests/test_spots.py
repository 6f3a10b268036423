"""Histology per Visium spot: ``napari-gbm spots`` end to end on an analysis folder whose
cells are placed by hand, against counts made by hand; both Space Ranger formats; the
placement warnings; bad inputs; the spots in a real napari viewer."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest

from napari_gbm.cli import main
from napari_gbm.io import read_parquet_metadata
from napari_gbm.spots import SpotGeometry, aggregate_spots, read_positions

MPP = 0.5  # µm per level-0 pixel: a 55 µm spot is 110 px across, the grid pitch 200 px
HEADER = "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres"
ROW_STEP = 100 * math.sqrt(3) / 2 / MPP  # Visium's rows are sqrt(3)/2 x 100 µm apart
#: barcode, in_tissue, array_row, array_col, y (row), x (col) in level-0 px
SPOTS = [
    ("AAAC-1", 1, 0, 0, 1000.0, 1000.0),  # A: four cells, one on its rim, one just outside
    ("AAAG-1", 1, 0, 2, 1000.0, 1200.0),  # B: no cell
    ("AAAT-1", 0, 1, 1, 1000.0 + ROW_STEP, 1100.0),  # C: off tissue, one cell
    ("AACA-1", 1, 1, 3, 1000.0 + ROW_STEP, 1300.0),  # D: two cells, neither graded
]
#: x, y (level-0 px), nucleus area µm², circularity, positive_class, tile_id
CELLS = [
    (1000.0, 1000.0, 40.0, 0.90, 2, 0),  # A, 2+
    (1020.0, 990.0, 60.0, 0.80, 0, 0),  # A, negative
    (980.0, 1030.0, 50.0, 0.85, 1, 0),  # A, 1+
    (1054.9, 1000.0, 70.0, 0.70, 0, 1),  # A, 54.9 px from the centre: inside (r = 55 px)
    (1000.0, 1055.2, 500.0, 0.50, 3, 1),  # 55.2 px from A's centre: outside every spot
    (1100.0, 1000.0 + ROW_STEP, 45.0, 0.9, 1, 0),  # C's centre (counted only with all spots)
    (1300.0, 1000.0 + ROW_STEP - 10, 30.0, 0.9, -1, 1),  # D, not graded
    (1310.0, 1000.0 + ROW_STEP + 10, 90.0, 0.9, -1, 1),  # D, not graded
    (1600.0, 1600.0, 55.0, 0.9, 0, 0),  # under no spot
]
SCALEFACTORS = {
    "spot_diameter_fullres": 55.0 / MPP,
    "tissue_hires_scalef": 0.17,
    "tissue_lowres_scalef": 0.05,
    "fiducial_diameter_fullres": 89.0 / MPP,
}
#: spot A by hand: cells 1-4; 2+, negative, 1+, negative; tiles 0, 0, 0, 1
A_AREAS = [40.0, 60.0, 50.0, 70.0]
A_SPOT_AREA_MM2 = math.pi * 27.5**2 / 1e6


def _analysis(folder: Path) -> Path:
    """A minimal analysis folder: summary.json, cells.parquet, tiles.parquet."""
    folder.mkdir(parents=True, exist_ok=True)
    x, y, area, circ, cls, tile = (np.array(c) for c in zip(*CELLS, strict=True))
    pd.DataFrame(
        {
            "cell_id": np.arange(len(CELLS)),
            "tile_id": tile.astype(np.int64),
            "centroid_x_px": x,
            "centroid_y_px": y,
            "centroid_x_um": x * MPP,
            "centroid_y_um": y * MPP,
            "nucleus_area_um2": area.astype(np.float32),
            "nucleus_circularity": circ.astype(np.float32),
            "positive_class": cls.astype(np.int8),
        }
    ).to_parquet(folder / "cells.parquet")
    pd.DataFrame({"tile_id": [0, 1], "region_class": np.array([1, 3], np.int8)}).to_parquet(
        folder / "tiles.parquet"
    )
    summary = {
        "slide_id": "hand",
        "slide": {"mpp": MPP, "dimensions": [4096, 4096]},
        "parameters": {"biomarkers": {"positivity": {"thresholds": [0.2, 0.4, 0.6]}}},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def _positions(path: Path, header: bool = True, spots: list[Any] = SPOTS, scale: float = 1.0):
    rows = [f"{b},{t},{r},{c},{y * scale:.4f},{x * scale:.4f}" for b, t, r, c, y, x in spots]
    path.write_text("\n".join(([HEADER] if header else []) + rows) + "\n")
    return path


def _scalefactors(path: Path, **changes: float) -> Path:
    path.write_text(json.dumps({**SCALEFACTORS, **changes}))
    return path


@pytest.fixture
def visium(tmp_path: Path) -> dict[str, Path]:
    return {
        "dir": _analysis(tmp_path / "analysis"),
        "positions": _positions(tmp_path / "tissue_positions.csv"),
        "scalefactors": _scalefactors(tmp_path / "scalefactors_json.json"),
    }


def _run(v: dict[str, Path], out: Path, *extra: str) -> int:
    args = ["spots", str(v["dir"]), "--positions", str(v["positions"])]
    return main([*args, "--scalefactors", str(v["scalefactors"]), "--out", str(out), *extra])


def _check_hand_counts(t: pd.DataFrame) -> None:
    t = t.set_index("barcode")
    assert list(t.index) == ["AAAC-1", "AAAG-1", "AACA-1"]  # C is off tissue
    a, b, d = t.loc["AAAC-1"], t.loc["AAAG-1"], t.loc["AACA-1"]
    assert a["n_cells"] == 4 and b["n_cells"] == 0 and d["n_cells"] == 2
    assert a["n_graded"] == 4 and a["n_positive"] == 2
    assert a["positive_fraction"] == pytest.approx(0.5)
    assert a["h_score"] == pytest.approx(100 * (2 + 1) / 4)
    assert a["nucleus_area_um2_mean"] == pytest.approx(55.0)
    assert a["nucleus_area_um2_median"] == pytest.approx(55.0)
    assert a["nucleus_area_um2_cv"] == pytest.approx(np.std(A_AREAS, ddof=1) / 55.0)
    assert a["giant_nucleus_fraction"] == 0.0
    assert a["cell_density_per_mm2"] == pytest.approx(4 / A_SPOT_AREA_MM2)
    assert a["region_cellular_tumour_fraction"] == pytest.approx(0.75)
    assert a["region_necrosis_fraction"] == pytest.approx(0.25)
    assert a["region_infiltrating_fraction"] == 0.0
    assert b["cell_density_per_mm2"] == 0.0
    for col in ("positive_fraction", "nucleus_area_um2_mean", "region_necrosis_fraction"):
        assert np.isnan(b[col]), col
    # D: two cells, neither graded (as on H&E): no positive fraction, not zero
    assert d["n_graded"] == 0 and np.isnan(d["positive_fraction"]) and np.isnan(d["h_score"])
    assert d["nucleus_area_um2_mean"] == pytest.approx(60.0)
    assert d["region_necrosis_fraction"] == 1.0
    assert a["centre_x_px"] == 1000.0 and a["centre_y_um"] == 500.0


def test_hand_counts_end_to_end(visium: dict[str, Path], capsys: Any) -> None:
    out = visium["dir"].parent / "spots.parquet"
    assert _run(visium, out) == 0
    captured = capsys.readouterr()
    assert "note:" not in captured.err, captured.err  # 55 µm spots, 100 µm apart: plausible
    assert "3 spots (disc, 55 µm), 2 with cells; 6 of 9 cells under a spot" in captured.out
    t = pd.read_parquet(out)
    _check_hand_counts(t)
    meta = read_parquet_metadata(out)
    assert meta["kind"] == "spots" and meta["diameter_um"] == pytest.approx(55.0)
    assert meta["slide_id"] == "hand" and meta["warnings"] == []
    assert meta["units"]["cell_density_per_mm2"] == "1/mm²"


def test_old_headerless_positions_and_csv_output(visium: dict[str, Path], tmp_path: Path) -> None:
    visium["positions"] = _positions(tmp_path / "tissue_positions_list.csv", header=False)
    assert list(read_positions(visium["positions"]).columns) == HEADER.split(",")
    assert _run(visium, tmp_path / "spots.csv") == 0
    _check_hand_counts(pd.read_csv(tmp_path / "spots.csv"))


def test_all_spots_keeps_the_spots_off_tissue(visium: dict[str, Path], tmp_path: Path) -> None:
    assert _run(visium, tmp_path / "s.parquet", "--all-spots") == 0
    t = pd.read_parquet(tmp_path / "s.parquet").set_index("barcode")
    assert t.loc["AAAT-1", "n_cells"] == 1 and t.loc["AAAT-1", "in_tissue"] == 0


def test_h5ad_fields(visium: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "spots.h5ad"
    assert _run(visium, out) == 0
    with h5py.File(out, "r") as f:
        names = [v.decode() if isinstance(v, bytes) else v for v in f["var"]["_index"][:]]
        barcodes = [v.decode() if isinstance(v, bytes) else v for v in f["obs"]["_index"][:]]
        x = f["X"][:]
        spatial, spatial_um = f["obsm"]["spatial"][:], f["obsm"]["spatial_um"][:]
        diameter = f["uns"]["spatial"]["hand"]["scalefactors"]["spot_diameter_fullres"][()]
        assert {"in_tissue", "array_row", "array_col"} <= set(f["obs"].keys())
    assert x.dtype == np.float32 and x.shape == (3, len(names))
    assert barcodes == ["AAAC-1", "AAAG-1", "AACA-1"]
    assert x[0, names.index("n_cells")] == 4
    assert x[0, names.index("positive_fraction")] == pytest.approx(0.5)
    np.testing.assert_allclose(spatial[0], [1000.0, 1000.0])  # level-0 px (x, y): squidpy's
    np.testing.assert_allclose(spatial_um[0], [500.0, 500.0])
    assert diameter == pytest.approx(110.0)
    # and as anndata itself reads it (in .venv-omics: anndata needs pandas < 3)
    from test_export_anndata import read_with_anndata

    ad, arrays = read_with_anndata(out)
    assert (
        ad["obs_names"] == barcodes and ad["var_names"] == names and ad["shape"] == [3, len(names)]
    )
    assert ad["obs"]["array_col"]["values"] == [0, 2, 3]
    np.testing.assert_allclose(arrays["obsm_spatial"][0], [1000.0, 1000.0])
    np.testing.assert_array_equal(arrays["X"], x)
    assert ad["var"]["unit"]["values"][names.index("cell_density_per_mm2")] == "1/mm²"
    assert ad["uns"]["spatial"]["hand"]["scalefactors"]["spot_diameter_fullres"] == 110.0
    assert ad["uns"]["napari_gbm"]["kind"] == "spots"


def test_transform_maps_a_downsampled_image_onto_the_slide(
    visium: dict[str, Path], tmp_path: Path, capsys: Any
) -> None:
    """Space Ranger ran on an image at half the slide's resolution: with the transform the
    counts are the same; without it, the sizes say so."""
    visium["positions"] = _positions(tmp_path / "half.csv", scale=0.5)
    visium["scalefactors"] = _scalefactors(tmp_path / "sf.json", spot_diameter_fullres=55.0)
    (tmp_path / "t.json").write_text(json.dumps({"scale": 2.0, "offset": [0, 0]}))
    assert _run(visium, tmp_path / "s.parquet", "--transform", str(tmp_path / "t.json")) == 0
    assert "note:" not in capsys.readouterr().err
    _check_hand_counts(pd.read_parquet(tmp_path / "s.parquet"))
    assert _run(visium, tmp_path / "s2.parquet") == 0
    err = capsys.readouterr().err
    assert "27.5 µm across" in err and "not 55 µm or 65 µm" in err and "--transform" in err
    assert "50 µm apart" in err


def test_diameter_plausibility_warning(visium: dict[str, Path], tmp_path: Path, capsys: Any):
    """A spot 150 µm across (wrong pixel size, or another image): warned, still written."""
    visium["scalefactors"] = _scalefactors(tmp_path / "sf.json", spot_diameter_fullres=300.0)
    assert _run(visium, tmp_path / "s.parquet") == 0
    err = capsys.readouterr().err
    assert "napari-gbm spots: note: the spots come out 150 µm across" in err
    assert "pixel size is wrong" in err
    meta = read_parquet_metadata(tmp_path / "s.parquet")
    assert len(meta["warnings"]) == 1
    # 65 µm (Space Ranger >= 1.3's "theoretical" spot) is plausible
    visium["scalefactors"] = _scalefactors(tmp_path / "sf.json", spot_diameter_fullres=130.0)
    assert _run(visium, tmp_path / "s.parquet") == 0
    assert "note:" not in capsys.readouterr().err


def test_visium_hd_square_bins() -> None:
    """8 µm bins (16 px): a cell in a bin's corner counts (outside its inscribed disc)."""
    geometry = SpotGeometry("square", 16.0, 8.0, MPP, {"bin_size_um": 8.0})
    positions = pd.DataFrame(
        {
            "barcode": ["s_008um_00000_00000-1", "s_008um_00000_00001-1"],
            "in_tissue": [1, 1],
            "array_row": [0, 0],
            "array_col": [0, 1],
            "pxl_row_in_fullres": [100.0, 100.0],
            "pxl_col_in_fullres": [100.0, 116.0],
        }
    )
    cells = pd.DataFrame(
        {
            "centroid_x_px": [107.5, 93.0, 116.0, 130.0],  # corner of bin 0; bin 0; bin 1; none
            "centroid_y_px": [107.5, 100.0, 95.0, 100.0],
            "nucleus_area_um2": [20.0, 30.0, 40.0, 50.0],
            "nucleus_circularity": [0.9] * 4,
            "positive_class": [1, 0, -1, 0],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 8 µm bins, 8 µm apart, 0.5 µm/px: plausible
        spots = aggregate_spots(cells, positions, geometry, slide_mpp=MPP)
    t = spots.table
    assert t["n_cells"].tolist() == [2, 1]
    assert t["positive_fraction"].tolist()[0] == 0.5 and np.isnan(t["positive_fraction"][1])
    assert t["cell_density_per_mm2"][0] == pytest.approx(2 / (8.0**2 / 1e6))
    assert spots.metadata["shape"] == "square" and spots.metadata["diameter_um"] == 8.0


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        ("positions", "lacks the columns array_col, pxl_row_in_fullres, pxl_col_in_fullres"),
        ("cells", "lacks the columns positive_class"),
        ("scalefactors", "lacks 'spot_diameter_fullres'"),
        ("suffix", "give a file ending in .h5ad, .parquet, .csv"),
        ("folder", "is not a complete analysis folder"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(
    visium: dict[str, Path], tmp_path: Path, capsys: Any, what: str, expected: str
) -> None:
    out = tmp_path / "s.parquet"
    if what == "positions":
        visium["positions"].write_text("barcode,in_tissue,array_row\nAAAC-1,1,0\n")
    elif what == "cells":
        cells = pd.read_parquet(visium["dir"] / "cells.parquet")
        cells.drop(columns="positive_class").to_parquet(visium["dir"] / "cells.parquet")
    elif what == "scalefactors":
        visium["scalefactors"].write_text(json.dumps({"tissue_hires_scalef": 0.1}))
    elif what == "suffix":
        out = tmp_path / "s.xlsx"
    else:
        (visium["dir"] / "summary.json").unlink()
    assert _run(visium, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("napari-gbm spots: error:"), err
    assert expected in err[0]
    assert not out.exists()


@pytest.mark.gui
def test_spots_layer_in_napari(visium: dict[str, Path], tmp_path: Path, make_napari_viewer):
    """The reader opens spots.parquet as Points of 55 µm on the µm canvas, with features."""
    pytest.importorskip("napari")
    from _gui import settle
    from napari_gbm._napari._reader import napari_get_reader

    out = tmp_path / "spots.parquet"
    assert _run(visium, out) == 0
    assert napari_get_reader(str(visium["dir"] / "cells.parquet")) is None  # not spots
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(out), plugin="napari-gbm")
    settle()
    assert type(layer).__name__ == "Points" and len(layer.data) == 3
    size_um = float(np.unique(layer.size)[0]) * float(layer.scale[0])
    assert size_um == pytest.approx(55.0)
    assert tuple(str(u) for u in layer.units) == ("micrometer", "micrometer")
    feats = layer.features.set_index("barcode")
    assert feats.loc["AAAC-1", "n_cells"] == 4
    assert feats.loc["AAAC-1", "positive_fraction"] == pytest.approx(0.5)
    np.testing.assert_allclose(layer.data_to_world(layer.data[0]), [500.0, 500.0])
    assert layer.metadata["napari_gbm"]["colour_by"]["column"] == "positive_fraction"
    # coloured like cells, by a feature: B has no positive fraction, its face is clear
    assert layer.face_color[0, 3] == 1.0 and layer.face_color[1, 3] == 0.0
    layer.face_color = "nucleus_area_um2_mean"
    settle()
    assert layer.face_color.shape == (3, 4)
