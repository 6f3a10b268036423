"""Exact outlines of a label image, traced along pixel edges.

Coordinates are level-0 pixels with QuPath's origin: the top-left *corner* of the image, so
pixel ``(col, row)`` covers ``[col, col + 1] x [row, row + 1]``; a label image is placed in
the slide by an offset and a downsample (:class:`LabelOutlines`). Rings are closed, exteriors
counter-clockwise by the shoelace sign of the raw ``(x, y)`` numbers (RFC 7946 §3.1.6; on
screen, with y pointing down, they turn clockwise).

Outlines follow pixel edges exactly: a polygon's area is its pixel count (times
``downsample²``), holes are filled (as QuPath's filled cell ROIs), and each 4-connected part
is one ring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class LabelOutlines:
    """A label image placed in the slide.

    Label pixel ``(row, col)`` covers level-0 ``[x0 + col d, x0 + (col + 1) d] x
    [y0 + row d, y0 + (row + 1) d]`` with ``d`` the downsample (QuPath's corner-origin frame;
    see the module docstring).

    Parameters
    ----------
    labels : ndarray
        2-D integer label image; 0 (and below) is background.
    offset : tuple of float
        Level-0 ``(x0, y0)`` of the top-left corner of label pixel (0, 0).
    downsample : float
        Level-0 pixels per label pixel.
    """

    labels: np.ndarray
    offset: tuple[float, float] = (0.0, 0.0)
    downsample: float = 1.0


def _trace_component(mask: np.ndarray) -> np.ndarray:
    """Closed ring along the pixel edges of one 4-connected, hole-free component (``mask``
    padded with a False border), counter-clockwise by the raw shoelace sign, collinear
    vertices dropped. Vertex ``(x, y)`` is a pixel corner of the padded array."""
    r, c = np.nonzero(mask)
    stride = mask.shape[1] + 1
    starts, ends = [], []
    # each boundary edge oriented with the inside on its left in the (x, y) plane taken as
    # drawn on paper (y up): the ring then has a positive shoelace area
    for dr, dc, (sx, sy), (ex, ey) in (
        (-1, 0, (0, 0), (1, 0)),  # top edge, +x
        (0, 1, (1, 0), (1, 1)),  # right edge, +y
        (1, 0, (1, 1), (0, 1)),  # bottom edge, -x
        (0, -1, (0, 1), (0, 0)),  # left edge, -y
    ):
        edge = ~mask[r + dr, c + dc]
        rr, cc = r[edge], c[edge]
        starts.append((rr + sy) * stride + cc + sx)
        ends.append((rr + ey) * stride + cc + ex)
    start, end = np.concatenate(starts), np.concatenate(ends)
    nxt = dict(zip(start.tolist(), end.tolist(), strict=True))
    if len(nxt) != len(start):
        raise RuntimeError("outline tracing met a pinch vertex")  # excluded by construction
    v0 = int(start.min())
    ring = [v0]
    v = nxt[v0]
    while v != v0:
        ring.append(v)
        v = nxt[v]
    ids = np.asarray(ring)
    xy = np.stack([ids % stride, ids // stride], axis=1).astype(np.float64)
    d_in, d_out = xy - np.roll(xy, 1, axis=0), np.roll(xy, -1, axis=0) - xy
    xy = xy[d_in[:, 0] * d_out[:, 1] != d_in[:, 1] * d_out[:, 0]]  # corners only
    return np.vstack([xy, xy[:1]])


def _label_rings(
    labels: np.ndarray, offset: tuple[float, float] = (0.0, 0.0), downsample: float = 1.0
) -> dict[int, list[np.ndarray]]:
    """Every label's outer rings (one per 4-connected part, holes filled, largest first),
    level-0 pixels."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"outlines need a 2-D integer label image, got shape {labels.shape} "
            f"and dtype {labels.dtype}"
        )
    if not (math.isfinite(downsample) and downsample > 0):
        raise ValueError(f"downsample must be a positive number, got {downsample}")
    x0, y0 = (float(v) for v in offset)
    index = np.where(labels > 0, labels, 0)
    ids = None
    if labels.size and int(index.max()) > 1 << 22:  # find_objects is O(largest label)
        ids = np.unique(index)
        ids = ids[ids > 0]
        index = np.where(index > 0, np.searchsorted(ids, index) + 1, 0)
    out: dict[int, list[np.ndarray]] = {}
    for slot, sl in enumerate(ndimage.find_objects(index)):
        if sl is None:
            continue
        label = int(ids[slot]) if ids is not None else slot + 1
        crop = np.pad(index[sl] == slot + 1, 1)
        parts, n = ndimage.label(ndimage.binary_fill_holes(crop))
        rings = []
        for i in range(1, n + 1):
            xy = _trace_component(parts == i)
            xy[:, 0] = x0 + (xy[:, 0] - 1 + sl[1].start) * downsample
            xy[:, 1] = y0 + (xy[:, 1] - 1 + sl[0].start) * downsample
            rings.append(xy)
        rings.sort(key=lambda ring: -_signed_area(ring))
        out[label] = rings
    return out


def labels_to_polygons(
    labels: np.ndarray, offset: tuple[float, float] = (0.0, 0.0), downsample: float = 1.0
) -> dict[int, list[tuple[float, float]]]:
    """Exact outlines of a label image: label -> closed ring of ``(x, y)`` level-0 pixels.

    Rings follow pixel edges, counter-clockwise (raw shoelace sign), with holes filled; a
    label in several 4-connected parts gives its largest part here (GeoJSON exports keep all
    parts as a MultiPolygon). The ring's area is the part's pixel count times
    ``downsample²``.

    Parameters
    ----------
    labels : ndarray
        2-D integer label image; 0 (and below) is background.
    offset : tuple of float
        Level-0 ``(x0, y0)`` of the top-left corner of label pixel (0, 0).
    downsample : float
        Level-0 pixels per label pixel (see :class:`LabelOutlines`).

    Returns
    -------
    dict of int to list of (float, float)
        Each label -> its closed ring (first vertex repeated last).

    Raises
    ------
    ValueError
        For an image that is not 2-D integer, or a downsample that is not positive.
    """
    return {
        label: [(float(x), float(y)) for x, y in rings[0]]
        for label, rings in _label_rings(labels, offset, downsample).items()
    }


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def _as_rings(value: Any, label: Any) -> list[np.ndarray]:
    """A user outline (one ring or a list of rings of (x, y)) as closed CCW rings."""
    try:
        arr = np.asarray(value, dtype=np.float64)
        rings = [arr] if arr.ndim == 2 else list(arr)
    except ValueError:  # ragged: a list of rings
        rings = [np.asarray(r, dtype=np.float64) for r in value]
    out = []
    for ring in rings:
        if ring.ndim != 2 or ring.shape[1] != 2 or not np.isfinite(ring).all():
            raise ValueError(f"outline of {label!r} is not a finite (N, 2) array of (x, y)")
        if not np.array_equal(ring[0], ring[-1]):
            ring = np.vstack([ring, ring[:1]])
        if len(ring) < 4 or _signed_area(ring) == 0:
            raise ValueError(f"outline of {label!r} has fewer than 3 distinct vertices")
        out.append(ring if _signed_area(ring) > 0 else ring[::-1])
    return out


def _outline_rings(outlines: Any) -> dict[int, list[np.ndarray]]:
    """Label -> closed CCW rings, from a :class:`LabelOutlines`, a tuple ``(labels, (x0,
    y0), downsample)`` or a dict label -> ring or list of rings."""
    if isinstance(outlines, LabelOutlines):
        return _label_rings(outlines.labels, outlines.offset, outlines.downsample)
    if isinstance(outlines, tuple) and len(outlines) == 3:
        return _label_rings(*outlines)
    if isinstance(outlines, Mapping):
        return {int(k): _as_rings(v, k) for k, v in outlines.items()}
    raise ValueError(
        "outlines must be a LabelOutlines(labels, offset, downsample), a tuple "
        f"(labels, (x0, y0), downsample) or a dict label -> ring, got {type(outlines).__name__}"
    )
