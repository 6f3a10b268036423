"""Column names of our tables, QuPath's and HistomicsTK's.

Other tools' names come from one mapping per tool (:func:`column_names`), applied by renaming,
never by computing anything again. A column the tool has no name for keeps ours behind a
prefix (``"napari_gbm: "`` for QuPath, ``"napari_gbm."`` for HistomicsTK), so every export
renames back exactly (:func:`from_qupath_names`, :func:`from_histomicstk_names`).

- QuPath: the measurement names of QuPath's *Cell detection* command, spelt as in QuPath's
  source (``WatershedCellDetection`` and ``ObjectMeasurements.addShapeStatistics`` in
  qupath-core-processing: ``"Nucleus: " + stain + " OD mean"``, ``sum``, ``std dev``,
  ``max``, ``min``, ``range`` for the nucleus; ``mean``, ``std dev``, ``max``, ``min`` for
  ``Cell:`` and ``Cytoplasm:``; ``Area``, ``Perimeter``, ``Circularity``, ``Max caliper``,
  ``Min caliper``, ``Eccentricity``; ``"Nucleus/Cell area ratio"``), with the µm unit on
  size names as QuPath's measurement tables show them (``"Nucleus: Area µm^2"``,
  ``"Nucleus: Perimeter µm"``, ``"Nucleus: Max caliper µm"``; the 0.2-0.3 sources read
  here stored them without unit, ``"Nucleus: Area"``), ``"Solidity"`` from its *Add shape
  features* command, stains named as QuPath's defaults (``Hematoxylin``, ``Eosin``,
  ``DAB``), ``"Centroid X µm"`` and ``"Image"`` from its measurement tables. Values keep our
  definitions (see :mod:`napari_gbm.features.measure`: e.g. circularity uses scikit-image's
  perimeter, and our centroids refer to pixel centres while QuPath's refer to pixel
  corners, half a pixel apart).
- HistomicsTK: ``compute_nuclei_features`` names (``Identifier.CentroidX``, ``Size.Area``,
  ``Shape.Circularity``, ``Orientation.Orientation``, ``Nucleus.Intensity.Mean``,
  ``Cytoplasm.Intensity.Mean``, ``Nucleus.Haralick.ASM.Mean`` ...), for nucleus features
  only. HistomicsTK measures sizes in pixels; ours are in µm, so sizes carry the unit:
  ``Size.Area_um2``, ``Size.Perimeter_um``, ``Shape.EquivalentDiameter_um``. Intensities are
  optical densities: ``Nucleus.Intensity`` of hematoxylin, ``Cytoplasm.Intensity`` of eosin
  (HistomicsTK's nuclear and cytoplasmic channels in H&E; its cytoplasm is an 8 px ring).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

QUPATH_PREFIX = "napari_gbm: "
HISTOMICSTK_PREFIX = "napari_gbm."
NAMINGS = ("napari_gbm", "qupath", "histomicstk")

_COMP = {"nucleus": "Nucleus", "cell": "Cell", "cytoplasm": "Cytoplasm"}
_OURS_STAT = re.compile(r"^(nucleus|cell|cytoplasm)_(.+)_od_(mean|std|min|max|sum|median|range)$")
_QP_STAINS = {"hematoxylin": "Hematoxylin", "eosin": "Eosin", "dab": "DAB"}
_QP_STATS = {"mean": "mean", "std": "std dev", "max": "max", "min": "min", "sum": "sum",
             "range": "range"}  # fmt: skip
_QP_NUCLEUS_ONLY = {"sum", "range"}
_QP_SHAPE = {"area_um2": "Area µm^2", "perimeter_um": "Perimeter µm", "circularity": "Circularity",
             "max_caliper_um": "Max caliper µm", "min_caliper_um": "Min caliper µm",
             "eccentricity": "Eccentricity", "solidity": "Solidity"}  # fmt: skip
_QP_FIXED = {"centroid_x_um": "Centroid X µm", "centroid_y_um": "Centroid Y µm",
             "centroid_x_px": "Centroid X px", "centroid_y_px": "Centroid Y px",
             "nucleus_cell_area_ratio": "Nucleus/Cell area ratio", "slide_id": "Image"}  # fmt: skip
_QP_STAT_RE = re.compile(r"^(Nucleus|Cell|Cytoplasm): (.+) OD (mean|std dev|max|min|sum|range)$")
_QP_SHAPE_RE = re.compile(r"^(Nucleus|Cell): (.+)$")

_HT_FIXED = {"centroid_x_px": "Identifier.CentroidX", "centroid_y_px": "Identifier.CentroidY",
             "nucleus_orientation_rad": "Orientation.Orientation",
             "nucleus_area_um2": "Size.Area_um2", "nucleus_perimeter_um": "Size.Perimeter_um",
             "nucleus_major_axis_um": "Size.MajorAxisLength_um",
             "nucleus_minor_axis_um": "Size.MinorAxisLength_um",
             "nucleus_circularity": "Shape.Circularity",
             "nucleus_eccentricity": "Shape.Eccentricity",
             "nucleus_equivalent_diameter_um": "Shape.EquivalentDiameter_um",
             "nucleus_extent": "Shape.Extent", "nucleus_solidity": "Shape.Solidity"}  # fmt: skip
_HT_INTENSITY = {("nucleus", "hematoxylin"): "Nucleus", ("cytoplasm", "eosin"): "Cytoplasm"}
_HT_STATS = {"min": "Min", "max": "Max", "mean": "Mean", "median": "Median", "std": "Std"}
_HT_HARALICK = {"asm": "ASM", "contrast": "Contrast", "correlation": "Correlation",
                "sum_of_squares": "SumOfSquares", "idm": "IDM", "sum_average": "SumAverage",
                "sum_variance": "SumVariance", "sum_entropy": "SumEntropy", "entropy": "Entropy",
                "difference_variance": "DifferenceVariance",
                "difference_entropy": "DifferenceEntropy", "imc1": "IMC1",
                "imc2": "IMC2"}  # fmt: skip
_HT_AGG = {"mean": "Mean", "range": "Range"}


def _inverse(d: Mapping[Any, Any]) -> dict[Any, Any]:
    return {v: k for k, v in d.items()}


def _qupath_rule(col: str) -> str | None:
    if col in _QP_FIXED:
        return _QP_FIXED[col]
    if m := _OURS_STAT.match(col):
        comp, stain, stat = m.groups()
        if stat in _QP_STATS and (comp == "nucleus" or stat not in _QP_NUCLEUS_ONLY):
            name = _QP_STAINS.get(stain, stain[:1].upper() + stain[1:])
            return f"{_COMP[comp]}: {name} OD {_QP_STATS[stat]}"
        return None
    comp, _, rest = col.partition("_")
    if comp in ("nucleus", "cell") and rest in _QP_SHAPE:
        return f"{_COMP[comp]}: {_QP_SHAPE[rest]}"
    return None


def _qupath_unrule(name: str) -> str | None:
    if name in (fixed := _inverse(_QP_FIXED)):
        return str(fixed[name])
    if m := _QP_STAT_RE.match(name):
        comp, stain, stat = m.groups()
        ours = _inverse(_QP_STAINS).get(stain, stain[:1].lower() + stain[1:])
        return f"{comp.lower()}_{ours}_od_{_inverse(_QP_STATS)[stat]}"
    if (m := _QP_SHAPE_RE.match(name)) and m.group(2) in (shape := _inverse(_QP_SHAPE)):
        return f"{m.group(1).lower()}_{shape[m.group(2)]}"
    return None


def _histomicstk_rule(col: str) -> str | None:
    if col in _HT_FIXED:
        return _HT_FIXED[col]
    if m := _OURS_STAT.match(col):
        comp, stain, stat = m.groups()
        if (comp, stain) in _HT_INTENSITY and stat in _HT_STATS:
            return f"{_HT_INTENSITY[comp, stain]}.Intensity.{_HT_STATS[stat]}"
        return None
    if m := re.match(r"^nucleus_haralick_(.+)_(mean|range)$", col):
        feat, agg = m.groups()
        if feat in _HT_HARALICK:
            return f"Nucleus.Haralick.{_HT_HARALICK[feat]}.{_HT_AGG[agg]}"
    return None


def _histomicstk_unrule(name: str) -> str | None:
    if name in (fixed := _inverse(_HT_FIXED)):
        return str(fixed[name])
    if m := re.match(r"^(Nucleus|Cytoplasm)\.Intensity\.(\w+)$", name):
        key = _inverse(_HT_INTENSITY).get(m.group(1))
        stat = _inverse(_HT_STATS).get(m.group(2))
        return f"{key[0]}_{key[1]}_od_{stat}" if key and stat else None
    if m := re.match(r"^Nucleus\.Haralick\.(\w+)\.(Mean|Range)$", name):
        feat = _inverse(_HT_HARALICK).get(m.group(1))
        return f"nucleus_haralick_{feat}_{m.group(2).lower()}" if feat else None
    return None


#: naming -> (our name -> theirs or None, theirs -> ours or None, prefix for the rest)
_RULES: dict[str, tuple[Callable[[str], str | None], Callable[[str], str | None], str]] = {
    "qupath": (_qupath_rule, _qupath_unrule, QUPATH_PREFIX),
    "histomicstk": (_histomicstk_rule, _histomicstk_unrule, HISTOMICSTK_PREFIX),
}


def _check_naming(naming: str) -> None:
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {NAMINGS}, got {naming!r}")


def column_names(columns: Sequence[str], naming: str) -> dict[str, str]:
    """Our column name -> the name the tool ``naming`` uses, for each of ``columns``.

    A column the tool has no name for keeps ours behind the tool's prefix, so the mapping can
    always be reversed.

    Parameters
    ----------
    columns : sequence of str
        Our column names.
    naming : {"napari_gbm", "qupath", "histomicstk"}
        Whose names: ours (the identity), QuPath's or HistomicsTK's.

    Returns
    -------
    dict of str to str
        Each of ``columns`` -> its name under ``naming``.

    Raises
    ------
    ValueError
        For an unknown ``naming``.
    """
    _check_naming(naming)
    if naming == "napari_gbm":
        return {str(c): str(c) for c in columns}
    rule, unrule, prefix = _RULES[naming]
    out = {}
    for col in map(str, columns):
        name = rule(col)
        out[col] = name if name is not None and unrule(name) == col else prefix + col
    return out


def _renamed(df: pd.DataFrame, mapping: Mapping[str, str]) -> pd.DataFrame:
    """A shallow copy of ``df``, columns renamed by ``mapping``; duplicates refused."""
    new = [mapping.get(str(c), str(c)) for c in df.columns]
    if len(set(new)) != len(new):
        dup = sorted({n for n in new if new.count(n) > 1})
        raise ValueError(f"renaming would give duplicate columns {dup}; drop one of each first")
    out = df.copy(deep=False)
    out.columns = new
    return out


def _from_names(df: pd.DataFrame, naming: str) -> pd.DataFrame:
    _, unrule, prefix = _RULES[naming]
    mapping = {}
    for name in map(str, df.columns):
        ours = name[len(prefix) :] if name.startswith(prefix) else unrule(name)
        mapping[name] = ours if ours is not None else name
    return _renamed(df, mapping)


def to_qupath_names(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with QuPath's measurement names (a shallow copy; values untouched).

    Parameters
    ----------
    df : DataFrame
        A table with our column names.

    Returns
    -------
    DataFrame
        The same table with QuPath's names (ours behind :data:`QUPATH_PREFIX` where QuPath
        has none).

    Raises
    ------
    ValueError
        If renaming gives duplicate columns.
    """
    return _renamed(df, column_names(list(df.columns), "qupath"))


def from_qupath_names(df: pd.DataFrame) -> pd.DataFrame:
    """Inverse of :func:`to_qupath_names`; names it does not know are kept.

    Parameters
    ----------
    df : DataFrame
        A table with QuPath's measurement names.

    Returns
    -------
    DataFrame
        A shallow copy with our column names.

    Raises
    ------
    ValueError
        If renaming gives duplicate columns.
    """
    return _from_names(df, "qupath")


def to_histomicstk_names(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with HistomicsTK's feature names where defined (a shallow copy).

    Parameters
    ----------
    df : DataFrame
        A table with our column names.

    Returns
    -------
    DataFrame
        The same table with HistomicsTK's names (ours behind :data:`HISTOMICSTK_PREFIX`
        where HistomicsTK has none).

    Raises
    ------
    ValueError
        If renaming gives duplicate columns.
    """
    return _renamed(df, column_names(list(df.columns), "histomicstk"))


def from_histomicstk_names(df: pd.DataFrame) -> pd.DataFrame:
    """Inverse of :func:`to_histomicstk_names`; names it does not know are kept.

    Parameters
    ----------
    df : DataFrame
        A table with HistomicsTK's feature names.

    Returns
    -------
    DataFrame
        A shallow copy with our column names.

    Raises
    ------
    ValueError
        If renaming gives duplicate columns.
    """
    return _from_names(df, "histomicstk")
