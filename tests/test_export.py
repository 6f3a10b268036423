"""Exports: QuPath / HistomicsTK names, tables with metadata, QuPath GeoJSON of cells and
outlines. Checked against scikit-image, HistomicsTK's reference headers, label images of
known shapes and a real segmentation of a synthetic Ki-67 slide."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from skimage.draw import polygon2mask
from skimage.measure import regionprops

from napari_gbm import export as ex
from napari_gbm.export.outlines import _label_rings
from napari_gbm.io import read_parquet_metadata
from napari_gbm.schema import cell_table_columns, conform_cell_table

DATA = Path(__file__).parent / "data" / "histomicstk_easy1"
MPP = 0.5
X0, Y0 = 1024, 512  # level-0 corner of the analysed region


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def ki67(synthetic_ki67: Path) -> dict[str, Any]:
    """A real segmentation of a 384 x 384 px region: the cell table (ids = labels), and the
    nucleus and cell label images placed at (X0, Y0)."""
    from napari_gbm import Slide
    from napari_gbm.detect.segment import segment_nuclei
    from napari_gbm.detect.stain import HDAB
    from napari_gbm.features.compartments import measure_compartments

    slide = Slide(synthetic_ki67)
    assert slide.mpp == MPP
    rgb = slide.read_region((X0, Y0), 0, (384, 384))
    seg = segment_nuclei(rgb, MPP, HDAB)
    table = measure_compartments(
        seg.nuclei, seg.cells, {s: seg.stains[s] for s in ("hematoxylin", "dab")}, mpp=MPP
    )
    cells = table.rename(columns={"label": "cell_id"})
    cells["centroid_x_px"] += X0
    cells["centroid_y_px"] += Y0
    cells["centroid_x_um"] = cells["centroid_x_px"] * MPP
    cells["centroid_y_um"] = cells["centroid_y_px"] * MPP
    cells["slide_id"] = "ki67"
    cells["tile_id"] = 0
    # DAB grades with QuPath's default thresholds (REFERENCE.md)
    grade = np.digitize(cells["nucleus_dab_od_mean"], [0.2, 0.4, 0.6])
    cells["positive_class"] = grade.astype(np.int8)
    for col in cell_table_columns(("hematoxylin", "dab")):  # texture, neighbourhood: NaN
        if col.name not in cells:
            cells[col.name] = np.zeros(len(cells), col.dtype) if "int" in col.dtype else np.nan
    cells = conform_cell_table(cells, ("hematoxylin", "dab"))
    assert len(cells) > 50 and set(cells["positive_class"]) >= {0, 1}
    return {"cells": cells, "nuclei": seg.nuclei, "cell_labels": seg.cells}


def _shoelace(ring: Any) -> float:
    r = np.asarray(ring, dtype=float)
    return 0.5 * float(r[:-1, 0] @ r[1:, 1] - r[1:, 0] @ r[:-1, 1])


def _perimeter(ring: Any) -> float:
    r = np.asarray(ring, dtype=float)
    return float(np.hypot(*np.diff(r, axis=0).T).sum())


def _strict_loads(text: str) -> Any:
    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} is not valid JSON")

    return json.loads(text, parse_constant=no_constants)


# ------------------------------------------------------------------------------ names


QUPATH_SPELLINGS = {
    "nucleus_area_um2": "Nucleus: Area µm^2",
    "nucleus_perimeter_um": "Nucleus: Perimeter µm",
    "nucleus_circularity": "Nucleus: Circularity",
    "nucleus_max_caliper_um": "Nucleus: Max caliper µm",
    "nucleus_min_caliper_um": "Nucleus: Min caliper µm",
    "nucleus_eccentricity": "Nucleus: Eccentricity",
    "nucleus_solidity": "Nucleus: Solidity",
    "nucleus_hematoxylin_od_mean": "Nucleus: Hematoxylin OD mean",
    "nucleus_hematoxylin_od_std": "Nucleus: Hematoxylin OD std dev",
    "nucleus_hematoxylin_od_sum": "Nucleus: Hematoxylin OD sum",
    "nucleus_dab_od_mean": "Nucleus: DAB OD mean",
    "nucleus_dab_od_range": "Nucleus: DAB OD range",
    "cell_area_um2": "Cell: Area µm^2",
    "cell_dab_od_mean": "Cell: DAB OD mean",
    "cell_dab_od_max": "Cell: DAB OD max",
    "cytoplasm_dab_od_std": "Cytoplasm: DAB OD std dev",
    "cytoplasm_hematoxylin_od_min": "Cytoplasm: Hematoxylin OD min",
    "nucleus_cell_area_ratio": "Nucleus/Cell area ratio",
    "centroid_x_um": "Centroid X µm",
    "centroid_y_um": "Centroid Y µm",
    "slide_id": "Image",
    # no QuPath name: ours behind the prefix
    "nucleus_major_axis_um": "napari_gbm: nucleus_major_axis_um",
    "nucleus_dab_od_median": "napari_gbm: nucleus_dab_od_median",
    "cell_dab_od_sum": "napari_gbm: cell_dab_od_sum",  # QuPath sums the nucleus only
    "cytoplasm_dab_od_range": "napari_gbm: cytoplasm_dab_od_range",
    "nucleus_haralick_asm_mean": "napari_gbm: nucleus_haralick_asm_mean",
    "positive_class": "napari_gbm: positive_class",
}


def test_qupath_spellings_and_round_trip(ki67: dict[str, Any]) -> None:
    cells = ki67["cells"]
    q = ex.to_qupath_names(cells)
    mapping = dict(zip(cells.columns, q.columns, strict=True))
    for ours, theirs in QUPATH_SPELLINGS.items():
        assert mapping[ours] == theirs
    np.testing.assert_array_equal(q["Nucleus: Area µm^2"], cells["nucleus_area_um2"])
    pd.testing.assert_frame_equal(ex.from_qupath_names(q), cells)
    # H&E stains
    he = ex.column_names([c.name for c in cell_table_columns(("hematoxylin", "eosin"))], "qupath")
    assert he["cytoplasm_eosin_od_mean"] == "Cytoplasm: Eosin OD mean"
    assert he["nucleus_eosin_od_std"] == "Nucleus: Eosin OD std dev"


@pytest.mark.parametrize("naming", ["qupath", "histomicstk"])
@pytest.mark.parametrize("stains", [("hematoxylin", "eosin"), ("hematoxylin", "dab")])
def test_every_schema_column_round_trips(naming: str, stains: tuple[str, str]) -> None:
    columns = [c.name for c in cell_table_columns(stains)] + ["tissue_fraction", "x y: z"]
    mapping = ex.column_names(columns, naming)
    assert len(set(mapping.values())) == len(columns)  # injective
    df = pd.DataFrame([np.arange(len(columns))], columns=columns)
    renamed = ex.to_qupath_names(df) if naming == "qupath" else ex.to_histomicstk_names(df)
    back = (ex.from_qupath_names if naming == "qupath" else ex.from_histomicstk_names)(renamed)
    pd.testing.assert_frame_equal(back, df)


def test_histomicstk_names_are_histomicstk_names(ki67: dict[str, Any]) -> None:
    """Every HistomicsTK name we write is a column of HistomicsTK's own reference outputs
    (after its Nucleus. / Cytoplasm. prefix and our unit suffix)."""
    headers = set()
    for csv in DATA.glob("*.csv"):
        headers |= set(pd.read_csv(csv, nrows=0).columns)
    mapping = ex.column_names(list(ki67["cells"].columns), "histomicstk")
    theirs = [v for v in mapping.values() if not v.startswith(ex.HISTOMICSTK_PREFIX)]
    assert len(theirs) >= 20
    for name in theirs:
        if name.startswith("Identifier."):
            continue  # HistomicsTK's label/centroid columns (not in the feature CSVs)
        base = name.split("_")[0]
        for prefix in ("Nucleus.", "Cytoplasm."):
            base = base.removeprefix(prefix)
        assert base in headers, name
    assert mapping["nucleus_area_um2"] == "Size.Area_um2"  # µm², not HistomicsTK's pixels
    assert mapping["nucleus_circularity"] == "Shape.Circularity"
    assert mapping["nucleus_orientation_rad"] == "Orientation.Orientation"
    assert mapping["nucleus_hematoxylin_od_mean"] == "Nucleus.Intensity.Mean"
    assert mapping["nucleus_haralick_imc2_range"] == "Nucleus.Haralick.IMC2.Range"
    assert mapping["centroid_x_px"] == "Identifier.CentroidX"
    assert mapping["cell_area_um2"] == "napari_gbm.cell_area_um2"
    h = ex.to_histomicstk_names(ki67["cells"])
    pd.testing.assert_frame_equal(ex.from_histomicstk_names(h), ki67["cells"])


def test_unknown_naming_and_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="naming must be one of"):
        ex.column_names(["a"], "cellprofiler")
    clash = pd.DataFrame({"nucleus_area_um2": [1.0], "Nucleus: Area µm^2": [2.0]})
    with pytest.raises(ValueError, match="duplicate columns"):
        ex.from_qupath_names(clash)  # both would be nucleus_area_um2
    renamed = ex.to_qupath_names(clash)  # ours is prefixed: no clash
    assert list(renamed.columns) == ["Nucleus: Area µm^2", "napari_gbm: Nucleus: Area µm^2"]
    pd.testing.assert_frame_equal(ex.from_qupath_names(renamed), clash)


# ------------------------------------------------------------------------------ tables


def test_csv_and_tsv_with_sidecar_metadata(ki67: dict[str, Any], tmp_path: Path) -> None:
    cells = ki67["cells"]
    meta = {"params": {"tile_size_px": 512}, "slide": {"mpp": MPP}}
    for ext, sep in ((".csv", ","), (".tsv", "\t")):
        path = ex.export_table(cells, tmp_path / f"cells{ext}", naming="qupath", metadata=meta)
        sidecar = json.loads((tmp_path / f"cells{ext}.json").read_text(encoding="utf-8"))
        assert sidecar["params"] == {"tile_size_px": 512} and sidecar["slide"]["mpp"] == MPP
        assert sidecar["export"]["naming"] == "qupath"
        assert sidecar["export"]["rows"] == len(cells)
        assert "napari_gbm" in sidecar["export"]["software"]
        assert sidecar["export"]["columns"]["Nucleus: DAB OD mean"] == "nucleus_dab_od_mean"
        back = pd.read_csv(path, sep=sep, encoding="utf-8")
        assert "Nucleus: Area µm^2" in back.columns
        back = ex.from_qupath_names(back)
        assert list(back.columns) == list(cells.columns)
        for col in ("nucleus_area_um2", "nucleus_dab_od_mean", "centroid_x_px", "cell_id"):
            np.testing.assert_allclose(back[col], cells[col], rtol=1e-6)
        assert (back["slide_id"] == "ki67").all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cells.csv", "cells.csv.json", "cells.tsv", "cells.tsv.json",
    ]  # fmt: skip


def test_parquet_keeps_dtypes_and_metadata(ki67: dict[str, Any], tmp_path: Path) -> None:
    cells = ki67["cells"]
    path = ex.export_table(cells, tmp_path / "cells.parquet", metadata={"params": {"a": 1}})
    pd.testing.assert_frame_equal(pd.read_parquet(path), cells)
    meta = read_parquet_metadata(path)
    assert meta["params"] == {"a": 1} and meta["export"]["naming"] == "napari_gbm"
    h = ex.export_table(cells, tmp_path / "h.parquet", naming="histomicstk")
    back = ex.from_histomicstk_names(pd.read_parquet(h))
    pd.testing.assert_frame_equal(back, cells)


def test_a_tile_table_exports_too(tmp_path: Path) -> None:
    tiles = pd.DataFrame({"tile_id": [0, 1], "tissue_fraction": [0.5, 1.0], "core_x0_px": [0, 512]})
    path = ex.export_table(tiles, tmp_path / "tiles.csv", naming="qupath")
    back = pd.read_csv(path)
    assert list(back.columns) == [f"napari_gbm: {c}" for c in tiles.columns]
    pd.testing.assert_frame_equal(ex.from_qupath_names(back), tiles)


def test_text_tables_take_any_frame(tmp_path: Path) -> None:
    mixed = pd.DataFrame({"note": pd.Series([1, "x"], dtype=object), "v": [0.5, np.nan]})
    path = ex.export_table(mixed, tmp_path / "m.tsv", metadata={"threshold": float("nan")})
    back = pd.read_csv(path, sep="\t")
    assert back["note"].astype(str).tolist() == ["1", "x"] and np.isnan(back["v"][1])
    sidecar = _strict_loads((tmp_path / "m.tsv.json").read_text(encoding="utf-8"))
    assert sidecar["threshold"] is None  # NaN is not JSON


def test_bad_table_exports_leave_nothing(ki67: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'\.xlsx'.*\.csv, \.tsv, \.parquet"):
        ex.export_table(ki67["cells"], tmp_path / "cells.xlsx")
    with pytest.raises(ValueError, match="cells_to_geojson"):
        ex.export_table(ki67["cells"], tmp_path / "cells.geojson")
    with pytest.raises(ValueError, match="naming"):
        ex.export_table(ki67["cells"], tmp_path / "cells.csv", naming="QuPath")
    with pytest.raises(ValueError, match="DataFrame"):
        ex.export_table({"a": [1]}, tmp_path / "cells.csv")  # type: ignore[arg-type]
    mixed = pd.DataFrame({"a": pd.Series([1, "x", 2.5], dtype=object)})
    with pytest.raises((TypeError, ValueError)):  # pyarrow cannot store it: no file appears
        ex.export_table(mixed, tmp_path / "mixed.parquet")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ outlines


def _known_shapes() -> np.ndarray:
    lab = np.zeros((40, 50), np.int32)
    lab[2:7, 3:8] = 1  # 5 x 5 square
    lab[10:13, 2:20] = 2  # 3 x 18 rectangle
    lab[20:30, 5:8] = 3  # L shape
    lab[27:30, 8:15] = 3
    lab[5:15, 30:40] = 4  # ring with a hole (filled)
    lab[8:12, 33:37] = 0
    lab[20, 30] = 5  # two diagonal pixels: two 4-connected parts
    lab[21, 31] = 5
    lab[33, 40] = 6  # single pixel
    return lab


def test_polygons_of_known_shapes() -> None:
    lab = _known_shapes()
    polys = ex.labels_to_polygons(lab)
    assert sorted(polys) == [1, 2, 3, 4, 5, 6]
    props = {p.label: p for p in regionprops(lab)}
    for ring in polys.values():
        assert ring[0] == ring[-1] and len(ring) >= 5
        assert _shoelace(ring) > 0  # counter-clockwise (raw shoelace sign)
    assert polys[1] == [(3, 2), (8, 2), (8, 7), (3, 7), (3, 2)]  # pixel corners, corners only
    for label in (1, 2, 3):  # simple shapes: area = pixel count, exactly
        assert _shoelace(polys[label]) == props[label].area
    # crack perimeter: 2 (w + h) for rectangles, 4 more than scikit-image's
    assert _perimeter(polys[2]) == 2 * (3 + 18) == props[2].perimeter + 4
    assert _perimeter(polys[1]) == 20 == props[1].perimeter + 4
    assert _shoelace(polys[4]) == 100  # the hole is filled
    assert _shoelace(polys[5]) == 1 and _shoelace(polys[6]) == 1
    assert len(_label_rings(lab)[5]) == 2  # both parts kept for GeoJSON
    # placed in the slide: offset in level-0 px, downsample scales
    placed = ex.labels_to_polygons(lab, offset=(100.0, 200.0), downsample=4.0)
    np.testing.assert_array_equal(
        np.asarray(placed[1]), np.asarray(polys[1]) * 4 + np.array([100.0, 200.0])
    )
    assert _shoelace(placed[3]) == props[3].area * 16


def test_polygons_rasterise_back_to_the_labels() -> None:
    """Random blobs: every traced ring, filled at pixel centres, is exactly its part."""
    rng = np.random.default_rng(3)
    noise = ndimage.gaussian_filter(rng.random((120, 140)), 2.5)
    lab, _ = ndimage.label(noise > np.quantile(noise, 0.55), structure=np.ones((3, 3)))
    lab[rng.random(lab.shape) < 0.02] = 0  # pepper: holes, pinches, split parts
    rings = _label_rings(lab)
    assert len(rings) >= 10
    for label, parts in rings.items():
        filled = ndimage.binary_fill_holes(lab == label)
        drawn = np.zeros_like(filled)
        for ring in parts:
            assert _shoelace(ring) > 0 and np.array_equal(ring[0], ring[-1])
            part = polygon2mask(lab.shape, ring[:, ::-1] - 0.5)  # (row, col) of centres
            assert not (drawn & part).any()
            drawn |= part
            assert _shoelace(ring) == part.sum()
        np.testing.assert_array_equal(drawn, filled)


def test_sparse_label_ids_and_bad_label_images() -> None:
    lab = np.zeros((6, 6), np.int64)
    lab[1:3, 1:3] = 2**40
    lab[4, 4] = 7
    polys = ex.labels_to_polygons(lab)
    assert sorted(polys) == [7, 2**40] and _shoelace(polys[2**40]) == 4
    assert ex.labels_to_polygons(np.zeros((3, 3), np.uint8)) == {}
    with pytest.raises(ValueError, match="2-D integer"):
        ex.labels_to_polygons(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="2-D integer"):
        ex.labels_to_polygons(np.zeros((2, 3, 3), np.int32))
    with pytest.raises(ValueError, match="downsample"):
        ex.labels_to_polygons(lab, downsample=0)


# ------------------------------------------------------------------------------ GeoJSON


def _check_qupath_structure(fc: dict[str, Any], object_type: str) -> None:
    assert fc["type"] == "FeatureCollection" and isinstance(fc["napari_gbm"], dict)
    ids = set()
    for f in fc["features"]:
        assert f["type"] == "Feature"
        ids.add(str(uuid.UUID(f["id"])))
        keys = ["geometry", "nucleusGeometry"] if object_type == "cell" else ["geometry"]
        assert ("nucleusGeometry" in f) == (object_type == "cell")
        for key in keys:
            g = f[key]
            polys = [g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"]
            assert g["type"] in ("Polygon", "MultiPolygon")
            for poly in polys:
                exterior = poly[0]
                assert len(exterior) >= 4 and exterior[0] == exterior[-1]
                assert _shoelace(exterior) > 0
        props = f["properties"]
        assert props["objectType"] == object_type
        if "classification" in props:
            c = props["classification"]
            assert isinstance(c["name"], str) and len(c["color"]) == 3
            assert all(isinstance(v, int) and 0 <= v <= 255 for v in c["color"])
        m = props["measurements"]
        assert all(isinstance(k, str) for k in m)
        assert all(isinstance(v, int | float) and math.isfinite(v) for v in m.values())
    assert len(ids) == len(fc["features"])


def test_cells_geojson_as_qupath_reads_it(ki67: dict[str, Any], tmp_path: Path) -> None:
    cells = ki67["cells"].copy()
    cells.loc[cells.index[0], "nucleus_dab_od_mean"] = np.nan  # NaN is not JSON: left out
    cells.loc[cells.index[1], "positive_class"] = -1  # not graded: unclassified
    path = tmp_path / "cells.geojson"
    header = ex.cells_to_geojson(cells, path, metadata={"params": {"x": 1}})
    assert "features" not in header and header["napari_gbm"]["params"] == {"x": 1}
    fc = _strict_loads(path.read_text(encoding="utf-8"))
    _check_qupath_structure(fc, "cell")
    assert fc["napari_gbm"]["export"]["geometry"] == "ellipse approximation"
    assert fc["napari_gbm"]["export"]["n_features"] == len(cells) == len(fc["features"])
    f0, f1 = fc["features"][0]["properties"], fc["features"][1]["properties"]
    assert "Nucleus: DAB OD mean" not in f0["measurements"]
    assert "Nucleus: DAB OD mean" in f1["measurements"] and "classification" not in f1
    # no centroids (QuPath measures its own) and no class column among measurements
    assert not any(k.startswith("Centroid") for k in f1["measurements"])
    assert "napari_gbm: positive_class" not in f1["measurements"]
    names = {0: "Negative", 1: "1+", 2: "2+", 3: "3+"}
    colours = {0: [112, 112, 225], 1: [255, 255, 0], 2: [255, 187, 62], 3: [250, 62, 62]}
    for f, (_, row) in zip(fc["features"][2:], cells.iloc[2:].iterrows(), strict=True):
        props = f["properties"]
        grade = int(row["positive_class"])
        assert props["classification"] == {"name": names[grade], "color": colours[grade]}
        m = props["measurements"]
        # values are the table's float32 values (shortest float32 digits)
        assert np.float32(m["Nucleus: Area µm^2"]) == row["nucleus_area_um2"]
        assert np.float32(m["Cytoplasm: DAB OD std dev"]) == row["cytoplasm_dab_od_std"]
        assert m["napari_gbm: cell_id"] == row["cell_id"]
        assert "napari_gbm: nucleus_haralick_asm_mean" not in m  # NaN in this table
    # the same file without a path, in one chunk or many
    assert ex.cells_to_geojson(cells, metadata={"params": {"x": 1}}) == fc
    assert ex.cells_to_geojson(cells, chunk_rows=7, metadata={"params": {"x": 1}}) == fc
    # ids are stable across exports and differ between object types
    det = ex.cells_to_geojson(cells, object_type="detection", measurements=[])
    _check_qupath_structure(det, "detection")
    assert det["features"][0]["properties"]["measurements"] == {}
    assert det["features"][0]["geometry"] == fc["features"][0]["nucleusGeometry"]
    assert det["features"][0]["id"] != fc["features"][0]["id"]


def test_ellipses_match_the_measured_nuclei(ki67: dict[str, Any]) -> None:
    cells, nuclei = ki67["cells"], ki67["nuclei"]
    fc = ex.cells_to_geojson(cells)
    ious = []
    for f, (_, row) in zip(fc["features"], cells.iterrows(), strict=True):
        nucleus = np.asarray(f["nucleusGeometry"]["coordinates"][0])
        a_px = row["nucleus_major_axis_um"] / MPP
        b_px = row["nucleus_minor_axis_um"] / MPP
        if b_px >= 1:  # pi a b / 4, the moment ellipse's area (to the 0.01 px rounding)
            assert _shoelace(nucleus) == pytest.approx(math.pi * a_px * b_px / 4, rel=0.01)
        circle = np.asarray(f["geometry"]["coordinates"][0])
        assert _shoelace(circle) == pytest.approx(row["cell_area_um2"] / MPP**2, rel=0.01)
        # the polygon is centred on the centroid in QuPath's corner-origin frame
        np.testing.assert_allclose(
            nucleus[:-1].mean(axis=0), [row.centroid_x_px + 0.5, row.centroid_y_px + 0.5],
            atol=0.02,
        )  # fmt: skip
        # and oriented as the nucleus: overlap with its pixels
        mask = polygon2mask(nuclei.shape, nucleus[:, ::-1] - [Y0 + 0.5, X0 + 0.5])
        own = nuclei == row["cell_id"]
        ious.append((mask & own).sum() / (mask | own).sum())
    assert np.median(ious) > 0.85 and np.quantile(ious, 0.1) > 0.7, np.quantile(ious, 0.1)


def test_rotated_ellipse_orientation() -> None:
    """A drawn ellipse at 30° measured by napari-gbm: its exported polygon overlaps it."""
    from napari_gbm import measure_cells

    yy, xx = np.mgrid[:120, :120].astype(float)
    angle = math.radians(30)
    u = (xx - 60) * math.cos(angle) + (yy - 60) * math.sin(angle)  # down-right major axis
    v = -(xx - 60) * math.sin(angle) + (yy - 60) * math.cos(angle)
    lab = ((u / 40) ** 2 + (v / 12) ** 2 <= 1).astype(np.int32)
    t = measure_cells(lab, mpp=MPP)
    cells = pd.DataFrame(
        {
            "centroid_x_px": t.centroid_x_px,
            "centroid_y_px": t.centroid_y_px,
            "nucleus_major_axis_um": t.major_axis_um,
            "nucleus_minor_axis_um": t.minor_axis_um,
            "nucleus_orientation_rad": t.orientation_rad,
        }
    )
    fc = ex.cells_to_geojson(cells, object_type="detection", mpp=MPP, classification=None)
    ring = np.asarray(fc["features"][0]["geometry"]["coordinates"][0])
    mask = polygon2mask(lab.shape, ring[:, ::-1] - 0.5)
    assert (mask & (lab > 0)).sum() / (mask | (lab > 0)).sum() > 0.95
    assert fc["napari_gbm"]["export"]["mpp"] == MPP


def test_exact_outlines_in_cells_geojson(ki67: dict[str, Any]) -> None:
    cells, nuclei, cell_labels = ki67["cells"], ki67["nuclei"], ki67["cell_labels"]
    outlines = ex.LabelOutlines(nuclei, (X0, Y0), 1.0)
    fc = ex.cells_to_geojson(cells, outlines=outlines, cell_outlines=(cell_labels, (X0, Y0), 1))
    _check_qupath_structure(fc, "cell")
    assert fc["napari_gbm"]["export"]["geometry"] == "outlines"
    assert fc["napari_gbm"]["export"]["nucleus_outlines"] == len(cells)
    for f, (_, row) in zip(fc["features"], cells.iterrows(), strict=True):
        g = f["nucleusGeometry"]
        polys = [g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"]
        area = sum(_shoelace(p[0]) for p in polys)
        filled = ndimage.binary_fill_holes(nuclei == row["cell_id"]).sum()
        assert area == filled  # the polygon holds exactly the nucleus' pixels
        assert area * MPP**2 == pytest.approx(row["nucleus_area_um2"], rel=1e-6, abs=0.25 * 4)
    # outlines for some cells only: the others are approximated, and counted
    some = ex.labels_to_polygons(nuclei, (X0, Y0))
    keep = dict(list(some.items())[:10])
    mixed = ex.cells_to_geojson(cells, outlines=keep, object_type="detection")
    meta = mixed["napari_gbm"]["export"]
    assert meta["nucleus_outlines"] == 10
    assert meta["geometry"] == "outlines, ellipse approximation where missing"
    by_id = dict(zip(cells["cell_id"], mixed["features"], strict=True))
    first = next(iter(keep))
    assert by_id[first]["geometry"]["coordinates"][0] == [list(p) for p in keep[first]]


def test_dict_outlines_are_closed_and_turned_counter_clockwise() -> None:
    cells = pd.DataFrame({"cell_id": [5], "centroid_x_px": [1.0], "centroid_y_px": [1.0]})
    clockwise = [(0, 0), (0, 3), (3, 3), (3, 0)]  # negative shoelace, not closed
    fc = ex.cells_to_geojson(
        cells, outlines={5: clockwise}, object_type="detection", classification=None
    )
    ring = fc["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5 and _shoelace(ring) == 9
    with pytest.raises(ValueError, match="fewer than 3"):
        ex.cells_to_geojson(cells, outlines={5: [(0, 0), (1, 1)]}, object_type="detection")
    with pytest.raises(ValueError, match="outlines must be"):
        ex.cells_to_geojson(cells, outlines=[clockwise], object_type="detection")


def test_string_classes_and_our_names(ki67: dict[str, Any]) -> None:
    cells = ki67["cells"].copy()
    cells["region"] = np.where(cells["positive_class"] > 0, "Tumor", "")
    fc = ex.cells_to_geojson(cells, classification="region", measurements="ours")
    classes = {f["properties"].get("classification", {}).get("name") for f in fc["features"]}
    assert classes == {"Tumor", None}
    m = fc["features"][0]["properties"]["measurements"]
    assert "nucleus_area_um2" in m and "positive_class" in m and "region" not in m


def test_labels_geojson(tmp_path: Path) -> None:
    lab = _known_shapes()
    header = ex.labels_to_geojson(lab, tmp_path / "n.geojson", offset=(10, 20), downsample=2)
    fc = _strict_loads((tmp_path / "n.geojson").read_text(encoding="utf-8"))
    _check_qupath_structure(fc, "detection")
    assert header["napari_gbm"]["export"]["region"] == {"x0": 10, "y0": 20, "downsample": 2}
    by_label = {f["properties"]["measurements"]["napari_gbm: label"]: f for f in fc["features"]}
    assert sorted(by_label) == [1, 2, 3, 4, 5, 6]
    assert by_label[5]["geometry"]["type"] == "MultiPolygon"
    assert by_label[1]["geometry"]["coordinates"][0][0] == [10 + 3 * 2, 20 + 2 * 2]
    assert _shoelace(by_label[2]["geometry"]["coordinates"][0]) == 3 * 18 * 4
    with pytest.raises(ValueError, match="object_type"):
        ex.labels_to_geojson(lab, object_type="cell")


def test_geojson_bad_input(ki67: dict[str, Any]) -> None:
    cells = ki67["cells"]
    with pytest.raises(ValueError, match=r"centroid_x_px"):
        ex.cells_to_geojson(cells.drop(columns=["centroid_x_px", "centroid_y_px"]))
    with pytest.raises(ValueError, match="nucleus_major_axis_um"):
        ex.cells_to_geojson(cells.drop(columns=["nucleus_major_axis_um"]))
    with pytest.raises(ValueError, match="mpp="):
        ex.cells_to_geojson(cells.drop(columns=["centroid_x_um"]))
    with pytest.raises(ValueError, match="object_type"):
        ex.cells_to_geojson(cells, object_type="annotation")
    with pytest.raises(ValueError, match="measurements"):
        ex.cells_to_geojson(cells, measurements="all")
    with pytest.raises(ValueError, match="not in the table"):
        ex.cells_to_geojson(cells, measurements=["nucleus_area_um2", "nope"])
    with pytest.raises(ValueError, match="not numeric"):
        ex.cells_to_geojson(cells, measurements=["slide_id"])
    with pytest.raises(ValueError, match="classification column 'grade'"):
        ex.cells_to_geojson(cells, classification="grade")
    bad = cells.assign(positive_class=np.int8(7))
    with pytest.raises(ValueError, match="positive_class must be"):
        ex.cells_to_geojson(bad)
    with pytest.raises(ValueError, match="cell_id"):
        ex.cells_to_geojson(cells.drop(columns=["cell_id"]), outlines={1: [(0, 0), (1, 0), (1, 1)]})
    with pytest.raises(ValueError, match="DataFrame"):
        ex.cells_to_geojson(cells.to_dict())  # type: ignore[arg-type]
    # a table without grades exports unclassified
    plain = ex.cells_to_geojson(cells.drop(columns=["positive_class"]))
    assert all("classification" not in f["properties"] for f in plain["features"])
    assert ex.cells_to_geojson(cells.iloc[:0])["features"] == []


def test_core_module_imports_no_gui() -> None:
    code = (
        "import sys, napari_gbm.export.geojson, napari_gbm.export.tables\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'magicgui', 'vispy')]\n"
        "sys.exit(1 if bad else 0)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
