"""The learned nucleus detector's network and its data contract.

:class:`NucleusNet` is a small U-Net (four levels, 16-128 channels, about 0.48 M parameters,
1.9 MB of float32 weights). It reads a tile at :data:`MODEL_MPP` µm/px as optical density
(:func:`encode_rgb`) and predicts two maps at the same resolution:

- channel 0: the logit that a pixel belongs to a nucleus;
- channel 1: the pixel's distance to the edge of its nucleus, in units of
  :data:`DIST_CAP_UM` (0 outside, 1 at or beyond the cap), measured per nucleus, so that two
  touching nuclei have a valley between them (Naylor et al. 2019, "Segmentation of nuclei
  in histopathology images by deep regression of the distance map").

:func:`instance_targets` makes these two maps from an instance label image, for training.
:mod:`napari_gbm.detect.learned` turns predictions into nucleus labels.

The network pools three times (stride :data:`STRIDE`): it gives the same output for the
same pixels only when the input starts on a multiple of the stride of the slide's pixel
grid, which :mod:`napari_gbm.detect.learned` arranges by padding.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage as ndi
from torch import nn

__all__ = [
    "CHANNELS",
    "DIST_CAP_UM",
    "MODEL_MPP",
    "RECEPTIVE_RADIUS_PX",
    "STRIDE",
    "NucleusNet",
    "encode_rgb",
    "instance_targets",
]

#: Pixel size the network works at, µm/px (the analysis grid of ``analyze``).
MODEL_MPP = 0.5
#: Distance to the nucleus edge at which the distance target saturates, µm.
DIST_CAP_UM = 4.0
#: Channels per level.
CHANNELS = (16, 32, 64, 128)
#: Total downsampling of the encoder.
STRIDE = 2 ** (len(CHANNELS) - 1)
#: Pixels of input on each side that can change an output pixel (measured by
#: ``tests/test_learned.py`` from the network's gradient).
RECEPTIVE_RADIUS_PX = 64
#: Optical density is clipped here (RGB 0 and 1 are not measurements).
OD_MAX = 2.5


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class NucleusNet(nn.Module):
    """U-Net: RGB optical density (3, h, w) -> nucleus logit and edge distance (2, h, w).

    ``h`` and ``w`` must be multiples of :data:`STRIDE`.
    """

    def __init__(self, channels: tuple[int, ...] = CHANNELS) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.down = nn.ModuleList()
        c_in = 3
        for c in self.channels:
            self.down.append(_block(c_in, c))
            c_in = c
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for c in reversed(self.channels[:-1]):
            self.up.append(nn.ConvTranspose2d(c_in, c, 2, stride=2))
            self.merge.append(_block(2 * c, c))
            c_in = c
        self.head = nn.Conv2d(c_in, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([up(x), skips.pop()], 1))
        return self.head(x)


def encode_rgb(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The network's input: optical density per channel, (3, h, w) float32.

    ``OD = -log10((v + 1) / 256)``, clipped at :data:`OD_MAX`; white glass is about 0.
    """
    lut = np.minimum(-np.log10((np.arange(256) + 1.0) / 256.0), OD_MAX).astype(np.float32)
    return np.ascontiguousarray(lut[np.moveaxis(np.asarray(rgb), -1, 0)])


def instance_targets(
    labels: npt.NDArray[np.integer], mpp: float
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Training targets from instance labels: nucleus mask and capped edge distance.

    Parameters
    ----------
    labels : ndarray of int, shape (h, w)
        0 background, one id per nucleus.
    mpp : float
        Pixel size of `labels`, µm/px.

    Returns
    -------
    foreground : ndarray of float32
        1 inside a nucleus, 0 outside.
    distance : ndarray of float32
        Euclidean distance (µm) from each nucleus pixel to the nearest pixel not of the same
        nucleus, divided by :data:`DIST_CAP_UM` and capped at 1; 0 outside.
    """
    lab = np.asarray(labels)
    dist = np.zeros(lab.shape, np.float32)
    for i, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None:
            continue
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        inside = lab[sl] == i
        d = ndi.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
        dist[sl] = np.where(inside, d.astype(np.float32), dist[sl])
    dist = np.minimum(dist * mpp / DIST_CAP_UM, 1.0).astype(np.float32)
    return (lab > 0).astype(np.float32), dist
