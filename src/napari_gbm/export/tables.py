"""Tables (cells, tiles, any frame) as CSV, TSV or Parquet, with our, QuPath's or HistomicsTK's
column names (:mod:`.naming`), and the export metadata that goes with every export."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_gbm import __version__
from napari_gbm.export.naming import _check_naming, _renamed, column_names
from napari_gbm.io import write_csv, write_json, write_parquet

TABLE_EXTENSIONS = (".csv", ".tsv", ".parquet")


def _jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types: numpy scalars and arrays converted, NaN and infinities
    None (JSON has none), anything else its str."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    return json.loads(json.dumps(obj, default=default), parse_constant=lambda _: None)


def _export_metadata(metadata: Mapping[str, Any] | None, **export: Any) -> dict[str, Any]:
    """``metadata`` as JSON, with the software version and ``export`` under ``"export"``."""
    meta = dict(_jsonable(dict(metadata or {})))
    meta.setdefault("software", {"napari_gbm": __version__})
    meta["export"] = _jsonable({"software": {"napari_gbm": __version__}, **export})
    return meta


def export_table(
    df: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    naming: str = "napari_gbm",
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a table as CSV, TSV or Parquet, chosen by extension, atomically.

    In CSV and TSV a text cell that a spreadsheet would run as a formula (``=``, ``+``,
    ``-``, ``@`` first) gets a leading apostrophe (:func:`napari_gbm.io.write_csv`;
    :func:`napari_gbm.io.read_csv` reads the original text back); numbers are written as
    they are.

    Parameters
    ----------
    df : DataFrame
        The table (cells, tiles, any frame).
    path : str or os.PathLike
        Destination; its extension (``.csv``, ``.tsv`` or ``.parquet``) picks the format.
    naming : {"napari_gbm", "qupath", "histomicstk"}
        Column names: ours, QuPath's or HistomicsTK's (:func:`column_names`).
    metadata : mapping, optional
        Parameters, slide, ...: stored in the Parquet schema metadata under ``napari_gbm``
        (read it with :func:`napari_gbm.io.read_parquet_metadata`), or for CSV and TSV in a
        sidecar ``<file>.json``; either way with the software version, the naming and the
        exported -> our column names under ``"export"``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        For an unknown extension or naming, a ``df`` that is not a DataFrame, or if renaming
        gives duplicate columns.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in TABLE_EXTENSIONS:
        hint = " (GeoJSON: use cells_to_geojson)" if ext in (".geojson", ".json") else ""
        raise ValueError(
            f"cannot write a table as {ext or 'a file without extension'!r} ({path.name}): "
            f"use one of {', '.join(TABLE_EXTENSIONS)}{hint}"
        )
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"export_table needs a pandas DataFrame, got {type(df).__name__}")
    _check_naming(naming)
    mapping = column_names(list(df.columns), naming)
    out = _renamed(df, mapping)
    meta = _export_metadata(
        metadata, naming=naming, columns={v: k for k, v in mapping.items()}, rows=len(df)
    )
    if ext == ".parquet":
        return write_parquet(out.reset_index(drop=True), path, metadata=meta)
    # Arrow's writer (10x pandas' speed), text cells that a spreadsheet would run as a
    # formula (a slide named "=HYPERLINK(...)") prefixed with an apostrophe
    write_csv(out, path, sep="," if ext == ".csv" else "\t", fast=True)
    write_json(meta, path.with_name(path.name + ".json"))
    return path
