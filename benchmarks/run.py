"""napari-gbm benchmarks: each measured against its peer in the same run.

    .venv/bin/python benchmarks/run.py [--quick] [--out DIR]

1. Tile reading: all tissue tiles of a synthetic slide through ``iter_tiles`` vs a bare
   ``openslide.OpenSlide.read_region`` loop over the same boxes (goal: overhead < 10 %).
2. Tissue detection on a 100k x 100k pyramidal slide: time and peak memory (goal: < 1 s,
   reading only a low-resolution level), vs OpenSlide's own ``get_thumbnail`` of the
   same size as a peer for "just reading the low-resolution image".
3. Open time of a 100k x 100k slide: ``Slide``, the napari reader (layer data ready),
   vs ``openslide.OpenSlide``.

Prints one line per measurement with the ratio to its peer. Results go in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def _interleaved(a: Callable[[], Any], b: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median CPU times of a and b, run alternately ``repeat`` times each. CPU time, not
    wall time: on a shared virtual machine wall times of the same loop vary by 20 %."""
    ta, tb = [], []
    for _ in range(repeat):
        for fn, acc in ((a, ta), (b, tb)):
            gc.collect()
            t = time.process_time()
            fn()
            acc.append(time.process_time() - t)
    return statistics.median(ta), statistics.median(tb)


def _line(name: str, ours: float, peer: float, peer_name: str, unit: str = "s") -> None:
    print(
        f"{name:<46} ours {ours:8.3f} {unit}   {peer_name} {peer:8.3f} {unit}   "
        f"ratio {ours / peer:5.2f}"
    )


def bench_tiles(workdir: Path, size: int, repeat: int) -> None:
    import openslide

    from napari_gbm import Slide
    from napari_gbm.synthetic import make_synthetic_slide
    from napari_gbm.wsi.tiling import TilingParams, iter_tiles, make_tile_grid
    from napari_gbm.wsi.tissue import detect_tissue

    path = workdir / f"synthetic-he-{size}.tif"
    if not path.exists():
        t = time.perf_counter()
        make_synthetic_slide(path, size_px=(size, size), stain="he", seed=1)
        print(f"(synthetic {size}x{size} H&E slide generated in {time.perf_counter() - t:.1f} s)")
    slide = Slide(path)
    for overlap in (0, 64):
        grid = make_tile_grid(
            slide, detect_tissue(slide), TilingParams(tile_size_px=512, overlap_px=overlap)
        )
        boxes = [(int(r.x0_px), int(r.y0_px)) for r in grid.selected.itertuples()]
        n = grid.tile_shape[0]
        osr = openslide.OpenSlide(str(path))

        def ours(slide: Slide = slide, grid: Any = grid) -> int:
            return sum(int(rgb[0, 0, 0]) for _, rgb in iter_tiles(slide, grid))

        def peer(osr: Any = osr, boxes: list[tuple[int, int]] = boxes, n: int = n) -> int:
            return sum(int(np.asarray(osr.read_region(b, 0, (n, n)))[0, 0, 0]) for b in boxes)

        peer()  # warm the OS file cache
        ours()
        # alternate the two, so drift in the machine's speed hits both alike
        t_ours, t_peer = _interleaved(ours, peer, repeat)
        _line(
            f"read {len(boxes)} tissue tiles {n}px (halo {overlap}), CPU s",
            t_ours,
            t_peer,
            "openslide loop",
        )


def bench_big(workdir: Path, repeat: int) -> None:
    import openslide

    from napari_gbm import Slide
    from napari_gbm._napari._reader import napari_get_reader
    from napari_gbm._testing import write_repeated_tile_slide
    from napari_gbm.wsi.tissue import detect_tissue

    path = workdir / "big-100k.tif"
    if not path.exists():
        write_repeated_tile_slide(path, 100_000, mpp=0.25)
    # open times
    t_os, _ = _best_of(lambda: openslide.OpenSlide(str(path)), repeat * 3)
    t_slide, _ = _best_of(lambda: Slide(path), repeat * 3)
    napari_get_reader(str(path))  # first call pays dask's import
    t_reader, _ = _best_of(lambda: napari_get_reader(str(path))(str(path)), repeat * 3)  # type: ignore[misc]
    _line("open 100k x 100k: Slide", t_slide, t_os, "OpenSlide()")
    _line("open 100k x 100k: napari reader (layer data)", t_reader, t_os, "OpenSlide()")

    slide = Slide(path)
    detect_tissue(slide)  # warm-up: imports, file cache
    tracemalloc.start()
    t_tissue, tm = _best_of(lambda: detect_tissue(slide), repeat)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    osr = openslide.OpenSlide(str(path))
    thumb = tm.mask.shape[::-1]
    t_thumb, _ = _best_of(lambda: osr.get_thumbnail(thumb), repeat)
    _line(
        f"tissue detection 100k x 100k (mask {thumb[0]}x{thumb[1]})",
        t_tissue,
        t_thumb,
        "get_thumbnail",
    )
    print(
        f"{'':<46} peak traced memory {peak / 2**20:.0f} MiB, mask {tm.mask_mpp:.1f} µm/px, "
        f"tissue {100 * tm.tissue_fraction:.1f} %"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller slide, fewer repeats")
    parser.add_argument("--out", type=Path, help="keep generated slides here (default: a temp dir)")
    args = parser.parse_args()
    import napari_gbm

    print(
        f"napari-gbm {napari_gbm.__version__}, Python {sys.version.split()[0]}, "
        f"{platform.machine()}, {_cpu()}, {time.strftime('%Y-%m-%d')}"
    )
    repeat = 3 if args.quick else 7
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.out or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        bench_tiles(workdir, 4096 if args.quick else 8192, repeat)
        bench_big(workdir, repeat)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                import os

                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
