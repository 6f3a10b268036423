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


# -- issue 14: output folders, absurd values, finished folders ----------------------------


@pytest.mark.parametrize("where", ["a file", "under a file"])
@pytest.mark.parametrize("command", ["analyze", "tile"])
def test_unusable_output_folder_is_refused_before_any_work(
    where: str, command: str, tmp_path: Path, cmu_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "results"
    afile.write_text("not a folder")
    out = afile if where == "a file" else afile / "sub"
    assert main([command, str(cmu_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "choose a folder" in err
    assert ("is a file" in err) if where == "a file" else (f"lies under {afile}" in err)
    assert "tile 1/" not in err  # refused before the first tile
    assert afile.read_text() == "not a folder"


def test_output_folder_that_cannot_be_written(tmp_path: Path) -> None:
    """A folder the process cannot write to: /proc is read-only for everyone, root too
    (root ignores chmod, so a chmod-ed folder would not test this)."""
    from napari_gbm.outputs import check_output_folder

    with pytest.raises(ValueError, match=r"/proc/napari-gbm-out cannot be written"):
        check_output_folder("/proc/napari-gbm-out")
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checked, not created


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--mpp", "1e-6"], "makes this 2967-px slide 0.00297 µm long"),
        (["--mpp", "1e6"], "makes this 2967-px slide 2.97e+03 m long"),
        (["--target-mpp", "1000"], "coarser than 2 µm/px"),
        (["--target-mpp", "0.05"], "9.98x finer than the slide's 0.499 µm/px"),
    ],
)
def test_absurd_scales_are_refused_at_once(
    args: list[str], reason: str, tmp_path: Path, cmu_path: Path, capsys
) -> None:
    """Values that hung tissue detection for minutes or asked for terabytes: exit 2 in
    well under a second of work, nothing written."""
    import time

    t0 = time.perf_counter()
    assert main(["analyze", str(cmu_path), "--out", str(tmp_path / "o"), *args]) == 2
    assert time.perf_counter() - t0 < 10
    assert reason in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_tile_grid_coarser_than_tissue_detection_is_refused(tmp_path: Path, cmu_path: Path, capsys):
    assert main(["tile", str(cmu_path), "--out", str(tmp_path / "t"), "--target-mpp", "1000"]) == 2
    assert "coarser than 8 µm/px" in capsys.readouterr().err


def test_too_small_an_overlap_is_raised_with_a_note(tmp_path: Path, cmu_path: Path, capsys) -> None:
    """--overlap below the halo detection needs would make cells depend on the grid: it
    is raised to the halo, said in one line, and recorded."""
    import json

    from napari_gbm.detect.cells import CellParams, needed_overlap_px

    out = tmp_path / "o"
    assert main(["analyze", str(cmu_path), "--out", str(out), "--overlap", "8"]) == 0
    need = needed_overlap_px(CellParams(), 0.5)
    err = capsys.readouterr().err
    assert f"note: a tile overlap of 8 px is less than the {need} px" in err
    used = json.loads((out / "summary.json").read_text())["parameters"]["tiling"]["overlap_px"]
    assert used == need


def test_tile_refuses_to_write_into_a_finished_analysis(tmp_path: Path, cmu_path: Path, capsys):
    out = tmp_path / "o"
    assert main(["analyze", str(cmu_path), "--out", str(out), "--no-texture"]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["tile", str(cmu_path), "--out", str(out), "--tile-size", "256"]) == 2
    assert "holds a finished analysis" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_a_new_run_removes_what_a_killed_run_left(tmp_path: Path, cmu_path: Path) -> None:
    out = tmp_path / "o"
    (out / ".cells-abc123").mkdir(parents=True)
    (out / ".cells-abc123" / "part-0.parquet").write_bytes(b"half")
    (out / ".cells.parquet.xyz.tmp").write_bytes(b"half")
    assert main(["analyze", str(cmu_path), "--out", str(out), "--no-texture"]) == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert (out / "summary.json").is_file()


def test_interrupted_run_says_the_folder_is_incomplete(tmp_path: Path, synthetic_he: Path) -> None:
    """SIGINT during an analysis: exit 130, and the message says the folder is incomplete
    (not 'no partial output was left'); no summary.json, no temporary files."""
    import signal
    import time

    out = tmp_path / "o"
    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_gbm.cli", "analyze", str(synthetic_he), "--out", str(out),
         "--tile-size", "256"],
        stderr=subprocess.PIPE, text=True,
        # a test run started in the background inherits SIGINT ignored, and Python then
        # installs no KeyboardInterrupt handler: give the child the default disposition
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "summary.json").exists() and time.monotonic() < deadline:
        if out.is_dir() and any(out.glob(".cells-*")):  # tiles are being analysed
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert f"interrupted; {out} is incomplete" in err
    assert "no partial output" not in err
    assert not (out / "summary.json").exists()
    assert not list(out.glob(".cells-*")) and not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("fraction", [0.9, 0.99])
def test_a_slide_cut_short_is_refused_not_read_as_a_plain_tiff(
    fraction: float, tmp_path: Path, cmu_path: Path
) -> None:
    """Cut at 90 % or 99 % of its bytes, CMU-1's later directories lie beyond the end:
    tifffile showed the pages before them and the file opened as a plain TIFF (6,010
    'cells' were reported). It must be refused, saying so."""
    data = cmu_path.read_bytes()
    p = tmp_path / "cut.svs"
    p.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(SlideError, match=r"truncated or damaged: its image directory \d+ lies"):
        Slide(p)


def test_a_damaged_header_gives_one_line(tmp_path: Path, cmu_path: Path) -> None:
    """The first directory's entry count overwritten: one error line on stderr, not
    hundreds of tifffile log lines."""
    data = bytearray(cmu_path.read_bytes())
    first_ifd = struct.unpack("<I", data[4:8])[0]
    data[first_ifd : first_ifd + 2] = b"\xff\xff"  # 65535 entries: past the end
    p = tmp_path / "damaged.svs"
    p.write_bytes(bytes(data))
    proc = subprocess.run(
        [sys.executable, "-m", "napari_gbm.cli", "info", str(p)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "damaged" in lines[0], proc.stderr[-2000:]


def test_a_file_claiming_a_vendor_format_is_not_read_as_a_plain_tiff(cmu_path: Path) -> None:
    from napari_gbm.wsi._open import _vendor_claim

    assert _vendor_claim(cmu_path) == "Aperio SVS"


def test_a_declared_size_the_file_cannot_hold_is_refused(tmp_path: Path) -> None:
    """A 1024² tiled TIFF whose header is edited to say 150000²: 4 tiles for 85,849. It
    hung (tissue detection building an overview of 22 gigapixels of nothing)."""
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.full((1024, 1024, 3), 200, np.uint8), tile=(512, 512),
                     photometric="rgb")  # fmt: skip
    data = bytearray(small.read_bytes())
    with tifffile.TiffFile(small) as tif:
        for name in ("ImageWidth", "ImageLength"):
            tag = tif.pages[0].tags[name]
            fmt = "<H" if tag.dtype == 3 else "<I"
            data[tag.valueoffset : tag.valueoffset + struct.calcsize(fmt)] = struct.pack(
                fmt, 150000
            )
    huge = tmp_path / "huge.tif"
    huge.write_bytes(bytes(data))
    with pytest.raises(SlideError, match=r"declares 150000 x 150000 px, which needs 85,849"):
        Slide(huge)
    Slide(small).close()  # the unedited file opens


def test_flipped_bytes_are_called_damaged_not_truncated(tmp_path: Path, cmu_path: Path) -> None:
    """One tile offset in the middle of CMU-1's level 0 overwritten (the file length
    intact): the block points past the end, but the file was not cut short."""
    data = bytearray(cmu_path.read_bytes())
    with tifffile.TiffFile(cmu_path) as tif:
        tag = tif.pages[0].tags["TileOffsets"]
        n = len(tag.value)
        at = tag.valueoffset + 4 * (n // 2)  # LONG offsets in a classic TIFF
    data[at : at + 4] = struct.pack("<I", 3 * len(data))
    p = tmp_path / "flipped.svs"
    p.write_bytes(bytes(data))
    with pytest.raises(SlideError, match="damaged") as err:
        Slide(p)
    assert "truncated" not in str(err.value)
