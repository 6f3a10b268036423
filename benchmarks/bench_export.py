"""Benchmark: napari-gbm's .h5ad writer (h5py, no anndata) vs anndata's own writer.

    .venv/bin/python benchmarks/bench_export.py [--cells 100000] [--rounds 3]

A cell table of the project's schema (H-DAB stains) with ``--cells`` rows of random values
is written with :func:`napari_gbm.export.anndata.write_cells_h5ad`. The peer is anndata
itself, in ``.venv-omics`` (made by ``scripts/setup.sh --dev``; anndata needs pandas < 3):
it reads our file back (timed) and writes the same AnnData object with
``AnnData.write_h5ad`` (timed), so both writers write identical content. Best of
``--rounds`` wall times on each side; the ratio is ours / anndata's (< 1: ours is faster).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from napari_gbm.export.anndata import write_cells_h5ad
from napari_gbm.schema import empty_cell_table

ROOT = Path(__file__).resolve().parents[1]
OMICS_PYTHON = ROOT / ".venv-omics" / "bin" / "python"

PEER = r"""
import json, sys, time
import anndata
src, dst, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = time.perf_counter(); ad = anndata.read_h5ad(src); read_s = time.perf_counter() - t
best = float("inf")
for _ in range(rounds):
    t = time.perf_counter(); ad.write_h5ad(dst); best = min(best, time.perf_counter() - t)
print(json.dumps({"read_s": read_s, "write_s": best, "shape": list(ad.shape),
                  "anndata": anndata.__version__}))
"""


def cell_table(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` cells of the schema with random values (ids, one slide, 16 tiles)."""
    rng = np.random.default_rng(seed)
    empty = empty_cell_table(("hematoxylin", "dab"))
    cols = {}
    for name, dtype in empty.dtypes.items():
        if name == "slide_id":
            cols[name] = np.full(n, "bench-slide", object)
        elif name == "cell_id":
            cols[name] = np.arange(1, n + 1, dtype=dtype)
        elif name == "tile_id":
            cols[name] = rng.integers(0, 16, n).astype(dtype)
        elif name == "positive_class":
            cols[name] = rng.integers(0, 4, n).astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            cols[name] = rng.integers(0, 10, n).astype(dtype)
        else:
            cols[name] = (rng.random(n) * 100).astype(dtype)

    return pd.DataFrame(cols)[list(empty.columns)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not OMICS_PYTHON.exists():
        print("the peer needs .venv-omics: run `bash scripts/setup.sh --dev`", file=sys.stderr)
        return 2
    cells = cell_table(args.cells)
    meta = {"slide": {"mpp": 0.5}, "bench": True}
    with tempfile.TemporaryDirectory() as tmp:
        ours = Path(tmp) / "ours.h5ad"
        best = float("inf")
        for _ in range(args.rounds):
            t = time.perf_counter()
            write_cells_h5ad(cells, ours, metadata=meta)
            best = min(best, time.perf_counter() - t)
        size_mb = ours.stat().st_size / 1e6
        proc = subprocess.run(
            [str(OMICS_PYTHON), "-c", PEER, str(ours), str(Path(tmp) / "peer.h5ad"),
             str(args.rounds)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        peer = json.loads(proc.stdout)
    print(f"cells x features (as anndata reads ours): {peer['shape']}, {size_mb:.1f} MB")
    print(f"write .h5ad, ours (h5py):        {best:.3f} s")
    print(f"write .h5ad, anndata {peer['anndata']}:  {peer['write_s']:.3f} s")
    print(f"ratio ours / anndata:            {best / peer['write_s']:.2f}")
    print(f"anndata reads ours:              {peer['read_s']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
