"""Nucleus detection against human annotations: ours vs a plain scikit-image baseline.

    .venv/bin/python benchmarks/bench_detection.py [--data DIR] [--sets a,b] [--out DIR]
        [--quick] [--images N] [--no-mpp-sensitivity] [--speed-images N] [--rounds N]

Reads the annotated sets in ``shared/data/annotated/<set>/`` (never copied into the
repository; ``--data`` to point elsewhere) and measures, in one run:

1. Accuracy: for every set, ``napari_gbm.evaluation.evaluate_dataset(set, out,
   baseline="skimage")``, i.e. our detector exactly as ``analyze`` runs it and, on the
   same images in the same process, the scikit-image baseline
   (:mod:`napari_gbm.evaluation.baseline`). Per set: images, annotated nuclei,
   precision / recall / F1 at 6 µm of both and their F1 difference; on Ki-67 sets the
   recall of annotated negative and positive nuclei separately (from the per-image point
   tables ``OUT/images/<name>[_baseline].csv``: predictions matched to a truth are found
   truths, ``true`` rows are missed ones, each with the truth's class), ``li_mae`` and
   ``li_mae_all`` of both; AJI and PQ where the set has instance labels. A markdown copy
   of the table is printed for BENCHMARKS.md.
2. Pixel-size sensitivity (``--mpp-sensitivity``, on by default): monuseg (stated µm/px),
   bcdata and shidc (estimated) evaluated again with the pixel size x 0.7 and x 1.3.
   ``evaluate_dataset``'s ``mpp`` override is one value for all images, so the set's
   manifest median is scaled: exact for bcdata and shidc (one value per set); monuseg's
   stated values differ per image (0.2456-0.2527 µm/px, within 1.7 % of the median), so
   there its x 1.0 row is a run at the median too. The override reaches both detectors
   and the matching radius (6 µm in pixels), i.e. each row is "what if the true pixel
   size were this". Ours and baseline F1 at 6 µm and Ki-67 index errors at each factor,
   and F1 with the radius held at 6 µm of the manifest's pixel size (the same pixels at
   every factor), which separates the detectors' change from the radius's.
3. Speed: ``segment_nuclei`` (nuclei and cells, default ``NucleusParams``) on each image
   resampled to the analysis resolution as ``analyze`` does (the tile grid's 0.5 µm/px,
   ``Slide.read_downsampled``), with the image's calibration (``calibrate_pixels``)
   computed beforehand, vs ``segment_baseline`` on the very same resampled pixels and
   at the image's native resolution. Single thread, CPU time (``time.process_time``),
   the three run alternately (order rotated every round), median of ``--rounds``;
   reading, resampling and calibration are not timed. Megapixels of the processed
   image per CPU second; the same-pixels ratio is the like-for-like one.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "annotated"
SETS = (
    "monuseg",
    "crchisto_2016",
    "cryonuseg_draft2019_PARTIAL",
    "bcdata_ki67_sample",
    "shidc_b_ki67_sample",
    "deepliif_ki67_seg_sample",
)
MPP_SETS = ("monuseg", "bcdata_ki67_sample", "shidc_b_ki67_sample")
MPP_FACTORS = (0.7, 1.0, 1.3)


def _f(value: Any, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _pair(a: Any, b: Any, spec: str = ".3f") -> str:
    return f"{_f(a, spec)} / {_f(b, spec)}"


def _class_recall(out: Path, names: list[str], suffix: str) -> dict[str, Any] | None:
    """Recall of annotated negative (0) and positive (1) nuclei from the point tables:
    ``pred`` rows matched at 6 µm carry the found truth's class, ``true`` rows the
    missed truth's. None when no truth has a class."""
    found = {0: 0, 1: 0}
    missed = {0: 0, 1: 0}
    for name in names:
        t = pd.read_csv(out / "images" / f"{name}{suffix}.csv")
        cls = pd.to_numeric(t["true_positive"], errors="coerce")
        pred_matched = (t["source"] == "pred") & t["matched"].astype(bool)
        miss = t["source"] == "true"
        for c in (0, 1):
            found[c] += int((pred_matched & (cls == c)).sum())
            missed[c] += int((miss & (cls == c)).sum())
    n = {c: found[c] + missed[c] for c in (0, 1)}
    if n[0] + n[1] == 0:
        return None
    return {
        "recall_neg": found[0] / n[0] if n[0] else math.nan,
        "recall_pos": found[1] / n[1] if n[1] else math.nan,
        "n_neg": n[0],
        "n_pos": n[1],
    }


def accuracy(data: Path, sets: list[str], out: Path, images: int | None) -> list[dict[str, Any]]:
    from napari_gbm.evaluation import evaluate_dataset

    rows = []
    print("\n1. Detection vs annotation, ours (napari-gbm) and scikit-image baseline, same run")
    hdr = (
        f"{'set':<28}{'img':>4}{'nuclei':>7}  {'ours P/R/F1@6':<19} {'base P/R/F1@6':<19}"
        f"{'dF1':>7}  {'R-/R+ ours':<12}{'R-/R+ base':<12}{'LI MAE o/b':<12}"
        f"{'LI all o/b':<12}{'AJI o/b':<16}{'PQ o/b':<16}"
    )
    print(hdr)
    for name in sets:
        t0 = time.perf_counter()
        res = evaluate_dataset(data / name, out / name, baseline="skimage", images=images)
        a, b = res["aggregate"], res["baseline"]
        names = [im["name"] for im in res["images"]]
        cr_o = _class_recall(out / name, names, "")
        cr_b = _class_recall(out / name, names, "_baseline")
        for cr in (cr_o, cr_b):  # every truth is either found or missed
            if cr is not None and cr["n_neg"] + cr["n_pos"] > a["n_true"]:
                raise AssertionError(f"{name}: class counts exceed the annotated nuclei")
        row = {
            "set": name,
            "stain": res["stain"],
            "n_images": a["n_images"],
            "n_true": a["n_true"],
            "ours": a,
            "baseline": b,
            "class_recall_ours": cr_o,
            "class_recall_baseline": cr_b,
            "wall_s": time.perf_counter() - t0,
        }
        rows.append(row)
        d_f1 = a["f1@6"] - b["f1@6"]
        ro = _pair(cr_o["recall_neg"], cr_o["recall_pos"], ".2f") if cr_o else "-"
        rb = _pair(cr_b["recall_neg"], cr_b["recall_pos"], ".2f") if cr_b else "-"
        print(
            f"{name:<28}{a['n_images']:>4}{a['n_true']:>7}  "
            f"{a['precision@6']:.3f}/{a['recall@6']:.3f}/{a['f1@6']:.3f}  "
            f"{b['precision@6']:.3f}/{b['recall@6']:.3f}/{b['f1@6']:.3f} "
            f"{d_f1:>+7.3f}  {ro:<12}{rb:<12}"
            f"{_pair(a['li_mae'], b['li_mae'], '.1f'):<12}"
            f"{_pair(a['li_mae_all'], b['li_mae_all'], '.1f'):<12}"
            f"{_pair(a['aji'], b['aji']):<16}{_pair(a['pq'], b['pq']):<16}",
            flush=True,
        )
    print("(R-/R+: recall of annotated Ki-67 negative / positive nuclei at 6 µm; LI MAE in points)")
    print("\nMarkdown:\n")
    print(
        "| set | stain | images | annotated nuclei | ours P / R / F1 @6 µm | baseline P / R / F1 "
        "@6 µm | F1 ours − baseline | recall of annotated − / + nuclei, ours | the same, "
        "baseline | LI MAE ours / baseline | LI MAE all ours / baseline | AJI ours / baseline "
        "| PQ ours / baseline |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["ours"], r["baseline"]
        cr_o, cr_b = r["class_recall_ours"], r["class_recall_baseline"]
        cells = [
            f"`{r['set']}`",
            "H&E" if r["stain"] == "he" else "Ki-67 H-DAB",
            str(r["n_images"]),
            f"{r['n_true']:,}",
            f"{a['precision@6']:.3f} / {a['recall@6']:.3f} / {a['f1@6']:.3f}",
            f"{b['precision@6']:.3f} / {b['recall@6']:.3f} / {b['f1@6']:.3f}",
            f"{a['f1@6'] - b['f1@6']:+.3f}",
            _pair(cr_o["recall_neg"], cr_o["recall_pos"]) if cr_o else "",
            _pair(cr_b["recall_neg"], cr_b["recall_pos"]) if cr_b else "",
            _pair(a["li_mae"], b["li_mae"], ".1f") if a["li_mae"] is not None else "",
            _pair(a["li_mae_all"], b["li_mae_all"], ".1f") if a["li_mae_all"] is not None else "",
            _pair(a["aji"], b["aji"]) if a["aji"] is not None else "",
            _pair(a["pq"], b["pq"]) if a["pq"] is not None else "",
        ]
        print("| " + " | ".join(cells) + " |")
    return rows


def _fixed_radius_f1(
    run_out: Path, items: list[Any], truths: list[np.ndarray], suffix: str
) -> float:
    """Micro F1 of the detections in a run's point tables against the truth, matched
    within 6 µm at each image's *manifest* pixel size (a radius fixed in pixels, so it
    does not move with the pixel size the run was given)."""
    from napari_gbm.evaluation import match_points

    tp = fp = fn = 0
    for item, true_xy in zip(items, truths, strict=True):
        t = pd.read_csv(run_out / "images" / f"{item.name}{suffix}.csv")
        pred = t.loc[t["source"] == "pred", ["x", "y"]].to_numpy(np.float64)
        m = match_points(pred, true_xy, 6.0 / item.mpp)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan


def mpp_sensitivity(
    data: Path, sets: list[str], main_rows: list[dict[str, Any]], out: Path, images: int | None
) -> list[dict[str, Any]]:
    from napari_gbm.evaluation import evaluate_dataset, load_dataset

    main = {r["set"]: r for r in main_rows}
    rows = []
    print(
        "\n2. Pixel-size sensitivity: the set's µm/px x 0.7 / 1.0 / 1.3 (detectors and 6 µm radius)"
    )
    print(
        f"{'set':<22}{'factor':>7}{'mpp':>8}   {'F1@6 ours':>9}{'base':>7}{'dF1':>8}   "
        f"{'F1 fixed px ours':>16}{'base':>7}   {'LI MAE ours':>11}{'base':>6}   "
        f"{'LI all ours':>11}{'base':>6}"
    )
    for name in sets:
        items = load_dataset(data / name, images=images).images
        truths = [it.load_truth().xy for it in items]
        mpps = [it.mpp for it in items]
        med = float(np.median(mpps))
        constant = max(mpps) - min(mpps) < 1e-9
        for f in MPP_FACTORS:
            mpp = med * f
            if f == 1.0 and constant and name in main:
                a, b = main[name]["ours"], main[name]["baseline"]  # identical to a rerun
                run_out = out / name
            else:
                run_out = out / "mpp" / f"{name}_x{f:g}"
                res = evaluate_dataset(
                    data / name, run_out, baseline="skimage", mpp=mpp, images=images
                )
                a, b = res["aggregate"], res["baseline"]
            fixed_o = _fixed_radius_f1(run_out, items, truths, "")
            fixed_b = _fixed_radius_f1(run_out, items, truths, "_baseline")
            rows.append(
                {
                    "set": name,
                    "factor": f,
                    "mpp": mpp,
                    "manifest_mpp_range": [min(mpps), max(mpps)],
                    "ours": a | {"f1_fixed_px": fixed_o},
                    "baseline": b | {"f1_fixed_px": fixed_b},
                }
            )
            print(
                f"{name:<22}{f:>7.1f}{mpp:>8.4f}   {a['f1@6']:>9.3f}{b['f1@6']:>7.3f}"
                f"{a['f1@6'] - b['f1@6']:>+8.3f}   {fixed_o:>16.3f}{fixed_b:>7.3f}   "
                f"{_f(a['li_mae'], '.1f'):>11}{_f(b['li_mae'], '.1f'):>6}   "
                f"{_f(a['li_mae_all'], '.1f'):>11}{_f(b['li_mae_all'], '.1f'):>6}",
                flush=True,
            )
    print("(F1 fixed px: matched within 6 µm at the manifest µm/px, whatever the run's µm/px)")
    print("\nMarkdown:\n")
    print(
        "| set (µm/px at x 1.0) | F1 @6 µm ours, x 0.7 / 1.0 / 1.3 | baseline | F1 ours, "
        "radius fixed in px | baseline | LI MAE ours | baseline | LI MAE all ours | baseline |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in sets:
        rs = [r for r in rows if r["set"] == name]

        def series(who: str, key: str, spec: str, rs: list[dict[str, Any]] = rs) -> str:
            return " / ".join(_f(r[who][key], spec) for r in rs)

        li = rs[0]["ours"]["li_mae"] is not None
        cells = [
            f"`{name}` ({rs[1]['mpp']:.4g})",
            series("ours", "f1@6", ".3f"),
            series("baseline", "f1@6", ".3f"),
            series("ours", "f1_fixed_px", ".3f"),
            series("baseline", "f1_fixed_px", ".3f"),
            series("ours", "li_mae", ".1f") if li else "",
            series("baseline", "li_mae", ".1f") if li else "",
            series("ours", "li_mae_all", ".1f") if li else "",
            series("baseline", "li_mae_all", ".1f") if li else "",
        ]
        print("| " + " | ".join(cells) + " |")
    return rows


def speed(data: Path, sets: list[str], n_images: int, rounds: int) -> dict[str, Any]:
    from napari_gbm.detect.calibration import calibrate_pixels
    from napari_gbm.detect.nucleus_params import NucleusParams
    from napari_gbm.detect.segment import segment_nuclei
    from napari_gbm.detect.stain import stain_preset
    from napari_gbm.evaluation import load_dataset
    from napari_gbm.evaluation.baseline import segment_baseline
    from napari_gbm.wsi.slide import Slide
    from napari_gbm.wsi.tiling import TilingParams, make_tile_grid

    params = NucleusParams()
    items = []
    for name in sets:
        for im in load_dataset(data / name, images=n_images).images:
            with Slide(im.path, mpp=im.mpp) as slide:
                w, h = slide.dimensions
                native = np.ascontiguousarray(slide.read_region((0, 0), 0, (w, h))[..., :3])
                grid = make_tile_grid(slide, None, TilingParams())
                ow, oh = max(1, round(w / grid.scale)), max(1, round(h / grid.scale))
                rgb = slide.read_downsampled((0, 0, w, h), (ow, oh))
            eff = grid.effective_mpp
            cal = calibrate_pixels([rgb], eff, stain_preset(im.stain), params)
            items.append(
                {"set": name, "stain": im.stain, "mpp": im.mpp, "eff": eff, "native": native}
                | {"rgb": rgb, "cal": cal}
            )

    def ours(it: dict[str, Any]) -> None:
        segment_nuclei(it["rgb"], it["eff"], params=params, calibration=it["cal"])

    def base_same(it: dict[str, Any]) -> None:
        segment_baseline(it["rgb"], it["eff"], it["stain"])

    def base_native(it: dict[str, Any]) -> None:
        segment_baseline(it["native"], it["mpp"], it["stain"])

    methods = {"ours": ours, "base_same": base_same, "base_native": base_native}
    for fn in methods.values():  # numba cache, imports
        fn(items[0])
    times = {m: np.zeros((rounds, len(items))) for m in methods}
    order = list(methods)
    for r in range(rounds):
        for m in order[r % 3 :] + order[: r % 3]:
            fn = methods[m]
            gc.collect()
            for i, it in enumerate(items):
                t = time.process_time()
                fn(it)
                times[m][r, i] = time.process_time() - t

    mp_rs = np.array([it["rgb"].shape[0] * it["rgb"].shape[1] / 1e6 for it in items])
    mp_nat = np.array([it["native"].shape[0] * it["native"].shape[1] / 1e6 for it in items])
    print(
        f"\n3. Speed, 1 thread, CPU time, median of {rounds} alternating rounds, "
        f"first {n_images} images of each set"
    )
    out: dict[str, Any] = {"rounds": rounds, "images_per_set": n_images, "groups": {}}
    groups = {
        "H&E": [it["stain"] == "he" for it in items],
        "H-DAB": [it["stain"] == "hdab" for it in items],
        "all": [True] * len(items),
    }
    for g, sel in groups.items():
        sel = np.asarray(sel)
        if not sel.any():
            continue
        med = {m: statistics.median(times[m][:, sel].sum(axis=1)) for m in methods}
        mp, mpn = float(mp_rs[sel].sum()), float(mp_nat[sel].sum())
        effs = sorted({round(it["eff"], 4) for it, s in zip(items, sel, strict=True) if s})
        res = {
            "images": int(sel.sum()),
            "mp_resampled": mp,
            "mp_native": mpn,
            "effective_mpp": effs,
            "cpu_s": med,
            "ours_mp_s": mp / med["ours"],
            "base_same_mp_s": mp / med["base_same"],
            "base_native_mp_s": mpn / med["base_native"],
        }
        out["groups"][g] = res
        print(
            f"{g}: {res['images']} images, {mp:.2f} MP at {'/'.join(map(str, effs))} µm/px, "
            f"{mpn:.2f} MP native"
        )
        print(
            f"  segment_nuclei (0.5 µm/px, calibrated)  ours {res['ours_mp_s']:6.2f} MP/s   "
            f"skimage same pixels {res['base_same_mp_s']:6.2f} MP/s   ratio "
            f"{med['base_same'] / med['ours']:5.2f}x  (same pixels)"
        )
        print(
            f"  skimage at native resolution: {res['base_native_mp_s']:6.2f} MP/s of native "
            f"pixels; CPU s per set of images ours {med['ours']:.2f} vs {med['base_native']:.2f}:"
            f" ratio {med['base_native'] / med['ours']:5.2f}x  (same field of view, the "
            f"baseline on {mpn / mp:.1f}x the pixels)",
            flush=True,
        )
    return out


def _software() -> str:
    from napari_gbm import __version__

    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        dirty = [ln[3:] for ln in dirty if ln.strip()]
        diff = subprocess.run(
            ["git", "-C", str(root), "diff", "HEAD", "--", "src"], capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        rev, dirty, diff = "?", [], b""
    digest = hashlib.sha256(diff).hexdigest()[:10]
    mod = f", uncommitted changes in {', '.join(dirty)} (diff sha256 {digest})" if dirty else ""
    return f"napari-gbm {__version__} at {rev}{mod}; Python {sys.version.split()[0]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder of annotated sets")
    parser.add_argument("--sets", help="comma-separated set names (default: all six)")
    parser.add_argument("--out", type=Path, help="keep evaluation outputs here (default: temp)")
    parser.add_argument("--quick", action="store_true", help="3 images per set, 2 timed, 3 rounds")
    parser.add_argument("--images", type=int, help="only the first N images of each set")
    parser.add_argument("--mpp-sensitivity", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--speed-images", type=int, help="images per set timed (default 5)")
    parser.add_argument("--rounds", type=int, help="timing rounds (default 5, quick 3)")
    args = parser.parse_args()

    sets = args.sets.split(",") if args.sets else [s for s in SETS if (args.data / s).is_dir()]
    missing = [s for s in sets if not (args.data / s).is_dir()]
    if missing:
        parser.error(f"no set {', '.join(missing)} in {args.data}")
    images = args.images if args.images is not None else (3 if args.quick else None)
    n_speed = args.speed_images or (2 if args.quick else 5)
    rounds = args.rounds or (3 if args.quick else 5)
    if rounds < 3:
        parser.error("--rounds must be at least 3")

    print(_software())
    print(f"data {args.data}; sets {', '.join(sets)}; images per set {images or 'all'}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        result: dict[str, Any] = {"accuracy": accuracy(args.data, sets, out, images)}
        if args.mpp_sensitivity:
            mpp_sets = [s for s in MPP_SETS if s in sets]
            result["mpp"] = mpp_sensitivity(args.data, mpp_sets, result["accuracy"], out, images)
        result["speed"] = speed(args.data, sets, n_speed, rounds)
        if args.out is not None:
            (args.out / "bench_detection.json").write_text(
                json.dumps(result, indent=1, default=float) + "\n"
            )
    print(f"\n(total {time.perf_counter() - t0:.0f} s wall)")


if __name__ == "__main__":
    main()
