"""What a detector returns for one image: :class:`Detections`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Detections"]


@dataclass(frozen=True)
class Detections:
    """Detected nuclei of one image.

    Attributes
    ----------
    x, y : ndarray of float64, shape (n,)
        Centroids in pixels of the image (x = column, y = row, 0-based).
    positive : ndarray of bool, shape (n,), or None
        Ki-67 (DAB) positive or not; None when the detector does not grade nuclei.
    labels : ndarray of int, shape (height, width), or None
        Instance label image at the image's full resolution (0 = background), when the
        detector segments.
    """

    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    positive: npt.NDArray[np.bool_] | None = None
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        x = np.asarray(self.x, dtype=np.float64).ravel()
        y = np.asarray(self.y, dtype=np.float64).ravel()
        if x.shape != y.shape:
            raise ValueError(f"x and y differ in length: {x.size} and {y.size}")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("detections have NaN or infinite coordinates")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        if self.positive is not None:
            pos = np.asarray(self.positive).ravel()
            if pos.shape != x.shape:
                raise ValueError(f"positive has {pos.size} values for {x.size} detections")
            object.__setattr__(self, "positive", pos.astype(bool))
        if self.labels is not None:
            lab = np.asarray(self.labels)
            if lab.ndim != 2:
                raise ValueError(f"labels must be a 2-d label image, got shape {lab.shape}")
            object.__setattr__(self, "labels", lab)

    def __len__(self) -> int:
        return int(self.x.size)

    @property
    def xy(self) -> npt.NDArray[np.float64]:
        """Centroids as an (n, 2) array of (x, y)."""
        return np.column_stack([self.x, self.y])
