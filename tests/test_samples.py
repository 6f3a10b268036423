"""Sample data: the bundled real slide and the cached synthetic samples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from napari_gbm.samples import cmu1_path, synthetic_sample_path


def test_cmu1_is_bundled() -> None:
    path = cmu1_path()
    assert path.name == "cmu-1-small-region.svs" and path.stat().st_size > 1_000_000


def test_synthetic_sample_is_generated_once_and_cached() -> None:
    from napari_gbm._napari._sample_data import synthetic_ki67

    [(_data, kwargs, layer_type)] = synthetic_ki67()
    assert layer_type == "image" and kwargs["scale"] == (0.5, 0.5)
    path = Path(kwargs["metadata"]["slide_path"])
    assert path.parent == Path(os.environ["NAPARI_GBM_CACHE"])
    assert path.with_name(path.stem + ".nuclei.parquet").exists()
    mtime = path.stat().st_mtime_ns
    assert synthetic_sample_path("hdab") == path  # second call: the cached file
    assert path.stat().st_mtime_ns == mtime


def test_unknown_stain_is_refused() -> None:
    with pytest.raises(ValueError, match="stain"):
        synthetic_sample_path("pas")
