"""Opening a slide file: the right backend for it, or a :class:`SlideError` that says why not.

Before any backend is tried, a TIFF's IFD chain and block offsets are checked against the file
size (a cut copy is refused as truncated, a corrupt one as damaged); a file that names a scanner
vendor (Aperio, Hamamatsu, Leica, Philips) but that OpenSlide refuses is reported as damaged
rather than read as a plain TIFF; and one pixel of the coarsest level is decoded, so an
unsupported compression is reported on opening rather than in the middle of an analysis.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import tifffile

from napari_gbm.wsi._backends import (
    Backend,
    OpenSlideBackend,
    PilBackend,
    SlideError,
    TiffBackend,
)

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"BM", b"GIF8")


def open_backend(path: Path) -> Backend:
    """Open the right backend for ``path``, or raise :class:`SlideError` saying why not."""
    if not path.exists():
        raise SlideError(path, "no such file")
    if path.is_dir():
        raise SlideError(path, "it is a directory; give the slide file itself")
    size = path.stat().st_size
    if size == 0:
        raise SlideError(path, "the file is empty (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(8)
    is_tiff = head[:4] in _TIFF_MAGIC
    if is_tiff:
        _check_tiff_complete(path, size)

    reasons = []
    backend: Backend | None = None
    fmt = openslide.OpenSlide.detect_format(str(path))
    if fmt is not None:
        try:
            backend = OpenSlideBackend(path)
        except openslide.OpenSlideError as exc:
            reasons.append(f"OpenSlide ({fmt}): {exc}")
    if backend is None and is_tiff:
        claim = _vendor_claim(path)
        if claim is not None:
            why = reasons[0] if reasons else "OpenSlide does not recognise it"
            raise SlideError(
                path,
                f"the file looks like {claim} but OpenSlide cannot read it ({why}); it is "
                "probably damaged: copy it again",
            )
        try:
            backend = TiffBackend(path)
        except SlideError:
            raise
        except Exception as exc:
            reasons.append(f"tifffile: {exc}")
    if backend is None and head.startswith(_IMAGE_MAGIC):
        try:
            backend = PilBackend(path)
        except Exception as exc:
            reasons.append(f"Pillow: {exc}")
    if backend is None:
        detail = "; ".join(reasons) if reasons else "the content is not a known slide or image"
        raise SlideError(
            path,
            f"not a slide or image format napari-gbm can read ({detail}). Supported: "
            "SVS, NDPI, tiled/pyramidal TIFF, MRXS, SCN, BIF, VMS, plain TIFF, PNG, JPEG",
        )
    _check_decodes(backend, path)
    return backend


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's logger: a damaged header made it log about 300 lines; the one
    line the user needs is the SlideError raised here."""
    logger = logging.getLogger("tifffile")
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


def _ifd_chain_end(path: Path, size: int) -> tuple[int, int] | None:
    """Walk the TIFF's chain of image directories (IFDs) by hand; return (index, offset)
    of the first directory that lies (even in part) beyond the end of the file, or None
    when every one is inside. tifffile stops at such a directory with a log line and
    shows the pages before it, so a slide cut at 90 % of its bytes opened as a smaller
    plain TIFF."""
    with open(path, "rb") as fh:
        head = fh.read(16)
        order = "<" if head[:2] == b"II" else ">"
        big = head[2:4] in (b"+\x00", b"\x00+")
        off_t, count_t, entry = ("u8", "u8", 20) if big else ("u4", "u2", 12)
        off_n, count_n = (8, 8) if big else (4, 2)
        offset = int(np.frombuffer(head[8:16] if big else head[4:8], order + off_t)[0])
        seen: set[int] = set()
        index = 0
        while offset and offset not in seen and index < 100_000:
            seen.add(offset)
            if offset + count_n > size:
                return index, offset
            fh.seek(offset)
            n = int(np.frombuffer(fh.read(count_n), order + count_t)[0])
            end = offset + count_n + n * entry + off_n
            if end > size:
                return index, offset
            fh.seek(offset + count_n + n * entry)
            offset = int(np.frombuffer(fh.read(off_n), order + off_t)[0])
            index += 1
    return None


def _check_tiff_complete(path: Path, size: int) -> None:
    """Refuse a TIFF that is cut short or damaged: a directory or an image block beyond
    the end of the file. Decoding it later would fail half-way through an analysis, or
    worse, a cut pyramid would open as a smaller image. "Truncated" is said only when
    the evidence fits a cut (the missing blocks are the last ones of the file);
    otherwise "damaged"."""
    cut = _ifd_chain_end(path, size)
    if cut is not None:
        index, offset = cut
        where = "first directory" if index == 0 else f"image directory {index + 1}"
        raise SlideError(
            path,
            f"the file is truncated or damaged: its {where} lies beyond its end "
            f"(offset {offset}, file {size} bytes); copy it again",
        )
    try:
        with _quiet_tifffile(), tifffile.TiffFile(str(path)) as tif:
            pages = list(tif.pages)
            if not pages:
                raise SlideError(
                    path, "the TIFF has no readable image directory (truncated or damaged)"
                )
            inside_end, beyond_start, missing, total = 0, None, 0, 0
            for page in pages:
                offsets = np.asarray(page.dataoffsets, dtype=np.int64)
                expected = _expected_blocks(page)
                if expected is not None and offsets.size < expected:
                    raise SlideError(
                        path,
                        f"the file is damaged: page {page.index} declares "
                        f"{page.shape[1]} x {page.shape[0]} px, which needs "
                        f"{expected:,} image blocks, but holds {offsets.size:,}",
                    )
                ends = offsets + np.asarray(page.databytecounts, dtype=np.int64)
                out = ends > size
                total += offsets.size
                missing += int(out.sum())
                if (~out).any():
                    inside_end = max(inside_end, int(ends[~out].max()))
                if out.any():
                    first = int(offsets[out].min())
                    beyond_start = first if beyond_start is None else min(beyond_start, first)
            if missing:
                # a cut leaves a block that starts inside the file and ends past it, and
                # every block past the end after every block inside; an offset that
                # points far beyond the end (flipped bytes) is damage
                cut_short = (
                    beyond_start is not None
                    and beyond_start < size
                    and beyond_start >= inside_end - 1
                )
                what = "truncated" if cut_short else "damaged"
                raise SlideError(
                    path,
                    f"the file is {what}: {missing} of {total} image blocks lie beyond its "
                    f"end ({size} bytes); copy it again",
                )
    except SlideError:
        raise
    except Exception as exc:
        raise SlideError(path, f"the TIFF structure is damaged ({exc})") from exc


def _expected_blocks(page: Any) -> int | None:
    """How many tiles or strips a TIFF page of its declared size needs (None: unknown)."""
    try:
        planes = int(page.samplesperpixel) if int(page.planarconfig) == 2 else 1
        depth = max(1, int(getattr(page, "imagedepth", 1) or 1))
        if page.is_tiled:
            tw, tl = int(page.tilewidth), int(page.tilelength)
            td = max(1, int(getattr(page, "tiledepth", 1) or 1))
            across = math.ceil(page.imagewidth / tw) * math.ceil(page.imagelength / tl)
            return across * math.ceil(depth / td) * planes
        rows = int(page.rowsperstrip) or int(page.imagelength)
        return math.ceil(page.imagelength / rows) * depth * planes
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return None


def _vendor_claim(path: Path) -> str | None:
    """The slide format a TIFF-based file claims to be (by its first directory), if any:
    such a file that OpenSlide refuses is damaged, not a plain TIFF."""
    try:
        with _quiet_tifffile(), tifffile.TiffFile(str(path)) as tif:
            page = tif.pages.first
            description = str(page.description or "")
            if description.startswith("Aperio"):
                return "Aperio SVS"
            if 65420 in page.tags:  # NDPI's format tag
                return "Hamamatsu NDPI"
            if "Leica" in description and path.suffix.lower() == ".scn":
                return "Leica SCN"
            if tif.is_philips:
                return "Philips TIFF"
    except Exception:
        return None
    return None  # the name alone proves nothing: a plain TIFF may be called .svs


def _check_decodes(backend: Backend, path: Path) -> None:
    """Decode one pixel of the coarsest native level, so an unsupported compression is
    reported when the slide is opened rather than in the middle of an analysis."""
    level = backend._native - 1
    try:
        backend.read_region((0, 0), level, (1, 1))
    except SlideError:
        backend.close()
        raise
    except Exception as exc:
        backend.close()
        raise SlideError(path, f"pixel data could not be decoded ({exc})") from exc
