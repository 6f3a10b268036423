"""Ground truth of the synthetic slide: nucleus table, region PNG, summary."""

from __future__ import annotations

import contextlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import _params as P
from .nuclei import Block

__all__ = ["NUCLEI_SCHEMA", "TruthWriter", "write_png_gray"]

#: a categorical text column of the truth tables (region names, vessel kinds)
REGION_TYPE = pa.dictionary(pa.int8(), pa.string())
NUCLEI_SCHEMA = pa.schema(
    [
        ("nucleus_id", pa.int64()),
        ("centroid_x_px", pa.float64()),
        ("centroid_y_px", pa.float64()),
        ("area_px", pa.float64()),
        ("area_um2", pa.float64()),
        ("major_axis_um", pa.float64()),
        ("minor_axis_um", pa.float64()),
        ("orientation_rad", pa.float64()),
        ("region", REGION_TYPE),
        ("dab_grade", pa.int8()),
        ("dab_od_mean", pa.float32()),
    ]
)
_ROW_GROUP = 65536
_DICT = pa.array(P.REGION_NAMES, type=pa.string())


class TruthWriter:
    """Stream finished blocks into a Parquet file in row groups.

    Parameters
    ----------
    path : Path
        Parquet file to write.
    mpp : float
        Micrometres per pixel (for ``area_um2``).
    stain : {"he", "hdab", "cd31"}
        ``dab_od_mean`` is measured on the DAB stains, 0 on H&E.
    """

    def __init__(self, path: Path, mpp: float, stain: str) -> None:
        self.mpp, self.stain = mpp, stain
        self._writer = pq.ParquetWriter(path, NUCLEI_SCHEMA, compression="zstd")
        self._buf: list[dict[str, np.ndarray]] = []
        self._nbuf = 0
        self.next_id = 1
        # counts[region, grade]
        self.counts = np.zeros((len(P.REGION_NAMES), 4), dtype=np.int64)

    def add(self, block: Block) -> None:
        """Append a block whose nuclei are completely rendered."""
        acc = block.acc
        ok = acc[:, 0] > 0  # nuclei cut away entirely are not in the image
        n = int(ok.sum())
        if n == 0:
            return
        cnt = acc[ok, 0]
        region = block.region[ok]
        grade = block.grade[ok]
        dab = acc[ok, 3] / cnt if self.stain != "he" else np.zeros(n)
        cols = {
            "nucleus_id": np.arange(self.next_id, self.next_id + n, dtype=np.int64),
            "centroid_x_px": acc[ok, 1] / cnt,
            "centroid_y_px": acc[ok, 2] / cnt,
            "area_px": cnt,
            "area_um2": cnt * self.mpp**2,
            "major_axis_um": block.major_um[ok],
            "minor_axis_um": block.minor_um[ok],
            "orientation_rad": block.orientation[ok],
            "region": region,
            "dab_grade": grade,
            "dab_od_mean": dab.astype(np.float32),
        }
        self.next_id += n
        np.add.at(self.counts, (region.astype(np.int64), grade.astype(np.int64)), 1)
        self._buf.append(cols)
        self._nbuf += n
        if self._nbuf >= _ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        cols = {k: np.concatenate([b[k] for b in self._buf]) for k in self._buf[0]}
        arrays = []
        for f in NUCLEI_SCHEMA:
            if f.name == "region":
                idx = pa.array(cols["region"], type=pa.int8())
                arrays.append(pa.DictionaryArray.from_arrays(idx, _DICT))
            else:
                arrays.append(pa.array(cols[f.name], type=f.type))
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=NUCLEI_SCHEMA))
        self._buf, self._nbuf = [], 0

    def close(self) -> None:
        """Flush and close the Parquet file (also when no nucleus was written)."""
        self._flush()
        self._writer.close()

    def abort(self) -> None:
        """Close without flushing (the caller deletes the file)."""
        # Best effort: we are already on a failing path.
        with contextlib.suppress(Exception):
            self._writer.close()


def region_summary(
    counts: np.ndarray, codes: np.ndarray, node_um: float, stain: str
) -> tuple[dict, dict]:
    """Per-region and overall truth numbers.

    Parameters
    ----------
    counts : ndarray, shape (7, 4)
        Nuclei per region and grade.
    codes : ndarray of uint8
        Region map.
    node_um : float
        Side of a region-map pixel in um.
    stain : str

    Returns
    -------
    per_region, overall : dict
    """
    node_mm2 = (node_um / 1000.0) ** 2
    areas = np.bincount(codes.ravel(), minlength=len(P.REGION_NAMES)) * node_mm2
    per: dict[str, dict] = {}
    for code, name in enumerate(P.REGION_NAMES):
        c = counts[code]
        n = int(c.sum())
        per[name] = {
            "code": code,
            "area_mm2": float(areas[code]),
            "nucleus_count": n,
            "density_per_mm2": float(n / areas[code]) if areas[code] > 0 else None,
            "target_density_per_mm2": float(P.DENSITY_PER_MM2[code]),
            "grade_counts": [int(v) for v in c],
            "positive_fraction": float(c[1:].sum() / n) if n else None,
            "target_positive_fraction": (
                float(P.POSITIVE_FRACTION[code]) if stain == "hdab" else 0.0
            ),
        }
    tot = counts.sum(axis=0)
    n = int(tot.sum())
    tissue_mm2 = float(areas[1:].sum())
    overall = {
        "nucleus_count": n,
        "tissue_area_mm2": tissue_mm2,
        "density_per_mm2": n / tissue_mm2 if tissue_mm2 else None,
        "grade_counts": [int(v) for v in tot],
        "positive_fraction": float(tot[1:].sum() / n) if n else None,
        "h_score": float(100 * (tot[1] + 2 * tot[2] + 3 * tot[3]) / n) if n else None,
    }
    return per, overall


def write_png_gray(path: Path, img: np.ndarray) -> None:
    """Write an 8-bit greyscale PNG (tiny encoder: deterministic, no extra deps).

    Written in place, not atomically (callers write to a temporary name).

    Parameters
    ----------
    path : pathlib.Path
        Destination file.
    img : numpy.ndarray, shape (h, w)
        The image; cast to uint8.
    """
    img = np.ascontiguousarray(img, dtype=np.uint8)
    h, w = img.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), img], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.write(chunk(b"IHDR", ihdr))
        fh.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        fh.write(chunk(b"IEND", b""))
