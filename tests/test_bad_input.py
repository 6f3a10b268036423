"""Bad input: a clear error naming the file and the reason; no crash; nothing written."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_gbm import Slide, SlideError
from napari_gbm._napari._reader import napari_get_reader
from napari_gbm.cli import main


def _text_svs(tmp_path: Path) -> Path:
    p = tmp_path / "notes.svs"
    p.write_text("this is not a slide\n" * 50)
    return p


def _empty(tmp_path: Path) -> Path:
    p = tmp_path / "empty.svs"
    p.touch()
    return p


def _truncated(tmp_path: Path, src: Path) -> Path:
    data = src.read_bytes()
    p = tmp_path / f"cut-{src.name}"
    p.write_bytes(data[: len(data) // 2])
    return p


def _unsupported_compression(tmp_path: Path) -> Path:
    """A tiled TIFF whose Compression tag names a codec nobody implements."""
    p = tmp_path / "weird.tif"
    tifffile.imwrite(
        p,
        np.full((512, 512, 3), 128, np.uint8),
        tile=(256, 256),
        photometric="rgb",
        compression="zlib",
    )
    raw = bytearray(p.read_bytes())
    with tifffile.TiffFile(p) as tif:
        offset = tif.pages[0].tags["Compression"].valueoffset
    raw[offset : offset + 2] = struct.pack("<H", 65000)
    p.write_bytes(bytes(raw))
    return p


CASES = {
    "missing": (lambda tmp, cmu: tmp / "nope.svs", "no such file"),
    "directory": (lambda tmp, cmu: tmp, "directory"),
    "text named .svs": (lambda tmp, cmu: _text_svs(tmp), "not a slide or image format"),
    "zero bytes": (lambda tmp, cmu: _empty(tmp), "empty"),
    "cut in half": (lambda tmp, cmu: _truncated(tmp, cmu), "truncated"),
    "unsupported compression": (
        lambda tmp, cmu: _unsupported_compression(tmp),
        "could not be decoded|not a slide",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_clear_error_names_file_and_reason(case: str, tmp_path: Path, cmu_path: Path) -> None:
    make, reason = CASES[case]
    path = make(tmp_path, cmu_path)
    with pytest.raises(SlideError, match=reason) as info:
        Slide(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("case", list(CASES))
def test_napari_reader_returns_none(case: str, tmp_path: Path, cmu_path: Path) -> None:
    make, _ = CASES[case]
    assert napari_get_reader(str(make(tmp_path, cmu_path))) is None


@pytest.mark.parametrize("case", ["text named .svs", "cut in half", "zero bytes", "missing"])
def test_cli_exits_2_and_writes_nothing(
    case: str, tmp_path: Path, cmu_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, _ = CASES[case]
    src = make(tmp_path, cmu_path)
    out = tmp_path / "out"
    assert main(["tile", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error" in err and str(src) in err
    assert not out.exists()


def test_truncated_tcga_pyramid_is_refused(tmp_path: Path, tcga_path: Path) -> None:
    with pytest.raises(SlideError, match="truncated"):
        Slide(_truncated(tmp_path, tcga_path))


def test_corrupt_tile_data_does_not_crash_python(tmp_path: Path, cmu_path: Path) -> None:
    """Garbage inside the JPEG tiles (the file length intact): reading must raise a
    SlideError in the reading process, not take the interpreter down."""
    p = tmp_path / "garbled.svs"
    shutil.copy(cmu_path, p)
    p.chmod(0o644)
    with tifffile.TiffFile(p) as tif:
        page = tif.pages[0]
        offsets, counts = page.dataoffsets, page.databytecounts
    raw = bytearray(p.read_bytes())
    rng = np.random.default_rng(1)
    for off, n in zip(offsets[::3], counts[::3], strict=True):
        raw[off + 20 : off + n - 2] = rng.integers(0, 256, n - 22, dtype=np.uint8).tobytes()
    p.write_bytes(bytes(raw))
    code = (
        "import sys\n"
        "from napari_gbm import Slide, SlideError\n"
        "try:\n"
        f"    s = Slide({str(p)!r})\n"
        "    s.read_region((0, 0), 0, s.dimensions)\n"
        "except SlideError as e:\n"
        "    print('SlideError:', e); sys.exit(3)\n"
        "print('read without error')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    # exit 3: a clean SlideError; exit 0: the decoder coped. Never a signal (negative).
    assert proc.returncode in (0, 3), proc.stderr
    if proc.returncode == 3:
        assert "garbled.svs" in proc.stdout


def test_unknown_mpp_tile_command_says_what_to_do(
    tcga_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    assert main(["tile", str(tcga_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pixel size" in err and "--mpp" in err
    assert not out.exists()


def test_blank_slide_has_no_tissue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "blank.tif"
    tifffile.imwrite(
        p,
        np.full((1024, 1024, 3), 246, np.uint8),
        photometric="rgb",
        resolution=(1e4 / 0.5, 1e4 / 0.5),
        resolutionunit="CENTIMETER",
    )
    out = tmp_path / "o"
    assert main(["tile", str(p), "--out", str(out)]) == 2
    assert "no tissue" in capsys.readouterr().err
    assert not out.exists()


def test_cli_rejects_bad_numbers(cmu_path: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["tile", str(cmu_path), "--out", str(tmp_path / "o"), "--mpp", "-1"])
    assert e.value.code == 2
    assert main(["tile", str(cmu_path), "--out", str(tmp_path / "o"), "--overlap", "5000"]) == 2
    assert not (tmp_path / "o").exists()
