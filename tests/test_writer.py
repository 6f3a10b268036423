"""npe2 writers: a cells Points layer and a nucleus-outline Labels layer, called directly,
through the npe2 manifest, and from a viewer's Save."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari", reason="napari is a runtime dependency")
npe2 = pytest.importorskip("npe2")

from napari_gbm.export import from_qupath_names  # noqa: E402
from napari_gbm.io import read_parquet_metadata  # noqa: E402

MPP = 0.5


@pytest.fixture(scope="module")
def drawn() -> tuple[pd.DataFrame, np.ndarray]:
    """Drawn nuclei and their cell table measured by napari-gbm (cell ids = labels), the
    label image's pixel (0, 0) at level-0 (100, 300)."""
    from napari_gbm import measure_cells

    rng = np.random.default_rng(0)
    lab = np.zeros((200, 200), np.int32)
    yy, xx = np.mgrid[:200, :200]
    for i, (y, x) in enumerate(rng.uniform(20, 180, (12, 2)), start=1):
        lab[(yy - y) ** 2 / 36 + (xx - x) ** 2 / 81 <= 1] = i
    t = measure_cells(lab, mpp=MPP)
    table = pd.DataFrame(
        {
            "cell_id": t["label"].to_numpy(np.int64),
            "slide_id": "s1",
            "centroid_x_px": t["centroid_x_px"] + 100,
            "centroid_y_px": t["centroid_y_px"] + 300,
            "nucleus_area_um2": t["area_um2"].astype(np.float32),
            "nucleus_major_axis_um": t["major_axis_um"].astype(np.float32),
            "nucleus_minor_axis_um": t["minor_axis_um"].astype(np.float32),
            "nucleus_orientation_rad": t["orientation_rad"].astype(np.float32),
            "cell_equivalent_diameter_um": (t["equivalent_diameter_um"] * 1.5).astype(np.float32),
            "positive_class": (t["label"] % 4).astype(np.int8),
        }
    )
    table["centroid_x_um"] = table["centroid_x_px"] * MPP
    table["centroid_y_um"] = table["centroid_y_px"] * MPP
    return table, lab


@pytest.fixture(scope="module")
def cells(drawn: tuple[pd.DataFrame, np.ndarray]) -> pd.DataFrame:
    return drawn[0]


def _points(cells: pd.DataFrame) -> Any:
    return napari.layers.Points(
        cells[["centroid_y_px", "centroid_x_px"]].to_numpy(),
        features=cells,
        scale=(MPP, MPP),
        name="cells",
        metadata={"napari_gbm": {"kind": "cells", "params": {"threshold_od": 0.1}}},
    )


def _shoelace(ring: Any) -> float:
    r = np.asarray(ring, dtype=float)
    return 0.5 * float(r[:-1, 0] @ r[1:, 1] - r[1:, 0] @ r[:-1, 1])


@pytest.fixture(scope="module")
def plugins() -> Any:
    pm = npe2.PluginManager.instance()
    pm.discover()
    return pm


def test_manifest_declares_the_writers(plugins: Any) -> None:
    pm = npe2.PluginManifest.from_distribution("napari-gbm")
    pm.validate_imports()
    writers = {w.command: w for w in pm.contributions.writers}
    assert writers["napari-gbm.write_cells"].layer_types == ["points"]
    assert set(writers["napari-gbm.write_cells"].filename_extensions) == {
        ".csv", ".tsv", ".parquet", ".geojson",
    }  # fmt: skip
    assert writers["napari-gbm.write_nucleus_outlines"].layer_types == ["labels"]
    assert writers["napari-gbm.write_nucleus_outlines"].filename_extensions == [".geojson"]


def test_points_writer_called_directly(cells: pd.DataFrame, tmp_path: Path) -> None:
    from napari_gbm._napari._writer import write_cells, write_cells_qupath_names

    data, meta, layer_type = _points(cells).as_layer_data_tuple()
    assert layer_type == "points"
    out = write_cells(str(tmp_path / "cells.parquet"), data, meta)
    assert out == [str(tmp_path / "cells.parquet")]
    pd.testing.assert_frame_equal(
        pd.read_parquet(out[0]), cells, check_dtype=False, check_index_type=False
    )
    stored = read_parquet_metadata(out[0])
    assert stored["params"] == {"threshold_od": 0.1} and stored["layer"] == "cells"
    [csv] = write_cells_qupath_names(str(tmp_path / "cells.csv"), data, meta)
    back = pd.read_csv(csv)
    assert "Nucleus: Area µm^2" in back.columns and "Centroid X µm" in back.columns
    np.testing.assert_allclose(from_qupath_names(back)["nucleus_area_um2"], cells.nucleus_area_um2)
    assert json.loads(Path(csv + ".json").read_text())["export"]["naming"] == "qupath"


def test_points_writer_through_npe2(cells: pd.DataFrame, tmp_path: Path, plugins: Any) -> None:
    layer = _points(cells)
    [tsv] = npe2.write(str(tmp_path / "cells.tsv"), [layer], plugin_name="napari-gbm")
    pd.testing.assert_series_equal(
        pd.read_csv(tsv, sep="\t")["cell_id"], cells["cell_id"], check_dtype=False
    )
    [geo] = npe2.write(str(tmp_path / "cells.geojson"), [layer], plugin_name="napari-gbm")
    fc = json.loads(Path(geo).read_text(encoding="utf-8"))
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == len(cells)
    assert fc["napari_gbm"]["kind"] == "cells" and fc["napari_gbm"]["export"]["mpp"] == MPP
    f = fc["features"][0]
    assert f["properties"]["objectType"] == "cell" and "nucleusGeometry" in f
    grade = int(cells.positive_class.iloc[0])
    assert (
        f["properties"].get("classification", {}).get("name")
        == ({0: "Negative", 1: "1+", 2: "2+", 3: "3+"}[grade])
    )


def test_labels_writer_through_npe2(
    drawn: tuple[pd.DataFrame, np.ndarray], tmp_path: Path, plugins: Any
) -> None:
    cells, lab = drawn
    region = {"x0": 100.0, "y0": 300.0, "downsample": 1.0}
    layer = napari.layers.Labels(lab, metadata={"napari_gbm": {"region": region}})
    [geo] = npe2.write(str(tmp_path / "nuclei.geojson"), [layer], plugin_name="napari-gbm")
    fc = json.loads(Path(geo).read_text(encoding="utf-8"))
    assert len(fc["features"]) == lab.max()
    for f in fc["features"]:
        label = f["properties"]["measurements"]["napari_gbm: label"]
        ring = f["geometry"]["coordinates"][0]
        assert _shoelace(ring) == (lab == label).sum()  # exact pixel-edge polygons
        row = cells.set_index("cell_id").loc[label]
        # same frame as the cell table: polygon centroid = centroid_px + 0.5
        r = np.asarray(ring, dtype=float)
        cross = r[:-1, 0] * r[1:, 1] - r[1:, 0] * r[:-1, 1]
        cx = ((r[:-1, 0] + r[1:, 0]) * cross).sum() / (6 * _shoelace(ring))
        assert cx == pytest.approx(row.centroid_x_px + 0.5, abs=1e-9)


def test_labels_writer_needs_its_region(
    drawn: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    from napari_gbm._napari._writer import write_cells, write_nucleus_outlines

    data, meta, _ = napari.layers.Labels(drawn[1]).as_layer_data_tuple()
    with pytest.raises(ValueError, match=r'metadata\["napari_gbm"\]\["region"\]'):
        write_nucleus_outlines(str(tmp_path / "n.geojson"), data, meta)
    data, meta, _ = napari.layers.Points(np.zeros((2, 2))).as_layer_data_tuple()
    with pytest.raises(ValueError, match="no features table"):
        write_cells(str(tmp_path / "p.csv"), data, meta)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.gui
def test_viewer_save_uses_the_plugin(
    make_napari_viewer: Any, cells: pd.DataFrame, tmp_path: Path
) -> None:
    viewer = make_napari_viewer(show=False)
    viewer.add_layer(_points(cells))
    [path] = viewer.layers.save(str(tmp_path / "cells.geojson"), plugin="napari-gbm")
    fc = json.loads(Path(path).read_text(encoding="utf-8"))
    assert len(fc["features"]) == len(cells)
    ids = [f["properties"]["measurements"]["napari_gbm: cell_id"] for f in fc["features"]]
    assert ids == cells["cell_id"].tolist()
