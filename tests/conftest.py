"""Shared fixtures: the real slides (in the repository, no ../shared needed) and the torch
thread setting for small fits."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"

CMU = ROOT / "sample_data" / "cmu-1-small-region.svs"
TCGA = DATA / "tcga-cr-7395-01a-01-ts1.svs"
KIDNEY = DATA / "kidney-48-5.tif"


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Synthetic samples go to a per-session cache, never the user's home."""
    cache = tmp_path_factory.getbasetemp() / "napari-gbm-cache"
    monkeypatch.setenv("NAPARI_GBM_CACHE", str(cache))


@pytest.fixture(scope="session")
def cmu_path() -> Path:
    return CMU


@pytest.fixture(scope="session")
def tcga_path() -> Path:
    return TCGA


@pytest.fixture(scope="session")
def kidney_path() -> Path:
    return KIDNEY


@pytest.fixture(scope="session")
def synthetic_he(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic H&E GBM slide with its ground truth beside it."""
    from napari_gbm.synthetic import make_synthetic_slide

    path = tmp_path_factory.mktemp("synthetic") / "gbm-he.tif"
    make_synthetic_slide(path, size_px=(3072, 2048), stain="he", seed=7)
    return path


os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".pytest_cache" / "numba"))


@pytest.fixture(scope="session")
def synthetic_ki67(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic Ki-67 (H-DAB) GBM slide with its ground truth beside it."""
    from napari_gbm.synthetic import make_synthetic_slide

    path = tmp_path_factory.mktemp("synthetic") / "gbm-ki67.tif"
    make_synthetic_slide(path, size_px=(3072, 2048), stain="hdab", seed=7)
    return path


@pytest.fixture(scope="session")
def rossi():
    """The Rossi et al. (1980) recidivism data as lifelines ships it (tests/data/SOURCES.md)."""
    import pandas as pd

    return pd.read_csv(DATA / "rossi.csv")


@pytest.fixture(scope="session")
def lifelines_ref() -> dict:
    """lifelines' results on rossi, written by scripts/make_lifelines_reference.py."""
    import json

    return json.loads((DATA / "lifelines_reference.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Fits in these modules are small: on a shared 2-core machine torch's intra-op threads
    only wait on each other (a fit takes ~8x longer). Restored after the module. Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
