"""The properties of a QuPath GeoJSON Feature as JSON text: measurements and classification.

Class names and default colours of ``positive_class`` are QuPath's standard intensity classes
(``PathClass``: ``"Negative"``, ``"1+"``, ``"2+"``, ``"3+"``, base colours scaled by 1.25);
another class column gets a colour per value from a fixed palette.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from napari_gbm.export.naming import column_names

#: positive_class -> (QuPath class name, QuPath's default colour); -1 (not graded) is left
#: unclassified.
POSITIVE_CLASSES: dict[int, tuple[str, tuple[int, int, int]]] = {
    0: ("Negative", (112, 112, 225)),
    1: ("1+", (255, 255, 0)),
    2: ("2+", (255, 187, 62)),
    3: ("3+", (250, 62, 62)),
}
_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34),
            (23, 190, 207)]  # fmt: skip
#: not measurements: QuPath recomputes centroids from the geometry
_CENTROIDS = ("centroid_x_px", "centroid_y_px", "centroid_x_um", "centroid_y_um")


def _numeric_columns(df: pd.DataFrame) -> list[str]:
    return [
        str(c)
        for c in df.columns
        if pd.api.types.is_numeric_dtype(df[c].dtype) or pd.api.types.is_bool_dtype(df[c].dtype)
    ]


def measurement_columns(
    cells: pd.DataFrame, measurements: str | Sequence[str], classification: str | None
) -> tuple[list[str], list[str]]:
    """The columns exported as measurements and their names in the export."""
    skip = set(_CENTROIDS)
    if classification is not None:
        skip.add(classification)
    if isinstance(measurements, str):
        if measurements not in ("qupath", "ours"):
            raise ValueError(
                f"measurements must be 'qupath', 'ours' or a list of columns, got {measurements!r}"
            )
        columns = [c for c in _numeric_columns(cells) if c not in skip]
        names = column_names(columns, "qupath" if measurements == "qupath" else "napari_gbm")
    else:
        columns = list(measurements)
        missing = [c for c in columns if c not in cells.columns]
        non_numeric = [c for c in columns if c in cells and c not in _numeric_columns(cells)]
        if missing or non_numeric:
            raise ValueError(
                f"measurement columns not in the table: {missing}; not numeric: {non_numeric}"
            )
        names = column_names(columns, "qupath")
    return columns, [names[c] for c in columns]


def measurement_strings(table: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """One '"name":value,...' string per row, formatted in C; non-finite values left out."""
    if len(table) == 0 or len(names) == 0:
        return [""] * len(table)
    keys = [json.dumps(name, ensure_ascii=False) + ":" for name in names]
    values, finite = [], np.ones(len(table), bool)
    for col in table.columns:
        s = table[col]
        if pd.api.types.is_bool_dtype(s.dtype):
            v = s.to_numpy(dtype=np.int8)
        elif pd.api.types.is_integer_dtype(s.dtype) and not s.hasnans:
            v = s.to_numpy()
        else:  # float32 stays float32: it formats with float32's shortest digits
            v = s.to_numpy() if s.dtype == np.float32 else s.to_numpy(np.float64, na_value=np.nan)
            ok = np.isfinite(v)
            finite &= ok
            v = np.where(ok, v, np.nan)
        values.append(pa.array(v, from_pandas=True).cast(pa.string()))
    # rows with every value: one join, keys interleaved (4x faster than joining pairs)
    args: list[Any] = []
    for j, (key, v) in enumerate(zip(keys, values, strict=True)):
        args += ["," + key if j else key, v]
    out = [str(v) for v in pc.binary_join_element_wise(*args, "").to_pylist()]
    if not finite.all():  # rows with missing values: join the present pairs only
        rows = pa.array(np.flatnonzero(~finite))
        pairs = [
            pc.binary_join_element_wise(k, v.take(rows), "")
            for k, v in zip(keys, values, strict=True)
        ]
        joined = pc.binary_join_element_wise(*pairs, ",", null_handling="skip").to_pylist()
        for i, text in zip(rows.to_pylist(), joined, strict=True):
            out[i] = str(text)
    return out


def _class_member(name: str, rgb: tuple[int, int, int]) -> str:
    """The ',"classification":{...}' member of a Feature's properties."""
    return ',"classification":' + json.dumps(
        {"name": name, "color": list(rgb)}, ensure_ascii=False, separators=(",", ":")
    )


def class_strings(cells: pd.DataFrame, classification: str | None) -> tuple[list[str], Any]:
    """Per-row '"classification": {...}' JSON member (or '') and a description."""
    n = len(cells)
    if classification is None:
        return [""] * n, None
    if classification not in cells.columns:
        if classification == "positive_class":
            return [""] * n, None  # the default, on a table without grades
        raise ValueError(
            f"classification column {classification!r} is not in the table; "
            f"pass one of its columns or classification=None"
        )
    col = cells[classification]
    if classification == "positive_class":
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        known = np.isin(values, [-1, 0, 1, 2, 3]) | np.isnan(values)
        if not known.all():
            bad = sorted(set(values[~known].tolist()))[:5]
            raise ValueError(f"positive_class must be -1 (not graded), 0, 1, 2 or 3; found {bad}")
        grades = {k: _class_member(*v) for k, v in POSITIVE_CLASSES.items()}
        strings = [grades.get(int(v), "") if v == v else "" for v in values.tolist()]
        return strings, {"column": classification, "classes": dict(POSITIVE_CLASSES)}
    texts = [None if pd.isna(v) or str(v) == "" else str(v) for v in col.tolist()]
    names = sorted({t for t in texts if t is not None})
    lookup = {
        name: _class_member(name, _PALETTE[i % len(_PALETTE)]) for i, name in enumerate(names)
    }
    return [lookup[t] if t is not None else "" for t in texts], {"column": classification}
