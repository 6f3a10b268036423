"""Cells as AnnData: .h5ad files written with h5py by the spec, read back by anndata itself.

anndata (which needs pandas < 3) lives in its own venv, ``.venv-omics``, made by
``bash scripts/setup.sh --dev``; each check writes a file here and reads it there in a
subprocess, then compares every field with what was written.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest

from napari_gbm import __version__
from napari_gbm import export as ex
from napari_gbm.detect.cells import CellParams
from napari_gbm.export import anndata as adx
from napari_gbm.pipeline import AnalyzeParams, analyze_slide
from napari_gbm.schema import cell_table_columns

ROOT = Path(__file__).resolve().parents[1]
OMICS_PYTHON = ROOT / ".venv-omics" / "bin" / "python"

#: runs in .venv-omics: reads argv[1] with anndata, saves the matrices to argv[2] (.npz) and
#: prints the rest as JSON, with every warning anndata raised while reading
READER = r"""
import importlib.metadata as md, json, sys, warnings
import numpy as np, pandas as pd
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import anndata as ad
    a = ad.read_h5ad(sys.argv[1])

def plain(o):  # JSON types; missing values (NaN, pd.NA, None) as None
    if isinstance(o, dict):
        return {str(k): plain(v) for k, v in o.items()}
    if isinstance(o, pd.DataFrame):
        return {"dataframe": {c: plain(o[c]) for c in o.columns}, "index": list(o.index)}
    if isinstance(o, (pd.Series, pd.Index, pd.Categorical)):
        return [None if pd.isna(v) else plain(v) for v in o.astype(object)]
    if isinstance(o, np.ndarray):
        return plain(o.tolist())
    if isinstance(o, list):
        return [plain(v) for v in o]
    if isinstance(o, np.generic):
        return plain(o.item())
    return None if isinstance(o, float) and o != o else o

def column(s):
    out = {"dtype": str(s.dtype), "values": plain(s)}
    if isinstance(s.dtype, pd.CategoricalDtype):
        out.update(categories=plain(s.cat.categories), ordered=bool(s.cat.ordered))
    return out

np.savez(sys.argv[2], X=np.asarray(a.X), **{"obsm_" + k: v for k, v in a.obsm.items()})
print(json.dumps({
    "anndata": md.version("anndata"),
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
    "shape": list(a.shape),
    "X_dtype": str(a.X.dtype),
    "obs_names": list(a.obs_names),
    "var_names": list(a.var_names),
    "obs": {c: column(a.obs[c]) for c in a.obs.columns},
    "var": {c: column(a.var[c]) for c in a.var.columns},
    "obsm": {k: [str(v.dtype), list(v.shape)] for k, v in a.obsm.items()},
    "layers": list(a.layers), "obsp": list(a.obsp), "varm": list(a.varm), "varp": list(a.varp),
    "uns": plain(dict(a.uns)),
}))
"""


def read_with_anndata(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``path`` as anndata reads it: the JSON of the reader, and X and obsm as arrays."""
    if not OMICS_PYTHON.exists():
        pytest.fail(
            f"{OMICS_PYTHON.relative_to(ROOT)} is missing: the .h5ad files are checked with "
            "anndata itself, in a venv of its own; run `bash scripts/setup.sh --dev`"
        )
    arrays = path.with_suffix(".npz")
    proc = subprocess.run(
        [str(OMICS_PYTHON), "-c", READER, str(path), str(arrays)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=path.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["warnings"] == [], result["warnings"]  # no implicit fix-ups on reading
    with np.load(arrays) as npz:
        return result, {k: npz[k] for k in npz.files}


def without_none(obj: Any) -> Any:
    """``obj`` with the None values of dicts left out (they are not written)."""
    if isinstance(obj, dict):
        return {k: without_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [without_none(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def analysis(synthetic_ki67, tmp_path_factory) -> Path:
    """A real analysis folder: napari-gbm analyze of the synthetic Ki-67 slide."""
    out = tmp_path_factory.mktemp("anndata") / "ki67"
    analyze_slide(synthetic_ki67, out, AnalyzeParams(cells=CellParams(stain="hdab", texture=False)))
    return out


# ------------------------------------------------------------------ a real cell table


@pytest.mark.slow
def test_cells_read_back_by_anndata_field_by_field(analysis, tmp_path):
    cells, summary = ex.read_analysis_for_anndata(analysis)
    path = ex.write_cells_h5ad(cells, tmp_path / "cells.h5ad", metadata=summary)
    ad, arrays = read_with_anndata(path)
    n = len(cells)
    assert n > 1000 and tuple(int(p) for p in ad["anndata"].split(".")[:2]) >= (0, 10)

    # X: the numeric per-cell features, float32, every value
    skip = {"cell_id", "tile_id", "positive_class", "region_class"}
    skip |= {c for c in cells.columns if c.startswith("centroid_")}
    features = [
        c for c in cells.columns if c not in skip and pd.api.types.is_numeric_dtype(cells[c])
    ]
    assert "nucleus_area_um2" in features and "delaunay_neighbours" in features
    assert ad["var_names"] == features and ad["shape"] == [n, len(features)]
    assert ad["X_dtype"] == "float32" and arrays["X"].dtype == np.float32
    expected = cells[features].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(arrays["X"], expected, rtol=1e-6, equal_nan=True)
    units = dict(zip(features, ad["var"]["unit"]["values"], strict=True))
    assert units["nucleus_area_um2"] == "µm²" and units["nucleus_perimeter_um"] == "µm"
    assert units["cell_dab_od_mean"] == "OD" and units["density_per_mm2"] == "1/mm²"
    assert units["nucleus_orientation_rad"] == "rad" and units["nucleus_circularity"] == ""

    # obs: ids, slide, tile, classes as categoricals
    assert ad["obs_names"] == [str(i) for i in cells["cell_id"]]  # one slide: the cell ids
    obs = ad["obs"]
    assert list(obs) == ["cell_id", "slide_id", "tile_id", "positive_class", "region"]
    assert obs["cell_id"]["values"] == cells["cell_id"].tolist()
    assert obs["tile_id"]["values"] == cells["tile_id"].tolist()
    assert obs["slide_id"]["dtype"] == "category"
    assert obs["slide_id"]["categories"] == [summary["slide_id"]]
    grade = obs["positive_class"]
    assert grade["dtype"] == "category" and grade["ordered"] is True
    assert grade["categories"] == ["Negative", "1+", "2+", "3+"]
    names = {-1: None, 0: "Negative", 1: "1+", 2: "2+", 3: "3+"}
    assert grade["values"] == [names[int(v)] for v in cells["positive_class"]]
    assert set(grade["values"]) >= {"Negative", "1+", "2+", "3+"}  # all grades present
    region = obs["region"]
    assert region["ordered"] is False
    assert region["categories"] == [
        "background", "cellular_tumour", "infiltrating", "necrosis", "pseudopalisading",
        "microvascular",
    ]  # fmt: skip
    tiles = pd.read_parquet(analysis / "tiles.parquet").set_index("tile_id")["region_name"]
    assert region["values"] == tiles.loc[cells["tile_id"]].tolist()

    # obsm: centroids in µm (= px x mpp) and level-0 px
    mpp = summary["slide"]["mpp"]
    assert ad["obsm"] == {"spatial": ["float64", [n, 2]], "spatial_px": ["float64", [n, 2]]}
    px = cells[["centroid_x_px", "centroid_y_px"]].to_numpy()
    np.testing.assert_array_equal(arrays["obsm_spatial_px"], px)
    np.testing.assert_array_equal(
        arrays["obsm_spatial"], cells[["centroid_x_um", "centroid_y_um"]].to_numpy()
    )
    np.testing.assert_allclose(arrays["obsm_spatial"], px * mpp, rtol=1e-12)
    assert ad["layers"] == ad["obsp"] == ad["varm"] == ad["varp"] == []

    # uns: the whole summary.json (None values left out), version and export record
    uns = ad["uns"]
    assert uns["slide"]["mpp"] == mpp == 0.5
    assert uns["software"]["napari_gbm"] == __version__
    assert uns["export"]["format"] == "h5ad" and uns["export"]["n_cells"] == n
    assert uns["parameters"]["stain_vectors"] == summary["parameters"]["stain_vectors"]
    assert uns["calibration"] == without_none(summary["calibration"])
    assert {k: v for k, v in uns.items() if k != "export"} == without_none(summary)


@pytest.mark.slow
def test_several_slides_in_one_file(analysis, tmp_path):
    cells, summary = ex.read_analysis_for_anndata(analysis)
    other = cells.iloc[:50].assign(slide_id="second")
    both = pd.concat([cells, other], ignore_index=True)
    path = ex.write_cells_h5ad(both, tmp_path / "two.h5ad", metadata={"slides": {"a": summary}})
    ad, arrays = read_with_anndata(path)
    first = summary["slide_id"]
    expected = [f"{s}:{c}" for s, c in zip(both["slide_id"], both["cell_id"], strict=True)]
    assert ad["obs_names"] == expected and expected[-1] == f"second:{cells['cell_id'].iloc[49]}"
    assert sorted(ad["obs"]["slide_id"]["categories"]) == sorted([first, "second"])
    assert ad["obs"]["slide_id"]["values"] == both["slide_id"].tolist()
    assert arrays["X"].shape[0] == len(both)
    assert ad["uns"]["slides"]["a"]["slide"]["mpp"] == summary["slide"]["mpp"]
    with pytest.raises(ValueError, match="repeat within a slide"):
        ex.write_cells_h5ad(pd.concat([cells, cells]), tmp_path / "twice.h5ad")
    assert not (tmp_path / "twice.h5ad").exists()


# ------------------------------------------------------------------ the generic writer


def test_write_h5ad_encodes_each_kind_of_column_and_uns(tmp_path):
    obs = pd.DataFrame(
        {
            "area": np.array([1.5, np.nan, 3.0], dtype=np.float32),
            "count": np.array([1, 2, 3], dtype=np.int64),
            "flag": [True, False, True],
            "name": pd.array(["a", "b", "ç"], dtype="str"),
            "gappy_text": pd.array(["x", None, "x"], dtype="str"),
            "grade": pd.Categorical(["lo", "hi", None], categories=["lo", "hi"], ordered=True),
            "maybe_int": pd.array([4, None, 6], dtype="Int64"),
            "maybe_bool": pd.array([True, None, False], dtype="boolean"),
        },
        index=pd.Index(["s1", "s2", "s3"]),
    )
    var = pd.DataFrame({"unit": ["µm", ""], "kind": pd.Categorical(["size", "count"])})
    uns = {
        "text": "hé",
        "number": 0.25,
        "integer": 7,
        "flag": True,
        "nothing": None,
        "nested": {"deeper": {"values": [1, 2, 3]}, "names": ["h", "e"]},
        "matrix": [[1.0, 2.0], [3.0, 4.0]],
        "gap": [1.0, None],
        "array": np.arange(4, dtype=np.int16),
        "records": [{"a": 1}, {"b": "two"}],
        "empty": [],
    }
    x = np.arange(6, dtype=np.float64).reshape(3, 2) / 3
    spatial = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    path = ex.write_h5ad(
        tmp_path / "any.h5ad",
        X=x,
        var_names=["size", "n"],
        obs=obs,
        obsm={"spatial": spatial},
        var=var,
        uns=uns,
        compression="gzip",
    )
    ad, arrays = read_with_anndata(path)
    assert ad["obs_names"] == ["s1", "s2", "s3"] and ad["var_names"] == ["size", "n"]
    np.testing.assert_array_equal(arrays["X"], x.astype(np.float32))
    np.testing.assert_array_equal(arrays["obsm_spatial"], spatial)
    o = ad["obs"]
    assert list(o) == list(obs.columns)
    assert o["area"]["dtype"] == "float32" and o["area"]["values"] == [1.5, None, 3.0]
    assert o["count"]["dtype"] == "int64" and o["count"]["values"] == [1, 2, 3]
    assert o["flag"]["dtype"] == "bool" and o["flag"]["values"] == [True, False, True]
    assert o["name"]["values"] == ["a", "b", "ç"]
    assert o["gappy_text"]["dtype"] == "category" and o["gappy_text"]["values"] == ["x", None, "x"]
    assert o["grade"] == {
        "dtype": "category", "values": ["lo", "hi", None], "categories": ["lo", "hi"],
        "ordered": True,
    }  # fmt: skip
    assert o["maybe_int"]["dtype"] == "Int64" and o["maybe_int"]["values"] == [4, None, 6]
    assert o["maybe_bool"]["dtype"] == "boolean"
    assert o["maybe_bool"]["values"] == [True, None, False]
    assert ad["var"]["unit"]["values"] == ["µm", ""]
    assert ad["var"]["kind"]["categories"] == ["count", "size"]
    u = ad["uns"]
    assert "nothing" not in u
    assert u["text"] == "hé" and u["number"] == 0.25 and u["integer"] == 7 and u["flag"] is True
    assert u["nested"] == {"deeper": {"values": [1, 2, 3]}, "names": ["h", "e"]}
    assert u["matrix"] == [[1.0, 2.0], [3.0, 4.0]] and u["gap"] == [1.0, None]
    assert u["array"] == [0, 1, 2, 3] and u["empty"] == []
    assert json.loads(u["records"]) == uns["records"]  # no AnnData type: its JSON text

    # every element carries the spec's encoding attributes
    seen: dict[str, str] = {}
    with h5py.File(path, "r") as f:
        assert dict(f.attrs) == {"encoding-type": "anndata", "encoding-version": "0.1.0"}

        def check(name: str, obj: Any) -> None:
            kind = obj.attrs.get("encoding-type")
            parent = obj.parent.attrs.get("encoding-type")
            if parent in ("categorical", "nullable-integer", "nullable-boolean") and not kind:
                return
            assert kind in adx.H5AD_ENCODINGS, name
            assert obj.attrs["encoding-version"] == adx.H5AD_ENCODINGS[kind], name
            seen[name] = kind

        f.visititems(check)
    assert seen["obs"] == "dataframe" and seen["obs/grade"] == "categorical"
    assert seen["obs/maybe_int"] == "nullable-integer" and seen["uns/text"] == "string"
    assert seen["uns/flag"] == "numeric-scalar" and seen["obs/_index"] == "string-array"
    assert {seen[k] for k in ("layers", "obsm", "obsp", "varm", "varp", "uns")} == {"dict"}


# ------------------------------------------------------------------ atomic, bad input


def _small() -> dict[str, Any]:
    return {"X": np.zeros((2, 1)), "var_names": ["a"], "obs": pd.DataFrame(index=["p", "q"])}


def test_a_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "out.h5ad"
    with pytest.raises(ValueError, match="uns/params/when is a set"):
        ex.write_h5ad(path, **_small(), uns={"params": {"when": {1, 2}}})
    assert list(tmp_path.iterdir()) == []  # no file, no temporary file

    ex.write_h5ad(path, **_small())
    before = path.read_bytes()

    real = adx.write_dataframe

    def interrupted(parent: Any, name: str, *args: Any, **kwargs: Any) -> None:
        if name == "var":
            raise KeyboardInterrupt  # killed half-way: X and obs written, var not
        real(parent, name, *args, **kwargs)

    monkeypatch.setattr(adx, "write_dataframe", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ex.write_h5ad(path, **_small())
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_cells_without_centroids_say_which_columns_are_needed(tmp_path):
    cells = pd.DataFrame({"cell_id": [1, 2], "nucleus_area_um2": [20.0, 30.0]})
    with pytest.raises(ValueError, match="centroid_x_um") as err:
        ex.write_cells_h5ad(cells, tmp_path / "c.h5ad")
    for name in ("centroid_y_um", "centroid_x_px", "centroid_y_px", "cell_id"):
        assert name in str(err.value)
    with pytest.raises(ValueError, match="DataFrame"):
        ex.write_cells_h5ad(cells.to_numpy(), tmp_path / "c.h5ad")  # type: ignore[arg-type]
    bad_grade = cells.assign(
        centroid_x_px=0.0, centroid_y_px=0.0, centroid_x_um=0.0, centroid_y_um=0.0,
        positive_class=[0, 7],
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"positive_class holds \[7\]"):
        ex.write_cells_h5ad(bad_grade, tmp_path / "c.h5ad")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"X": np.zeros(3)}, "2-D"),
        ({"var_names": ["a", "b"]}, "2 var_names for the 1 columns"),
        ({"obs": pd.DataFrame(index=["p"])}, "one row per row of X"),
        ({"obs": pd.DataFrame(index=["p", "p"])}, "obs_names .* repeat"),
        ({"obsm": {"spatial": np.zeros((3, 2))}}, r"obsm\['spatial'\] must be"),
        ({"obs": pd.DataFrame({"t": pd.to_datetime(["2024", "2025"])})}, "column 't'"),
        ({"uns": {"a/b": 1}}, "cannot name an HDF5 element"),
    ],
)
def test_bad_input_is_named(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        ex.write_h5ad(tmp_path / "bad.h5ad", **{**_small(), **change})
    assert list(tmp_path.iterdir()) == []


def test_units_from_names_agree_with_the_schema():
    for stains in (("hematoxylin", "eosin"), ("hematoxylin", "dab")):
        for col in cell_table_columns(stains):
            assert ex.feature_unit(col.name) == col.unit, col.name


def test_an_incomplete_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="run napari-gbm analyze"):
        ex.read_analysis_for_anndata(tmp_path)
