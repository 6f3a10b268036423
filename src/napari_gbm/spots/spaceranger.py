"""Space Ranger's spot table and scale factors, and where the spots lie on the slide.

The formats, as 10x Genomics documents them ("Spatial Outputs" of Space Ranger 1.2, 1.3,
2.0 and later: https://www.10xgenomics.com/support/software/space-ranger/latest/analysis/outputs/spatial-outputs,
https://software.10xgenomics.com/spatial-gene-expression/software/pipelines/1.3/output/images)
and as scverse's readers take them (``spatialdata_io.readers.visium`` and ``visium_hd``):

- ``tissue_positions.csv`` (Space Ranger >= 2.0), one row per spot with the header
  ``barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres``;
  ``tissue_positions_list.csv`` (before 2.0) has the same six columns and no header.
  ``in_tissue`` is 1 for a spot over tissue; ``array_row`` / ``array_col`` the spot's place
  on the array; ``pxl_row_in_fullres`` / ``pxl_col_in_fullres`` its centre in pixels of the
  full-resolution image given to Space Ranger (row = y, column = x). Visium HD writes the
  same columns per bin in ``binned_outputs/square_XXXum/spatial/tissue_positions.parquet``.
- ``scalefactors_json.json``: ``spot_diameter_fullres`` (pixels of the full-resolution
  image across a spot: the 55 µm spot up to Space Ranger 1.2, a "theoretical 65 µm spot"
  from 1.3), ``tissue_hires_scalef`` and ``tissue_lowres_scalef`` (full resolution to the
  downsampled PNGs), ``fiducial_diameter_fullres``. Visium HD adds ``bin_size_um`` (the side
  of a square bin) and ``microns_per_pixel`` (Space Ranger's estimate of the full-resolution
  image's pixel size; ``bin_size_um / spot_diameter_fullres == microns_per_pixel``, so there
  ``spot_diameter_fullres`` is a bin's side in pixels).

Visium spots are 55 µm across on a 100 µm centre-to-centre grid. By default the
full-resolution image is the slide (``pxl_*`` are level-0 pixels); otherwise a 3 x 3 affine
maps full-resolution pixels (x = column, y = row, 1) to level-0 pixels
(:func:`read_transform`), and :func:`plausibility` says when the result cannot be right.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

__all__ = [
    "POSITION_COLUMNS",
    "VISIUM_SPOT_DIAMETER_UM",
    "VISIUM_SPOT_PITCH_UM",
    "SpotGeometry",
    "plausibility",
    "read_positions",
    "read_scalefactors",
    "read_transform",
    "transform_scale",
]

POSITION_COLUMNS = (
    "barcode",
    "in_tissue",
    "array_row",
    "array_col",
    "pxl_row_in_fullres",
    "pxl_col_in_fullres",
)
VISIUM_SPOT_DIAMETER_UM = 55.0
#: the diameter Space Ranger >= 1.3 writes as ``spot_diameter_fullres`` ("theoretical 65 µm")
SPACERANGER_SPOT_DIAMETER_UM = 65.0
VISIUM_SPOT_PITCH_UM = 100.0


@dataclass(frozen=True)
class SpotGeometry:
    """The shape and size of the spots, from ``scalefactors_json.json``.

    Attributes
    ----------
    shape : {"disc", "square"}
        Visium spots are discs, Visium HD bins squares.
    diameter_fullres : float
        Spot diameter (square side for a bin) in pixels of the full-resolution image.
    bin_size_um : float or None
        Visium HD's bin side in µm; None for Visium spots.
    microns_per_pixel : float or None
        Visium HD: Space Ranger's pixel size of the full-resolution image, µm/px.
    scalefactors : dict
        The file's fields as read.
    """

    shape: str
    diameter_fullres: float
    bin_size_um: float | None
    microns_per_pixel: float | None
    scalefactors: dict[str, Any]

    @property
    def expected_diameters_um(self) -> tuple[float, ...]:
        """The diameters (µm) a spot may have: 55 or 65 µm (Visium), the bin side (HD)."""
        if self.bin_size_um is not None:
            return (self.bin_size_um,)
        return (VISIUM_SPOT_DIAMETER_UM, SPACERANGER_SPOT_DIAMETER_UM)

    @property
    def pitch_um(self) -> float:
        """Centre-to-centre distance of neighbouring spots, µm."""
        return self.bin_size_um if self.bin_size_um is not None else VISIUM_SPOT_PITCH_UM


def read_positions(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Space Ranger's spot positions, from either CSV format or Visium HD's Parquet.

    Parameters
    ----------
    path : str or os.PathLike
        ``tissue_positions.csv`` (header), ``tissue_positions_list.csv`` (no header) or
        ``tissue_positions.parquet`` (Visium HD).

    Returns
    -------
    pandas.DataFrame
        The columns of :data:`POSITION_COLUMNS`: ``barcode`` (str), ``in_tissue``,
        ``array_row``, ``array_col`` (int), the two pixel columns (float64).

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        Naming the missing columns, or what else is wrong (no rows, text where numbers
        belong, repeated barcodes).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"spot positions {path} not found")
    if path.suffix.lower() == ".parquet":
        df = pd.read_parquet(path)
    else:
        with open(path, encoding="utf-8-sig") as fh:
            first = fh.readline().strip().split(",")
        has_header = bool(first) and first[0].strip().strip('"') == "barcode"
        df = pd.read_csv(path, header=0 if has_header else None, encoding="utf-8-sig")
        if not has_header:
            if df.shape[1] != len(POSITION_COLUMNS):
                raise ValueError(
                    f"{path.name} has no header and {df.shape[1]} columns; Space Ranger's "
                    f"tissue_positions_list.csv has {len(POSITION_COLUMNS)}: "
                    f"{','.join(POSITION_COLUMNS)}"
                )
            df.columns = list(POSITION_COLUMNS)
    missing = [c for c in POSITION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path.name} lacks the columns {', '.join(missing)}; a spot table needs "
            f"{','.join(POSITION_COLUMNS)}"
        )
    if len(df) == 0:
        raise ValueError(f"{path.name} has no spots")
    out = pd.DataFrame({"barcode": df["barcode"].astype(str).to_numpy()})
    for col in POSITION_COLUMNS[1:]:
        values = pd.to_numeric(df[col], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise ValueError(f"{path.name}: {col} is not a number in spot row {row + 1}")
        out[col] = values.to_numpy(np.float64 if col.startswith("pxl") else np.int64)
    dup = out["barcode"].duplicated()
    if dup.any():
        raise ValueError(f"{path.name}: barcode {out['barcode'][dup].iloc[0]} appears twice")
    return out


def _read_json(path: Path, what: str) -> Any:
    """The JSON content of ``path``; a missing file or one that is not JSON is a clear error."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name} is not JSON ({exc})") from None


def _number(sf: dict[str, Any], key: str, path: Path, required: bool = False) -> float | None:
    value = sf.get(key)
    if value is None:
        if required:
            raise ValueError(f"{path.name} lacks {key!r} (it has {', '.join(sf) or 'nothing'})")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{path.name}: {key} must be a positive number, not {value!r}")
    return float(value)


def read_scalefactors(path: str | os.PathLike[str]) -> SpotGeometry:
    """The spot geometry from ``scalefactors_json.json``.

    Parameters
    ----------
    path : str or os.PathLike
        Space Ranger's ``scalefactors_json.json`` (Visium, or a Visium HD bin size's).

    Returns
    -------
    SpotGeometry
        Discs for Visium; squares when the file has ``bin_size_um`` (Visium HD).

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If it is not a JSON object, or ``spot_diameter_fullres`` (or a present
        ``bin_size_um`` / ``microns_per_pixel``) is missing or not a positive number.
    """
    path = Path(path)
    sf = _read_json(path, "scale factors")
    if not isinstance(sf, dict):
        raise ValueError(f"{path.name} is not a JSON object of scale factors")
    diameter = _number(sf, "spot_diameter_fullres", path, required=True)
    bin_um = _number(sf, "bin_size_um", path)
    return SpotGeometry(
        shape="square" if bin_um is not None else "disc",
        diameter_fullres=float(diameter or 0.0),
        bin_size_um=bin_um,
        microns_per_pixel=_number(sf, "microns_per_pixel", path),
        scalefactors=dict(sf),
    )


def read_transform(path: str | os.PathLike[str]) -> np.ndarray:
    """A 3 x 3 affine from full-resolution pixels to slide level-0 pixels.

    Parameters
    ----------
    path : str or os.PathLike
        JSON: ``{"matrix": [[a, b, c], [d, e, f], [0, 0, 1]]}`` (or the 2 x 3 top, or the
        bare nested list), mapping ``(x, y, 1)`` of the full-resolution image (x = column)
        to level-0 ``(x, y, 1)``; or ``{"scale": s or [sx, sy], "offset": [ox, oy]}`` for
        ``x0 = sx x + ox``, ``y0 = sy y + oy``.

    Returns
    -------
    numpy.ndarray
        (3, 3) float64.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If the JSON is neither form, has non-finite values, or cannot be inverted.
    """
    path = Path(path)
    spec = _read_json(path, "transform")
    usage = (
        f'{path.name}: give {{"matrix": [[a, b, c], [d, e, f], [0, 0, 1]]}} or '
        '{"scale": s, "offset": [ox, oy]} (full-resolution px -> level-0 px)'
    )
    try:
        if isinstance(spec, dict) and "matrix" in spec:
            spec = spec["matrix"]
        if isinstance(spec, dict):
            s = np.broadcast_to(np.asarray(spec.get("scale", 1.0), float), (2,))
            o = np.asarray(spec.get("offset", (0.0, 0.0)), float).reshape(2)
            m = np.array([[s[0], 0, o[0]], [0, s[1], o[1]], [0, 0, 1]], float)
        else:
            m = np.asarray(spec, float)
            if m.shape == (2, 3):
                m = np.vstack([m, [0.0, 0.0, 1.0]])
    except (TypeError, ValueError):
        raise ValueError(usage) from None
    if m.shape != (3, 3) or not np.isfinite(m).all() or not np.allclose(m[2], (0, 0, 1)):
        raise ValueError(usage)
    if abs(np.linalg.det(m[:2, :2])) < 1e-12:
        raise ValueError(f"{path.name}: the transform cannot be inverted (determinant 0)")
    return m


def transform_scale(transform: np.ndarray | None) -> float:
    """Level-0 pixels per full-resolution pixel (the square root of the determinant).

    Parameters
    ----------
    transform : numpy.ndarray or None
        The (3, 3) affine of :func:`read_transform`; None is the identity.

    Returns
    -------
    float
        1.0 for None.
    """
    if transform is None:
        return 1.0
    return float(np.sqrt(abs(np.linalg.det(transform[:2, :2]))))


def _off_by(value: float, expected: tuple[float, ...], tolerance: float) -> bool:
    return all(abs(value / e - 1.0) > tolerance for e in expected)


def plausibility(
    geometry: SpotGeometry,
    centres_px: np.ndarray,
    slide_mpp: float,
    slide_dimensions: tuple[int, int] | None,
    transform: np.ndarray | None = None,
    tolerance: float = 0.2,
) -> list[str]:
    """Warnings that the spots cannot lie where they were put on this slide.

    Three checks: the spot diameter in µm (``spot_diameter_fullres`` x the transform's scale
    x the slide's µm/px) against Visium's 55 µm (or the 65 µm Space Ranger >= 1.3 writes;
    Visium HD: the bin size, and Space Ranger's own ``microns_per_pixel``); the median
    distance between neighbouring spot centres against the 100 µm pitch (the bin size);
    and how many spot centres fall outside the slide.

    Parameters
    ----------
    geometry : SpotGeometry
        From :func:`read_scalefactors`.
    centres_px : numpy.ndarray
        (n, 2) spot centres (x, y) in level-0 pixels.
    slide_mpp : float
        The slide's pixel size, µm/px.
    slide_dimensions : tuple of int or None
        Level-0 (width, height); None skips the outside-the-slide check.
    transform : numpy.ndarray, optional
        Full-resolution to level-0 affine; None for the identity.
    tolerance : float, default 0.2
        Relative difference (0.2 = 20 %) beyond which a size is implausible.

    Returns
    -------
    list of str
        One sentence per failed check; empty when all is plausible.
    """
    out: list[str] = []
    um_per_fullres_px = transform_scale(transform) * slide_mpp
    d_um = geometry.diameter_fullres * um_per_fullres_px
    cause = (
        "the image Space Ranger aligned is not this slide (give --transform from its pixels "
        "to the slide's) or the slide's pixel size is wrong"
    )
    expected = geometry.expected_diameters_um
    if _off_by(d_um, expected, tolerance):
        what = " or ".join(f"{e:g} µm" for e in expected)
        out.append(
            f"the spots come out {d_um:.3g} µm across on this slide "
            f"({geometry.diameter_fullres:.4g} full-resolution px x {um_per_fullres_px:.4g} "
            f"µm/px), not {what} (off by more than {tolerance:.0%}): {cause}"
        )
    mpp_sr = geometry.microns_per_pixel
    if mpp_sr is not None and _off_by(um_per_fullres_px, (mpp_sr,), tolerance):
        out.append(
            f"Space Ranger measured {mpp_sr:.4g} µm per full-resolution pixel, the slide "
            f"gives {um_per_fullres_px:.4g}: {cause}"
        )
    if len(centres_px) >= 2:
        dist, _ = cKDTree(centres_px).query(centres_px, k=2)
        pitch_um = float(np.median(dist[:, 1])) * slide_mpp
        if _off_by(pitch_um, (geometry.pitch_um,), tolerance):
            out.append(
                f"neighbouring spots are {pitch_um:.3g} µm apart on this slide, not "
                f"{geometry.pitch_um:g} µm: {cause}"
            )
    if slide_dimensions is not None and len(centres_px):
        w, h = slide_dimensions
        x, y = centres_px[:, 0], centres_px[:, 1]
        outside = float(((x < 0) | (y < 0) | (x >= w) | (y >= h)).mean())
        if outside > 0.1:
            out.append(f"{outside:.0%} of the spots lie outside the slide ({w} x {h} px): {cause}")
    return out
