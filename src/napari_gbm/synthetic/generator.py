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
from .layout import Layout, build_layout
from .pyramid import JPEG_QUALITY, LEVEL_FACTOR, write_pyramid
from .render import TileRenderer
from .truth import TruthWriter, region_summary, write_png_gray
from .vessels import VesselTruth, hotspot_count, hotspot_radius_um

__all__ = ["SyntheticSlideInfo", "make_synthetic_slide"]

STAINS = ("he", "hdab", "cd31")
MIN_SIZE_PX = 512


@dataclass(frozen=True)
class SyntheticSlideInfo:
    """What :func:`make_synthetic_slide` wrote.

    Attributes
    ----------
    path, nuclei_path, regions_path, truth_path : Path
        Slide TIFF, nucleus table (Parquet), region map (PNG), summary (JSON); a CD31
        slide also has ``<stem>.vessels.parquet`` beside them.
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
        Ki-67 labelling index over all nuclei (0 for H&E and CD31).
    region_counts : dict of str to int
        Nuclei per region.
    n_vessels : int or None
        Vessels drawn (CD31); None for the other stains.
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
    n_vessels: int | None = None


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
    ``<stem>.nuclei.parquet``, ``<stem>.regions.png`` and ``<stem>.truth.json`` (and for
    CD31 ``<stem>.vessels.parquet``: one row per drawn vessel). All files are written
    under temporary names and renamed at the end (the TIFF last); on any error the
    temporary files are removed.

    On a CD31 slide every brown (DAB) object is one vessel, as in Weidner's count:
    capillaries (thin rings around a small lumen, collapsed solid ovals, or elongated
    single endothelial cells), larger vessels (thin brown ring around an open lumen) and
    each lumen of microvascular proliferation (its luminal ring is brown). Vessels keep
    ``VESSEL_GAP_UM`` (8 µm) wall to wall, so each is its own object at ~1 µm/px; the
    nuclei are all DAB-negative. ``truth.json`` then gains ``vessels`` (count, density,
    per region, hotspot) and ``microvessel_density_per_mm2``.

    Parameters
    ----------
    path : str or PathLike
        Output ``.tif`` / ``.tiff`` file; its folder must exist.
    size_px : (int, int)
        Level-0 (width, height), each >= 512.
    stain : {"he", "hdab", "cd31"}
        H&E, Ki-67 IHC (hematoxylin counterstain + DAB in nuclei), or CD31 IHC
        (hematoxylin counterstain + DAB in vessel walls).
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
    if stain == "cd31":
        final["vessels"] = path.with_name(f"{stem}.vessels.parquet")
    token = secrets.token_hex(4)
    temps: list[Path] = []

    def temp_name(suffix: str) -> Path:
        p = path.with_name(f".{stem}.{token}.{suffix}.tmp")
        temps.append(p)
        return p

    tmp = {k: temp_name(k) for k in final}
    truth = None
    vtruth: VesselTruth | None = None
    try:
        layout = build_layout(width, height, mpp, seed)
        renderer = TileRenderer(layout, stain, seed, tile_px)
        truth = TruthWriter(tmp["parquet"], mpp, stain)
        if stain == "cd31":
            vtruth = VesselTruth(tmp["vessels"], mpp)
        next_row = [0]  # next block row to flush

        def flush(y_done: int) -> None:
            while next_row[0] < renderer.nby and renderer.block_done_y(next_row[0]) <= y_done:
                by = next_row[0]
                for bx in range(renderer.nbx):
                    truth.add(renderer.pop_block(bx, by))
                    if vtruth is not None:
                        vtruth.add(renderer.pop_vessels(bx, by))
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
        if vtruth is not None:
            vtruth.close()
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
        if vtruth is not None:
            doc.update(_vessel_truth(vtruth, overall["tissue_area_mm2"], per, final, layout))
        tmp["json"].write_text(json.dumps(doc, indent=2))
        # The TIFF is renamed last: if it exists, its truth files are complete.
        for key in (*(k for k in final if k != "tif"), "tif"):
            os.replace(tmp[key], final[key])
    except BaseException:
        if truth is not None:
            truth.abort()
        if vtruth is not None:
            vtruth.abort()
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
        n_vessels=None if vtruth is None else vtruth.count,
    )


def _vessel_truth(
    vtruth: VesselTruth, tissue_mm2: float, per: dict, final: dict[str, Path], layout: Layout
) -> dict:
    """The truth.json entries of a CD31 slide (vessel count, density, hotspot)."""
    n = vtruth.count
    mvd = n / tissue_mm2 if tissue_mm2 else None
    xs, ys = vtruth.centroids_um()
    size_um = (layout.width * layout.mpp, layout.height * layout.mpp)
    per_region = {name: int(c) for name, c in zip(P.REGION_NAMES, vtruth.counts, strict=True)}
    per_density = {
        name: (per_region[name] / v["area_mm2"] if v["area_mm2"] > 0 else None)
        for name, v in per.items()
    }
    vessels = {
        "count": n,
        "microvessel_density_per_mm2": mvd,
        "tissue_area_mm2": tissue_mm2,
        "per_region": per_region,
        "density_per_mm2_by_region": per_density,
        "target_density_per_mm2": dict(
            zip(P.REGION_NAMES, P.VESSEL_DENSITY_PER_MM2.tolist(), strict=True)
        ),
        "hotspot_vessel_count": hotspot_count(xs, ys, size_um),
        "hotspot_radius_um": hotspot_radius_um(),
        "hotspot_field_mm2": P.HOTSPOT_FIELD_MM2,
        "hotspot_grid_um": P.HOTSPOT_GRID_UM,
        "min_gap_um": P.VESSEL_GAP_UM,
        "counting_rule": (
            "Weidner: every separate DAB-brown endothelial object is one vessel, lumen "
            "not required; capillary = ring around a small lumen, collapsed oval or "
            "elongated single endothelial cell; vessel = ring around an open lumen; mvp = "
            "one lumen of microvascular proliferation (its luminal ring)"
        ),
        "parquet": final["vessels"].name,
    }
    return {"vessels": vessels, "microvessel_density_per_mm2": mvd}
