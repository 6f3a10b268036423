"""Train the learned nucleus detector from nothing, with a fixed seed.

    .venv/bin/python scripts/train_detector.py --out src/napari_gbm/detect/weights

Training data, all of it redistributable (docs/MODEL_CARD.md has the provenance):

- synthetic patches with exact instance labels
  (:func:`napari_gbm.synthetic.patches.training_patch`),
  H&E and H-DAB, drawn from ``--seed``;
- self-training on real public images: the classical detector's *confident* nuclei on
  CMU-1 (CC0), a TCGA open-access slide, HistomicsTK's Easy1 tile and histolab's TCGA tiles
  (Apache-2.0), and scikit-image's IHC image. Pixels the teacher is unsure of carry no
  loss: its doubtful objects, a ring round every object, and stained pixels it left out.

The annotated sets in shared/data/annotated/ are never read here (their licences forbid
training shipped weights on them); ``napari-gbm evaluate`` scores the result on them.

Writes ``nucleus_net.pt`` (a dict of float32 tensors, loadable with ``weights_only=True``)
and ``nucleus_net.json`` (its SHA-256, the training settings, data, time and losses).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage as ndi
from skimage.measure import regionprops

from napari_gbm.detect.nucleus_net import MODEL_MPP, NucleusNet, encode_rgb, instance_targets
from napari_gbm.detect.stain import HDAB, HE
from napari_gbm.synthetic.patches import training_patch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Source:
    """A real public image for self-training."""

    name: str
    path: str  # relative to shared/data, or "skimage:immunohistochemistry"
    mpp: float
    stain: str
    licence: str


SOURCES = (
    Source("CMU-1 small region", "slides/cmu-1-small-region.svs", 0.499, "he", "CC0 1.0"),
    Source(
        "TCGA-CR-7395 (reduced)",
        "slides/tcga-cr-7395-01a-01-ts1.svs",
        0.5,
        "he",
        "TCGA open access",
    ),
    Source("HistomicsTK Easy1", "histomicstk_easy1/Easy1.png", 0.25, "he", "Apache-2.0"),
    Source(
        "histolab high", "histolab_tiles/high-nuclei-score-level0.png", 0.25, "he", "Apache-2.0"
    ),
    Source(
        "histolab medium", "histolab_tiles/medium-nuclei-score-level0.png", 0.25, "he", "Apache-2.0"
    ),
    Source(
        "scikit-image IHC", "skimage:immunohistochemistry", 0.5, "hdab", "scikit-image data, BSD-3"
    ),
)


def _load_rgb(src: Source) -> np.ndarray:
    if src.path.startswith("skimage:"):
        import skimage.data

        return np.asarray(skimage.data.immunohistochemistry())
    from napari_gbm.wsi.slide import Slide

    with Slide(SHARED / src.path, mpp=src.mpp) as slide:
        w, h = slide.dimensions
        return np.asarray(slide.read_region((0, 0), 0, (w, h)))[..., :3]


def teacher_targets(src: Source) -> dict[str, np.ndarray]:
    """The classical detector's confident nuclei on one image, at MODEL_MPP.

    Returns rgb, foreground, distance and weight (0 where the teacher is unsure).
    """
    from napari_gbm.detect.segment import deconvolve_tile
    from napari_gbm.evaluation.detectors import detect_napari_gbm

    rgb = _load_rgb(src)
    if src.path.startswith("skimage:"):  # the detector reads files: a private temporary one
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "ihc.png"
            Image.fromarray(rgb).save(path)
            det = detect_napari_gbm(path, src.mpp, src.stain)
    else:
        det = detect_napari_gbm(SHARED / src.path, src.mpp, src.stain)
    labels = det.labels if det.labels is not None else np.zeros(rgb.shape[:2], np.int32)
    f = src.mpp / MODEL_MPP
    if abs(f - 1) > 0.05:  # to the model's pixel size
        size = (round(rgb.shape[1] * f), round(rgb.shape[0] * f))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))
        labels = np.asarray(
            Image.fromarray(labels.astype(np.int32)).resize(size, Image.Resampling.NEAREST)
        )
    stains = HE if src.stain == "he" else HDAB
    conc = deconvolve_tile(np.ascontiguousarray(rgb), stains)
    nuclear = conc[0] + (np.maximum(conc[1], 0) if src.stain == "hdab" else 0)
    nuclear = ndi.gaussian_filter(nuclear, 1.0 / MODEL_MPP)
    bad = np.zeros(int(labels.max()) + 1, bool)
    inside_means = []
    for r in regionprops(labels, intensity_image=nuclear):
        area = r.area * MODEL_MPP**2
        if 15 <= area <= 250 and r.solidity >= 0.85:
            inside_means.append(r.intensity_mean)
        else:
            bad[r.label] = True
    doubtful = bad[labels]
    keep = labels.copy()
    keep[doubtful] = 0
    fg, dist = instance_targets(keep, MODEL_MPP)
    weight = seam_weight(keep)
    weight[ndi.binary_dilation(doubtful, iterations=3)] = 0
    ring = ndi.binary_dilation(keep > 0, iterations=1) & ~ndi.binary_erosion(keep > 0)
    weight[ring & (keep == 0)] = 0.0
    if inside_means:  # stained pixels the teacher left out may be nuclei it missed
        level = 0.6 * float(np.percentile(inside_means, 25))
        weight[(labels == 0) & (nuclear > level)] = 0.0
    return {"rgb": rgb, "fg": fg, "dist": dist, "weight": weight}


#: Extra loss weight on the pixels where two nuclei meet (and the gap between them), so
#: the distance map learns the valley that splits touching nuclei (cf. Ronneberger et al.
#: 2015's border weights).
SEAM_GAIN = 4.0


def seam_weight(labels: np.ndarray) -> np.ndarray:
    """1 everywhere, 1 + SEAM_GAIN on pixels next to another nucleus than their own."""
    lab = np.asarray(labels, np.int32)
    big = np.iinfo(np.int32).max
    mx = ndi.maximum_filter(lab, 3)
    mn = ndi.minimum_filter(np.where(lab > 0, lab, big), 3)
    seam = (lab > 0) & ((mx != lab) | ((mn != lab) & (mn != big)))
    seam |= (lab == 0) & (mx > 0) & (mn != big) & (mx != mn)
    return (1.0 + SEAM_GAIN * seam).astype(np.float32)


def synthetic_pool(rng: np.random.Generator, n: int, size: int) -> dict[str, np.ndarray]:
    """n synthetic patches (60 % H&E, 40 % H-DAB) with targets."""
    x = np.empty((n, 3, size, size), np.float32)
    y = np.empty((n, 2, size, size), np.float32)
    w = np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        rgb, lab = training_patch(rng, "he" if rng.random() < 0.6 else "hdab", size, MODEL_MPP)
        x[i] = encode_rgb(rgb)
        y[i] = np.stack(instance_targets(lab, MODEL_MPP))
        w[i, 0] = seam_weight(lab)
    return {"x": x, "y": y, "w": w}


def _augment(x: np.ndarray, rng: np.random.Generator, stain_jitter: bool) -> np.ndarray:
    if stain_jitter:  # stain strength and white point, in OD per channel
        x = x * rng.uniform(0.8, 1.2, (3, 1, 1)) + rng.uniform(-0.04, 0.04, (3, 1, 1))
        x = np.clip(x, 0, None)
    return x.astype(np.float32)


def _geometry(arrs: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    k = int(rng.integers(0, 4))
    flip = rng.random() < 0.5
    out = []
    for a in arrs:
        a = np.rot90(a, k, axes=(-2, -1))
        out.append(np.ascontiguousarray(a[..., ::-1] if flip else a))
    return out


def real_crop(img: dict[str, np.ndarray], rng: np.random.Generator, size: int) -> tuple:
    h, w = img["fg"].shape
    for _ in range(8):  # mostly tissue: glass teaches little
        y0 = int(rng.integers(0, h - size + 1))
        x0 = int(rng.integers(0, w - size + 1))
        sl = (slice(y0, y0 + size), slice(x0, x0 + size))
        if (img["rgb"][sl].min(axis=2) < 200).mean() > 0.5:
            break
    x = encode_rgb(img["rgb"][sl])
    y = np.stack([img["fg"][sl], img["dist"][sl]])
    wgt = img["weight"][sl][None]
    x, y, wgt = _geometry([x, y, wgt], rng)
    return _augment(x, rng, True), y, wgt


def loss_fn(out: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted BCE on the nucleus logit + weighted squared error of the distance."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        out[:, :1], y[:, :1], reduction="none"
    )
    mse = (torch.sigmoid(out[:, 1:]) - y[:, 1:]) ** 2
    denom = w.sum().clamp_min(1.0)
    return ((bce + 5.0 * mse) * w).sum() / denom


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=ROOT / "src/napari_gbm/detect/weights")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--synthetic", type=int, default=4000, help="synthetic patches in the pool")
    ap.add_argument("--real-fraction", type=float, default=0.4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--no-real", action="store_true", help="synthetic patches only")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    pool = synthetic_pool(rng, args.synthetic, args.size)
    t_syn = time.perf_counter() - t0
    print(f"synthetic pool: {args.synthetic} patches in {t_syn:.0f} s", flush=True)
    real = []
    sources = [] if args.no_real else list(SOURCES)
    for src in sources:
        t = time.perf_counter()
        img = teacher_targets(src)
        real.append(img)
        conf = float((img["weight"] > 0).mean())
        print(
            f"teacher: {src.name}: {img['fg'].shape}, nucleus px {img['fg'].mean():.3f}, "
            f"weighted px {conf:.2f} ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
    sizes = np.array([img["fg"].size for img in real], float)
    p_img = sizes / sizes.sum() if real else None

    net = NucleusNet()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1
    )
    n_real = round(args.batch * args.real_fraction) if real else 0
    history = []
    t_train = time.perf_counter()
    net.train()
    for step in range(1, args.steps + 1):
        idx = rng.integers(0, len(pool["x"]), args.batch - n_real)
        xs, ys, ws = [], [], []
        for i in idx:
            x, y, w = _geometry([pool["x"][i], pool["y"][i], pool["w"][i]], rng)
            xs.append(x)
            ys.append(y)
            ws.append(w)
        for _ in range(n_real):
            img = real[int(rng.choice(len(real), p=p_img))]
            x, y, w = real_crop(img, rng, args.size)
            xs.append(x)
            ys.append(y)
            ws.append(w)
        xb = torch.from_numpy(np.stack(xs))
        yb = torch.from_numpy(np.stack(ys))
        wb = torch.from_numpy(np.stack(ws))
        loss = loss_fn(net(xb), yb, wb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(loss.item())
        if step % 50 == 0 or step == 1:
            el = time.perf_counter() - t_train
            print(
                f"step {step}/{args.steps} loss {np.mean(history[-50:]):.4f} "
                f"({el:.0f} s, {step * args.batch / el:.1f} patches/s)",
                flush=True,
            )
    train_s = time.perf_counter() - t_train

    net.eval()
    state = {
        k: v.detach().to(torch.float32).clone()
        for k, v in net.state_dict().items()
        if v.dtype.is_floating_point
    }
    state.update(
        {k: v.clone() for k, v in net.state_dict().items() if not v.dtype.is_floating_point}
    )
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / "nucleus_net.pt"
    tmp = weights.with_suffix(".pt.part")
    torch.save(state, tmp)
    tmp.replace(weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    card = {
        "file": weights.name,
        "sha256": digest,
        "bytes": weights.stat().st_size,
        "architecture": {
            "name": "NucleusNet",
            "channels": list(net.channels),
            "parameters": int(sum(p.numel() for p in net.parameters())),
        },
        "model_mpp": MODEL_MPP,
        "seed": args.seed,
        "steps": args.steps,
        "batch": args.batch,
        "patch_px": args.size,
        "learning_rate": args.lr,
        "synthetic_patches": args.synthetic,
        "seam_gain": SEAM_GAIN,
        "real_fraction": args.real_fraction if real else 0.0,
        "self_training_sources": [
            {"name": s.name, "path": s.path, "mpp": s.mpp, "stain": s.stain, "licence": s.licence}
            for s in sources
        ],
        "annotated_sets_used": False,
        "loss_first_50": float(np.mean(history[:50])),
        "loss_last_200": float(np.mean(history[-200:])),
        "synthetic_pool_s": round(t_syn, 1),
        "train_s": round(train_s, 1),
        "threads": args.threads,
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads",
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    (args.out / "nucleus_net.json").write_text(json.dumps(card, indent=2) + "\n")
    print(
        f"wrote {weights} ({card['bytes'] / 1e6:.1f} MB, sha256 {digest[:12]}), "
        f"training {train_s / 60:.1f} min",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
