"""Sample slides: the real CMU-1 small region shipped with the package, and synthetic
glioblastoma slides generated on first use into a cache folder.

The cache folder is ``$NAPARI_GBM_CACHE`` if set, else ``~/.cache/napari-gbm``. A
synthetic slide is written atomically, so an interrupted generation is simply redone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from napari_gbm import __version__
from napari_gbm.synthetic import make_synthetic_slide

__all__ = ["SYNTHETIC_SAMPLE_SIZE", "cache_dir", "cmu1_path", "synthetic_sample_path"]

_GENERATING = threading.Lock()

#: Size of the synthetic sample slides (level-0 pixels per side at 0.5 µm/px: 2 mm).
SYNTHETIC_SAMPLE_SIZE = 4096


def cmu1_path() -> Path:
    """Path of the bundled ``cmu-1-small-region.svs``.

    A real Aperio H&E slide region, CC0; see ``sample_data/SOURCES.md``.

    Returns
    -------
    pathlib.Path
        The file inside the installed package.

    Raises
    ------
    FileNotFoundError
        If the file is missing from the installation.
    """
    path = Path(str(files("napari_gbm") / "sample_data" / "cmu-1-small-region.svs"))
    if not path.exists():
        raise FileNotFoundError(
            f"the bundled sample slide is missing ({path}); reinstall napari-gbm"
        )
    return path


def cache_dir() -> Path:
    """The folder synthetic sample slides are cached in, created if missing.

    Returns
    -------
    pathlib.Path
        ``$NAPARI_GBM_CACHE`` if set, else ``~/.cache/napari-gbm``.
    """
    root = os.environ.get("NAPARI_GBM_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "napari-gbm"
    path.mkdir(parents=True, exist_ok=True)
    return path


def synthetic_sample_path(
    stain: str = "he",
    *,
    size: int = SYNTHETIC_SAMPLE_SIZE,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
) -> Path:
    """A synthetic GBM slide, generated once and cached.

    Thread-safe: concurrent calls generate it once. The file name holds the stain, size,
    seed and package version, so a new version generates afresh.

    Parameters
    ----------
    stain : {"he", "hdab"}, default "he"
        H&E, or Ki-67 IHC (hematoxylin + DAB).
    size : int, default SYNTHETIC_SAMPLE_SIZE (4096)
        Level-0 width and height, pixels (at 0.5 µm/px: 2 mm).
    seed : int, default 0
        Random seed of the generator.
    progress : callable, optional
        Called as ``progress(fraction)`` (0-1) while the slide is generated (a few seconds,
        first use only).

    Returns
    -------
    pathlib.Path
        The cached pyramidal TIFF.

    Raises
    ------
    ValueError
        From :func:`~napari_gbm.synthetic.make_synthetic_slide` for an invalid stain or size.
    """
    path = cache_dir() / f"synthetic-gbm-{stain}-{size}-seed{seed}-v{__version__}.tif"
    with _GENERATING:
        if not path.exists():
            make_synthetic_slide(
                path, size_px=(size, size), stain=stain, seed=seed, progress=progress
            )
    return path
