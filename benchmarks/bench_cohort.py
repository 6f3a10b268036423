"""Cohort runner: speed-up with workers, per-slide scheduling overhead, memory per worker.

    .venv/bin/python benchmarks/bench_cohort.py [--slides 8] [--size 2048] [--rounds 2]
        [--no-texture] [--json PATH]

Writes ``--slides`` synthetic Ki-67 (H-DAB) slides of ``--size``² px (0.5 µm/px) once, then,
on ``LocalCluster``s of worker processes with one thread each, in the same run and
alternately (1 worker, 2 workers, 1 worker, ...):

- the wall time of ``run_cohort`` over all slides into a fresh folder (every slide
  analysed), after each worker has imported napari-gbm and analysed one slide of the
  same size (numba kernels loaded): the speed-up is t(1 worker) / t(2 workers), median of rounds;
- the time outside the analysis: wall time x workers - the sum of the slides' own
  ``analyze_slide`` times, per slide (scheduling, checks, result transfer, tables);
- the scheduling overhead of a task: 200 no-op tasks with a slide task's arguments,
  submitted and gathered as the runner does (``submit(..., pure=False, retries=2)``,
  ``as_completed``);
- the per-slide overhead of the runner alone: ``run_cohort`` again over the same folder,
  where every slide is complete and skipped (a task per slide that checks the checksum
  and reads ``summary.json``, plus the tables), divided by the number of slides;
- the CPU time the workers used during the run (user + system), and so the number of
  cores they obtained (CPU time / wall time): on a shared machine the wall-time speed-up
  is bounded by the cores the other jobs leave, and equal CPU time for 1 and 2 workers
  shows the runner adds no work;
- each worker's peak RSS (``ru_maxrss``) after the warm-up slide (one slide's peak) and
  after the cohort: equal when memory per worker does not grow with the number of slides.

The machine is shared: the load average and the busiest other processes are printed
before and after, so the result can be read with what else ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _cpu_s() -> float:
    """CPU seconds (user + system) this worker process has used."""
    import psutil

    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def _rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _noop(path: str, out: str, params: dict[str, Any], *rest: Any) -> dict[str, Any]:
    """A task with a slide task's arguments that does nothing."""
    return {"path": path, "status": "skipped"}


def _noop_ms(client: Any, params: Any, n: int = 200) -> float:
    """Milliseconds per task for ``n`` no-op tasks submitted and gathered as slides are."""
    from distributed import as_completed

    d = params.to_dict()
    t = time.perf_counter()
    futures = [
        client.submit(_noop, f"/x/{i}.svs", f"/y/{i}", d, None, str(i), pure=False, retries=2)
        for i in range(n)
    ]
    for f in as_completed(futures):
        f.result()
    return 1000.0 * (time.perf_counter() - t) / n


def _machine_load() -> dict[str, Any]:
    """Load average and the busiest processes other than this benchmark's."""
    mine = {os.getpid()}
    try:
        import psutil

        me = psutil.Process()
        mine |= {p.pid for p in me.children(recursive=True)}
    except ImportError:
        pass
    ps = subprocess.run(
        ["ps", "-eo", "pid,pcpu,rss,args", "--sort=-pcpu", "--no-headers"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    others = []
    for line in ps:
        parts = line.split(None, 3)
        if len(parts) < 4 or int(parts[0]) in mine or float(parts[1]) < 5.0:
            continue
        if parts[3].startswith("ps "):
            continue
        others.append(f"{parts[1]}% {parts[3][:90]}")
    return {"loadavg": os.getloadavg(), "busy_processes": others[:6]}


def _make_slides(folder: Path, n: int, size: int) -> Path:
    """``n`` slides of ``size``² px in ``folder/slides-<size>-<n>`` (only them: a folder run
    takes every slide in it), and a warm-up slide of the same size beside; returns the slide
    folder."""
    from napari_gbm.synthetic import make_synthetic_slide

    slides = folder / f"slides-{size}-{n}"
    slides.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = slides / f"bench-{i:02d}.tif"
        if not path.exists():
            make_synthetic_slide(path, size_px=(size, size), stain="hdab", seed=100 + i)
    warm = folder / f"warmup-{size}.tif"
    if not warm.exists():
        make_synthetic_slide(warm, size_px=(size, size), stain="hdab", seed=99)
    return slides


def _one_config(
    n_workers: int, slide_dir: Path, warm: Path, params: Any, work: Path
) -> dict[str, Any]:
    from distributed import Client, LocalCluster, wait

    from napari_gbm.cohort import analyze_task, run_cohort

    out = work / f"out-{n_workers}w"
    shutil.rmtree(out, ignore_errors=True)
    with (
        LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        # warm-up: each worker imports the stack and analyses a small slide
        workers = list(client.scheduler_info()["workers"])
        futures = [
            client.submit(
                analyze_task,
                str(warm),
                str(work / f"warm-{i}"),
                params.to_dict(),
                None,
                f"warm-{i}",
                workers=[w],
                pure=False,
            )
            for i, w in enumerate(workers)
        ]
        wait(futures)
        for i in range(len(workers)):
            shutil.rmtree(work / f"warm-{i}", ignore_errors=True)
        rss_warm = client.run(_peak_rss_mib)
        rss_idle = client.run(_rss_mib)

        cpu0 = client.run(_cpu_s)
        t = time.perf_counter()
        result = run_cohort(slide_dir, out, params, client=client)
        wall = time.perf_counter() - t
        cpu1 = client.run(_cpu_s)
        assert result.n_failed == 0 and result.n_analysed == len(result.slides)
        rss_after = client.run(_peak_rss_mib)

        t = time.perf_counter()
        again = run_cohort(slide_dir, out, params, client=client)
        wall_skip = time.perf_counter() - t
        assert again.n_skipped == len(result.slides)
        noop = _noop_ms(client, params)

    n = len(result.slides)
    analysis_s = float(result.slides["elapsed_s"].sum())
    return {
        "workers": n_workers,
        "slides": n,
        "cells": int(result.slides["n_cells"].sum()),
        "wall_s": wall,
        "worker_cpu_s": sum(cpu1[w] - cpu0[w] for w in cpu0),
        "cores_obtained": sum(cpu1[w] - cpu0[w] for w in cpu0) / wall,
        "analysis_s": analysis_s,
        "outside_analysis_per_slide_s": (wall * n_workers - analysis_s) / n,
        "skip_run_s": wall_skip,
        "runner_overhead_per_slide_s": wall_skip / n,
        "noop_task_ms": noop,
        "peak_rss_after_warmup_mib": sorted(rss_warm.values()),
        "peak_rss_after_cohort_mib": sorted(rss_after.values()),
        "rss_idle_after_warmup_mib": sorted(rss_idle.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slides", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-texture", action="store_true")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "bench-cohort")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()

    from napari_gbm.detect.cells import CellParams
    from napari_gbm.pipeline import AnalyzeParams

    params = AnalyzeParams(cells=CellParams(stain="hdab", texture=not args.no_texture))
    t = time.perf_counter()
    slide_dir = _make_slides(args.data, args.slides, args.size)
    warm = args.data / f"warmup-{args.size}.tif"
    print(f"slides ready in {time.perf_counter() - t:.1f} s")
    work = args.data / "work"
    work.mkdir(exist_ok=True)

    before = _machine_load()
    print(f"before: load {before['loadavg']}, busy: {before['busy_processes']}")
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for r in range(args.rounds):
        for n in (1, 2):
            res = _one_config(n, slide_dir, warm, params, work)
            runs[n].append(res)
            print(
                f"round {r + 1}, {n} worker(s): {res['wall_s']:.1f} s for {res['slides']} slides "
                f"(workers used {res['worker_cpu_s']:.1f} CPU s, {res['cores_obtained']:.2f} "
                "cores) "
                f"({res['cells']} cells), outside analysis "
                f"{res['outside_analysis_per_slide_s']:.2f} s/slide, skip-run "
                f"{res['runner_overhead_per_slide_s'] * 1000:.0f} ms/slide, "
                f"no-op task {res['noop_task_ms']:.1f} ms, "
                f"peak RSS {res['peak_rss_after_cohort_mib']} MiB",
                flush=True,
            )
    after = _machine_load()
    print(f"after: load {after['loadavg']}, busy: {after['busy_processes']}")

    t1 = statistics.median(r["wall_s"] for r in runs[1])
    t2 = statistics.median(r["wall_s"] for r in runs[2])
    cpu1 = statistics.median(r["worker_cpu_s"] for r in runs[1])
    cpu2 = statistics.median(r["worker_cpu_s"] for r in runs[2])
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
        "slides": args.slides,
        "size_px": args.size,
        "texture": not args.no_texture,
        "wall_1_worker_s": t1,
        "wall_2_workers_s": t2,
        "speedup": t1 / t2,
        "worker_cpu_ratio_2_over_1": cpu2 / cpu1,
        "runs": runs,
        "load_before": before,
        "load_after": after,
    }
    print(
        f"speed-up 2 workers over 1: {t1:.1f} s / {t2:.1f} s = {t1 / t2:.2f}x "
        f"(goal >= 1.7x); worker CPU time 2 workers / 1: {cpu2 / cpu1:.2f}; "
        f"per-slide runner overhead (all skipped): "
        f"{statistics.median(r['runner_overhead_per_slide_s'] for r in runs[2]) * 1000:.0f} ms"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
