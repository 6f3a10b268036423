"""Atomic writes: an interrupted write leaves the old file (or none), never a partial one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_gbm.io import atomic_path, read_parquet_metadata, write_json, write_parquet, write_png


def test_parquet_roundtrip_with_metadata(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": np.arange(5, dtype=np.int64), "b": np.linspace(0, 1, 5)})
    p = write_parquet(df, tmp_path / "x.parquet", metadata={"k": np.float32(1.5), "p": Path("/a")})
    pd.testing.assert_frame_equal(pd.read_parquet(p), df)
    assert read_parquet_metadata(p) == {"k": 1.5, "p": "/a"}


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    write_json({"version": 1}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"version": 2, "half')
        raise RuntimeError("killed mid-write")
    assert target.read_text().strip().endswith("}")
    assert '"version": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_failed_first_write_leaves_nothing(tmp_path: Path) -> None:
    bad = pd.DataFrame({"a": [object()]})  # pyarrow cannot convert an arbitrary object
    with pytest.raises(Exception):  # noqa: B017 - pyarrow raises its own error types
        write_parquet(bad, tmp_path / "cells.parquet")
    assert list(tmp_path.iterdir()) == []


def test_outputs_get_normal_permissions(tmp_path: Path) -> None:
    p = write_png(np.zeros((4, 4, 3), np.uint8), tmp_path / "a.png")
    assert p.stat().st_mode & 0o044  # readable by group/others under a usual umask
