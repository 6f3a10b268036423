"""Optical density, stain vectors and colour deconvolution (Ruifrok & Johnston 2001).

Conventions follow QuPath so numbers agree with the tool pathologists use:

- optical density ``OD = -log10((I + 1) / (I0 + 1))`` per RGB channel, with background
  (white) intensity ``I0`` (255 unless estimated), so a pixel equal to the background
  has OD 0 and a black pixel OD ``log10(I0 + 1)`` (2.41 for ``I0 = 255``);
- a stain is a unit row vector of OD in (R, G, B); a missing third stain is the
  normalised cross product of the first two;
- concentrations are in OD units: ``OD = c @ matrix``, so ``c = OD @ inv(matrix)``.

scikit-image's :func:`skimage.color.separate_stains` differs in two ways, both checked in
``tests/test_stain.py``: it uses ``-log(I / I0)`` without the ``+1`` and divides by
``-log(1e-6)``, so its values are ``OD / 6`` (natural and decimal logs cancel:
``ln(x) / ln(1e-6) = log10(x) / -6``), and it clips negative concentrations to 0. Ours
keep the sign (a slightly negative concentration is information, e.g. pure eosin in the
hematoxylin channel).

``estimate_macenko`` estimates per-slide vectors (Macenko et al. 2009). Every output
should store the vectors used via :meth:`StainVectors.to_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "HDAB",
    "HE",
    "StainVectors",
    "deconvolve",
    "estimate_macenko",
    "optical_density",
    "reconvolve",
    "rgb_from_optical_density",
    "stain_preset",
]

FloatArray = npt.NDArray[np.float32]


def _background_array(background: float | Sequence[float]) -> npt.NDArray[np.float64]:
    bg = np.broadcast_to(np.asarray(background, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(bg)) or np.any(bg <= 0):
        raise ValueError(f"background must be positive RGB intensities, got {background!r}")
    return bg


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an RGB image of shape (h, w, 3), got shape {rgb.shape}")
    return rgb


def optical_density(rgb: npt.ArrayLike, background: float | Sequence[float] = 255) -> FloatArray:
    """Optical density per channel, ``-log10((I + 1) / (I0 + 1))``.

    Parameters
    ----------
    rgb : array_like, shape (h, w, 3)
        Intensities (uint8, or float on the same 0-255 scale; negative floats count as 0).
    background : float or sequence of 3 floats, default 255
        White intensity ``I0`` per channel (QuPath's "max" values), 0-255 scale.

    Returns
    -------
    ndarray of float32, shape (h, w, 3)
        OD; pixels brighter than the background get a (small) negative OD.

    Raises
    ------
    ValueError
        If `rgb` is not (h, w, 3), or the background is not positive and finite.

    Examples
    --------
    >>> optical_density(np.array([[[255, 25, 0]]], np.uint8))[0, 0].round(3)
    array([-0.   ,  0.993,  2.408], dtype=float32)
    """
    arr = _check_rgb(np.asarray(rgb))
    bg = _background_array(background)
    if arr.dtype == np.uint8:  # a 256-entry table per channel: exact and fast
        table = -np.log10((np.arange(256.0)[:, None] + 1.0) / (bg[None, :] + 1.0))
        table32 = table.astype(np.float32)
        out = np.empty(arr.shape, np.float32)
        for c in range(3):
            np.take(table32[:, c], arr[..., c], out=out[..., c])
        return out
    val = arr.astype(np.float64)
    return (-np.log10((np.maximum(val, 0.0) + 1.0) / (bg + 1.0))).astype(np.float32)


def rgb_from_optical_density(
    od: npt.ArrayLike, background: float | Sequence[float] = 255
) -> npt.NDArray[np.uint8]:
    """Inverse of :func:`optical_density`: ``I = (I0 + 1) 10^-OD - 1``, rounded to uint8.

    Parameters
    ----------
    od : array_like, shape (..., 3)
        Optical density per RGB channel, OD units.
    background : float or sequence of 3 floats, default 255
        White intensity ``I0`` per channel, 0-255 scale.

    Returns
    -------
    ndarray of uint8, shape (..., 3)
        RGB intensities, clipped to 0-255.

    Raises
    ------
    ValueError
        If the last axis of `od` is not 3, or the background is not positive and finite.
    """
    od_arr = np.asarray(od, dtype=np.float64)
    if od_arr.shape[-1:] != (3,):
        raise ValueError(f"expected OD of shape (..., 3), got {od_arr.shape}")
    bg = _background_array(background)
    val = (bg + 1.0) * np.power(10.0, -od_arr) - 1.0
    return np.clip(np.rint(val), 0, 255).astype(np.uint8)


def _unit(v: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    vec = np.asarray(v, dtype=np.float64).reshape(-1)
    if vec.shape != (3,) or not np.all(np.isfinite(vec)):
        raise ValueError(f"stain {name!r} must be 3 finite numbers, got {v!r}")
    norm = float(np.linalg.norm(vec))
    if norm == 0:
        raise ValueError(f"stain {name!r} is the zero vector")
    return vec / norm


@dataclass(frozen=True, eq=False)
class StainVectors:
    """Three stain OD vectors (rows of a 3x3 matrix), their names and the background.

    Build with :meth:`from_vectors` (normalises rows and adds the residual stain) or
    use the presets :data:`HE` and :data:`HDAB`.

    Attributes
    ----------
    names : tuple of 3 str
        Stain names, e.g. ``("hematoxylin", "eosin", "residual")``.
    matrix : ndarray of float64, shape (3, 3), read-only
        Row ``i`` is the unit OD vector (R, G, B) of stain ``names[i]``.
    background : tuple of 3 float
        White RGB intensity ``I0`` used for optical density.
    """

    names: tuple[str, ...]
    matrix: npt.NDArray[np.float64]
    background: tuple[float, float, float] = (255.0, 255.0, 255.0)
    _inverse: npt.NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        mat = np.array(self.matrix, dtype=np.float64)
        if mat.shape != (3, 3) or len(self.names) != 3:
            raise ValueError("StainVectors needs 3 names and a 3x3 matrix")
        if len(set(self.names)) != 3:
            raise ValueError(f"stain names must be distinct, got {self.names}")
        mat = np.stack([_unit(row, n) for row, n in zip(mat, self.names, strict=True)])
        if abs(np.linalg.det(mat)) < 1e-6:
            raise ValueError("stain vectors are (nearly) linearly dependent")
        mat.setflags(write=False)
        inv = np.linalg.inv(mat)
        inv.setflags(write=False)
        bg = tuple(float(b) for b in _background_array(self.background))
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "matrix", mat)
        object.__setattr__(self, "background", bg)
        object.__setattr__(self, "_inverse", inv)

    @classmethod
    def from_vectors(
        cls,
        names: Sequence[str],
        vectors: npt.ArrayLike,
        background: float | Sequence[float] = 255,
    ) -> StainVectors:
        """Stain vectors from 2 or 3 OD rows; a missing third is the cross product.

        Parameters
        ----------
        names : sequence of 3 str
        vectors : array_like, shape (2, 3) or (3, 3)
            Stain OD rows, normalised here.
        background : float or sequence of 3 floats
        """
        vec = np.asarray(vectors, dtype=np.float64)
        names = tuple(names)
        if vec.ndim != 2 or vec.shape[1] != 3 or vec.shape[0] not in (2, 3):
            raise ValueError(f"vectors must have shape (2, 3) or (3, 3), got {vec.shape}")
        rows = [_unit(v, n) for v, n in zip(vec, names, strict=False)]
        if len(rows) == 2:
            rows.append(_unit(np.cross(rows[0], rows[1]), names[2]))
        bg = tuple(float(b) for b in _background_array(background))
        return cls(names, np.stack(rows), bg)  # type: ignore[arg-type]

    @property
    def inverse(self) -> npt.NDArray[np.float64]:
        """``inv(matrix)``: concentrations = OD @ inverse."""
        return self._inverse

    def index(self, name: str) -> int:
        """Row of stain ``name``; ``ValueError`` listing the names if absent."""
        if name not in self.names:
            raise ValueError(f"no stain {name!r}; stains are {self.names}")
        return self.names.index(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: names, vectors (rows) and background."""
        return {
            "names": list(self.names),
            "vectors": [[float(x) for x in row] for row in self.matrix],
            "background": list(self.background),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StainVectors:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls.from_vectors(data["names"], data["vectors"], data["background"])
        except KeyError as err:
            raise ValueError(f"stain vector dict lacks {err.args[0]!r}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StainVectors):
            return NotImplemented
        return (
            self.names == other.names
            and self.background == other.background
            and bool(np.allclose(self.matrix, other.matrix, rtol=0, atol=1e-9))
        )

    def __hash__(self) -> int:
        return hash((self.names, self.background, tuple(np.round(self.matrix, 9).ravel())))


HE = StainVectors.from_vectors(
    ("hematoxylin", "eosin", "residual"), [[0.65, 0.70, 0.29], [0.2159, 0.8012, 0.5581]]
)
"""QuPath's default H&E vectors (hematoxylin, eosin, cross-product residual)."""
HDAB = StainVectors.from_vectors(
    ("hematoxylin", "dab", "residual"), [[0.65, 0.70, 0.29], [0.27, 0.57, 0.78]]
)
"""QuPath's / Ruifrok's H-DAB vectors (hematoxylin, DAB, cross-product residual)."""


def deconvolve(rgb: npt.ArrayLike, stains: StainVectors = HE) -> dict[str, FloatArray]:
    """Stain concentrations in OD units (Ruifrok & Johnston): ``OD @ inv(matrix)``.

    Parameters
    ----------
    rgb : array_like, shape (h, w, 3)
        RGB intensities on a 0-255 scale (uint8 preferred).
    stains : StainVectors, default HE
        Stain vectors; their ``background`` is the white point of the optical density.

    Returns
    -------
    dict of str to ndarray of float32, shape (h, w)
        One concentration image per stain name, in matrix order, OD units (signed: not
        clipped at 0).

    Raises
    ------
    ValueError
        If `rgb` is not (h, w, 3).
    """
    od = optical_density(rgb, stains.background)
    conc = od.reshape(-1, 3) @ stains.inverse.astype(np.float32)
    conc = conc.reshape(od.shape)
    return {n: np.ascontiguousarray(conc[..., i]) for i, n in enumerate(stains.names)}


def reconvolve(
    concentrations: Mapping[str, npt.ArrayLike], stains: StainVectors = HE
) -> npt.NDArray[np.uint8]:
    """RGB image from stain concentrations (inverse of :func:`deconvolve`).

    Parameters
    ----------
    concentrations : mapping of str to array_like
        Concentration image per stain name, OD units, all of one shape; stains missing here
        count as zero.
    stains : StainVectors, default HE
        Stain vectors and background.

    Returns
    -------
    ndarray of uint8, shape (*shape, 3)
        RGB image.

    Raises
    ------
    ValueError
        If `concentrations` is empty or names a stain `stains` lacks.
    """
    unknown = set(concentrations) - set(stains.names)
    if unknown:
        raise ValueError(f"unknown stains {sorted(unknown)}; stains are {stains.names}")
    if not concentrations:
        raise ValueError("no concentrations given")
    shape = np.shape(next(iter(concentrations.values())))
    conc = np.zeros((*shape, 3), np.float64)
    for name, img in concentrations.items():
        conc[..., stains.index(name)] = img
    return rgb_from_optical_density(conc @ stains.matrix, stains.background)


def estimate_macenko(
    rgb: npt.ArrayLike,
    *,
    od_threshold: float = 0.15,
    alpha: float = 1.0,
    names: Sequence[str] = ("hematoxylin", "eosin", "residual"),
    background: float | Sequence[float] = 255,
    min_pixels: int = 500,
) -> StainVectors:
    """Estimate two stain vectors from an image (Macenko et al. 2009).

    Pixels with OD below `od_threshold` in any channel (glass, faint staining) are
    ignored; the OD of the rest is projected on the plane of its two main singular
    directions, and the stains are the directions at the `alpha` and ``100 - alpha``
    percentiles of the angle in that plane. Hematoxylin (``names[0]``) is the bluer
    vector: the one with the larger red-minus-blue OD.

    Parameters
    ----------
    rgb : array_like, shape (h, w, 3) or (n, 3)
        Tissue image (a whole tile, or sampled pixels), 0-255 scale.
    od_threshold : float, default 0.15
        Minimum OD in every channel for a pixel to count (Macenko's beta), OD units.
    alpha : float, default 1.0
        Angular percentile in (0, 50) (Macenko: 1).
    names : sequence of 3 str, default ("hematoxylin", "eosin", "residual")
        Names of the first, second and residual stain.
    background : float or sequence of 3 floats, default 255
        White intensity ``I0`` per channel, 0-255 scale.
    min_pixels : int, default 500
        Fewest tissue pixels needed.

    Returns
    -------
    StainVectors
        The two estimated vectors and their cross-product residual.

    Raises
    ------
    ValueError
        If `alpha` is outside (0, 50) or fewer than `min_pixels` pixels pass
        `od_threshold`.
    """
    arr = np.asarray(rgb)
    if arr.ndim == 2 and arr.shape[1] == 3:
        arr = arr[None]
    od = optical_density(_check_rgb(arr), background).reshape(-1, 3).astype(np.float64)
    if not 0 < alpha < 50:
        raise ValueError(f"alpha must be in (0, 50), got {alpha}")
    tissue = od[np.all(od >= od_threshold, axis=1)]
    if tissue.shape[0] < min_pixels:
        raise ValueError(
            f"only {tissue.shape[0]} pixels have OD >= {od_threshold} in every channel "
            f"(need {min_pixels}): too little stained tissue to estimate stain vectors"
        )
    # Principal plane of the OD cloud (uncentred, like the original: it passes through 0).
    _, _, vt = np.linalg.svd(tissue[:: max(1, tissue.shape[0] // 200_000)], full_matrices=False)
    plane = vt[:2]
    plane *= np.where(plane.sum(axis=1, keepdims=True) < 0, -1.0, 1.0)
    proj = tissue @ plane.T
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [alpha, 100 - alpha])
    v_lo = np.cos(lo) * plane[0] + np.sin(lo) * plane[1]
    v_hi = np.cos(hi) * plane[0] + np.sin(hi) * plane[1]
    v_lo, v_hi = (np.abs(v) if np.all(v <= 1e-12) else v for v in (v_lo, v_hi))
    first, second = (v_lo, v_hi) if v_lo[0] - v_lo[2] >= v_hi[0] - v_hi[2] else (v_hi, v_lo)
    return StainVectors.from_vectors(names, [first, second], background)


def stain_preset(stain: str) -> StainVectors:
    """The default stain vectors of a stain name.

    Parameters
    ----------
    stain : {"he", "hdab"}
        H&E, or hematoxylin-DAB (Ki-67 and other IHC).

    Returns
    -------
    StainVectors
        :data:`HE` or :data:`HDAB` (QuPath's defaults).

    Raises
    ------
    ValueError
        For another name.
    """
    try:
        return {"he": HE, "hdab": HDAB}[stain]
    except KeyError:
        raise ValueError(f"stain must be 'he' or 'hdab', got {stain!r}") from None
