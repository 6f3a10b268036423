"""The elements of AnnData's on-disk format, written with h5py (for :mod:`.anndata`).

Each writer puts one element under a parent group with the ``encoding-type`` and
``encoding-version`` attributes of anndata's "On-disk format" spec (anndata 0.8+; the docs'
``fileformat-prose`` page): dense arrays, string arrays, categoricals, nullable integers and
booleans, dataframes, dicts and the scalars of ``uns``. HDF5 strings are variable-length
UTF-8, as the spec asks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import h5py
import numpy as np
import pandas as pd

from napari_gbm.io import _json_default

#: encoding-type -> encoding-version written, from anndata's on-disk format spec
H5AD_ENCODINGS = {
    "anndata": "0.1.0",
    "dataframe": "0.2.0",
    "array": "0.2.0",
    "string-array": "0.2.0",
    "categorical": "0.2.0",
    "nullable-integer": "0.1.0",
    "nullable-boolean": "0.1.0",
    "dict": "0.1.0",
    "numeric-scalar": "0.2.0",
    "string": "0.2.0",
}
_STR = h5py.string_dtype("utf-8")  # variable-length UTF-8, as the spec asks for HDF5
Compression = Literal["gzip", "lzf"] | None


def tag(obj: h5py.Group | h5py.Dataset, kind: str, **attrs: Any) -> None:
    """Mark ``obj`` as an element of encoding-type ``kind`` (and its version), with ``attrs``."""
    obj.attrs["encoding-type"] = kind
    obj.attrs["encoding-version"] = H5AD_ENCODINGS[kind]
    for key, value in attrs.items():
        obj.attrs[key] = value


def check_key(key: Any, where: str) -> str:
    """``key`` as the name of an HDF5 element, or a ValueError saying where it was."""
    name = str(key)
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"{where}: {name!r} cannot name an HDF5 element (empty or with '/')")
    return name


def write_array(parent: h5py.Group, name: str, data: np.ndarray, comp: Compression) -> None:
    """A dense numeric or boolean array."""
    use = comp if data.ndim and data.size else None  # scalars and empty arrays: no filter
    tag(parent.create_dataset(name, data=data, compression=use), "array")


def write_strings(parent: h5py.Group, name: str, values: Any, comp: Compression) -> None:
    """An array of text (every value a ``str``)."""
    data = np.asarray(values, dtype=object)
    use = comp if data.size else None
    tag(parent.create_dataset(name, data=data, dtype=_STR, compression=use), "string-array")


def write_group(parent: h5py.Group, name: str, kind: str = "dict", **attrs: Any) -> h5py.Group:
    """A group of encoding-type ``kind`` (a dict unless said)."""
    group = parent.create_group(name)
    tag(group, kind, **attrs)
    return group


def write_categorical(
    parent: h5py.Group, name: str, codes: np.ndarray, categories: pd.Index, ordered: bool,
    comp: Compression,
) -> None:  # fmt: skip
    """Codes (-1 missing; int8 while the categories allow) and their categories."""
    group = write_group(parent, name, "categorical", ordered=bool(ordered))
    n = len(categories)
    dtype = np.int8 if n < 2**7 else np.int16 if n < 2**15 else np.int32
    write_array(group, "codes", np.asarray(codes).astype(dtype), comp)
    if pd.api.types.is_numeric_dtype(categories.dtype):
        write_array(group, "categories", categories.to_numpy(), comp)
    else:
        write_strings(group, "categories", [str(c) for c in categories], comp)


def write_column(
    parent: h5py.Group, name: str, s: pd.Series, where: str, comp: Compression
) -> None:
    """One DataFrame column by its dtype (see the module's table)."""
    dtype, missing = s.dtype, s.isna().to_numpy()
    if isinstance(dtype, pd.CategoricalDtype):
        write_categorical(
            parent, name, s.cat.codes.to_numpy(), dtype.categories, dtype.ordered, comp
        )
    elif pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
        is_bool = pd.api.types.is_bool_dtype(dtype)
        numpy_dtype = np.dtype(bool) if is_bool else np.dtype(getattr(dtype, "numpy_dtype", dtype))
        values = s.to_numpy(dtype=numpy_dtype, na_value=0)
        if missing.any():  # pandas "Int64" / "boolean" with <NA>: values and a mask
            group = write_group(parent, name, "nullable-boolean" if is_bool else "nullable-integer")
            write_array(group, "values", values, comp)
            write_array(group, "mask", missing, comp)
        else:
            write_array(parent, name, values, comp)
    elif pd.api.types.is_float_dtype(dtype):
        numpy_dtype = np.dtype(getattr(dtype, "numpy_dtype", dtype))
        write_array(parent, name, s.to_numpy(dtype=numpy_dtype, na_value=np.nan), comp)
    elif pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        if missing.any():  # a string-array holds no gaps: a categorical's code -1 does
            cat = pd.Categorical(s)
            write_categorical(parent, name, cat.codes, cat.categories, False, comp)
        else:
            write_strings(parent, name, s.to_numpy(dtype=object), comp)
    else:
        raise ValueError(
            f"{where} column {name!r} has dtype {dtype} "
            f"({pd.api.types.infer_dtype(s, skipna=True)}): give numbers, booleans, text or "
            "a pandas Categorical"
        )


def write_dataframe(
    parent: h5py.Group, name: str, df: pd.DataFrame, index: Any, comp: Compression
) -> None:
    """``df`` with the row labels ``index`` (as text) under the spec's ``_index``."""
    columns = [check_key(c, f"{name} column") for c in df.columns]
    if len(set(columns)) < len(columns) or "_index" in columns:
        raise ValueError(f"{name} has repeated column names, or one named '_index': {columns}")
    group = write_group(parent, name, "dataframe", _index="_index")
    if columns:
        group.attrs.create("column-order", np.asarray(columns, dtype=object), dtype=_STR)
    else:  # what anndata writes for no columns
        group.attrs["column-order"] = np.empty(0, dtype=np.float64)
    write_strings(group, "_index", [str(v) for v in index], comp)
    for j, col in enumerate(columns):
        write_column(group, col, df.iloc[:, j], name, comp)


def write_uns(parent: h5py.Group, name: str, value: Any, where: str) -> None:
    """One entry of ``uns``: a dict, text, a number, a list or array, or a DataFrame."""
    if value is None:
        return  # skipped: anndata >= 0.12 writes a 'null' encoding that 0.10 / 0.11 cannot read
    if isinstance(value, Mapping):
        group = write_group(parent, name)
        for key, item in value.items():
            write_uns(group, check_key(key, f"uns{where}"), item, f"{where}/{key}")
    elif isinstance(value, str):
        tag(parent.create_dataset(name, data=value, dtype=_STR), "string")
    elif isinstance(value, (bool, int, float, complex, np.bool_, np.number)):
        data = np.asarray(value)
        if data.dtype.kind not in "biufc":
            raise ValueError(f"uns{where}: {value!r} does not fit a 64-bit number")
        tag(parent.create_dataset(name, data=data), "numeric-scalar")
    elif isinstance(value, pd.DataFrame):
        write_dataframe(parent, name, value, value.index, None)
    elif isinstance(value, (list, tuple, np.ndarray)):
        write_uns_sequence(parent, name, value)
    else:
        raise ValueError(
            f"uns{where} is a {type(value).__name__}: give dicts, text, numbers, lists or arrays"
        )


def write_uns_sequence(parent: h5py.Group, name: str, value: Any) -> None:
    """A list or array in ``uns``: numbers (None as NaN) as an array, text as a
    string-array, anything else (a list of dicts, ragged lists) as its JSON text."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        write_array(parent, name, value, None)
        return
    try:
        items = np.asarray(value, dtype=object)
        flat = items.ravel().tolist()
    except ValueError:  # ragged in a way numpy refuses: JSON below
        items, flat = None, [value]
    numbers = (bool, int, float, np.bool_, np.integer, np.floating)
    if items is not None and all(isinstance(v, numbers) or v is None for v in flat):
        gaps = any(v is None for v in flat)
        data = np.asarray([np.nan if v is None else v for v in flat], np.float64 if gaps else None)
        write_array(parent, name, data.reshape(items.shape), None)
    elif items is not None and all(isinstance(v, str) for v in flat):
        write_strings(parent, name, items, None)
    else:
        text = json.dumps(value, default=_json_default, ensure_ascii=False)
        tag(parent.create_dataset(name, data=text, dtype=_STR), "string")
