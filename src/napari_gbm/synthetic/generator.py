"""Public entry point: write a synthetic glioblastoma whole-slide image with truth."""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _params as P
from .layout import build_layout
from .pyramid import JPEG_QUALITY, LEVEL_FACTOR, write_pyramid
from .render import TileRenderer
from .truth import TruthWriter, region_summary, write_png_gray

__all__ = ["SyntheticSlideInfo", "make_synthetic_slide"]

STAINS = ("he", "hdab")
MIN_SIZE_PX = 512


@dataclass(frozen=True)
class SyntheticSlideInfo:
    """What :func:`make_synthetic_slide` wrote.

    Attributes
    ----------
    path, nuclei_path, regions_path, truth_path : Path
        Slide TIFF, nucleus table (Parquet), region map (PNG), summary (JSON).
    size_px : (int, int)
        Level-0 (width, height).
    mpp : float
    stain : str
    seed : int
    level_dimensions : tuple of (int, int)
    level_downsamples : tuple of float
    n_nuclei : int
    tissue_fraction : float
        Fraction of the slide covered by tissue.
    positive_fraction : float
        Ki-67 labelling index over all nuclei (0 for H&E).
    region_counts : dict of str to int
        Nuclei per region.
    """

    path: Path
    nuclei_path: Path
    regions_path: Path
    truth_path: Path
    size_px: tuple[int, int]
    mpp: float
    stain: str
    seed: int
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    n_nuclei: int
    tissue_fraction: float
    positive_fraction: float
    region_counts: dict[str, int]


def _validate(
    path: str | os.PathLike[str],
    size_px: tuple[int, int],
    stain: str,
    seed: int,
    mpp: float,
    tile_px: int,
) -> tuple[Path, int, int]:
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"path must end in .tif or .tiff, got {path.name!r}")
    if not path.parent.is_dir():
        raise ValueError(f"parent directory does not exist: {path.parent}")
    try:
        width, height = (int(v) for v in size_px)
    except (TypeError, ValueError):
        raise ValueError(f"size_px must be (width, height), got {size_px!r}") from None
    if min(width, height) < MIN_SIZE_PX:
        raise ValueError(f"size_px must be at least {MIN_SIZE_PX} px per side, got {size_px!r}")
    if stain not in STAINS:
        raise ValueError(f"unknown stain {stain!r}; expected one of {STAINS}")
    if not isinstance(mpp, (int, float)) or not math.isfinite(mpp) or mpp <= 0:
        raise ValueError(f"mpp must be a positive number, got {mpp!r}")
    if not 0.05 <= mpp <= 4.0:
        raise ValueError(f"mpp must be within 0.05-4 um/px, got {mpp!r}")
    if not isinstance(tile_px, int) or tile_px < 64 or tile_px % 16:
        raise ValueError(f"tile_px must be a multiple of 16 and >= 64, got {tile_px!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return path, width, height


def make_synthetic_slide(
    path: str | os.PathLike,
    *,
    size_px: tuple[int, int] = (8192, 8192),
    stain: str = "he",
    seed: int = 0,
    mpp: float = 0.5,
    tile_px: int = 512,
    progress: Callable[[float], None] | None = None,
) -> SyntheticSlideInfo:
    """Write a synthetic glioblastoma whole-slide image and its ground truth.

    Writes ``path`` (pyramidal Aperio-style tiled TIFF, JPEG tiles) and, beside it,
    ``<stem>.nuclei.parquet``, ``<stem>.regions.png`` and ``<stem>.truth.json``. All
    files are written under temporary names and renamed at the end (the TIFF last);
    on any error the temporary files are removed.

    Parameters
    ----------
    path : str or PathLike
        Output ``.tif`` / ``.tiff`` file; its folder must exist.
    size_px : (int, int)
        Level-0 (width, height), each >= 512.
    stain : {"he", "hdab"}
        H&E, or Ki-67 IHC (hematoxylin counterstain + DAB).
    seed : int
        Same seed, same pixels and truth.
    mpp : float
        Micrometres per pixel at level 0 (0.5 ~ 20x).
    tile_px : int
        TIFF tile side (multiple of 16); the rendered content does not depend on it.
    progress : callable(float), optional
        Called with the done fraction (0-1) after every row of tiles.

    Returns
    -------
    SyntheticSlideInfo

    Raises
    ------
    ValueError
        For invalid arguments.
    """
    path, width, height = _validate(path, size_px, stain, seed, mpp, tile_px)
    mpp = float(mpp)
    stem = path.name[: -len(path.suffix)]
    final = {
        "tif": path,
        "parquet": path.with_name(f"{stem}.nuclei.parquet"),
        "png": path.with_name(f"{stem}.regions.png"),
        "json": path.with_name(f"{stem}.truth.json"),
    }
    token = secrets.token_hex(4)
    temps: list[Path] = []

    def temp_name(suffix: str) -> Path:
        p = path.with_name(f".{stem}.{token}.{suffix}.tmp")
        temps.append(p)
        return p

    tmp = {k: temp_name(k) for k in final}
    truth = None
    try:
        layout = build_layout(width, height, mpp, seed)
        renderer = TileRenderer(layout, stain, seed, tile_px)
        truth = TruthWriter(tmp["parquet"], mpp, stain)
        next_row = [0]  # next block row to flush

        def flush(y_done: int) -> None:
            while next_row[0] < renderer.nby and renderer.block_done_y(next_row[0]) <= y_done:
                by = next_row[0]
                for bx in range(renderer.nbx):
                    truth.add(renderer.pop_block(bx, by))
                next_row[0] += 1

        n0 = -(-width // tile_px) * -(-height // tile_px)
        ncols = -(-width // tile_px)

        def on_row(done: int, total: int) -> None:
            if done <= n0:  # level 0: nuclei above this row are final
                flush(min(height, (done // ncols) * tile_px))
            if progress is not None:
                progress(0.98 * done / total)

        mag = 10.0 / mpp
        desc = (
            f"|AppMag = {mag:g}|MPP = {mpp:.9g}|Filename = {stem}"
            f"|Generator = napari-gbm synthetic {P.GENERATOR_VERSION}"
            f"|Stain = {stain}|Seed = {seed}"
        )
        dims = write_pyramid(
            tmp["tif"], width, height, tile_px, renderer.render, on_row, desc, mpp, temp_name
        )
        flush(height)
        truth.close()
        write_png_gray(tmp["png"], layout.codes)
        node_um = layout.ds * mpp
        per, overall = region_summary(truth.counts, layout.codes, node_um, stain)
        tissue_fraction = float((layout.codes != P.BACKGROUND).mean())
        downs = [width / w for w, _ in dims]
        doc = {
            "generator": "napari_gbm.synthetic",
            "generator_version": P.GENERATOR_VERSION,
            "seed": int(seed),
            "stain": stain,
            "mpp": mpp,
            "objective_power": mag,
            "size_px": [width, height],
            "tile_px": tile_px,
            "tiff": {
                "layout": "aperio-style tiled TIFF, JPEG RGB tiles, reduced levels as pages",
                "jpeg_quality": JPEG_QUALITY,
                "level_factor": LEVEL_FACTOR,
                "level_dimensions": [list(d) for d in dims],
                "level_downsamples": downs,
            },
            "region_codes": {str(i): n for i, n in enumerate(P.REGION_NAMES)},
            "region_downsample": layout.ds,
            "regions_png": final["png"].name,
            "nuclei_parquet": final["parquet"].name,
            "regions": per,
            "overall": overall,
            "tissue_fraction": tissue_fraction,
            "stain_vectors": {
                "order": ["hematoxylin", "eosin", "dab"],
                "rows": [P.STAIN_H.tolist(), P.STAIN_E.tolist(), P.STAIN_DAB.tolist()],
                "note": "RGB optical-density unit vectors (Ruifrok / QuPath defaults)",
            },
            "stain_scales": {"hematoxylin": renderer.h_scale, "eosin": renderer.e_scale},
            "dab_thresholds": list(P.DAB_THRESHOLDS),
            "dab_bands_by_grade": [list(b) for b in P.DAB_BANDS],
            "grade_split_among_positives": list(P.GRADE_SPLIT),
            "microvascular": {"lumen_count": len(layout.lumens)},
            "debris": [
                {"x_px": float(x), "y_px": float(y), "radius_px": float(r), "od": float(o)}
                for x, y, r, o in layout.debris
            ],
            "border": layout.border,
        }
        tmp["json"].write_text(json.dumps(doc, indent=2))
        # The TIFF is renamed last: if it exists, its truth files are complete.
        for key in ("parquet", "png", "json", "tif"):
            os.replace(tmp[key], final[key])
    except BaseException:
        if truth is not None:
            truth.abort()
        for p in temps:
            with contextlib.suppress(FileNotFoundError):
                os.remove(p)
        raise
    if progress is not None:
        progress(1.0)
    return SyntheticSlideInfo(
        path=final["tif"],
        nuclei_path=final["parquet"],
        regions_path=final["png"],
        truth_path=final["json"],
        size_px=(width, height),
        mpp=mpp,
        stain=stain,
        seed=int(seed),
        level_dimensions=tuple((w, h) for w, h in dims),
        level_downsamples=tuple(downs),
        n_nuclei=int(overall["nucleus_count"]),
        tissue_fraction=tissue_fraction,
        positive_fraction=float(overall["positive_fraction"] or 0.0),
        region_counts={k: v["nucleus_count"] for k, v in per.items()},
    )
