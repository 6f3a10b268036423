"""The learned nucleus detector against the classical one and the scikit-image baseline.

    .venv/bin/python benchmarks/bench_learned.py [--data DIR] [--sets a,b] [--images N]
        [--speed-images N] [--rounds N] [--out DIR] [--json FILE]

Reads the annotated sets in ``shared/data/annotated/<set>/`` (never copied into the
repository, never trained on) and measures, in one run and one process:

1. Accuracy per set: ``evaluate_dataset(set, detector=...)`` with the classical detector
   (``analyze``'s default, with the scikit-image baseline beside it) and with the learned
   one: precision / recall / F1 at 6 µm (micro-averaged over the set), recall of
   annotated Ki-67 negative / positive nuclei, Ki-67 index error (``li_mae``, points),
   AJI and PQ where the set has instance labels.
2. Speed: ``segment_nuclei`` (nuclei and cells) with each detector on the first
   ``--speed-images`` images of each set, resampled to the analysis grid (0.5 µm/px) as
   ``analyze`` does, calibration computed beforehand; one thread for numba and torch, CPU
   time, the two alternating, median of ``--rounds``. Megapixels per CPU second, i.e. per
   core, and the ratio classical / learned. Also the learned detector's wall-clock MP/s
   with 2 torch threads.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_detection import DATA, SETS, _class_recall, _f, _pair, _software  # noqa: E402


def _prf(a: dict[str, Any]) -> str:
    return f"{a['precision@6']:.3f} / {a['recall@6']:.3f} / {a['f1@6']:.3f}"


def accuracy(data: Path, sets: list[str], out: Path, images: int | None) -> list[dict[str, Any]]:
    from napari_gbm.evaluation import evaluate_dataset

    rows = []
    for name in sets:
        t0 = time.perf_counter()
        cl = evaluate_dataset(
            data / name,
            out / name / "classical",
            detector="classical",
            baseline="skimage",
            images=images,
        )
        t1 = time.perf_counter()
        le = evaluate_dataset(
            data / name, out / name / "learned", detector="learned", baseline="none", images=images
        )
        t2 = time.perf_counter()
        names = [im["name"] for im in cl["images"]]
        row = {
            "set": name,
            "stain": cl["stain"],
            "n_images": cl["aggregate"]["n_images"],
            "n_true": cl["aggregate"]["n_true"],
            "classical": cl["aggregate"],
            "learned": le["aggregate"],
            "baseline": cl["baseline"],
            "recall_classes": {
                "classical": _class_recall(out / name / "classical", names, ""),
                "learned": _class_recall(out / name / "learned", names, ""),
                "baseline": _class_recall(out / name / "classical", names, "_baseline"),
            },
            "wall_s": {"classical_and_baseline": t1 - t0, "learned": t2 - t1},
        }
        rows.append(row)
        c, lr, b = row["classical"], row["learned"], row["baseline"]
        print(
            f"{name:<28} classical {_prf(c)}  learned {_prf(lr)}  skimage {_prf(b)}  "
            f"dF1 {lr['f1@6'] - c['f1@6']:+.3f}  LI MAE {_f(c['li_mae'], '.1f')} / "
            f"{_f(lr['li_mae'], '.1f')} / {_f(b['li_mae'], '.1f')}",
            flush=True,
        )
    print(
        "\n| set | images | annotated nuclei | classical P / R / F1 @6 µm | learned | "
        "scikit-image | F1 learned − classical | recall of annotated − / + nuclei, classical "
        "/ learned | LI MAE classical / learned / scikit-image | AJI c / l / s | PQ c / l / s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c, lr, b = r["classical"], r["learned"], r["baseline"]
        rc = r["recall_classes"]

        def cr(x: dict[str, Any] | None) -> str:
            return _pair(x["recall_neg"], x["recall_pos"], ".2f") if x else ""

        li = (
            f"{_f(c['li_mae'], '.1f')} / {_f(lr['li_mae'], '.1f')} / {_f(b['li_mae'], '.1f')}"
            if c["li_mae"] is not None
            else ""
        )
        aji = f"{_f(c['aji'])} / {_f(lr['aji'])} / {_f(b['aji'])}" if c["aji"] is not None else ""
        pq = f"{_f(c['pq'])} / {_f(lr['pq'])} / {_f(b['pq'])}" if c["pq"] is not None else ""
        recall = f"{cr(rc['classical'])}; {cr(rc['learned'])}" if rc["classical"] else ""
        print(
            f"| `{r['set']}` | {r['n_images']} | {r['n_true']:,} | {_prf(c)} | {_prf(lr)} | "
            f"{_prf(b)} | {lr['f1@6'] - c['f1@6']:+.3f} | {recall} | {li} | {aji} | {pq} |"
        )
    return rows


def speed(data: Path, sets: list[str], n_images: int, rounds: int) -> dict[str, Any]:
    import torch

    from napari_gbm.detect.calibration import calibrate_pixels
    from napari_gbm.detect.nucleus_params import NucleusParams
    from napari_gbm.detect.segment import segment_nuclei
    from napari_gbm.detect.stain import stain_preset
    from napari_gbm.evaluation import load_dataset
    from napari_gbm.wsi.slide import Slide
    from napari_gbm.wsi.tiling import TilingParams, make_tile_grid

    classical, learned = NucleusParams(), NucleusParams(detector="learned")
    items = []
    for name in sets:
        for im in load_dataset(data / name, images=n_images).images:
            with Slide(im.path, mpp=im.mpp) as slide:
                w, h = slide.dimensions
                grid = make_tile_grid(slide, None, TilingParams())
                ow, oh = max(1, round(w / grid.scale)), max(1, round(h / grid.scale))
                rgb = slide.read_downsampled((0, 0, w, h), (ow, oh))
            cal = calibrate_pixels([rgb], grid.effective_mpp, stain_preset(im.stain), classical)
            items.append({"rgb": rgb, "eff": grid.effective_mpp, "cal": cal, "stain": im.stain})

    def run(params: NucleusParams, threads: int) -> list[float]:
        torch.set_num_threads(threads)
        out = []
        for it in items:
            t = time.process_time() if threads == 1 else time.perf_counter()
            segment_nuclei(
                it["rgb"], it["eff"], params=params, calibration=it["cal"], n_threads=threads
            )
            out.append((time.process_time() if threads == 1 else time.perf_counter()) - t)
        return out

    run(classical, 1)  # numba cache, model load
    run(learned, 1)
    times: dict[str, list[float]] = {"classical": [], "learned": []}
    for r in range(rounds):
        for who in ["classical", "learned"] if r % 2 == 0 else ["learned", "classical"]:
            gc.collect()
            times[who].append(sum(run(classical if who == "classical" else learned, 1)))
    wall2 = statistics.median(sum(run(learned, 2)) for _ in range(max(1, rounds // 2)))
    mp = sum(it["rgb"].shape[0] * it["rgb"].shape[1] for it in items) / 1e6
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {
        "images": len(items),
        "mp": mp,
        "cpu_s": med,
        "classical_mp_s_per_core": mp / med["classical"],
        "learned_mp_s_per_core": mp / med["learned"],
        "ratio_classical_over_learned": med["learned"] / med["classical"],
        "learned_mp_s_wall_2_threads": mp / wall2,
        "rounds": rounds,
    }
    print(
        f"\nSpeed, {len(items)} images, {mp:.2f} MP at 0.5 µm/px, 1 thread CPU time, median of "
        f"{rounds}: classical {res['classical_mp_s_per_core']:.2f} MP/s per core, learned "
        f"{res['learned_mp_s_per_core']:.2f} MP/s per core "
        f"(classical {res['ratio_classical_over_learned']:.1f}x "
        f"faster); learned on 2 threads {res['learned_mp_s_wall_2_threads']:.2f} MP/s wall",
        flush=True,
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--sets", help="comma-separated set names (default: all six)")
    ap.add_argument("--images", type=int, help="only the first N images of each set")
    ap.add_argument("--speed-images", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, help="keep evaluation outputs here (default: temp)")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    args = ap.parse_args()
    sets = args.sets.split(",") if args.sets else list(SETS)
    print(_software())
    print(f"machine: {os.cpu_count()} cores; date {time.strftime('%Y-%m-%d %H:%M')}")
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-learned-"))
    rows = accuracy(args.data, sets, out, args.images)
    sp = speed(args.data, sets, args.speed_images, args.rounds)
    if args.json:
        args.json.write_text(json.dumps({"sets": rows, "speed": sp}, indent=2, default=float))


if __name__ == "__main__":
    main()
