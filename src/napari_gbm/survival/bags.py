"""Bags of tiles for the attention-MIL Cox model: one bag per patient.

:class:`~napari_gbm.survival.mil.AttentionMILCoxModel` learns a patient's risk from all the
tiles of all the patient's slides. Its input is a *tile table*: one row per tile, with the
patient id, per-tile biomarkers (the bag's features) and, to place a tile's attention on
its slide, ``slide_id`` and ``tile_id``. It comes from

- the output folder of ``napari-gbm cohort`` (:func:`cohort_tiles`): ``slides.parquet``
  names each analysed slide and its patient, and ``slides/<slide_id>/tiles.parquet`` holds
  that slide's per-tile biomarkers, as ``napari-gbm analyze`` writes them
  (:func:`napari_gbm.biomarkers.whole_slide.slide_biomarkers`);
- or any CSV, TSV or Parquet file of that shape (:func:`load_tile_table`).

:func:`tile_bags` keeps the tissue tiles (``region_class`` > 0, or ``selected``, when the
table has the column) whose features all have a value, and groups them by patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_gbm.survival.table_input import load_table, numeric_values

__all__ = [
    "DEFAULT_TILE_FEATURES",
    "TileBags",
    "cohort_tiles",
    "load_tile_table",
    "tile_bags",
]

#: the bags' features when none are named: per-tile biomarkers of ``tiles.parquet``
#: (those the table has with a value on some tile: H&E slides have no positive_percent)
DEFAULT_TILE_FEATURES = (
    "cell_density_per_mm2",
    "positive_percent",
    "nucleus_area_um2_mean",
    "nucleus_area_um2_cv",
    "giant_nucleus_fraction",
    "necrosis_fraction",
    "pseudopalisade_fraction",
)


def cohort_tiles(folder: str | Path) -> pd.DataFrame:
    """The tiles of every analysed slide of a ``napari-gbm cohort`` output folder.

    Parameters
    ----------
    folder : str or Path
        Holds ``slides.parquet`` (``slide_id``, ``patient_id``) and
        ``slides/<slide_id>/tiles.parquet``.

    Returns
    -------
    DataFrame
        One row per tile: ``patient_id``, ``slide_id``, then the columns of the slides'
        ``tiles.parquet`` (``tile_id``, ``region_class``, the per-tile biomarkers).
        ``attrs["source"]`` is the folder.

    Raises
    ------
    ValueError
        If the folder has no ``slides.parquet``, or a slide it lists has no
        ``tiles.parquet``.
    """
    folder = Path(folder)
    index = folder / "slides.parquet"
    if not index.is_file():
        raise ValueError(
            f"{folder} is not the output folder of `napari-gbm cohort`: it has no "
            "slides.parquet naming the analysed slides and their patients"
        )
    slides = pd.read_parquet(index, columns=["slide_id", "patient_id"])
    paths = [folder / "slides" / str(s) / "tiles.parquet" for s in slides["slide_id"]]
    missing = [str(p.relative_to(folder)) for p in paths if not p.is_file()]
    if missing:
        raise ValueError(
            f"{index} lists {len(missing)} slide(s) without a tile table, e.g. {missing[:3]}; "
            "run the same `napari-gbm cohort` command again to finish the folder"
        )
    parts = []
    for (slide_id, patient_id), path in zip(slides.itertuples(index=False), paths, strict=True):
        t = pd.read_parquet(path)
        t.insert(0, "slide_id", str(slide_id))
        t.insert(0, "patient_id", patient_id)
        parts.append(t)
    tiles = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    tiles.attrs["source"] = str(folder)
    return tiles


def load_tile_table(path: str | Path) -> pd.DataFrame:
    """A tile table from a ``napari-gbm cohort`` output folder or a table file.

    Parameters
    ----------
    path : str or Path
        A cohort output folder (:func:`cohort_tiles`), or a CSV, TSV or Parquet file with
        one row per tile (read by :func:`~napari_gbm.survival.table_input.load_table`).

    Returns
    -------
    DataFrame
        ``attrs["source"]`` names the folder or file.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For a folder that is not a cohort output folder, or a file that is not a table.
    """
    path = Path(path)
    return cohort_tiles(path) if path.is_dir() else load_table(path)


@dataclass(frozen=True)
class TileBags:
    """The tiles a MIL model reads, grouped by patient (:func:`tile_bags`).

    Attributes
    ----------
    tiles : DataFrame
        The kept tiles: the id column (as text), ``slide_id`` and ``tile_id`` when the
        table has them, and the features (float64, all finite).
    features : tuple of str
        The bags' feature columns.
    id_col : str
        The patient id column.
    notes : tuple of str
        What was left out, and why.
    """

    tiles: pd.DataFrame
    features: tuple[str, ...]
    id_col: str
    notes: tuple[str, ...]

    def patient_ids(self) -> set[str]:
        """The patients that have at least one tile."""
        return set(self.tiles[self.id_col])

    def _rows(self, patient_ids: Sequence[Any]) -> list[np.ndarray]:
        groups = self.tiles.groupby(self.id_col, sort=False).indices
        return [groups[str(p)] for p in patient_ids]

    def bags(self, patient_ids: Sequence[Any]) -> list[pd.DataFrame]:
        """One bag per patient, in the order given: that patient's tiles x the features.

        Raises
        ------
        KeyError
            For a patient without tiles (check :meth:`patient_ids` first).
        """
        features = self.tiles[list(self.features)]
        return [features.iloc[rows].reset_index(drop=True) for rows in self._rows(patient_ids)]

    def keys(self, patient_ids: Sequence[Any]) -> pd.DataFrame:
        """The id, ``slide_id`` and ``tile_id`` of the tiles of :meth:`bags`, bag after bag
        (the rows a tile-level output such as the attention weights describes)."""
        cols = [c for c in (self.id_col, "slide_id", "tile_id") if c in self.tiles.columns]
        rows = np.concatenate(self._rows(patient_ids)) if len(patient_ids) else np.zeros(0, int)
        return self.tiles[cols].iloc[rows].reset_index(drop=True)


def tile_bags(
    tiles: pd.DataFrame,
    features: Sequence[str] | None = None,
    id_col: str = "patient_id",
) -> TileBags:
    """Group a tile table into per-patient bags of tissue tiles.

    Parameters
    ----------
    tiles : DataFrame
        One row per tile (:func:`load_tile_table`), with ``id_col``.
    features : sequence of str, optional
        The feature columns; default: those of :data:`DEFAULT_TILE_FEATURES` the table
        has with a value on at least one tile.
    id_col : str
        The patient id column; ids are compared as text (as
        :func:`~napari_gbm.survival.patients.join_clinical` compares them).

    Returns
    -------
    TileBags
        Tissue tiles only (``region_class`` > 0, else ``selected``, when the table has
        the column); a tile with a missing value in a feature is left out (said in
        ``notes``): a tile without cells has no nucleus measures.

    Raises
    ------
    ValueError
        If the table lacks ``id_col`` or a named feature, has none of the default
        features, or has a feature that is not numbers; naming the table's file.
    """
    source = tiles.attrs.get("source") or "the tile table"
    if id_col not in tiles.columns:
        raise ValueError(
            f"{source} has no patient id column {id_col!r}: a tile table needs one row per "
            f"tile with the patient's id; it has {[str(c) for c in tiles.columns][:12]}"
        )
    if "region_class" in tiles.columns:
        tiles = tiles[pd.to_numeric(tiles["region_class"], errors="coerce") > 0]
    elif "selected" in tiles.columns:
        tiles = tiles[tiles["selected"].astype(bool)]
    features = _features(tiles, features, source)
    keep = [c for c in (id_col, "slide_id", "tile_id") if c in tiles.columns]
    out = tiles[keep].reset_index(drop=True)
    out[id_col] = out[id_col].astype(str)
    for f in features:
        column = tiles[f].reset_index(drop=True)
        out[f] = numeric_values(column, column=f, source=source, what="tile feature")
    values = out[features].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    notes = []
    if bad.any():
        per_col = {f: int(n) for f, n in zip(features, bad.sum(axis=0), strict=True) if n}
        notes.append(
            f"left out {int(bad.any(axis=1).sum())} of {len(out)} tissue tiles with missing "
            f"values {per_col} from the bags"
        )
        out = out.loc[~bad.any(axis=1)].reset_index(drop=True)
    return TileBags(out, tuple(features), id_col, tuple(notes))


def _features(tiles: pd.DataFrame, features: Sequence[str] | None, source: str) -> list[str]:
    """The named features (checked) or the default ones the table has values for."""
    if features is not None:
        named = [str(f) for f in features]
        missing = [f for f in named if f not in tiles.columns]
        if missing or not named:
            raise ValueError(
                f"{source} has no tile feature column(s) {missing}; it has "
                f"{[str(c) for c in tiles.columns]}"
            )
        return named
    found = [
        f
        for f in DEFAULT_TILE_FEATURES
        if f in tiles.columns and pd.to_numeric(tiles[f], errors="coerce").notna().any()
    ]
    if not found:
        raise ValueError(
            f"{source} has none of the per-tile biomarkers {list(DEFAULT_TILE_FEATURES)} "
            f"with a value; name the tile features (--tile-features); it has "
            f"{[str(c) for c in tiles.columns]}"
        )
    return found
