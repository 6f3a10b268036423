"""Slide: the three real slides, read against OpenSlide / tifffile directly."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from napari_gbm import Slide, SlideError
from napari_gbm.wsi._backends import block_mean, composite_on_white


def test_cmu_metadata(cmu_path: Path) -> None:
    s = Slide(cmu_path)
    assert s.format == "aperio"
    assert s.backend_name == "openslide"
    assert s.dimensions == (2220, 2967)
    assert s.stored_level_count == 1
    assert s.level_dimensions[:3] == ((2220, 2967), (1110, 1484), (555, 742))  # built levels
    assert s.tile_sizes[0] == (240, 240)
    assert s.mpp == pytest.approx(0.499)
    assert s.mpp_source == "metadata"
    assert s.objective_power == 20
    assert set(s.associated_image_names) == {"label", "macro", "thumbnail"}
    label = s.associated_image("label")
    assert label.dtype == np.uint8 and label.shape == (463, 387, 3)


def test_tcga_has_no_mpp_and_says_so(tcga_path: Path) -> None:
    s = Slide(tcga_path)
    assert s.stored_level_count == 2
    assert s.level_dimensions[:2] == ((4443, 3567), (2221, 1783))
    assert s.mpp is None and s.mpp_source is None
    assert "does not record its pixel size" in s.mpp_message
    assert "--mpp" in s.mpp_message
    with pytest.raises(SlideError, match="pixel size"):
        s.require_mpp()
    # a user-given pixel size overrides, and is reported as such
    s2 = Slide(tcga_path, mpp=0.25)
    assert s2.mpp == 0.25 and s2.mpp_source == "user"
    assert s2.require_mpp() == 0.25


def test_kidney_plain_tiff_uses_fallback_with_built_pyramid(kidney_path: Path) -> None:
    with pytest.raises(openslide.OpenSlideError):
        openslide.OpenSlide(str(kidney_path))
    s = Slide(kidney_path)
    assert s.backend_name == "tifffile"
    assert s.dimensions == (1493, 901)
    assert s.mpp is None  # no resolution tags
    assert s.stored_level_count == 1 and s.level_count == 3
    full = tifffile.imread(kidney_path)
    np.testing.assert_array_equal(s.read_region((0, 0), 0, (1493, 901)), full)
    # level 1 is the 2x2 block mean of level 0 (white beyond the odd last column/row)
    padded = np.pad(full, ((0, 1), (0, 1), (0, 0)), constant_values=255)
    lvl1 = block_mean(padded, 2)
    np.testing.assert_array_equal(s.read_region((0, 0), 1, s.level_dimensions[1]), lvl1)
    # a region of level 1 at an offset matches the same crop of the whole level
    np.testing.assert_array_equal(s.read_region((200, 100), 1, (50, 40)), lvl1[50:90, 100:150])


@pytest.mark.parametrize("which", ["cmu", "tcga"])
def test_read_region_matches_openslide(which: str, cmu_path: Path, tcga_path: Path) -> None:
    path = cmu_path if which == "cmu" else tcga_path
    s = Slide(path)
    osr = openslide.OpenSlide(str(path))
    for level in range(s.stored_level_count):
        loc, size = (317, 211), (300, 257)
        ref = np.asarray(osr.read_region(loc, level, size))
        ours = s.read_region(loc, level, size)
        assert ours.shape == (257, 300, 3) and ours.dtype == np.uint8
        np.testing.assert_array_equal(ours, composite_on_white(ref))


def test_outside_the_slide_is_white(cmu_path: Path) -> None:
    s = Slide(cmu_path)
    w, h = s.dimensions
    region = s.read_region((w - 10, h - 10), 0, (30, 30))
    assert (region[10:, :] == 255).all() and (region[:, 10:] == 255).all()
    assert (s.read_region((-50, -50), 0, (40, 40)) == 255).all()


def test_composite_on_white_hand_values() -> None:
    rgba = np.array([[[0, 0, 0, 0], [100, 50, 0, 255], [0, 0, 0, 128]]], np.uint8)
    out = composite_on_white(rgba)
    # transparent -> white; opaque unchanged; half-transparent black -> about mid grey
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 1], [100, 50, 0])
    np.testing.assert_array_equal(out[0, 2], [127, 127, 127])


def test_png_fallback_composites_alpha(tmp_path: Path) -> None:
    from PIL import Image

    arr = np.zeros((600, 700, 4), np.uint8)
    arr[..., 0] = 200
    arr[:300, :, 3] = 255  # top half opaque red-ish, bottom half transparent
    Image.fromarray(arr).save(tmp_path / "x.png")
    s = Slide(tmp_path / "x.png")
    assert s.format == "png" and s.dimensions == (700, 600)
    px = s.read_region((0, 0), 0, (700, 600))
    np.testing.assert_array_equal(px[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(px[-1, -1], [255, 255, 255])
    assert s.level_count == 2  # 700 > 512: one built level


def test_jpeg_fallback_reads(tmp_path: Path) -> None:
    from PIL import Image

    yy, xx = np.mgrid[0:64, 0:80]
    arr = np.stack([yy * 3, xx * 3, 255 - yy * 2], axis=2).astype(np.uint8)  # smooth: JPEG-friendly
    Image.fromarray(arr).save(tmp_path / "x.jpg", quality=100, dpi=(50800, 50800))
    s = Slide(tmp_path / "x.jpg")
    assert s.format == "jpeg"
    assert s.mpp == pytest.approx(0.5)  # 50800 dpi = 0.5 µm/px
    assert np.abs(s.read_region((0, 0), 0, (80, 64)).astype(int) - arr).mean() < 3


def test_tiff_resolution_tags_give_mpp(tmp_path: Path) -> None:
    data = np.full((300, 400, 3), 200, np.uint8)
    tifffile.imwrite(
        tmp_path / "cm.tif",
        data,
        photometric="rgb",
        resolution=(1e4 / 0.25, 1e4 / 0.25),
        resolutionunit="CENTIMETER",
    )
    assert Slide(tmp_path / "cm.tif").mpp == pytest.approx(0.25)
    # 72 dpi (a default, not a measurement) is not taken for a pixel size
    tifffile.imwrite(
        tmp_path / "dpi.tif", data, photometric="rgb", resolution=(72, 72), resolutionunit="INCH"
    )
    assert Slide(tmp_path / "dpi.tif").mpp is None


def test_dask_pyramid_one_chunk_per_tile(tcga_path: Path) -> None:
    s = Slide(tcga_path)
    levels = s.to_dask()
    assert [lv.shape[:2][::-1] for lv in levels] == list(s.level_dimensions)
    for lv, (tw, th) in zip(levels, s.tile_sizes, strict=True):
        assert lv.chunksize == (min(th, lv.shape[0]), min(tw, lv.shape[1]), 3)
        assert lv.dtype == np.uint8
    # level 0: chunks assemble to exactly one read of the same region
    np.testing.assert_array_equal(
        np.asarray(levels[0][:600, :700]), s.read_region((0, 0), 0, (700, 600))
    )
    # level 1 has a non-integer downsample (2.0005): OpenSlide interpolates regions that
    # start at fractional level positions, so chunks differ slightly from one whole read,
    # but are not shifted (a one-pixel seam shift would differ several times more)
    whole = s.read_region((0, 0), 1, s.level_dimensions[1]).astype(int)
    assembled = np.asarray(levels[1]).astype(int)
    err = np.abs(assembled - whole).mean()
    shifted = np.abs(assembled[:, 1:] - whole[:, :-1]).mean()
    assert err < 3 and err < shifted / 3


def test_dask_pyramid_exact_on_integer_levels(kidney_path: Path) -> None:
    s = Slide(kidney_path)
    for level, lv in enumerate(s.to_dask()):
        np.testing.assert_array_equal(
            np.asarray(lv), s.read_region((0, 0), level, s.level_dimensions[level])
        )


def test_pickles_by_path_and_keeps_the_override(tcga_path: Path) -> None:
    s = Slide(tcga_path, mpp=0.3)
    payload = pickle.dumps(s)
    assert len(payload) < 1000  # a path and a number, not pixels or a handle
    s2 = pickle.loads(payload)
    assert s2.path == s.path and s2.mpp == 0.3
    np.testing.assert_array_equal(
        s2.read_region((10, 10), 1, (16, 16)), s.read_region((10, 10), 1, (16, 16))
    )


def test_read_downsampled_area_average(kidney_path: Path) -> None:
    s = Slide(kidney_path)
    full = tifffile.imread(kidney_path).astype(np.float64)
    # a 4x area average over an aligned box equals the block mean
    out = s.read_downsampled((400, 200, 400, 200), (100, 50))
    ref = full[200:400, 400:800].reshape(50, 4, 100, 4, 3).mean(axis=(1, 3))
    assert np.abs(out - ref).max() <= 1.0


def test_read_downsampled_chunks_equal_one_read(cmu_path: Path) -> None:
    s = Slide(cmu_path)
    box, size = (0, 0, 2220, 2967), (555, 742)
    whole = s.read_downsampled(box, size, chunk_px=8192)
    chunked = s.read_downsampled(box, size, chunk_px=512)
    # Pillow's box filter takes whole source pixels, chosen by sub-pixel offsets, so a
    # few edge pixels differ; the pictures are the same.
    diff = np.abs(whole.astype(int) - chunked)
    assert diff.mean() < 0.05
    assert (diff > 2).mean() < 1e-3


def test_thumbnail(cmu_path: Path) -> None:
    th = Slide(cmu_path).thumbnail(300)
    assert th.shape == (300, 224, 3)
    assert 150 < th.mean() < 250  # tissue on white, not blank


def test_info_is_json_friendly(cmu_path: Path) -> None:
    import json

    info = Slide(cmu_path).info()
    assert json.loads(json.dumps(info))["mpp"] == pytest.approx(0.499)


def test_invalid_override_rejected(cmu_path: Path) -> None:
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="mpp"):
            Slide(cmu_path, mpp=bad)


def test_read_region_argument_checks(cmu_path: Path) -> None:
    s = Slide(cmu_path)
    with pytest.raises(ValueError, match="level"):
        s.read_region((0, 0), s.level_count, (10, 10))
    with pytest.raises(ValueError, match="size"):
        s.read_region((0, 0), 0, (-1, 10))
    assert s.read_region((0, 0), 0, (0, 5)).shape == (5, 0, 3)


def test_built_level_read_in_pieces_equals_one_read(cmu_path: Path, monkeypatch) -> None:
    """A built level is read from the stored one in bounded pieces; the pieces give the
    same pixels as one read (CMU-1 has one stored level: every lower level is built)."""
    import napari_gbm.wsi._backends as backends

    with Slide(cmu_path) as slide:
        assert slide.stored_level_count == 1
        w, h = slide.level_dimensions[2]
        whole = slide.read_region((0, 0), 2, (w, h))
        monkeypatch.setattr(backends, "_MAX_READ_PX", 5000)  # pieces of < 5000 stored px
        pieces = slide.read_region((0, 0), 2, (w, h))
        shifted = slide.read_region((37, 21), 2, (w - 5, h - 3))  # an unaligned start
        monkeypatch.setattr(backends, "_MAX_READ_PX", 1 << 40)
        shifted_whole = slide.read_region((37, 21), 2, (w - 5, h - 3))
    np.testing.assert_array_equal(pieces, whole)
    np.testing.assert_array_equal(shifted, shifted_whole)


def test_single_level_tiff_overview_in_bounded_memory(tmp_path: Path) -> None:
    """A 12288² single-level TIFF (432 MiB of RGB): tissue detection builds its overview
    from level 0 piece by piece. Peak Python-tracked memory stays under 300 MiB (reading
    level 0 whole took 12 GiB of floats; a 32768² file was killed at 24 GB)."""
    import tracemalloc

    from napari_gbm.wsi.tissue import detect_tissue

    n, t = 12288, 512
    tile = np.full((t, t, 3), 245, np.uint8)
    tissue = np.zeros((t, t, 3), np.uint8) + np.array([190, 110, 180], np.uint8)

    def tiles():
        for r in range(n // t):
            for c in range(n // t):
                yield tissue if (r - 12) ** 2 + (c - 12) ** 2 < 64 else tile

    path = tmp_path / "single.tif"
    tifffile.imwrite(path, tiles(), shape=(n, n, 3), dtype=np.uint8, tile=(t, t),
                     compression="jpeg", photometric="rgb")  # fmt: skip
    with Slide(path, mpp=0.5) as slide:
        assert slide.stored_level_count == 1
        tracemalloc.start()
        try:
            mask = detect_tissue(slide)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 300 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    # the disc of tissue: 201 of 576 tiles (pi 8² of 24²), about 35 %
    assert 0.3 < mask.tissue_fraction < 0.4
