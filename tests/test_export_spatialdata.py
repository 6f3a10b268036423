"""``napari-gbm export --to spatialdata`` on a real analysis folder, run and read back with
spatialdata itself in ``.venv-omics`` (the optional extra ``napari-gbm[spatialdata]``, which
pins pandas < 3, installed there by ``bash scripts/setup.sh --dev``): the image in µm, one
nucleus shape and one table row per cell, the table linked to the shapes, values as in
cells.parquet; and, without the extra, a one-line error."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from napari_gbm.cli import main
from napari_gbm.detect.cells import CellParams
from napari_gbm.export.anndata import cells_to_anndata
from napari_gbm.export.spatialdata import MISSING_EXTRA
from napari_gbm.pipeline import AnalyzeParams, analyze_slide
from napari_gbm.wsi.slide import Slide

ROOT = Path(__file__).resolve().parents[1]
OMICS_BIN = ROOT / ".venv-omics" / "bin"
PARAMS = AnalyzeParams(cells=CellParams(stain="hdab", texture=False))

#: runs in .venv-omics: reads argv[1] with spatialdata, saves arrays to argv[2] (.npz) and
#: prints the rest as JSON
READER = r"""
import json, sys, warnings
import numpy as np
warnings.simplefilter("ignore")
import spatialdata as sd
from spatialdata.models import get_table_keys
from spatialdata.transformations import get_transformation

s = sd.read_zarr(sys.argv[1])
img = s.images["slide"]
levels = sorted(img.keys())
scale0 = img[levels[0]]["image"]
t = get_transformation(scale0, get_all=True)
region, region_key, instance_key = get_table_keys(s.tables["table"])
table = s.tables["table"]
nuclei, cells = s.shapes["nuclei"], s.shapes["cells"]
np.savez(
    sys.argv[2],
    image=np.asarray(scale0.values),
    X=np.asarray(table.X),
    spatial=table.obsm["spatial"],
    instance=table.obs[instance_key].to_numpy(),
    nuclei_index=nuclei.index.to_numpy(),
    nuclei_xy=np.c_[nuclei.geometry.centroid.x, nuclei.geometry.centroid.y],
    nuclei_area=nuclei.geometry.area.to_numpy(),
    cells_index=cells.index.to_numpy(),
    cells_radius=cells["radius"].to_numpy(),
)
print(json.dumps({
    "images": list(s.images), "shapes": list(s.shapes), "tables": list(s.tables),
    "coordinate_systems": sorted(s.coordinate_systems),
    "levels": [list(img[k]["image"].shape) for k in levels],
    "dtype": str(scale0.dtype),
    "dims": list(scale0.dims),
    "transforms": {k: type(v).__name__ for k, v in t.items()},
    "scale": get_transformation(scale0, "global").to_scale_vector(("y", "x")).tolist(),
    "shape_transforms": [type(get_transformation(s.shapes[k], "global")).__name__
                         for k in s.shapes],
    "region": region, "region_key": region_key, "instance_key": instance_key,
    "region_values": sorted(set(table.obs[region_key].astype(str))),
    "n_obs": table.n_obs, "var_names": list(table.var_names),
    "obs_columns": list(table.obs.columns),
    "positive_class": table.obs["positive_class"].astype(str).tolist(),
    "uns_export": {k: str(v) for k, v in table.uns["export"].items()},
    "uns_slide_id": str(table.uns.get("slide_id")),
}))
"""


@pytest.fixture(scope="module")
def analysis(synthetic_ki67: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Ki-67 analysis folder of the small synthetic slide."""
    out = tmp_path_factory.mktemp("sdata-analysis") / "ki67"
    analyze_slide(synthetic_ki67, out, PARAMS)
    return out


@pytest.fixture(scope="module")
def read_back(analysis: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The analysis exported by ``.venv-omics/bin/napari-gbm`` and read by spatialdata."""
    omics_python = OMICS_BIN / "python"
    has_extra = omics_python.exists() and (
        subprocess.run(
            [str(omics_python), "-c", "import spatialdata, napari_gbm"],
            capture_output=True,
            timeout=300,
        ).returncode
        == 0
    )
    if not has_extra:
        pytest.fail(
            ".venv-omics lacks spatialdata or napari-gbm[spatialdata]: the SpatialData export is "
            "checked with spatialdata itself, in a venv of its own; run bash scripts/setup.sh --dev"
        )
    work = tmp_path_factory.mktemp("sdata-out")
    store = work / "ki67.zarr"
    cmd = [str(OMICS_BIN / "napari-gbm"), "export", str(analysis), "--to", "spatialdata"]
    for _ in range(2):  # the second run replaces the first store
        proc = subprocess.run(
            [*cmd, "--out", str(store)], capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"-> {store} (" in proc.stdout
    assert sorted(p.name for p in work.iterdir()) == ["ki67.zarr"]  # no temporary left
    arrays = work / "arrays.npz"
    proc = subprocess.run(
        [str(omics_python), "-c", READER, str(store), str(arrays)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    with np.load(arrays, allow_pickle=True) as npz:
        result["arrays"] = {k: npz[k] for k in npz.files}
    return result


def test_image_is_a_multiscale_pyramid_in_um(read_back: dict[str, Any], analysis: Path) -> None:
    summary = json.loads((analysis / "summary.json").read_text())
    mpp = float(summary["slide"]["mpp"])
    with Slide(summary["input"]["path"]) as slide:
        width, height = slide.dimensions
        assert read_back["images"] == ["slide"]
        assert read_back["coordinate_systems"] == ["global"]
        assert read_back["dims"] == ["c", "y", "x"] and read_back["dtype"] == "uint8"
        levels = read_back["levels"]
        assert len(levels) >= 2  # a pyramid, each level half the last
        for finer, coarser in itertools.pairwise(levels):
            assert coarser[0] == 3 and abs(coarser[1] - finer[1] / 2) <= 1
        step_y, step_x = read_back["scale"]
        assert step_x == pytest.approx(step_y)
        assert step_x == pytest.approx(max(2.0, mpp))  # 2 µm per pixel, never level 0
        _, h, w = levels[0]
        # the image's extent in µm is the slide's, to within one image pixel
        assert abs(w * step_x - width * mpp) < step_x
        assert abs(h * step_y - height * mpp) < step_y
        # the finest level is the slide read at that pixel size
        ds = step_x / mpp
        expected = slide.read_downsampled((0, 0, w * ds, h * ds), (w, h)).transpose(2, 0, 1)
    np.testing.assert_array_equal(read_back["arrays"]["image"], expected)


def test_shapes_and_table_one_per_cell_linked(read_back: dict[str, Any], analysis: Path) -> None:
    cells = pd.read_parquet(analysis / "cells.parquet")
    summary = json.loads((analysis / "summary.json").read_text())
    mpp = float(summary["slide"]["mpp"])
    arr = read_back["arrays"]
    assert len(cells) > 50
    assert sorted(read_back["shapes"]) == ["cells", "nuclei"]
    assert read_back["shape_transforms"] == ["Identity", "Identity"]  # already in µm
    ids = cells["cell_id"].to_numpy()
    np.testing.assert_array_equal(arr["nuclei_index"], ids)
    np.testing.assert_array_equal(arr["cells_index"], ids)
    # the table annotates the nuclei, row i the shape of cell_id i
    assert read_back["n_obs"] == len(cells)
    assert read_back["region"] == "nuclei" and read_back["region_values"] == ["nuclei"]
    assert read_back["instance_key"] == "cell_id"
    np.testing.assert_array_equal(arr["instance"], ids)
    # nuclei: moment ellipses around the centroids (corner origin), area pi/4 major minor, µm
    xy = cells[["centroid_x_px", "centroid_y_px"]].to_numpy() + 0.5
    np.testing.assert_allclose(arr["nuclei_xy"], xy * mpp, atol=1e-6)
    area = np.pi / 4 * cells["nucleus_major_axis_um"] * cells["nucleus_minor_axis_um"]
    big = area.to_numpy() > np.pi * mpp**2  # above the half-pixel floor of the semi-axes
    np.testing.assert_allclose(arr["nuclei_area"][big], area.to_numpy()[big], rtol=1e-6)
    np.testing.assert_allclose(
        arr["cells_radius"], cells["cell_equivalent_diameter_um"].to_numpy() / 2, rtol=1e-6
    )


def test_table_values_equal_cells_parquet(read_back: dict[str, Any], analysis: Path) -> None:
    cells = pd.read_parquet(analysis / "cells.parquet")
    fields = cells_to_anndata(cells)  # the .h5ad export's fields, from the same table
    arr = read_back["arrays"]
    assert read_back["var_names"] == list(fields["var_names"])
    np.testing.assert_array_equal(arr["X"], cells[fields["var_names"]].to_numpy(np.float32))
    np.testing.assert_allclose(arr["spatial"], cells[["centroid_x_um", "centroid_y_um"]])
    grades = {-1: "nan", 0: "Negative", 1: "1+", 2: "2+", 3: "3+"}
    assert read_back["positive_class"] == [grades[int(g)] for g in cells["positive_class"]]
    assert "region" in read_back["obs_columns"]  # the tile's region class, as in the .h5ad
    assert read_back["uns_export"]["format"] == "spatialdata"
    assert (
        read_back["uns_slide_id"] == json.loads((analysis / "summary.json").read_text())["slide_id"]
    )


def test_without_the_extra_one_line_error(
    analysis: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "spatialdata", None)  # as in an install without it
    out = tmp_path / "x.zarr"
    assert main(["export", str(analysis), "--to", "spatialdata", "--out", str(out)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"napari-gbm export: error: {MISSING_EXTRA}"]
    assert MISSING_EXTRA.startswith("--to spatialdata needs the optional extra: pip install")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_refusals_in_one_line(
    analysis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # wrong extension, other names: before anything is imported or written
    assert main(["export", str(analysis), "--to", "spatialdata", "--out", str(tmp_path / "x.h5ad")])
    assert "ending in .zarr" in capsys.readouterr().err
    rc = main(
        ["export", str(analysis), "--to", "spatialdata", "--names", "qupath", "--out", "x.zarr"]
    )
    assert rc == 2 and "AnnData keeps our feature names" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
