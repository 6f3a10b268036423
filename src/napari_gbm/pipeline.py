"""The slide pipeline, one step per function, shared by the CLI, the widgets and dask.

- :func:`tile_slide`: tissue detection and the tile grid;
- :func:`analyze_slide`: the whole analysis of one slide into an output folder (tissue,
  tiles, cells, features, biomarkers), as ``napari-gbm analyze`` and each cohort task run it;
- :func:`is_complete`: whether an output folder holds a finished analysis.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow.parquet as pq

from napari_gbm import __version__
from napari_gbm.biomarkers.markers import MARKER_CELL_COLUMNS, get_marker, marker_summary
from napari_gbm.biomarkers.positive_pixels import (
    PositivePixelParams,
    positive_pixel_summary,
    slide_positive_pixels,
)
from napari_gbm.biomarkers.vascular import vessel_source
from napari_gbm.biomarkers.whole_slide import CELL_COLUMNS, BiomarkerParams, slide_biomarkers
from napari_gbm.detect.calibration import SlideCalibration, estimate_slide_stains
from napari_gbm.detect.cells import (
    CellParams,
    analyze_cells_to_parquet,
    needed_overlap_px,
    slide_calibration,
)
from napari_gbm.detect.learned import detector_record
from napari_gbm.detect.stain import deconvolve, stain_preset
from napari_gbm.detect.vessels import (
    NUCLEUS_POINT_COLUMNS,
    NucleusPoints,
    VesselParams,
    find_vessels,
)
from napari_gbm.io import atomic_path, file_fingerprint, write_json, write_parquet, write_png
from napari_gbm.outputs import check_output_folder, remove_leftovers
from napari_gbm.qc import result_warnings
from napari_gbm.wsi.overview import render_overview
from napari_gbm.wsi.slide import Slide, SlideError
from napari_gbm.wsi.tiling import TileGrid, TilingParams, make_tile_grid
from napari_gbm.wsi.tissue import TissueMask, TissueParams, detect_tissue

__all__ = [
    "AnalyzeParams",
    "NoTissueError",
    "analyze_slide",
    "tile_slide",
]


class NoTissueError(SlideError):
    """The slide has no tissue, no tile passes the tissue-fraction cut, or no cell is found.

    A :class:`~napari_gbm.wsi.slide.SlideError` with ``read_failure=False``.

    Parameters
    ----------
    path : str or pathlib.Path
        The slide.
    reason : str
        What was (not) found, for the message.
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(path, reason, read_failure=False)


#: the coarsest analysis resolution: nuclei (about 6 µm) must span a few pixels
MAX_ANALYSIS_MPP = 2.0
#: how much finer than the slide the analysis grid may be (more only interpolates)
MAX_UPSAMPLING = 2.0


def check_scales(
    slide: Slide,
    tissue_params: TissueParams,
    tiling_params: TilingParams,
    *,
    max_target_mpp: float | None = None,
) -> None:
    """Refuse resolutions that make no sense for this slide, before any work.

    A tile grid coarser than tissue detection (or than `max_target_mpp`), or more than
    :data:`MAX_UPSAMPLING` times finer than the slide, is refused. Such values hung tissue
    detection or tiling for minutes (``--target-mpp 1000``) or asked for terabytes.

    Parameters
    ----------
    slide : Slide
        The slide; it must have a pixel size.
    tissue_params : TissueParams
        Its ``resolution_um`` (µm/px of tissue detection) bounds the grid's resolution.
    tiling_params : TilingParams
        Its ``target_mpp`` (µm/px of the tile grid) is checked.
    max_target_mpp : float, optional
        A further upper bound on ``target_mpp``, µm/px; None for none.

    Raises
    ------
    SlideError
        With the values, the limit and what to use instead (``read_failure=False``); also
        when the slide has no pixel size.
    """
    mpp = slide.require_mpp()
    target = tiling_params.target_mpp
    coarsest = tissue_params.resolution_um
    if max_target_mpp is not None:
        coarsest = min(coarsest, max_target_mpp)
    if target > coarsest:
        raise SlideError(
            slide.path,
            f"a target resolution of {target:g} µm/px is coarser than {coarsest:g} µm/px "
            "(nuclei would be a pixel or less); use 0.25-1 µm/px (0.5 is the default)",
            read_failure=False,
        )
    if target < mpp / MAX_UPSAMPLING:
        raise SlideError(
            slide.path,
            f"a target resolution of {target:g} µm/px is {mpp / target:.3g}x finer than the "
            f"slide's {mpp:g} µm/px: it would only interpolate; use at least "
            f"{mpp / MAX_UPSAMPLING:.3g} µm/px",
            read_failure=False,
        )


def tile_slide(
    slide: Slide,
    tissue_params: TissueParams | None = None,
    tiling_params: TilingParams | None = None,
) -> tuple[TissueMask, TileGrid]:
    """Detect tissue and lay the tile grid over it.

    Parameters
    ----------
    slide : Slide
        The slide; it must have a pixel size.
    tissue_params : TissueParams, optional
        None uses ``TissueParams()``.
    tiling_params : TilingParams, optional
        None uses ``TilingParams()`` (0.5 µm/px, 1024-px tiles, 64-px overlap).

    Returns
    -------
    tissue : TissueMask
        The tissue mask.
    grid : TileGrid
        The tile grid; at least one tile selected.

    Raises
    ------
    SlideError
        If the slide has no pixel size (give one with ``Slide(path, mpp=...)``), or the
        grid's resolution is refused by :func:`check_scales`.
    NoTissueError
        If no tissue is found, or no tile has more tissue than the cut.
    """
    tiling_params = tiling_params or TilingParams()
    check_scales(slide, tissue_params or TissueParams(), tiling_params)
    tissue = detect_tissue(slide, tissue_params)
    if not tissue.mask.any():
        raise NoTissueError(
            slide.path,
            f"no tissue found (optical-density threshold {tissue.threshold_od:.3f}); "
            "is the slide blank or overexposed?",
        )
    grid = make_tile_grid(slide, tissue, tiling_params)
    if grid.selected.empty:
        raise NoTissueError(
            slide.path,
            f"no tile has more than {tiling_params.min_tissue_fraction:.0%} tissue; "
            "lower the minimum tissue fraction",
        )
    return tissue, grid


# --- the whole per-slide analysis: what `napari-gbm analyze` and each cohort task run ---


@dataclass(frozen=True)
class AnalyzeParams:
    """Every parameter of a slide analysis.

    Parameters
    ----------
    cells : CellParams, default CellParams()
        Stain, nucleus and cell detection, features and calibration settings.
    tiling : TilingParams or None, default None
        The tile grid; None uses the default grid (0.5 µm/px, 1024-px tiles) with the halo
        that nucleus detection needs (:func:`halo_um`). See :meth:`resolved_tiling`.
    tissue : TissueParams, default TissueParams()
        Tissue detection.
    biomarkers : BiomarkerParams, default BiomarkerParams()
        Positivity grading and slide biomarkers.
    positive_pixels : PositivePixelParams, default PositivePixelParams()
        The positive pixel count of H-DAB slides (DAB OD thresholds, resolution).
    vessels : VesselParams, default VesselParams()
        Vessel detection: lumina with an endothelial wall on H&E, DAB vessel profiles for
        a vessel marker (``marker="cd31"`` or ``"cd34"``); see
        :mod:`napari_gbm.detect.vessels`.
    estimate_stains : bool, default False
        Estimate the slide's stain vectors from its tissue instead of the stain's preset.
    fixed_calibration : dict or None, default None
        One calibration for every slide (``SlideCalibration.to_dict()``, e.g. read with
        :func:`~napari_gbm.detect.calibration.load_calibration`); None: each slide its own.
    marker : str or None, default None
        The IHC marker of an H-DAB slide, a preset of
        :data:`~napari_gbm.biomarkers.markers.MARKERS` (``"ki67"``, ``"atrx"`` ...): written
        to ``summary.json`` with its preset, and a loss marker's reading
        (:func:`~napari_gbm.biomarkers.markers.marker_summary`). It does not set the
        grading: ``biomarkers.positivity`` does (``MARKERS[name].positivity()``, as
        ``napari-gbm analyze --marker`` sets it).

    Raises
    ------
    ValueError
        For an unknown marker, listing the presets.
    """

    cells: CellParams = field(default_factory=CellParams)
    tiling: TilingParams | None = None
    tissue: TissueParams = field(default_factory=TissueParams)
    biomarkers: BiomarkerParams = field(default_factory=BiomarkerParams)
    positive_pixels: PositivePixelParams = field(default_factory=PositivePixelParams)
    vessels: VesselParams = field(default_factory=VesselParams)
    estimate_stains: bool = False
    #: one calibration for every slide (``SlideCalibration.to_dict()``, e.g. read with
    #: :func:`~napari_gbm.detect.calibration.load_calibration`); None: each slide its own
    fixed_calibration: dict[str, Any] | None = None
    marker: str | None = None

    def __post_init__(self) -> None:
        if self.marker is not None:
            object.__setattr__(self, "marker", get_marker(self.marker).name)

    def resolved_tiling(self) -> TilingParams:
        """The tile grid used: ``tiling`` with its overlap raised to the halo detection needs
        (:func:`~napari_gbm.detect.cells.needed_overlap_px`) if it was less: with less, cells
        near tile edges would depend on the grid (``analyze_slide`` warns when it raises it)."""
        if self.tiling is None:
            return TilingParams(overlap_px=needed_overlap_px(self.cells, TilingParams().target_mpp))
        need = needed_overlap_px(self.cells, self.tiling.target_mpp)
        if self.tiling.overlap_px >= need:
            return self.tiling
        if need >= self.tiling.tile_size_px:
            raise ValueError(
                f"tiles of {self.tiling.tile_size_px} px cannot hold the {need}-px overlap "
                f"nucleus detection needs at {self.tiling.target_mpp:g} µm/px; use tiles of "
                f"at least {4 * need} px (1024 is the default)"
            )
        return replace(self.tiling, overlap_px=need)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tiling"] = asdict(self.resolved_tiling())
        return d


def analyze_slide(
    source: str | Path | Slide,
    out: str | Path,
    params: AnalyzeParams | None = None,
    *,
    mpp: float | None = None,
    slide_id: str | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Analyse one slide into the folder `out`.

    Tissue, tiles, every cell and its features, biomarkers per cell / tile / slide.

    Writes ``cells.parquet``, ``tiles.parquet`` (per-tile biomarkers), ``maps.npz``
    (biomarker maps on a grid in µm), ``overview.png``, ``tissue_mask.png``, with vessels
    (H&E, CD31, CD34) ``vessels.parquet`` and ``mvp_foci.parquet``, and, last,
    ``summary.json`` (slide biomarkers, parameters, versions, input checksum). Each file
    is written atomically, and ``summary.json`` only once all others are complete, so a
    folder with a ``summary.json`` is a complete analysis (:func:`is_complete`). A previous
    ``summary.json`` and leftovers of killed runs are removed first. When no tissue is found
    the whole image is analysed, with a warning.

    The slide is calibrated first (:mod:`napari_gbm.detect.calibration`: white point and the
    counterstain level the detection thresholds follow) unless
    ``params.fixed_calibration`` gives one (e.g. one slide's, read back with
    :func:`~napari_gbm.detect.calibration.load_calibration`, for a whole cohort) or
    ``params.cells.calibration.enabled`` is off. The calibration used is in
    ``summary.json`` and the Parquet metadata under ``"calibration"``.

    Parameters
    ----------
    source : str, pathlib.Path or Slide
        The slide file, or an open slide.
    out : str or pathlib.Path
        Output folder; created if missing (checked to be writable before any work).
    params : AnalyzeParams, optional
        None uses ``AnalyzeParams()``.
    mpp : float, optional
        Pixel size, µm/px, overriding the file's; only with a path (a :class:`Slide` carries
        its own).
    slide_id : str, optional
        Identifier written into the tables; None uses the file name's stem.
    progress : callable, optional
        Called as ``progress(tiles_done, tiles_total, cells_so_far)`` during cell detection.
    cancel : callable, optional
        Polled during cell detection; the run stops when it returns True.

    Returns
    -------
    dict
        The content of ``summary.json``.

    Raises
    ------
    SlideError
        For an unreadable slide, one without a pixel size (pass `mpp`) or a refused
        resolution (:func:`check_scales`).
    NoTissueError
        If no cell is found (nothing is written then).
    ValueError
        If `out` cannot be a writable folder, or the tiles are too small for the overlap
        detection needs (:meth:`AnalyzeParams.resolved_tiling`), or `mpp` is given with a
        :class:`Slide`.
    napari_gbm.detect.cells.Cancelled
        When ``cancel()`` turns true.
    """
    t_start = time.perf_counter()
    params = params or AnalyzeParams()
    check_output_folder(out, "the output folder")  # before minutes of work, not after
    if not isinstance(source, Slide):  # opened here, so closed here (a cohort opens hundreds)
        with Slide(source, mpp=mpp) as opened:
            return analyze_slide(
                opened, out, params, slide_id=slide_id, progress=progress, cancel=cancel
            )
    if mpp is not None:
        raise ValueError(
            "mpp is for a slide given by path; open the Slide with Slide(path, mpp=...)"
        )
    slide = source
    slide_mpp = slide.require_mpp()
    slide_id = slide_id or slide.path.stem
    tiling = params.resolved_tiling()
    if params.tiling is not None and tiling.overlap_px != params.tiling.overlap_px:
        warnings.warn(
            f"a tile overlap of {params.tiling.overlap_px} px is less than the "
            f"{tiling.overlap_px} px nucleus detection needs at {tiling.target_mpp:g} µm/px "
            "(cells at tile edges would depend on the grid): using "
            f"{tiling.overlap_px} px",
            stacklevel=2,
        )
    check_scales(slide, params.tissue, tiling, max_target_mpp=MAX_ANALYSIS_MPP)
    tissue = detect_tissue(slide, params.tissue)
    grid = make_tile_grid(slide, tissue, tiling)
    whole_image = grid.selected.empty
    if whole_image:
        # a camera field or a pale image: analyse all of it; glass yields no nuclei anyway
        warnings.warn(
            f"{slide.path.name}: no tissue found; analysing the whole image", stacklevel=2
        )
        grid = make_tile_grid(slide, None, tiling)
    roi = None if whole_image else tissue  # where cells, vessels and DAB pixels are counted
    stain = params.cells.stain
    if params.estimate_stains and tissue.mask.any():
        stains = estimate_slide_stains(slide, tissue, stain)
    else:
        stains = stain_preset(stain)
    cal = slide_calibration(
        slide,
        params.cells,
        target_mpp=tiling.target_mpp,
        tissue=tissue,
        stain_vectors=stains,
        given=(
            SlideCalibration.from_dict(params.fixed_calibration)
            if params.fixed_calibration is not None
            else None
        ),
    )
    if cal is not None:
        stains = cal.stains
    meta: dict[str, Any] = {
        "software": {"napari_gbm": __version__, **detector_record(params.cells.nucleus)},
        "slide_id": slide_id,
        "input": {
            "path": str(slide.path.resolve()),
            # found again when slide and results move together (see find_analysed_slide)
            "path_from_output": os.path.relpath(slide.path.resolve(), Path(out).resolve()),
            **file_fingerprint(slide.path),
        },
        "slide": slide.info(),
        "parameters": {
            **params.to_dict(),
            "tiling_grid": grid.metadata(),
            "tissue_summary": tissue.summary(),
            "stain_vectors": stains.to_dict(),
        },
        "calibration": cal.to_dict() if cal is not None else None,
    }
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").unlink(missing_ok=True)  # re-running: the folder is incomplete now
    remove_leftovers(out)  # temporary files of a killed run, an earlier run's vessel tables
    analyze_cells_to_parquet(
        slide,
        grid,
        out / "cells.parquet",
        params.cells,
        stain_vectors=stains,
        calibration=cal,
        slide_id=slide_id,
        metadata=meta,
        positivity=params.biomarkers.positivity,
        progress=progress,
        cancel=cancel,
        # cells on glass, black borders or pen marks are no cells (none without tissue)
        tissue=roi,
    )
    if pq.ParquetFile(out / "cells.parquet").metadata.num_rows == 0:
        # nothing to measure: a failure with its reason, not a result that looks complete
        (out / "cells.parquet").unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # the folder this run made, if nothing else is in it
        where = (
            "the whole image (no tissue was found)"
            if whole_image
            else f"{tissue.tissue_area_mm2:.3g} mm² of tissue"
        )
        raise NoTissueError(
            slide.path,
            f"no cells found in {where}; is the image blank, out of focus, or not "
            f"{'H&E' if params.cells.stain == 'he' else 'H-DAB'}? Nothing was written",
        )
    vsource = vessel_source(params.cells.stain, params.marker)
    extra = MARKER_CELL_COLUMNS if params.marker is not None else ()
    walls = NUCLEUS_POINT_COLUMNS if vsource == "he" else ()  # lumina: judged by nuclei
    columns = list(dict.fromkeys([*CELL_COLUMNS, *extra, *walls, "positive_class"]))
    cells = pq.read_table(out / "cells.parquet", columns=columns)
    w0, h0 = slide.dimensions
    mask = np.ones((1, 1), bool) if whole_image else tissue.mask
    table = cells.to_pandas()
    vessels = None
    if vsource is not None:  # H&E lumina, CD31 / CD34 vessel profiles
        kind: Literal["lumen", "dab"] = "lumen" if vsource == "he" else "dab"
        nuclei = NucleusPoints.from_table(table) if walls else None
        vessels = find_vessels(slide, roi, stains, kind, params.vessels, nuclei, grid)
    if vsource in ("cd31", "cd34"):  # a vessel marker grades vessels, no cells
        table = table.drop(columns=["positive_class", params.biomarkers.positivity.column],
                           errors="ignore")  # fmt: skip
    size_um = (w0 * slide_mpp, h0 * slide_mpp)
    bm = slide_biomarkers(table, grid.tiles, mask, size_um, params.biomarkers, vessels, vsource)
    marker, marker_warnings = marker_summary(params.marker, table)  # ATRX: loss
    del table
    # plausibility: a wrong pixel size shows in nucleus sizes and density (napari_gbm.qc)
    checks = result_warnings(
        cells.column("nucleus_area_um2").to_numpy(),
        bm.summary.get("analysed_tissue_area_mm2"),
        slide_mpp,
        params.cells.nucleus.min_area_um2,
    )
    del cells
    ppc = None  # area-based positivity, H-DAB only (H&E: None entries, as the IHC scores)
    if params.cells.stain == "hdab":
        unmix = functools.partial(deconvolve, stains=stains)
        bins = bm.maps.bin_um
        ppc = slide_positive_pixels(slide, roi, unmix, bins, params.positive_pixels)
        bm.maps.maps["positive_pixel_fraction"] = ppc.positive_fraction_map.astype(np.float32)
    write_parquet(bm.tiles, out / "tiles.parquet", metadata=meta)
    if bm.vascular is not None:
        write_parquet(bm.vascular.vessels, out / "vessels.parquet", metadata=meta)
        write_parquet(bm.vascular.foci, out / "mvp_foci.parquet", metadata=meta)
    with atomic_path(out / "maps.npz") as tmp, open(tmp, "wb") as fh:
        arrays: dict[str, Any] = {"bin_um": np.float64(bm.maps.bin_um), **bm.maps.maps}
        np.savez_compressed(fh, **arrays)
    write_png((tissue.mask * 255).astype("uint8"), out / "tissue_mask.png")
    write_png(render_overview(slide, tissue, grid), out / "overview.png")
    summary = {
        "slide_id": slide_id,
        **bm.summary,
        **positive_pixel_summary(ppc),
        **marker,
        "whole_image_analysed": whole_image,
        "warnings": checks + marker_warnings,
        **meta,
        "elapsed_s": round(time.perf_counter() - t_start, 3),
    }
    write_json(summary, out / "summary.json")  # last: its presence marks a complete run
    return summary
