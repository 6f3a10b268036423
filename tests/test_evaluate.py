"""napari-gbm evaluate: matching, metrics, the scikit-image baseline, input handling, and
the command line on every annotated set in ../shared/data/annotated (read there, never
copied into the repository)."""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from napari_gbm.cli import main
from napari_gbm.detect.stain import HDAB, HE, deconvolve, rgb_from_optical_density
from napari_gbm.evaluation import (
    DETECTORS,
    Detections,
    evaluate_dataset,
    load_dataset,
    match_points,
    register_detector,
)
from napari_gbm.evaluation.baseline import SKIMAGE_OD_FACTOR, segment_baseline
from napari_gbm.evaluation.detectors import to_image_grid
from napari_gbm.evaluation.geojson import read_qupath_geojson
from napari_gbm.evaluation.metrics import (
    aji,
    cohen_kappa,
    detection_scores,
    ki67_index,
    label_centroids,
    mean_matched_iou,
    panoptic_quality,
    posneg_confusion,
)

ANNOTATED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "annotated"


# --- matching ----------------------------------------------------------------------------


def _pairs(m: Any) -> set[tuple[int, int]]:
    return set(zip(m.pred_index.tolist(), m.true_index.tolist(), strict=True))


def test_point_equidistant_to_two_truths_matches_one() -> None:
    m = match_points([[0.0, 0.0]], [[-1.0, 0.0], [1.0, 0.0]], 2.0)
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)
    assert m.distance.tolist() == [1.0]


def _greedy(pred: np.ndarray, true: np.ndarray, r: float) -> int:
    d = np.hypot(*(pred[:, None, :] - true[None, :, :]).transpose(2, 0, 1))
    used_p: set[int] = set()
    used_t: set[int] = set()
    for k in np.argsort(d, axis=None):
        i, j = np.unravel_index(k, d.shape)
        if d[i, j] <= r and i not in used_p and j not in used_t:
            used_p.add(int(i))
            used_t.add(int(j))
    return len(used_p)


def test_chain_where_greedy_is_wrong_and_hungarian_right() -> None:
    # T1 --1.5-- P1 --1.0-- T2 --1.9-- P2: nearest-first pairs P1-T2 and strands both ends
    true = np.array([[0.0, 0.0], [2.5, 0.0]])
    pred = np.array([[1.5, 0.0], [4.4, 0.0]])
    assert _greedy(pred, true, 2.0) == 1
    m = match_points(pred, true, 2.0)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    assert _pairs(m) == {(0, 0), (1, 1)}
    assert m.distance.sum() == pytest.approx(3.4)


def test_same_count_prefers_smaller_total_distance() -> None:
    # two truths, two predictions, both pairings allowed: the crossed one is longer
    true = np.array([[0.0, 0.0], [0.0, 3.0]])
    pred = np.array([[0.5, 0.2], [0.5, 2.8]])
    m = match_points(pred, true, 5.0)
    assert _pairs(m) == {(0, 0), (1, 1)}


def test_radius_is_inclusive_and_converted_from_um() -> None:
    assert match_points([[0, 0]], [[3, 4]], 5.0).tp == 1
    assert match_points([[0, 0]], [[3, 4]], 4.999).tp == 0
    # 0.6 µm at 0.2 µm/px is 2.9999999999999996 px in floating point; 3 px apart matches
    assert 0.6 / 0.2 < 3
    assert match_points([[0, 0]], [[3, 0]], 0.6 / 0.2).tp == 1
    assert match_points([[0, 0]], [[3.001, 0]], 0.6 / 0.2).tp == 0


def test_empty_sets() -> None:
    m = match_points(np.empty((0, 2)), [[1, 1], [5, 5]], 3.0)
    assert (m.tp, m.fp, m.fn) == (0, 0, 2)
    m = match_points([[1, 1]], np.empty((0, 2)), 3.0)
    assert (m.tp, m.fp, m.fn) == (0, 1, 0)
    m = match_points([], [], 3.0)
    assert (m.tp, m.fp, m.fn) == (0, 0, 0)
    assert m.pred_partner().size == 0 and m.true_partner().size == 0
    far = match_points([[0, 0]], [[10, 0]], 3.0)
    assert (far.tp, far.fp, far.fn) == (0, 1, 1)


def _brute_force(pred: np.ndarray, true: np.ndarray, r: float) -> tuple[int, float]:
    """Most pairs, then least total distance, over every one-to-one assignment."""
    d = np.hypot(*(pred[:, None, :] - true[None, :, :]).transpose(2, 0, 1)) if len(pred) else None
    best = (0, 0.0)
    n, m = len(pred), len(true)
    for k in range(1, min(n, m) + 1):
        for ps in itertools.combinations(range(n), k):
            for ts in itertools.permutations(range(m), k):
                dist = [d[i, j] for i, j in zip(ps, ts, strict=True)]  # type: ignore[index]
                if max(dist) <= r:
                    cand = (k, float(sum(dist)))
                    if cand[0] > best[0] or (cand[0] == best[0] and cand[1] < best[1]):
                        best = cand
    return best


def test_matching_equals_brute_force_on_random_tiny_sets() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        pred = rng.uniform(0, 8, (rng.integers(0, 6), 2))
        true = rng.uniform(0, 8, (rng.integers(0, 6), 2))
        m = match_points(pred, true, 2.5)
        k, total = _brute_force(pred, true, 2.5)
        assert m.tp == k
        assert m.distance.sum() == pytest.approx(total, abs=1e-9)
        # one-to-one and within the radius
        assert len(set(m.pred_index.tolist())) == m.tp == len(set(m.true_index.tolist()))
        assert np.all(m.distance <= 2.5)


def test_matching_5000_points_is_fast() -> None:
    rng = np.random.default_rng(1)
    true = rng.uniform(0, 2000, (5000, 2))
    pred = true + rng.normal(0, 3, true.shape)
    t0 = time.perf_counter()
    m = match_points(pred, true, 12.0)
    assert time.perf_counter() - t0 < 5.0
    assert m.tp > 4900


# --- metrics -------------------------------------------------------------------------------


def test_detection_scores_conventions() -> None:
    s = detection_scores(8, 2, 8)
    assert s["precision"] == 0.8 and s["recall"] == 0.5
    assert s["f1"] == pytest.approx(2 * 0.8 * 0.5 / 1.3)
    none_pred = detection_scores(0, 0, 5)
    assert math.isnan(none_pred["precision"]) and none_pred["recall"] == 0 and none_pred["f1"] == 0
    none_true = detection_scores(0, 4, 0)
    assert none_true["precision"] == 0 and math.isnan(none_true["recall"])
    assert none_true["f1"] == 0
    assert all(math.isnan(v) for v in detection_scores(0, 0, 0).values())


def test_ki67_index_and_kappa_by_hand() -> None:
    assert ki67_index(np.array([1, 0, 0, 1, -1], np.int8)) == 50.0
    assert math.isnan(ki67_index(np.array([-1, -1], np.int8)))
    assert ki67_index(np.array([True, False, False, False])) == 25.0
    c = posneg_confusion(np.array([1, 1, 0, 0, -1], np.int8), np.array([1, 0, 0, 1, 1], bool))
    assert c.tolist() == [[1, 1], [1, 1]]
    # po = 0.7, pe = (30*25 + 20*25) / 50² = 0.5, kappa = 0.4
    assert cohen_kappa([[20, 5], [10, 15]]) == pytest.approx(0.4)
    assert cohen_kappa([[3, 0], [0, 4]]) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa([[5, 0], [0, 0]]))


def _squares(shape: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    lab = np.zeros(shape, np.int32)
    for k, (r0, c0, h, w) in enumerate(boxes, start=1):
        lab[r0 : r0 + h, c0 : c0 + w] = k
    return lab


def test_aji_pq_iou_by_hand() -> None:
    # truth A (4x4), B (4x4); prediction A shifted 2 columns (IoU 8/24), B exact, C extra
    true = _squares((20, 30), [(0, 0, 4, 4), (10, 0, 4, 4)])
    pred = _squares((20, 30), [(0, 2, 4, 4), (10, 0, 4, 4), (0, 20, 2, 2)])
    # C = 8 + 16; U = 24 + 16 + |C| (4, used by no truth)
    assert aji(true, pred) == pytest.approx(24 / 44)
    pq = panoptic_quality(true, pred)
    # only B-B has IoU > 0.5: TP 1, FP 2, FN 1; SQ 1, DQ 1 / 2.5
    assert (pq["pq_tp"], pq["pq_fp"], pq["pq_fn"]) == (1, 2, 1)
    assert pq["sq"] == 1.0 and pq["dq"] == pytest.approx(0.4) and pq["pq"] == pytest.approx(0.4)
    # centroids: A-A' 2 px apart, B-B' 0, C far: pairs at IoU 1/3 and 1
    iou = mean_matched_iou(true, pred, radius_px=6.0)
    assert iou["iou_pairs"] == 2 and iou["mean_iou"] == pytest.approx((1 / 3 + 1) / 2)


def test_aji_prediction_covering_two_truths_and_pq_strict_threshold() -> None:
    true = _squares((10, 10), [(0, 0, 4, 4), (0, 4, 4, 4)])
    pred = _squares((10, 10), [(0, 0, 4, 8)])
    # both truths pick the one prediction (IoU 0.5 each): C = 32, U = 32 + 32
    assert aji(true, pred) == pytest.approx(0.5)
    # IoU exactly 0.5 is not a PQ match (IoU > 0.5)
    pq = panoptic_quality(true, pred)
    assert (pq["pq_tp"], pq["pq_fp"], pq["pq_fn"]) == (0, 1, 2) and pq["pq"] == 0
    assert math.isnan(pq["sq"])
    empty = np.zeros((5, 5), np.int32)
    assert math.isnan(aji(empty, empty)) and math.isnan(panoptic_quality(empty, empty)["pq"])
    assert aji(true, np.zeros_like(true)) == 0.0


def _random_labels(rng: np.random.Generator, n: int, shape: tuple[int, int]) -> np.ndarray:
    lab = np.zeros(shape, np.int32)
    for k in range(1, n + 1):
        r0, c0 = rng.integers(0, shape[0] - 3), rng.integers(0, shape[1] - 3)
        h, w = rng.integers(2, 9, 2)
        lab[r0 : r0 + h, c0 : c0 + w] = k  # later ones overwrite earlier ones
    return lab


def _brute_pq_aji(true: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    t_ids = [i for i in np.unique(true) if i]
    p_ids = [j for j in np.unique(pred) if j]

    def iou(i: int, j: int) -> tuple[float, int, int]:
        a, b = true == i, pred == j
        inter, union = int((a & b).sum()), int((a | b).sum())
        return inter / union, inter, union

    matches = [iou(i, j)[0] for i in t_ids for j in p_ids if iou(i, j)[0] > 0.5]
    tp = len(matches)
    den = tp + 0.5 * (len(p_ids) - tp) + 0.5 * (len(t_ids) - tp)
    pq = sum(matches) / den if den else math.nan
    c = u = 0
    used = set()
    for i in t_ids:
        best = max(((iou(i, j), j) for j in p_ids), key=lambda t: t[0][0], default=None)
        if best is None or best[0][0] == 0:
            u += int((true == i).sum())
            continue
        (_, inter, union), j = best
        c, u = c + inter, u + union
        used.add(j)
    u += sum(int((pred == j).sum()) for j in p_ids if j not in used)
    return pq, (c / u if u else math.nan)


def test_pq_and_aji_equal_brute_force_on_random_label_images() -> None:
    rng = np.random.default_rng(3)
    for _ in range(40):
        true = _random_labels(rng, int(rng.integers(0, 7)), (24, 24))
        pred = _random_labels(rng, int(rng.integers(0, 7)), (24, 24))
        pq, a = _brute_pq_aji(true, pred)
        got_pq = panoptic_quality(true, pred)["pq"]
        got_aji = aji(true, pred)
        assert (math.isnan(pq) and math.isnan(got_pq)) or got_pq == pytest.approx(pq)
        assert (math.isnan(a) and math.isnan(got_aji)) or got_aji == pytest.approx(a)


def test_label_centroids_and_resampling_to_the_image_grid() -> None:
    lab = np.array([[1, 2], [0, 3]], np.int32)
    up = to_image_grid(lab, (0.0, 0.0), 2.0, (4, 4))
    assert up.tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 3, 3], [0, 0, 3, 3]]
    ids, xy = label_centroids(up)
    assert ids.tolist() == [1, 2, 3]
    assert xy.tolist() == [[0.5, 0.5], [2.5, 0.5], [2.5, 2.5]]
    # a non-integer downsample (0.3 µm/px analysed at 0.5) keeps the full image size
    assert to_image_grid(np.ones((384, 384), np.int32), (0.0, 0.0), 640 / 384, (640, 640)).all()


# --- the scikit-image baseline -------------------------------------------------------------

MPP = 0.5
H_RGB = rgb_from_optical_density(HE.matrix[0] * 0.8)
DAB_RGB = rgb_from_optical_density(HDAB.matrix[1] * 0.6)


def _disc_image(
    seed: int, n_side: int = 7, radius_px: float = 7.0, colours: list[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """White image with dark discs on a jittered grid; returns (rgb, centres (x, y))."""
    from skimage.draw import disk

    rng = np.random.default_rng(seed)
    size = 50 * n_side + 20
    rgb = np.full((size, size, 3), 255, np.uint8)
    centres = []
    for k, (i, j) in enumerate(itertools.product(range(n_side), range(n_side))):
        cx, cy = 35 + 50 * i + rng.integers(-5, 6), 35 + 50 * j + rng.integers(-5, 6)
        rr, cc = disk((cy, cx), radius_px, shape=rgb.shape[:2])
        rgb[rr, cc] = H_RGB if colours is None else colours[k % len(colours)]
        centres.append((float(cx), float(cy)))
    return rgb, np.array(centres)


def test_skimage_od_factor_matches_our_deconvolution() -> None:
    from skimage.color import rgb2hed

    px = DAB_RGB[None, None]
    ours = float(deconvolve(px, HDAB)["dab"][0, 0])
    assert SKIMAGE_OD_FACTOR * rgb2hed(px)[0, 0, 2] == pytest.approx(ours, rel=0.01)


def test_baseline_finds_every_disc_of_a_synthetic_image() -> None:
    rgb, centres = _disc_image(seed=0)
    labels, positive = segment_baseline(rgb, MPP, "he")
    assert positive is None
    _, xy = label_centroids(labels)
    m = match_points(xy, centres, 4.0 / MPP)
    assert (m.tp, m.fp, m.fn) == (len(centres), 0, 0)
    assert m.distance.max() < 0.5  # px
    area = np.bincount(labels.ravel())[1:]
    assert np.allclose(area, np.pi * 7.0**2, rtol=0.2)


def test_baseline_grades_dab_discs_positive() -> None:
    rgb, centres = _disc_image(seed=1, colours=[DAB_RGB, H_RGB])
    labels, positive = segment_baseline(rgb, MPP, "hdab")
    _, xy = label_centroids(labels)
    m = match_points(xy, centres, 4.0 / MPP)
    assert m.tp == len(centres) == len(xy)
    is_dab = (np.arange(len(centres)) % 2) == 0
    assert positive is not None
    assert np.array_equal(positive[m.pred_index], is_dab[m.true_index])


# --- inputs: a synthetic set, GeoJSON, bad input ----------------------------------------------


def _write_set(
    root: Path,
    rgb: np.ndarray,
    centres: np.ndarray,
    *,
    name: str = "img",
    positive: np.ndarray | None = None,
    manifest: str | None = "image,mpp,stain\nimg,0.5,he\n",
) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "points").mkdir()
    Image.fromarray(rgb).save(root / "images" / f"{name}.png")
    pts = pd.DataFrame({"x": centres[:, 0], "y": centres[:, 1]})
    if positive is not None:
        pts["positive"] = positive.astype(int)
    pts.to_csv(root / "points" / f"{name}_points.csv", index=False)
    if manifest is not None:
        (root / "manifest.csv").write_text(manifest)
    return root


def _circle_feature(cx: float, cy: float, r: float, cls: str | None) -> dict[str, Any]:
    t = np.linspace(0, 2 * np.pi, 33)
    # QuPath's continuous coordinates: the centre of pixel (cx, cy) is at (cx + .5, cy + .5)
    ring = np.column_stack([cx + 0.5 + r * np.cos(t), cy + 0.5 + r * np.sin(t)]).tolist()
    props: dict[str, Any] = {"objectType": "detection"}
    if cls is not None:
        props["classification"] = {"name": cls, "color": [255, 0, 0]}
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": props}  # fmt: skip


def test_read_qupath_geojson(tmp_path: Path) -> None:
    square = [[[10, 10], [14, 10], [14, 14], [10, 14], [10, 10]]]  # pixels 10..13
    holed = [
        [[30, 30], [40, 30], [40, 40], [30, 40], [30, 30]],
        [[33, 33], [37, 33], [37, 37], [33, 37], [33, 33]],
    ]
    cell = [[[0, 60], [20, 60], [20, 80], [0, 80], [0, 60]]]
    nucleus = [[[4, 64], [8, 64], [8, 68], [4, 68], [4, 64]]]

    def feat(kind: str, coords: Any, cls: str | None = None, **extra: Any) -> dict[str, Any]:
        props = {} if cls is None else {"classification": {"name": cls}}
        geom = {"type": kind, "coordinates": coords}
        return {"type": "Feature", "geometry": geom, "properties": props, **extra}

    feats = [
        feat("Polygon", square, "Positive"),
        feat("Polygon", holed, "Tumor: Negative"),
        feat("MultiPoint", [[50.5, 5.5], [60.5, 5.5]], "2+"),
        feat("Point", [5.5, 50.5]),
        feat("LineString", [[0, 0], [9, 9]], "Positive"),
        feat("Polygon", cell, "1+", nucleusGeometry={"type": "Polygon", "coordinates": nucleus}),
    ]
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    g = read_qupath_geojson(path, (90, 70))
    assert g.x.tolist() == [11.5, 34.5, 50.0, 60.0, 5.0, 5.5]
    assert g.y.tolist() == [11.5, 34.5, 5.0, 5.0, 50.0, 65.5]
    assert g.positive is not None and g.positive.tolist() == [1, 0, 1, 1, -1, 1]
    assert g.labels is not None
    assert np.bincount(g.labels.ravel()).tolist()[1:] == [16, 100 - 16, 16]
    assert (g.labels[10:14, 10:14] == 1).all() and g.labels[35, 35] == 0
    assert (g.labels[64:68, 4:8] == 3).all()  # the nucleus, not the cell
    # a bare list of features is accepted too
    path.write_text(json.dumps(feats[:1]))
    assert read_qupath_geojson(path, (90, 70)).x.tolist() == [11.5]


def test_evaluate_from_geojson_without_manifest(tmp_path: Path) -> None:
    rgb, centres = _disc_image(seed=2, n_side=4)
    root = tmp_path / "qupath"
    (root / "images").mkdir(parents=True)
    Image.fromarray(rgb).save(root / "images" / "slide1.png")
    classes = ["Positive", "Negative"]
    feats = [_circle_feature(x, y, 7.0, classes[k % 2]) for k, (x, y) in enumerate(centres)]
    (root / "images" / "slide1.geojson").write_text(json.dumps({"type": "FeatureCollection",
                                                               "features": feats}))  # fmt: skip
    out = tmp_path / "out"
    code = main(["evaluate", str(root), "--out", str(out), "--mpp", "0.5", "--detector",
                 "skimage", "--baseline", "none"])  # fmt: skip
    assert code == 0
    res = json.loads((out / "evaluation.json").read_text())
    im = res["images"][0]
    assert im["annotation"] == "geojson" and im["n_true"] == len(centres)
    assert res["baseline"] is None and im["baseline"] is None
    assert res["aggregate"]["f1@4"] == 1.0
    assert res["aggregate"]["pq"] > 0.8 and res["aggregate"]["aji"] > 0.8
    assert res["aggregate"]["mean_iou"] > 0.8
    assert res["aggregate"]["li_true_mean"] == 50.0
    assert "no manifest" in res["notes"][0]


def test_ki67_scores_on_a_synthetic_hdab_set(tmp_path: Path) -> None:
    rgb, centres = _disc_image(seed=4, n_side=4, colours=[DAB_RGB, H_RGB, H_RGB])
    positive = (np.arange(len(centres)) % 3) == 0
    root = _write_set(tmp_path / "ki67", rgb, centres, positive=positive,
                      manifest="image,mpp,stain\nimg,0.5,hdab\n")  # fmt: skip
    res = evaluate_dataset(root, tmp_path / "out", detector="skimage", baseline=None)
    agg = res["aggregate"]
    assert agg["f1@6"] == 1.0 and agg["li_mae"] == 0.0 and agg["li_mae_all"] == 0.0
    assert agg["posneg_accuracy"] == 1.0 and agg["kappa"] == 1.0
    assert res["images"][0]["li_true"] == pytest.approx(100 * positive.mean())
    # no label image in the truth: segmentation scores do not apply
    assert agg["aji"] is None and agg["pq"] is None and agg["label_images"] == 0
    table = pd.read_csv(tmp_path / "out" / "images" / "img.csv")
    assert list(table.columns) == [
        "x", "y", "source", "matched", "distance_um", "matched_4um", "true_positive",
        "pred_positive",
    ]  # fmt: skip
    assert len(table) == len(centres) and table["matched"].all()
    assert (table["true_positive"].astype(bool) == table["pred_positive"].astype(bool)).all()
    overlay = np.asarray(Image.open(tmp_path / "out" / "overlays" / "img.png"))
    assert overlay.shape == rgb.shape
    assert (overlay == (0, 220, 0)).all(axis=-1).any()  # matched predictions in green


def test_split_and_images_select_in_manifest_order() -> None:
    crc = ANNOTATED / "crchisto_2016"
    _require(crc)
    manifest = pd.read_csv(crc / "manifest.csv")
    ds = load_dataset(crc, split="test", images=3)
    expected = manifest.loc[manifest["split_sfcn_opi"] == "test", "image"].head(3).tolist()
    assert [im.name for im in ds.images] == expected
    assert ds.split_column == "split_sfcn_opi"
    assert {im.mpp for im in ds.images} == {0.5} and {im.stain for im in ds.images} == {"he"}
    ds = load_dataset(crc, images=2, mpp=0.4, stain="hdab")
    assert [im.name for im in ds.images] == manifest["image"].head(2).tolist()
    assert {im.mpp for im in ds.images} == {0.4} and {im.stain for im in ds.images} == {"hdab"}


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    rgb, centres = _disc_image(seed=5, n_side=2)
    cases: dict[str, tuple[list[str], str]] = {}
    cases["missing folder"] = ([str(tmp / "nope")], "no such folder")
    (tmp / "noimages").mkdir(parents=True)
    cases["no images/"] = ([str(tmp / "noimages")], "no images/ folder")
    root = _write_set(tmp / "unannotated", rgb, centres)
    (root / "points" / "img_points.csv").unlink()
    cases["image without annotation"] = ([str(root)], "has no annotation")
    root = _write_set(tmp / "nompp", rgb, centres, manifest="image,stain\nimg,he\n")
    cases["manifest without mpp"] = ([str(root)], "no column 'mpp'")
    root = _write_set(tmp / "noimagecol", rgb, centres, manifest="file,mpp,stain\nimg,0.5,he\n")
    cases["manifest without image"] = ([str(root)], "no column 'image'")
    root = _write_set(tmp / "nomanifest", rgb, centres, manifest=None)
    cases["no manifest, no --mpp"] = ([str(root)], "pass --mpp")
    root = _write_set(tmp / "badstain", rgb, centres, manifest="image,mpp,stain\nimg,0.5,ihc\n")
    cases["bad stain"] = ([str(root)], "'he' or 'hdab'")
    root = _write_set(tmp / "unreadable", rgb, centres)
    (root / "images" / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 100)
    cases["unreadable image"] = ([str(root)], "cannot read")
    root = _write_set(tmp / "listed", rgb, centres, manifest="image,mpp,stain\nother,0.5,he\n")
    cases["manifest names a missing image"] = ([str(root)], "no image 'other'")
    root = _write_set(tmp / "badpoints", rgb, centres)
    (root / "points" / "img_points.csv").write_text("col,row\n1,2\n")
    cases["points without x,y"] = ([str(root)], "no column x or y")
    root = _write_set(tmp / "split", rgb, centres)
    cases["--split without split column"] = ([str(root), "--split", "test"], "no split column")
    cases["unknown detector"] = ([str(root), "--detector", "cellpose"], "unknown detector")
    return cases


def test_bad_input_exits_2_with_a_one_line_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for what, (args, phrase) in _bad_inputs(tmp_path / "in").items():
        out = tmp_path / "out" / what.replace(" ", "_").replace("/", "")
        code = main(["evaluate", *args, "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2, what
        assert err.startswith("napari-gbm evaluate: error:"), (what, err)
        assert phrase in err, (what, err)
        assert len(err.splitlines()) == 1, (what, err)
        assert not (out / "evaluation.json").exists(), what


def test_interrupted_run_leaves_no_evaluation_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rgb, centres = _disc_image(seed=6, n_side=2)
    root = _write_set(tmp_path / "set", rgb, centres,
                      manifest="image,mpp,stain\nimg,0.5,he\nimg2,0.5,he\n")  # fmt: skip
    Image.fromarray(rgb).save(root / "images" / "img2.png")
    (root / "points" / "img_points.csv").rename(root / "points" / "img2_points.csv")
    pd.DataFrame({"x": centres[:, 0], "y": centres[:, 1]}).to_csv(
        root / "points" / "img_points.csv", index=False
    )
    calls = []

    def flaky(path: Path, mpp: float, stain: str) -> Detections:
        calls.append(path.name)
        if len(calls) == 2:
            raise RuntimeError("detector crashed")
        return Detections(centres[:, 0], centres[:, 1])

    monkeypatch.setitem(DETECTORS, "flaky", flaky)
    out = tmp_path / "out"
    out.mkdir()
    (out / "evaluation.json").write_text('{"stale": true}')  # from an earlier run
    with pytest.raises(RuntimeError, match="detector crashed"):
        evaluate_dataset(root, out, detector="flaky", baseline=None)
    assert calls == ["img.png", "img2.png"]
    assert not (out / "evaluation.json").exists()
    assert not list(out.rglob("*.tmp"))
    # the same run with a working detector completes
    register_detector("flaky", lambda p, m, s: Detections(centres[:, 0], centres[:, 1]))
    res = evaluate_dataset(root, out, detector="flaky", baseline=None)
    assert res["aggregate"]["f1@6"] == 1.0 and (out / "evaluation.json").exists()


# --- the real annotated sets (../shared/data/annotated) -------------------------------------

#: F1 @ 6 µm on the first 2 images of each set, ours (two states of the detection work in
#: progress) / baseline, and the floors asserted: regression guards well below what was
#: measured (ours will change with detection work; tighten later). The baseline's Otsu
#: threshold on Ki-67 images separates dark-brown nuclei from everything else and misses
#: most pale negative nuclei: its F1 there is below 0.3, so its floors are too.
REAL_SETS: dict[str, dict[str, Any]] = {
    # measured on the first 2 images at the defaults (2026-12-06): F1@6 (ours, baseline),
    # and for Ki-67 sets our recall@6 and li_mae; floors and ceilings sit below / above
    # them (regression guards, not copies). crchisto's first two images are fat with few
    # nuclei, where our detector fires on membranes (see BENCHMARKS.md); the full set is
    # 0.742 vs the baseline's 0.706.
    "monuseg": {"measured": (0.865, 0.788), "floor": (0.78, 0.68), "labels": True},
    "crchisto_2016": {"measured": (0.370, 0.670), "floor": (0.28, 0.57), "labels": False},
    "cryonuseg_draft2019_PARTIAL": {
        "measured": (0.594, 0.462),
        "floor": (0.5, 0.36),
        "labels": True,
    },
    "bcdata_ki67_sample": {
        "measured": (0.646, 0.279),
        "floor": (0.55, 0.18),
        "labels": False,
        "ki67": {"recall": (0.927, 0.85), "li_mae": (7.6, 11.0)},
    },
    "shidc_b_ki67_sample": {
        "measured": (0.509, 0.509),
        "floor": (0.42, 0.41),
        "labels": False,
        "ki67": {"recall": (0.883, 0.8), "li_mae": (4.8, 8.0)},
    },
    "deepliif_ki67_seg_sample": {
        "measured": (0.785, 0.182),
        "floor": (0.68, 0.08),
        "labels": True,
        "ki67": {"recall": (0.823, 0.75), "li_mae": (3.3, 7.0)},
    },
}
N_REAL_IMAGES = 2
AGG_KEYS = (
    "n_images", "n_true", "n_pred", "tp@6", "fp@6", "fn@6", "precision@6", "recall@6", "f1@6",
    "tp@4", "fp@4", "fn@4", "precision@4", "recall@4", "f1@4", "li_mae", "li_mae_all",
    "posneg_accuracy", "kappa", "mean_iou", "aji", "pq", "mp_per_s",
)  # fmt: skip
IMAGE_KEYS = (
    "name", "mpp", "stain", "n_true", "n_pred", "precision@4", "recall@4", "f1@4",
    "precision@6", "recall@6", "f1@6", "li_true", "li_pred_matched", "li_pred_all", "mean_iou",
    "aji", "pq", "seconds", "baseline",
)  # fmt: skip


def _require(path: Path) -> None:
    if not path.is_dir():
        pytest.fail(
            f"annotated data not found at {path}: these tests read "
            "../shared/data/annotated beside the repository (see its README.md)"
        )


@pytest.fixture(scope="session")
def real_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, Path]]:
    """Each real set evaluated once (first 2 images) through the command line."""
    _require(ANNOTATED)
    results = {}
    for name in REAL_SETS:
        _require(ANNOTATED / name)
        out = tmp_path_factory.mktemp(f"eval-{name}")
        code = main(["evaluate", str(ANNOTATED / name), "--out", str(out), "--images",
                     str(N_REAL_IMAGES)])  # fmt: skip
        assert code == 0, name
        results[name] = (json.loads((out / "evaluation.json").read_text()), out)
    return results


@pytest.mark.parametrize("name", list(REAL_SETS))
def test_real_set_evaluation_json(name: str, real_results: dict) -> None:
    res, out = real_results[name]
    assert res["dataset"] == name and res["detector"] == "classical"
    assert res["parameters"]["baseline"] == "skimage"
    for part in (res["aggregate"], res["baseline"]):
        assert set(AGG_KEYS) <= set(part), set(AGG_KEYS) - set(part)
        assert part["n_images"] == N_REAL_IMAGES
        assert part["tp@6"] == sum(
            (im if part is res["aggregate"] else im["baseline"])["tp@6"] for im in res["images"]
        )
        assert part["tp@4"] <= part["tp@6"]
        assert part["mp_per_s"] > 0
    assert len(res["images"]) == N_REAL_IMAGES
    for im in res["images"]:
        assert set(IMAGE_KEYS) <= set(im), set(IMAGE_KEYS) - set(im)
        assert set(IMAGE_KEYS) - {"name", "mpp", "stain", "baseline"} <= set(im["baseline"])
        for suffix, rec in (("", im), ("_baseline", im["baseline"])):
            table = pd.read_csv(out / "images" / f"{im['name']}{suffix}.csv")
            assert len(table) == rec["n_pred"] + rec["fn@6"]
            assert int(table["matched"].sum()) == rec["tp@6"]
            assert (out / "overlays" / f"{im['name']}{suffix}.png").is_file()


@pytest.mark.parametrize("name", list(REAL_SETS))
def test_real_set_truth_counts_match_the_manifest(name: str, real_results: dict) -> None:
    res, _ = real_results[name]
    manifest = pd.read_csv(ANNOTATED / name / "manifest.csv").head(N_REAL_IMAGES)
    for col in ("n_instances", "n_points"):
        if col in manifest:
            expected = manifest[col].tolist()
            break
    else:
        expected = (manifest["n_pos"] + manifest["n_neg"]).tolist()
    assert [im["n_true"] for im in res["images"]] == expected
    assert [im["mpp"] for im in res["images"]] == manifest["mpp"].tolist()
    if "ki67_index_pct" in manifest:
        li = [round(im["li_true"], 1) for im in res["images"]]
        assert li == pytest.approx(manifest["ki67_index_pct"].tolist(), abs=0.051)


@pytest.mark.parametrize("name", list(REAL_SETS))
def test_real_set_f1_floors(name: str, real_results: dict) -> None:
    res, _ = real_results[name]
    floor_ours, floor_base = REAL_SETS[name]["floor"]
    assert res["aggregate"]["f1@6"] >= floor_ours, res["aggregate"]["f1@6"]
    assert res["baseline"]["f1@6"] >= floor_base, res["baseline"]["f1@6"]


@pytest.mark.parametrize("name", [n for n, v in REAL_SETS.items() if "ki67" in v])
def test_real_ki67_sets_count_the_negatives(name: str, real_results: dict) -> None:
    """Pale counterstained negatives are found (recall) and the Ki-67 index over the
    annotated nuclei stays close (li_mae); both far better than the baseline's."""
    res, _ = real_results[name]
    spec = REAL_SETS[name]["ki67"]
    assert res["aggregate"]["recall@6"] >= spec["recall"][1], res["aggregate"]["recall@6"]
    assert res["aggregate"]["li_mae"] <= spec["li_mae"][1], res["aggregate"]["li_mae"]
    assert res["aggregate"]["li_mae"] < res["baseline"]["li_mae"]


@pytest.mark.parametrize("name", list(REAL_SETS))
def test_real_set_metrics_that_apply(name: str, real_results: dict) -> None:
    res, _ = real_results[name]
    ki67 = res["stain"] == "hdab"
    labels = REAL_SETS[name]["labels"]
    for agg in (res["aggregate"], res["baseline"]):
        assert (agg["li_mae"] is not None) == ki67
        assert (agg["posneg_accuracy"] is not None) == ki67
        # kappa is undefined (null) when chance agreement is 1, e.g. the baseline calls every
        # nucleus it finds positive and finds only truly positive ones (bcdata)
        assert agg["kappa"] is None or (ki67 and -1 <= agg["kappa"] <= 1)
        assert (agg["aji"] is not None) == labels and (agg["pq"] is not None) == labels
        assert (agg["mean_iou"] is not None) == labels
        if ki67:
            assert 0 <= agg["li_mae"] <= 100 and 0 <= agg["posneg_accuracy"] <= 1
        if labels:
            assert 0 < agg["aji"] < 1 and 0 < agg["pq"] < 1 and 0 < agg["mean_iou"] <= 1


#: The learned detector on the first image of each set (2026-12-06, shipped weights, from
#: benchmarks/bench_learned.py's full run): measured F1@6 and the floor below it (a regression
#: guard for the weights and their plumbing).
LEARNED_F1 = {
    "monuseg": (0.808, 0.72),
    "crchisto_2016": (0.716, 0.63),
    "cryonuseg_draft2019_PARTIAL": (0.303, 0.22),
    "bcdata_ki67_sample": (0.780, 0.70),
    "shidc_b_ki67_sample": (0.791, 0.71),
    "deepliif_ki67_seg_sample": (0.800, 0.72),
}


@pytest.mark.parametrize("name", list(REAL_SETS))
def test_evaluate_runs_the_learned_detector_on_every_real_set(name: str, tmp_path: Path) -> None:
    _require(ANNOTATED / name)
    code = main(["evaluate", str(ANNOTATED / name), "--out", str(tmp_path), "--images", "1",
                 "--detector", "learned", "--baseline", "none"])  # fmt: skip
    assert code == 0
    res = json.loads((tmp_path / "evaluation.json").read_text())
    assert res["detector"] == "learned" and res["aggregate"]["n_images"] == 1
    assert res["aggregate"]["f1@6"] >= LEARNED_F1[name][1], res["aggregate"]["f1@6"]
    assert (res["aggregate"]["li_mae"] is not None) == (res["stain"] == "hdab")
