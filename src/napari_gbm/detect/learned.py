"""The learned nucleus detector: shipped weights, tiled inference, maps to nucleus labels.

``NucleusParams(detector="learned")`` sends :func:`napari_gbm.detect.segment.segment_nuclei`
here instead of the classical watershed; cells, features and biomarkers follow unchanged.

- :func:`load_model`: the weights shipped in the package (``weights/nucleus_net.pt``),
  checked against the SHA-256 in ``weights/nucleus_net.json`` and loaded with
  ``torch.load(..., weights_only=True)``; nothing is downloaded, ever.
- :func:`predict_maps`: nucleus probability and edge distance for one tile, computed in
  chunks whose origins sit on the network's stride in the *slide's* pixel grid (the tile's
  ``origin``) with a margin of the receptive field, so a pixel's prediction does not depend
  on where the tile or the chunk starts (tile independence, as for the classical detector).
- :func:`nuclei_from_maps`: foreground = probability above ``learned_threshold``; one seed
  per h-maximum of the distance map (``learned_split_um``); watershed of the distance inside
  the foreground; objects outside the area limits are dropped.

Torch uses ``n_threads`` intra-op threads, set explicitly on every call (and set back after).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi
from scipy.special import expit

if TYPE_CHECKING:
    from .nucleus_net import NucleusNet
    from .nucleus_params import NucleusParams

__all__ = [
    "CHUNK_PX",
    "WeightsError",
    "detector_record",
    "learned_nuclei",
    "load_model",
    "model_card",
    "nuclei_from_maps",
    "predict_maps",
    "weights_path",
]

#: Largest core of one inference chunk, pixels at the model's resolution: a tile is cut into
#: as few chunks as this allows (each with a margin of the receptive field), which bounds
#: the network's memory (about 0.4 GB at 768).
CHUNK_PX = 768


class WeightsError(RuntimeError):
    """The shipped weights are missing or do not match their checksum."""


def weights_path() -> Path:
    """The shipped weights file (``napari_gbm/detect/weights/nucleus_net.pt``)."""
    return Path(str(resources.files("napari_gbm.detect") / "weights" / "nucleus_net.pt"))


def model_card() -> dict[str, Any]:
    """The shipped weights' record: checksum, architecture, training data and settings."""
    card = weights_path().with_suffix(".json")
    if not card.is_file():
        raise WeightsError(
            f"the learned detector's record {card} is missing: the installation is incomplete; "
            "reinstall napari-gbm, or use --detector classical"
        )
    return dict(json.loads(card.read_text()))


def detector_record(params: NucleusParams) -> dict[str, Any]:
    """What identifies the detector in an output's provenance: nothing more for the
    classical one; the weights' SHA-256 and training date for the learned one."""
    if params.detector != "learned":
        return {}
    card = model_card()
    return {"nucleus_net_sha256": card["sha256"], "nucleus_net_date": card.get("date")}


@functools.lru_cache(maxsize=4)
def load_model(path: str | None = None) -> NucleusNet:
    """The learned detector's network with its weights, in eval mode (cached).

    Parameters
    ----------
    path : str, optional
        A weights file with its ``.json`` record beside it; default the shipped one.

    Raises
    ------
    WeightsError
        If the file or its record is missing, or its SHA-256 differs from the record's
        (a corrupt or partial file), or the tensors do not fit the network.
    """
    import torch

    from .nucleus_net import NucleusNet

    weights = Path(path) if path is not None else weights_path()
    card_file = weights.with_suffix(".json")
    if not weights.is_file() or not card_file.is_file():
        raise WeightsError(
            f"the learned detector's weights {weights} (or their record) are missing: "
            "reinstall napari-gbm, or use --detector classical"
        )
    card = json.loads(card_file.read_text())
    data = weights.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != card.get("sha256"):
        raise WeightsError(
            f"{weights} does not match its checksum ({digest[:12]} vs "
            f"{str(card.get('sha256'))[:12]}): the file is corrupt or was replaced; reinstall "
            "napari-gbm"
        )
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    net = NucleusNet(tuple(card["architecture"]["channels"]))
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsError(f"{weights} does not fit the network: {err}") from None
    return net.eval()


def predict_maps(
    rgb: npt.NDArray[np.uint8],
    origin: tuple[int, int] = (0, 0),
    n_threads: int = 1,
    net: NucleusNet | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Nucleus probability and edge distance (µm) of a tile at the model's pixel size.

    Parameters
    ----------
    rgb : ndarray of uint8, shape (h, w, 3)
        The tile, at :data:`~napari_gbm.detect.nucleus_net.MODEL_MPP` µm/px.
    origin : tuple of int, default (0, 0)
        ``(x, y)`` of the tile's first pixel in the slide's pixel grid at that resolution:
        chunks start on multiples of the network's stride of that grid.
    n_threads : int, default 1
        Torch intra-op threads.
    net : NucleusNet, optional
        The network; default :func:`load_model`.

    Returns
    -------
    probability, distance_um : ndarray of float32, shape (h, w)
    """
    import torch

    net = load_model() if net is None else net
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n_threads)))
    try:
        return _predict(net, rgb, origin)
    finally:
        torch.set_num_threads(before)


def _predict(
    net: NucleusNet, rgb: npt.NDArray[np.uint8], origin: tuple[int, int]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    import torch

    from .nucleus_net import DIST_CAP_UM, RECEPTIVE_RADIUS_PX, STRIDE, encode_rgb

    h, w = rgb.shape[:2]
    x = encode_rgb(rgb)
    prob = np.zeros((h, w), np.float32)
    dist = np.zeros((h, w), np.float32)
    m = -(-RECEPTIVE_RADIUS_PX // STRIDE) * STRIDE  # margin, a multiple of the stride
    ox, oy = int(origin[0]), int(origin[1])
    with torch.inference_mode():
        for gy, ch in _chunks(oy, h, STRIDE):
            for gx, cw in _chunks(ox, w, STRIDE):
                # chunk core [g, g + c) in slide pixels with its margin m; in tile pixels,
                # outside the tile is white (OD 0)
                y0, x0 = gy - m - oy, gx - m - ox
                buf = np.zeros((3, ch + 2 * m, cw + 2 * m), np.float32)
                sy0, sx0 = max(y0, 0), max(x0, 0)
                sy1, sx1 = min(y0 + ch + 2 * m, h), min(x0 + cw + 2 * m, w)
                buf[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = x[:, sy0:sy1, sx0:sx1]
                out = net(torch.from_numpy(buf)[None])[0].numpy()
                cy0, cx0 = max(gy - oy, 0), max(gx - ox, 0)
                cy1, cx1 = min(gy + ch - oy, h), min(gx + cw - ox, w)
                src = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
                prob[cy0:cy1, cx0:cx1] = expit(out[0][src])
                dist[cy0:cy1, cx0:cx1] = DIST_CAP_UM * expit(out[1][src])
    return prob, dist


def _chunks(origin: int, length: int, stride: int) -> list[tuple[int, int]]:
    """Chunk cores ``(start, size)`` in slide pixels covering ``[origin, origin + length)``:
    as few as :data:`CHUNK_PX` allows, each starting on a multiple of `stride`."""
    start = math.floor(origin / stride) * stride
    span = origin + length - start
    n = max(1, math.ceil(span / CHUNK_PX))
    size = math.ceil(span / n / stride) * stride
    return [(start + k * size, size) for k in range(n) if start + k * size < origin + length]


def nuclei_from_maps(
    prob: npt.NDArray[np.float32],
    dist_um: npt.NDArray[np.float32],
    mpp: float,
    params: NucleusParams,
) -> npt.NDArray[np.int32]:
    """Nucleus labels from the predicted maps.

    Parameters
    ----------
    prob, dist_um : ndarray of float32, shape (h, w)
        Nucleus probability and edge distance in µm (:func:`predict_maps`).
    mpp : float
        Pixel size of the maps, µm/px.
    params : NucleusParams
        ``learned_threshold``, ``learned_split_um``, ``min_area_um2``, ``max_area_um2``.

    Returns
    -------
    ndarray of int32, shape (h, w)
        Ids 1..n in raster order of each nucleus's first pixel.
    """
    from skimage.morphology import h_maxima

    from .segment import filter_objects, watershed_clumps

    mask = prob > params.learned_threshold
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    height = np.where(mask, dist_um, 0.0).astype(np.float32)
    # h-maxima on a grid of 1/64 µm: float plateaus compare exactly
    quant = np.rint(height * 64).astype(np.int32)
    peaks = h_maxima(quant, max(1, round(params.learned_split_um * 64))).astype(bool) & mask
    markers, n = ndi.label(peaks, structure=np.ones((3, 3)))
    labels = watershed_clumps(-height, markers.astype(np.int64), mask)
    rest, n_rest = ndi.label(mask & (labels == 0), structure=np.ones((3, 3)))
    if n_rest:
        labels = np.where(rest > 0, rest.astype(np.int64) + n, labels)
    return filter_objects(labels, prob, mpp, params, 0.0)


def learned_nuclei(
    rgb: npt.NDArray[np.uint8],
    mpp: float,
    params: NucleusParams,
    origin: tuple[int, int] = (0, 0),
    n_threads: int = 1,
) -> npt.NDArray[np.int32]:
    """Nucleus labels of one RGB tile by the learned detector.

    At a pixel size within 10 % of the model's the tile is used as it is; otherwise it is
    resampled to the model's pixel size and the maps back (bilinear), which keeps results
    but not exact tile independence.

    Parameters
    ----------
    rgb : ndarray of uint8, shape (h, w, 3)
    mpp : float
        Pixel size of `rgb`, µm/px.
    params : NucleusParams
    origin : tuple of int, default (0, 0)
        ``(x, y)`` of the tile's first pixel in the slide's grid at `mpp`.
    n_threads : int, default 1

    Returns
    -------
    ndarray of int32, shape (h, w)
    """
    from .nucleus_net import MODEL_MPP

    f = mpp / MODEL_MPP
    if abs(f - 1.0) <= 0.1:
        prob, dist = predict_maps(rgb, origin, n_threads)
    else:
        small = ndi.zoom(rgb, (f, f, 1), order=1, grid_mode=True, mode="grid-constant", cval=255)
        o = (round(origin[0] * f), round(origin[1] * f))
        p_s, d_s = predict_maps(np.clip(small, 0, 255).astype(np.uint8), o, n_threads)
        zoom = (rgb.shape[0] / p_s.shape[0], rgb.shape[1] / p_s.shape[1])
        prob = ndi.zoom(p_s, zoom, order=1, grid_mode=True, mode="nearest")
        dist = ndi.zoom(d_s, zoom, order=1, grid_mode=True, mode="nearest")
    return nuclei_from_maps(prob, dist, mpp, params)
