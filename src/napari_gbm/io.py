"""Atomic output files: a reader never sees a half-written table.

Every writer here writes to a hidden temporary file in the destination folder, flushes
it to disk, then renames it over the destination (``os.replace`` is atomic on POSIX and
Windows). An interrupted run leaves at most a ``.*.tmp`` file, never a truncated output
with the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

__all__ = [
    "atomic_path",
    "file_fingerprint",
    "metadata_json",
    "read_parquet_metadata",
    "write_json",
    "write_parquet",
    "write_png",
]

METADATA_KEY = b"napari_gbm"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error
    it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp makes files private (0600); outputs get the usual umask permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_parquet(
    df: pd.DataFrame, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``df`` as Parquet atomically; ``metadata`` (JSON-able) goes into the file's
    schema metadata under ``napari_gbm``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata is not None:
        meta = dict(table.schema.metadata or {})
        meta[METADATA_KEY] = metadata_json(metadata)
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def metadata_json(metadata: dict[str, Any]) -> bytes:
    """``metadata`` encoded for a Parquet schema (numpy scalars and paths converted)."""
    return json.dumps(metadata, default=_json_default).encode()


def read_parquet_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``napari_gbm`` metadata stored by :func:`write_parquet` (empty if none)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write JSON atomically (indented, UTF-8, numpy scalars converted)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        _dump(obj, fh)
    return Path(path)


def _dump(obj: Any, fh: IO[str]) -> None:
    json.dump(obj, fh, indent=2, ensure_ascii=False, default=_json_default)
    fh.write("\n")


def write_png(rgb: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an RGB(A) uint8 array as PNG atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(rgb)).save(tmp, format="PNG")
    return Path(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def file_fingerprint(
    path: str | os.PathLike[str], *, full_below: int = 256 * 2**20
) -> dict[str, Any]:
    """A checksum of an input file: SHA-256 of the whole file when it is small, else of
    its size, first and last MiB (a whole slide can be many GB; this still changes when
    the file is replaced or cut)."""
    import hashlib

    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= full_below:
            for block in iter(lambda: fh.read(2**20), b""):
                h.update(block)
            kind = "sha256"
        else:
            h.update(str(size).encode())
            h.update(fh.read(2**20))
            fh.seek(size - 2**20)
            h.update(fh.read(2**20))
            kind = "sha256-size-head-tail"
    return {"algorithm": kind, "digest": h.hexdigest(), "size": size}
