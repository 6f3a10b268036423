"""Vessels against the synthetic slides' drawn truth (issue 18), and on the real slides.

For each synthetic H&E slide: drawn lumina found as vessels, vessels that are no drawn
lumen, and the MVP area found over the drawn microvascular regions. For each synthetic
CD31 slide: microvessel density and the Weidner hotspot count against the drawn ones,
next to a plain scikit-image count measured in the same run (``skimage.color.rgb2hed``
DAB above its Otsu threshold on tissue, a 2-µm closing, components >= 15 µm²). For the real slides
(CMU-1, skin; the TCGA slide, a head-and-neck carcinoma) and the annotated H&E fields of
other organs in ``../shared/data/annotated`` (MoNuSeg, CRCHistoPhenotypes, CryoNuSeg): what
the H&E detector finds where no MVP is.

    python benchmarks/bench_vessels.py [--size 4096] [--out /tmp/bench_vessels]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.color import rgb2hed
from skimage.filters import threshold_otsu
from skimage.morphology import disk

from napari_gbm import Slide, analyze_slide
from napari_gbm.detect.cells import CellParams
from napari_gbm.pipeline import AnalyzeParams, NoTissueError
from napari_gbm.synthetic import make_synthetic_slide
from napari_gbm.synthetic.layout import build_layout
from napari_gbm.wsi.tissue import detect_tissue

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "slides"


def _skimage_count(path: Path) -> int:
    """The plain scikit-image peer: DAB components at 1 µm/px on tissue, streamed."""
    slide = Slide(path)
    tissue = detect_tissue(slide)
    w, h = slide.dimensions
    ds = 1.0 / slide.require_mpp()
    ow, oh = int(w / ds), int(h / ds)
    rgb = slide.read_downsampled((0, 0, w, h), (ow, oh))  # small synthetic slides only
    dab = rgb2hed(rgb)[..., 2]
    on = tissue.sampled(oh, ow)
    mask = ndimage.binary_closing(dab > threshold_otsu(dab[on]), disk(2))
    lab, _ = ndimage.label(mask & on)
    sizes = np.bincount(lab.ravel())[1:]
    return int((sizes >= 15).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_vessels"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    he = AnalyzeParams(cells=CellParams(texture=False))
    print("H&E (synthetic): drawn lumina found, false vessels, MVP area found / drawn")
    for seed in (3, 5, 7, 11):
        info = make_synthetic_slide(
            args.out / f"he{seed}.tif", size_px=(args.size, args.size), seed=seed
        )
        t0 = time.perf_counter()
        s = analyze_slide(info.path, args.out / f"he{seed}", he)
        dt = time.perf_counter() - t0
        truth = json.loads(info.truth_path.read_text())
        lumens = build_layout(args.size, args.size, info.mpp, seed).lumens[:, :3] * info.mpp
        v = pd.read_parquet(args.out / f"he{seed}" / "vessels.parquet").query("is_vessel")
        d = np.hypot(
            v["centroid_x_um"].to_numpy()[:, None] - lumens[:, 0],
            v["centroid_y_um"].to_numpy()[:, None] - lumens[:, 1],
        )
        found = int((d.min(axis=0) < lumens[:, 2]).sum()) if len(v) else 0
        false = int((d.min(axis=1) >= lumens[d.argmin(axis=1), 2]).sum()) if len(v) else 0
        drawn = truth["regions"]["microvascular"]["area_mm2"]
        print(
            f"  seed {seed}: lumina {found}/{len(lumens)}, false vessels {false}, MVP "
            f"{s['microvascular_area_mm2']:.4f} / {drawn:.4f} mm² = "
            f"{s['microvascular_area_mm2'] / drawn:.2f} ({s['n_mvp_foci']} foci); "
            f"analyze {dt:.1f} s"
        )
    cd31 = AnalyzeParams(cells=CellParams(stain="hdab", texture=False), marker="cd31")
    print("CD31 (synthetic): MVD and hotspot count, ours and scikit-image, against drawn")
    for seed in (1, 4):
        info = make_synthetic_slide(
            args.out / f"cd31_{seed}.tif", size_px=(args.size, args.size), stain="cd31",
            seed=seed,
        )  # fmt: skip
        s = analyze_slide(info.path, args.out / f"cd31_{seed}", cd31)
        vt = json.loads(info.truth_path.read_text())["vessels"]
        peer = _skimage_count(info.path)
        print(
            f"  seed {seed}: vessels ours {s['n_vessels']} / skimage {peer} / drawn "
            f"{vt['count']} (ours/drawn {s['n_vessels'] / vt['count']:.3f}, skimage/drawn "
            f"{peer / vt['count']:.3f}); MVD ours {s['microvessel_density_per_mm2']:.1f} "
            f"drawn {vt['microvessel_density_per_mm2']:.1f} /mm²; hotspot ours "
            f"{s['microvessel_hotspot_count']} drawn {vt['hotspot_vessel_count']}"
        )
    print("Real H&E slides (no MVP expected in either)")
    for name, mpp in (("cmu-1-small-region.svs", None), ("tcga-cr-7395-01a-01-ts1.svs", 0.5)):
        if not (SHARED / name).exists():
            print(f"  {name}: not found in {SHARED}")
            continue
        s = analyze_slide(SHARED / name, args.out / name, he, mpp=mpp)
        print(
            f"  {name}: {s['n_vessels']} vessels ({s['vessel_density_per_mm2']:.1f} /mm² of "
            f"{s['analysed_tissue_area_mm2']:.2f} mm²), {s['n_mvp_foci']} MVP foci"
        )
    print("Real H&E fields of other organs (annotated sets; no MVP expected)")
    for name in ("monuseg", "crchisto_2016", "cryonuseg_draft2019_PARTIAL"):
        root = SHARED.parent / "annotated" / name
        if not (root / "manifest.csv").exists():
            print(f"  {name}: not found in {root.parent}")
            continue
        n = vessels = foci = 0
        area = 0.0
        for row in pd.read_csv(root / "manifest.csv").itertuples():
            image = next((root / "images").glob(f"{row.image}.*"))
            try:
                s = analyze_slide(image, args.out / name / row.image, he, mpp=float(row.mpp))
            except NoTissueError:  # no cells: nothing to judge
                continue
            n, area = n + 1, area + s["analysed_tissue_area_mm2"]
            vessels, foci = vessels + s["n_vessels"], foci + s["n_mvp_foci"]
        print(f"  {name}: {n} fields, {area:.2f} mm², {vessels} vessels, {foci} MVP foci")


if __name__ == "__main__":
    main()
