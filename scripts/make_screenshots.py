"""Regenerate the README screenshots in docs/images/ from a real napari viewer.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/make_screenshots.py
    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python scripts/make_screenshots.py \
        --size 1366x768 --out /tmp/shots-laptop
    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/make_screenshots.py \
        --spots-only    # only docs/images/spots_synthetic.png
    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/make_screenshots.py \
        --vessels-only  # only docs/images/vessels_synthetic.png and vessels_tcga.png

Each picture: a sample slide opened with the napari-gbm reader, a widget run, the whole
window (docks included) captured at ``--size`` (default 1920x1080, a desktop screen; the
README's pictures), as a user sees it on a screen of that size. The script fails if a
capture comes back blank.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
SHARED = ROOT.parent / "shared" / "data" / "slides"  # real slides made by others (SOURCES.md)
SIZE = (1920, 1080)


def _window(viewer: object) -> None:
    """The window at the screen size, as a maximised window on that screen."""
    viewer.window._qt_window.resize(*SIZE)  # type: ignore[attr-defined]


def _settle(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def _save(viewer: object, filename: str) -> None:
    """The whole window to docs/images/filename; exits if the capture is blank."""
    from PIL import Image

    img = np.asarray(viewer.screenshot(canvas_only=False, flash=False))  # type: ignore[attr-defined]
    if img[..., :3].std() < 15:
        sys.exit(f"{filename}: the capture is blank")
    OUT.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(OUT / filename)
    print(f"wrote {OUT / filename} {img.shape}")
    viewer.close()  # type: ignore[attr-defined]


def capture(sample: str, filename: str, tile_size: int) -> None:
    import napari

    from napari_gbm.widgets._slide_tiles import SlideTilesWidget

    viewer = napari.Viewer(show=True)
    _window(viewer)
    viewer.open_sample("napari-gbm", sample)
    widget = SlideTilesWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Slide & tiles")
    widget._tile_size.value = tile_size
    worker = widget.run()
    while widget._worker is not None:
        _settle(0.1)
    del worker
    viewer.canvas.overlays["scale_bar"].visible = True
    viewer.reset_view()
    _settle(1.0)
    _save(viewer, filename)


def capture_analysis(filename: str) -> None:
    """The synthetic Ki-67 slide analysed (analyze_slide), opened as an analysis folder:
    slide, cells coloured by DAB grade, the Ki-67 hotspot map; the Biomarkers widget docked."""
    import tempfile

    import napari

    from napari_gbm.detect.cells import CellParams
    from napari_gbm.pipeline import AnalyzeParams, analyze_slide
    from napari_gbm.samples import synthetic_sample_path
    from napari_gbm.widgets._biomarkers import BiomarkersWidget

    out = Path(tempfile.mkdtemp(prefix="napari-gbm-shot-")) / "ki67"
    analyze_slide(
        synthetic_sample_path("hdab"),
        out,
        AnalyzeParams(cells=CellParams(stain="hdab", texture=False)),
    )
    viewer = napari.Viewer(show=True)
    _window(viewer)
    layers = viewer.open(str(out), plugin="napari-gbm")
    by_name = {ly.name: ly for ly in layers}
    name = next(n for n in by_name if n.endswith("Ki-67 index (%)"))
    by_name[name].visible = True
    by_name[name].opacity = 0.35
    widget = BiomarkersWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Biomarkers")
    viewer.canvas.overlays["scale_bar"].visible = True
    viewer.reset_view()
    viewer.camera.zoom *= 1.6  # a closer look: single cells visible
    _settle(1.5)
    _save(viewer, filename)


def capture_spots(filename: str) -> None:
    """Histology per Visium spot: the synthetic Ki-67 slide analysed, a Visium-like grid
    (55 µm spots 100 µm apart, ``in_tissue`` from the tissue mask) written over it as Space
    Ranger writes it, ``napari-gbm spots`` run, and its spots.parquet opened over the slide,
    coloured by the Ki-67 positive fraction of the cells under each spot."""
    import json
    import tempfile

    import napari
    from PIL import Image

    from napari_gbm.cli import main
    from napari_gbm.detect.cells import CellParams
    from napari_gbm.pipeline import AnalyzeParams, analyze_slide
    from napari_gbm.samples import synthetic_sample_path

    root = Path(tempfile.mkdtemp(prefix="napari-gbm-spots-"))
    out = root / "ki67"
    summary = analyze_slide(
        synthetic_sample_path("hdab"),
        out,
        AnalyzeParams(cells=CellParams(stain="hdab", texture=False)),
    )
    mpp = summary["slide"]["mpp"]
    w0, h0 = summary["slide"]["dimensions"]
    mask = np.asarray(Image.open(out / "tissue_mask.png")) > 0
    ds = w0 / mask.shape[1]
    pitch = 100.0 / mpp  # Visium: spot centres 100 µm apart on a hexagonal grid
    rows = []
    for r in range(int(h0 / (pitch * np.sqrt(3) / 2)) + 1):
        for c in range(int(w0 / pitch) + 1):
            x, y = (c + 0.5 * (r % 2)) * pitch + pitch / 4, r * pitch * np.sqrt(3) / 2 + pitch / 4
            if x < w0 and y < h0:
                on = mask[min(int(y / ds), mask.shape[0] - 1), min(int(x / ds), mask.shape[1] - 1)]
                rows.append(f"S{r:03d}x{c:03d}-1,{int(on)},{r},{2 * c + r % 2},{y:.2f},{x:.2f}")
    header = "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres"
    (root / "tissue_positions.csv").write_text("\n".join([header, *rows]) + "\n")
    scalefactors = {
        "spot_diameter_fullres": 55.0 / mpp,
        "tissue_hires_scalef": 0.1,
        "tissue_lowres_scalef": 0.03,
        "fiducial_diameter_fullres": 89.0 / mpp,
    }
    (root / "scalefactors_json.json").write_text(json.dumps(scalefactors))
    spots = root / "spots.parquet"
    args = ["--positions", str(root / "tissue_positions.csv"), "--out", str(spots)]
    scale_args = ["--scalefactors", str(root / "scalefactors_json.json")]
    if main(["spots", str(out), *args, *scale_args]) != 0:
        sys.exit("napari-gbm spots failed")
    viewer = napari.Viewer(show=True)
    _window(viewer)
    for layer in viewer.open(str(out), plugin="napari-gbm"):
        layer.visible = layer.name == summary["slide_id"]  # the slide; the spots go on it
    viewer.open(str(spots), plugin="napari-gbm")
    viewer.canvas.overlays["scale_bar"].visible = True
    viewer.reset_view()
    _settle(1.5)
    _save(viewer, filename)


def capture_vessels(filename: str, slide: Path | None = None, mpp: float | None = None) -> None:
    """Vessels and microvascular proliferation (MVP) on H&E: by default a 4096 x 4096
    synthetic H&E slide with two MVP foci (seed 3) analysed, its folder opened, zoomed on
    the first focus: each vessel a ring on its lumen (yellow in MVP, cyan otherwise), the
    focus outlined in green; the Biomarkers widget docked with the vascular summary. With
    `slide` (a real H&E slide, `mpp` if it has none), zoomed on its first MVP focus, or on
    its first vessel when it has none."""
    import tempfile

    import napari
    import pandas as pd

    from napari_gbm._napari._layers import camera_of
    from napari_gbm.detect.cells import CellParams
    from napari_gbm.pipeline import AnalyzeParams, analyze_slide
    from napari_gbm.synthetic import make_synthetic_slide
    from napari_gbm.widgets._biomarkers import BiomarkersWidget

    root = Path(tempfile.mkdtemp(prefix="napari-gbm-vessels-"))
    if slide is None:
        slide = root / "he.tif"
        make_synthetic_slide(slide, size_px=(4096, 4096), stain="he", seed=3)
    out = root / "he_an"
    params = AnalyzeParams(cells=CellParams(stain="he", texture=False))
    analyze_slide(slide, out, params, mpp=mpp)
    where = pd.read_parquet(out / "mvp_foci.parquet")
    if where.empty:
        where = pd.read_parquet(out / "vessels.parquet")
    if where.empty:
        sys.exit(f"{filename}: no vessel found on {slide.name}")
    viewer = napari.Viewer(show=True)
    _window(viewer)
    for layer in viewer.open(str(out), plugin="napari-gbm"):
        if layer.metadata.get("napari_gbm", {}).get("kind") == "cells":
            layer.visible = False  # the vessel walls' nuclei stay visible under the rings
    widget = BiomarkersWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Biomarkers")
    widget.add_vessels()  # the vascular summary in the dock (the layers are the reader's)
    viewer.canvas.overlays["scale_bar"].visible = True
    _settle(0.5)
    camera = camera_of(viewer)
    camera.center = (float(where["centroid_y_um"].iloc[0]), float(where["centroid_x_um"].iloc[0]))
    camera.zoom = min(viewer.canvas.size) / 360  # µm across the canvas: the focus and around
    _settle(1.5)
    _save(viewer, filename)


def capture_cohort(filename: str) -> None:
    """The Cohort & stratification widget on a synthetic cohort of 200 patients, Ki-67
    tertiles."""
    import tempfile

    import napari

    from napari_gbm.synthetic import make_synthetic_cohort
    from napari_gbm.widgets._cohort import CohortWidget

    root = Path(tempfile.mkdtemp(prefix="napari-gbm-cohort-"))
    cohort = make_synthetic_cohort(n_patients=200, seed=0)
    cohort.slides.to_parquet(root / "slides.parquet")
    cohort.clinical.to_csv(root / "clinical.csv", index=False)
    viewer = napari.Viewer(show=True)
    _window(viewer)
    viewer.open_sample("napari-gbm", "synthetic_gbm_ki67")
    widget = CohortWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Cohort & stratification")
    widget._path.value = root / "slides.parquet"
    widget._clinical_path.value = root / "clinical.csv"
    widget.load()
    widget._out.value = root / "stratify"
    widget._group_by.value = "positive_percent"
    widget._cutoff.value = "tertiles"
    widget._covariates.value = ["positive_percent", "age", "mgmt_methylated", "idh_mutant"]
    widget._cv_folds.value = 3
    widget.run()
    while not widget._run_btn.enabled:
        _settle(0.2)
    viewer.reset_view()
    _settle(1.0)
    bar = widget.native.verticalScrollBar()  # the dock scrolls: show its results
    bar.setValue(bar.maximum())
    _settle(0.5)
    _save(viewer, filename)


def capture_cells_region(filename: str, detector: str = "classical") -> None:
    """CMU-1: a rectangle drawn in the user's own Shapes layer, the Cells widget run on
    the drawn region with `detector`: nuclei outlined, cells as rings, the region outlined
    and named."""
    import napari

    from napari_gbm.widgets._cells import CellsWidget

    viewer = napari.Viewer(show=True)
    _window(viewer)
    [slide] = viewer.open_sample("napari-gbm", "cmu1_small_region")
    rect = np.array([[500, 300], [500, 600], [760, 600], [760, 300]], float)  # µm
    viewer.add_shapes([rect], shape_type="rectangle", name="my region", face_color="transparent",
                      edge_color="cyan", edge_width=2, units=("um", "um"))  # fmt: skip
    widget = CellsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Cells")
    widget._layer.value = slide
    widget._scope.value = "drawn region"
    widget._detector.value = detector
    widget._shapes.reset_choices()
    widget._shapes.value = viewer.layers["my region"]
    widget.run()
    while widget._worker is not None:
        _settle(0.1)
    viewer.layers.selection.active = slide
    viewer.canvas.overlays["scale_bar"].visible = True
    viewer.camera.center = (630, 450)
    viewer.camera.zoom = min(SIZE) / 420  # the region and its surroundings
    _settle(1.0)
    _save(viewer, filename)


if __name__ == "__main__":
    if "--size" in sys.argv:
        w, h = sys.argv[sys.argv.index("--size") + 1].lower().split("x")
        SIZE = (int(w), int(h))
    if "--out" in sys.argv:
        OUT = Path(sys.argv[sys.argv.index("--out") + 1])
    if "--cells-only" in sys.argv:
        capture_cells_region("cells_region_cmu1.png")
        capture_cells_region("cells_region_cmu1_learned.png", "learned")
        sys.exit(0)
    if "--spots-only" in sys.argv:
        capture_spots("spots_synthetic.png")
        sys.exit(0)
    if "--vessels-only" in sys.argv:
        capture_vessels("vessels_synthetic.png")
        capture_vessels("vessels_tcga.png", SHARED / "tcga-cr-7395-01a-01-ts1.svs", 0.5)
        sys.exit(0)
    capture_cells_region("cells_region_cmu1.png")
    capture_cells_region("cells_region_cmu1_learned.png", "learned")
    capture_cohort("cohort_stratification.png")
    capture_analysis("analysis_synthetic_ki67.png")
    capture_spots("spots_synthetic.png")
    capture_vessels("vessels_synthetic.png")
    capture_vessels("vessels_tcga.png", SHARED / "tcga-cr-7395-01a-01-ts1.svs", 0.5)
    if "--analysis-only" in sys.argv:
        sys.exit(0)
    capture("cmu1_small_region", "slide_tiles_cmu1.png", 512)
    capture("synthetic_gbm_ki67", "slide_tiles_synthetic_ki67.png", 1024)
