"""Training patches for the learned nucleus detector: small synthetic fields with exact
instance labels, randomised far more widely than the synthetic slide.

The synthetic slide (:mod:`napari_gbm.synthetic.generator`) is drawn to test the pipeline:
clean glass, one look per region. A detector trained on it alone learns that look. These
patches keep its physics (Beer-Lambert mixing of stain concentrations, max-composited
nuclei with chromatin texture and a darker rim, sizes in µm) and widen every property the
annotated real sets showed to matter:

- background: fibrillary neuropil, collagen fibres, microcysts and tears, red cells, dust,
  a hematoxylin haze (strongly purple, colour-normalised tissue), camera fields (H-DAB);
- nuclei: sizes from lymphocytes to giant cells, elongated and irregular outlines, pale
  vesicular nuclei with a nucleolus, clumps and overlaps (the nucleus drawn last is on top);
- stains: jittered stain vectors, white point and colour cast; H-DAB with pale blue
  negatives and brown positives in any proportion;
- optics: defocus blur, vignetting, pixel noise, JPEG compression, pixel sizes 0.4-0.63
  µm/px around the detector's 0.5.

:func:`training_patch` draws one; everything follows from its ``numpy`` generator, so a
seed gives the same patch.
"""

from __future__ import annotations

import io
import math

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

__all__ = ["PATCH_STAINS", "training_patch"]

PATCH_STAINS = ("he", "hdab")

# Stain OD directions before jitter (QuPath / Ruifrok, as in napari_gbm.detect.stain).
_H = np.array([0.65, 0.70, 0.29])
_E = np.array([0.2159, 0.8012, 0.5581])
_D = np.array([0.27, 0.57, 0.78])


def _unit(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(v / np.linalg.norm(v))


def _jitter(v: npt.NDArray[np.float64], rng: np.random.Generator, sd: float) -> np.ndarray:
    return _unit(np.abs(v + rng.normal(0, sd, 3)))


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], sigma: float | tuple[float, float]
) -> npt.NDArray[np.float32]:
    """Gaussian-filtered white noise scaled to unit standard deviation."""
    n = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return np.asarray(n / (n.std() + 1e-6), np.float32)


def _fibres(rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
    """Oriented fibre texture (collagen, glial processes): anisotropic noise, rotated."""
    across = rng.uniform(0.5, 1.2)
    along = across * rng.uniform(3, 10)
    big = int(n * 1.5) + 2
    tex = _smooth_noise(rng, (big, big), (across, along))
    tex = ndi.rotate(tex, rng.uniform(0, 180), reshape=False, order=1, mode="wrap")
    o = (big - n) // 2
    return np.ascontiguousarray(tex[o : o + n, o : o + n])


def _holes(rng: np.random.Generator, n: int, px_um: float) -> npt.NDArray[np.float32]:
    """Where tissue is missing (0) or present (1): tears, lumina, microcysts, glass."""
    keep = np.ones((n, n), np.float32)
    kind = rng.random()
    if kind < 0.25:  # a large tear / lumen / glass edge
        field = _smooth_noise(rng, (n, n), n / rng.uniform(3, 8))
        keep[field > rng.uniform(0.6, 1.6)] = 0.0
    if kind > 0.5:  # microcysts of the neuropil (round vacuoles 2-10 µm)
        yy, xx = np.mgrid[0:n, 0:n]
        for _ in range(rng.poisson(rng.uniform(1, 12))):
            cx, cy = rng.uniform(0, n, 2)
            r = rng.uniform(1.0, 5.0) / px_um
            keep[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = 0.0
    if keep.min() < 1:
        keep = ndi.gaussian_filter(keep, 0.7)
    return keep


def _nucleus_mask(
    rng: np.random.Generator,
    n: int,
    cx: float,
    cy: float,
    a_px: float,
    b_px: float,
    theta: float,
    irregular: float,
) -> tuple[tuple[slice, slice], npt.NDArray[np.float32]]:
    """Relative radius (< 1 inside) of an irregular ellipse, on its bounding box."""
    rad = a_px * (1.0 + 3 * irregular) + 2
    y0, y1 = max(0, int(cy - rad)), min(n, int(cy + rad) + 1)
    x0, x1 = max(0, int(cx - rad)), min(n, int(cx + rad) + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
    c, s = math.cos(theta), math.sin(theta)
    u, v = dx * c + dy * s, -dx * s + dy * c
    rel = np.sqrt((u / a_px) ** 2 + (v / b_px) ** 2)
    ang = np.arctan2(v, u)
    wobble = np.ones_like(rel)
    for k in (2, 3, 4, 5):
        wobble += irregular * rng.normal(0, 1.0 / k) * np.cos(k * ang + rng.uniform(0, 6.3))
    return (slice(y0, y1), slice(x0, x1)), rel / np.maximum(wobble, 0.5)


def _place_centres(rng: np.random.Generator, n: int, count: int) -> npt.NDArray[np.float64]:
    """Nucleus centres: uniform, or clumped around a few foci (crowded tumour, infiltrates)."""
    if count == 0:
        return np.zeros((0, 2))
    if rng.random() < 0.4:
        foci = rng.uniform(0, n, (rng.integers(1, 4), 2))
        pick = foci[rng.integers(0, len(foci), count)]
        return np.asarray(np.clip(pick + rng.normal(0, n / 6, (count, 2)), -4, n + 4))
    return rng.uniform(-4, n + 4, (count, 2))


def _draw_nuclei(
    rng: np.random.Generator,
    n: int,
    px_um: float,
    hdab: bool,
    h_level: float,
    h_bg: float,
    planes: dict[str, npt.NDArray[np.float32]],
    labels: npt.NDArray[np.int32],
    keep: npt.NDArray[np.float32],
) -> None:
    """Paint the nuclei into the stain planes and the label image (last drawn on top);
    none is centred where tissue is missing (`keep` < 0.5)."""
    area_mm2 = (n * px_um / 1000.0) ** 2
    density = rng.choice(
        [rng.uniform(300, 2000), rng.uniform(2000, 6000), rng.uniform(6000, 11000)]
    )
    count = rng.poisson(density * area_mm2)
    centres = _place_centres(rng, n, count)
    median_area = rng.uniform(20, 70)  # µm²: lymphocytes to large tumour nuclei
    pos_fraction = rng.choice([0.0, rng.uniform(0, 0.3), rng.uniform(0.3, 0.9)]) if hdab else 0.0
    pale_fraction = rng.uniform(0, 0.6)
    for i, (cx, cy) in enumerate(centres, start=1):
        if keep[int(np.clip(cy, 0, n - 1)), int(np.clip(cx, 0, n - 1))] < 0.5:
            continue
        area = float(np.clip(median_area * math.exp(rng.normal(0, 0.45)), 9, 400))
        if rng.random() < 0.02:
            area = rng.uniform(150, 400)  # giant / multinucleated
        aspect = 1.0 + rng.exponential(0.45) if rng.random() < 0.85 else rng.uniform(2.5, 5)
        a_um = math.sqrt(area * aspect / math.pi)
        b_um = a_um / aspect
        box, rel = _nucleus_mask(
            rng,
            n,
            cx,
            cy,
            a_um / px_um,
            b_um / px_um,
            rng.uniform(0, math.pi),
            rng.uniform(0, 0.12),
        )
        inside = rel < 1.0
        if not inside.any():
            continue
        pale = rng.random() < pale_fraction
        grain = rng.uniform(0.6, 2.0) / px_um
        chrom = ndi.gaussian_filter(rng.random(rel.shape).astype(np.float32), grain / 3)
        chrom = (chrom - chrom.mean()) / (chrom.std() + 1e-6)
        rim = np.where(rel > rng.uniform(0.7, 0.9), rng.uniform(0.0, 0.35), 0.0)
        edge = np.clip((1.0 - rel) * max(b_um / px_um, 1.0) / 0.8 + 0.5, 0.0, 1.0)
        positive = rng.random() < pos_fraction
        h0 = h_level * (rng.uniform(0.25, 0.55) if pale else rng.uniform(0.6, 1.5))
        # visible over the haze (no ghosts); Ki-67 negatives can be very pale
        h0 = max(h0, h_bg + rng.uniform(0.1 if hdab else 0.15, 0.3))
        if positive:
            h0 *= rng.uniform(0.1, 0.6)
        contrast = rng.uniform(0.1, 0.35) * (1.8 if pale else 1.0)
        hval = h0 * (1.0 + contrast * chrom + rim)
        if pale and rng.random() < 0.7:  # nucleolus
            ny = cy + rng.normal(0, b_um / px_um / 4) - box[0].start
            nx = cx + rng.normal(0, b_um / px_um / 4) - box[1].start
            rr = rng.uniform(0.5, 1.0) / px_um
            yy, xx = np.mgrid[0 : rel.shape[0], 0 : rel.shape[1]]
            hval += np.where((yy - ny) ** 2 + (xx - nx) ** 2 < rr * rr, h_level * 0.8, 0.0)
        hval = np.maximum(hval, 0) * edge
        planes["h"][box] = np.maximum(planes["h"][box], hval.astype(np.float32))
        if positive:
            dval = rng.uniform(0.25, 1.3) * (1.0 + 0.25 * chrom) * edge
            planes["x"][box] = np.maximum(planes["x"][box], dval.astype(np.float32))
        elif not hdab:  # eosin inside nuclei is weak; the cytoplasm ring around is pinker
            ring = (rel >= 1.0) & (rel < rng.uniform(1.2, 1.8))
            planes["x"][box] = np.where(
                ring, planes["x"][box] * rng.uniform(1.0, 1.8), planes["x"][box]
            ).astype(np.float32)
        labels[box][inside] = i


def _distractors(
    rng: np.random.Generator, n: int, px_um: float, hdab: bool, planes: dict[str, np.ndarray]
) -> None:
    """Things that are not nuclei: red cells, dust and pigment, dark fibre fragments."""
    yy, xx = np.mgrid[0:n, 0:n]
    for _ in range(rng.poisson(rng.choice([0.0, 2.0, 15.0]))):  # red cells, 7-8 µm discs
        cx, cy = rng.uniform(0, n, 2)
        r = rng.uniform(3.0, 4.0) / px_um
        disc = np.clip((r - np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)) / 1.0, 0, 1)
        if hdab:
            planes["x"] += (0.06 * disc).astype(np.float32)
            planes["h"] += (0.03 * disc).astype(np.float32)
        else:
            planes["x"] = np.maximum(planes["x"], (rng.uniform(0.5, 1.1) * disc).astype(np.float32))
    for _ in range(rng.poisson(rng.uniform(0, 20))):  # dust, pigment, apoptotic bodies < 1.3 µm
        cx, cy = rng.uniform(0, n, 2)
        r = rng.uniform(0.4, 1.2) / px_um
        disc = np.clip((r - np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)) / 0.7, 0, 1)
        planes["h"] = np.maximum(planes["h"], (rng.uniform(0.3, 1.2) * disc).astype(np.float32))
    if rng.random() < 0.3:  # thin dark processes: long, 1 µm wide
        f = _fibres(rng, n)
        planes["h"] += (np.clip(f - 2.2, 0, None) * rng.uniform(0.05, 0.25)).astype(np.float32)


def _compose(
    rng: np.random.Generator,
    planes: dict[str, npt.NDArray[np.float32]],
    vectors: npt.NDArray[np.float64],
    n: int,
) -> npt.NDArray[np.uint8]:
    """Beer-Lambert mixing, optics and the camera: blur, white point, vignetting, noise."""
    conc = np.stack([planes["h"], planes["x"], planes["r"]]).reshape(3, -1)
    od = (vectors.T @ conc).T.reshape(n, n, 3).astype(np.float32)
    white = rng.uniform(215, 255) * np.clip(1 + rng.normal(0, 0.04, 3), 0.85, 1.0)
    rgb = white * np.power(10.0, -od)
    if rng.random() < 0.4:  # defocus
        rgb = ndi.gaussian_filter(rgb, (rng.uniform(0.4, 1.5),) * 2 + (0,))
    if rng.random() < 0.3:  # vignetting of a camera field
        yy, xx = np.mgrid[0:n, 0:n] / n - rng.uniform(-0.5, 1.5, (2, 1, 1))
        rgb = rgb * (1 - rng.uniform(0, 0.25) * np.clip(xx**2 + yy**2, 0, 1))[..., None]
    rgb = rgb + rng.normal(0, rng.uniform(0.5, 4), rgb.shape)
    out = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        out = _jpeg(out, int(rng.integers(45, 96)))
    return out


def _jpeg(rgb: npt.NDArray[np.uint8], quality: int) -> npt.NDArray[np.uint8]:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def training_patch(
    rng: np.random.Generator, stain: str = "he", size: int = 128, mpp: float = 0.5
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """One synthetic field and its nucleus instance labels.

    Parameters
    ----------
    rng : numpy.random.Generator
        The source of every random choice (a seed gives the same patch).
    stain : {"he", "hdab"}, default "he"
        H&E, or hematoxylin and DAB (Ki-67-like: brown positives, blue negatives).
    size : int, default 128
        Side of the patch, pixels (>= 16).
    mpp : float, default 0.5
        Nominal pixel size, µm/px; each patch is drawn at a pixel size 0.8-1.25 times it.

    Returns
    -------
    rgb : ndarray of uint8, shape (size, size, 3)
    labels : ndarray of int32, shape (size, size)
        0 background, one id per visible nucleus (ids need not be consecutive).

    Raises
    ------
    ValueError
        For an unknown stain, a size under 16 or a pixel size that is not positive.
    """
    if stain not in PATCH_STAINS:
        raise ValueError(f"stain must be one of {PATCH_STAINS}, got {stain!r}")
    if size < 16:
        raise ValueError(f"size must be >= 16 px, got {size}")
    if not (math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"mpp must be a finite number > 0, got {mpp!r}")
    n = int(size)
    px_um = mpp * rng.uniform(0.8, 1.25)
    hdab = stain == "hdab"
    purple = (not hdab) and rng.random() < 0.35
    keep = _holes(rng, n, px_um)
    if hdab:
        h_bg = rng.uniform(0.0, 0.08)
        x_bg = rng.uniform(0.0, 0.04)  # unspecific DAB
        vectors = np.stack([_jitter(_H, rng, 0.06), _jitter(_D, rng, 0.08)])
        h_level = rng.uniform(0.2, 0.9)
    else:
        h_bg = rng.uniform(0.02, 0.12) * (2.5 if purple else 1.0)
        x_bg = rng.uniform(0.08, 0.5)
        e = _E + (rng.uniform(0.2, 0.6) * _H if purple else 0.0)
        vectors = np.stack([_jitter(_H, rng, 0.06), _jitter(e, rng, 0.06)])
        h_level = rng.uniform(0.5, 1.2)
    vectors = np.concatenate([vectors, _unit(np.cross(vectors[0], vectors[1]))[None]])
    texture = rng.uniform(0.1, 0.4)
    fine = _smooth_noise(rng, (n, n), rng.uniform(0.5, 1.5))
    fib = _fibres(rng, n) if rng.random() < 0.6 else fine
    tex = np.clip(1 + texture * (0.5 * fine + 0.5 * fib), 0.1, None)
    planes = {
        "h": (h_bg * keep * np.clip(1 + 0.5 * texture * fine, 0.2, None)).astype(np.float32),
        "x": (x_bg * keep * tex).astype(np.float32),
        "r": np.zeros((n, n), np.float32),
    }
    labels = np.zeros((n, n), np.int32)
    _draw_nuclei(rng, n, px_um, hdab, h_level, h_bg, planes, labels, keep)
    _distractors(rng, n, px_um, hdab, planes)
    planes["r"] += (0.02 * rng.standard_normal((n, n))).astype(np.float32)
    return _compose(rng, planes, vectors, n), labels
