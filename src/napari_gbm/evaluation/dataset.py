"""An annotated image set on disk: images, their annotations, pixel size and stain.

Layout (that of ``shared/data/annotated/<set>/``)::

    DIR/images/<name>.png|.jpg|.jpeg|.tif|.tiff    RGB image
    DIR/points/<name>_points.csv                   x,y[,positive]: x = column, y = row,
                                                   0-based pixels; positive 1 / 0
    DIR/labels/<name>_labels.png                   16-bit instance labels (0 = background)
    DIR/images/<name>.geojson                      QuPath GeoJSON (see .geojson)
    DIR/manifest.csv                               one row per image: image, mpp, stain,
                                                   optionally split (or split_*)

An image's truth is its points file and/or its labels; where there are labels but no
points, the centres are the label centroids. Only when it has neither is a GeoJSON
beside the image read. An image with none of the three is an error.

``--mpp`` / ``--stain`` override the manifest; without a manifest every image in
``images/`` is used (sorted by name), ``mpp`` must be given and the stain defaults to
``he`` (with a note). Every problem is a :class:`DatasetError` naming the file and what
to do, raised before anything is detected or written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from PIL import Image

from napari_gbm.evaluation.geojson import read_qupath_geojson
from napari_gbm.evaluation.metrics import label_centroids
from napari_gbm.wsi.slide import Slide, SlideError

__all__ = ["AnnotatedImage", "Dataset", "DatasetError", "Truth", "load_dataset"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
STAINS = ("he", "hdab")


class DatasetError(ValueError):
    """A problem with the input folder, reported in one line."""


@dataclass(frozen=True)
class Truth:
    """The annotation of one image.

    Attributes
    ----------
    x, y : ndarray of float64, shape (n,)
        Nucleus centres in pixels of the image (x = column, y = row, 0-based).
    positive : ndarray of int8, shape (n,), or None
        1 positive, 0 negative, -1 not graded; None when the annotation has no Ki-67 class.
    labels : numpy.ndarray or None
        Instance label image of the image's size (0 = background), or None.
    source : str
        What it was read from: ``points``, ``labels``, ``points+labels`` or ``geojson``.
    """

    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    positive: npt.NDArray[np.int8] | None
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return int(self.x.size)

    @property
    def xy(self) -> npt.NDArray[np.float64]:
        return np.column_stack([self.x, self.y])


@dataclass(frozen=True)
class AnnotatedImage:
    """One image of a set, with where its annotation is and how to read it.

    Attributes
    ----------
    name : str
        Image name without extension (the manifest's ``image``).
    path : pathlib.Path
        The image file.
    mpp : float
        Pixel size, µm/px.
    stain : str
        ``he`` or ``hdab``.
    width, height : int
        Image size, pixels.
    points_path, labels_path, geojson_path : pathlib.Path or None
        Annotation files found; the GeoJSON is set only when there are neither points nor
        labels.
    """

    name: str
    path: Path
    mpp: float
    stain: str
    width: int
    height: int
    points_path: Path | None = None
    labels_path: Path | None = None
    geojson_path: Path | None = None

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    def load_truth(self) -> Truth:
        """Read the annotation (:class:`DatasetError` if it is unusable)."""
        labels = (
            _read_labels(self.labels_path, (self.height, self.width)) if self.labels_path else None
        )
        if self.points_path is not None:
            x, y, positive = _read_points(self.points_path)
            source = "points+labels" if labels is not None else "points"
            return Truth(x, y, positive, labels, source)
        if labels is not None:
            _, xy = label_centroids(labels)
            return Truth(xy[:, 0].copy(), xy[:, 1].copy(), None, labels, "labels")
        if self.geojson_path is not None:
            try:
                g = read_qupath_geojson(self.geojson_path, (self.height, self.width))
            except ValueError as exc:
                raise DatasetError(str(exc)) from None
            return Truth(g.x, g.y, g.positive, g.labels, "geojson")
        raise DatasetError(f"image {self.name!r} has no annotation")  # pragma: no cover


@dataclass(frozen=True)
class Dataset:
    """The selected images of a set, in manifest order.

    Attributes
    ----------
    path : pathlib.Path
        The set's folder, as given.
    name : str
        The folder's name (resolved).
    images : list of AnnotatedImage
        Selected images (after ``split`` and ``images``).
    manifest : pathlib.Path or None
        ``manifest.csv``, or None without one.
    split_column : str or None
        The manifest's split column (``split`` or the first ``split_*``), if any.
    notes : list of str
        Remarks for the user (e.g. the stain taken as H&E for want of a manifest).
    """

    path: Path
    name: str
    images: list[AnnotatedImage]
    manifest: Path | None
    split_column: str | None
    notes: list[str] = field(default_factory=list)


def _read_points(path: Path) -> tuple[np.ndarray, np.ndarray, npt.NDArray[np.int8] | None]:
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: empty file; write a header line x,y[,positive]") from None
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read as CSV ({exc})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in ("x", "y") if c not in df.columns]
    if missing:
        raise DatasetError(
            f"{path}: no column {' or '.join(missing)} (found {', '.join(df.columns)}); "
            "a points file needs columns x (column), y (row), optionally positive (1/0)"
        )
    try:
        x = df["x"].to_numpy(np.float64)
        y = df["y"].to_numpy(np.float64)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: x and y must be numbers") from None
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise DatasetError(f"{path}: x and y must be numbers (found empty or NaN values)")
    positive = None
    if "positive" in df.columns:
        p = pd.to_numeric(df["positive"], errors="coerce").to_numpy(np.float64)
        bad = ~np.isnan(p) & ~np.isin(p, (0.0, 1.0))
        if bad.any():
            raise DatasetError(
                f"{path}: positive must be 1, 0 or empty (row {np.flatnonzero(bad)[0] + 2})"
            )
        positive = np.where(np.isnan(p), -1, p).astype(np.int8)
    return x, y, positive


def _read_labels(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as img:
            arr = np.asarray(img)
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read the label image ({exc})") from None
    if arr.ndim != 2:
        raise DatasetError(
            f"{path}: a label image must have one channel (16-bit instance ids), got shape "
            f"{arr.shape}"
        )
    if arr.shape != shape:
        raise DatasetError(
            f"{path}: label image is {arr.shape[1]} x {arr.shape[0]} px but its image is "
            f"{shape[1]} x {shape[0]} px"
        )
    return arr.astype(np.int32)


def _find_image(folder: Path, name: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        for cand in (folder / f"{name}{suffix}", folder / f"{name}{suffix.upper()}"):
            if cand.is_file():
                return cand
    return None


def _split_column(columns: list[str]) -> str | None:
    if "split" in columns:
        return "split"
    return next((c for c in columns if c.startswith("split")), None)


def _number(value: object) -> float | None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _read_manifest(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read the manifest ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if "image" not in df.columns:
        raise DatasetError(
            f"{path}: no column 'image' (found {', '.join(df.columns) or 'none'}); the "
            "manifest needs one row per image with its name without extension in 'image'"
        )
    df["image"] = df["image"].str.strip()
    dup = df["image"][df["image"].duplicated()]
    if len(dup):
        raise DatasetError(f"{path}: image {dup.iloc[0]!r} is listed more than once")
    return df


def load_dataset(
    path: str | Path,
    *,
    stain: str | None = None,
    mpp: float | None = None,
    images: int | None = None,
    split: str | None = None,
) -> Dataset:
    """Find and check an annotated set (see the module docstring for the layout).

    Parameters
    ----------
    path : str or pathlib.Path
        Folder holding ``images/`` and the annotations.
    stain : {"he", "hdab"}, optional
        Overrides the manifest's ``stain``. Without a manifest, None takes every image as
        H&E (with a note).
    mpp : float, optional
        Pixel size, µm/px; overrides the manifest's ``mpp``. Required without a manifest.
    images : int, optional
        Keep only the first `images` images (manifest order, after `split`); None keeps all.
    split : str, optional
        Keep only the manifest rows whose split column equals this; None keeps all.

    Returns
    -------
    Dataset
        The selected images, each opened once and its annotation read (and checked).

    Raises
    ------
    DatasetError
        Naming the file and the problem; every selected image and annotation is checked
        (opened) here.
    """
    root = Path(path)
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; give the folder holding images/ and points/")
    img_dir = root / "images"
    if not img_dir.is_dir():
        raise DatasetError(
            f"{root}: no images/ folder; an annotated set holds images/<name>.png and "
            "points/<name>_points.csv and/or labels/<name>_labels.png"
        )
    if stain is not None and stain not in STAINS:
        raise DatasetError(f"stain must be 'he' or 'hdab', got {stain!r}")
    if mpp is not None and not (mpp > 0 and math.isfinite(mpp)):
        raise DatasetError(f"mpp must be a positive number of µm per pixel, got {mpp!r}")
    if images is not None and images < 1:
        raise DatasetError(f"--images must be at least 1, got {images}")
    notes: list[str] = []

    manifest = root / "manifest.csv"
    split_col = None
    rows: list[tuple[str, float, str]] = []
    if manifest.is_file():
        df = _read_manifest(manifest)
        split_col = _split_column(list(df.columns))
        if split is not None:
            if split_col is None:
                raise DatasetError(
                    f"{manifest}: no split column ('split' or 'split_*') to select "
                    f"--split {split!r} from; leave out --split"
                )
            values = sorted(set(df[split_col]))
            df = df[df[split_col] == split]
            if df.empty:
                raise DatasetError(
                    f"{manifest}: no row has {split_col} = {split!r}; values are "
                    f"{', '.join(map(repr, values))}"
                )
        for col, given, flag, what in (
            ("mpp", mpp, "--mpp", "µm/px"),
            ("stain", stain, "--stain", "he or hdab"),
        ):
            if given is None and col not in df.columns:
                raise DatasetError(
                    f"{manifest}: no column '{col}' ({what} of each image); add it or pass "
                    f"{flag} for all images"
                )
        for _, row in df.iterrows():
            row_mpp = mpp if mpp is not None else _number(row["mpp"])
            if row_mpp is None or row_mpp <= 0:
                raise DatasetError(
                    f"{manifest}: image {row['image']!r} has no valid mpp ({row['mpp']!r}); "
                    "fill it in (µm/px) or pass --mpp"
                )
            row_stain = stain if stain is not None else str(row["stain"]).strip().lower()
            if row_stain not in STAINS:
                raise DatasetError(
                    f"{manifest}: image {row['image']!r} has stain {row['stain']!r}; use "
                    "'he' or 'hdab', or pass --stain"
                )
            rows.append((str(row["image"]), float(row_mpp), row_stain))
    else:
        if split is not None:
            raise DatasetError(f"{root}: --split needs a manifest.csv with a split column")
        if mpp is None:
            raise DatasetError(
                f"{root}: no manifest.csv, so the pixel size is unknown: pass --mpp (µm/px, "
                "e.g. 0.25 for a 40x scan, 0.5 for 20x), or add manifest.csv with columns "
                "image, mpp, stain"
            )
        stems: dict[str, Path] = {}
        for p in sorted(img_dir.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                if p.stem in stems:
                    raise DatasetError(f"{img_dir}: two images named {p.stem!r}; keep one")
                stems[p.stem] = p
        if stain is None:
            notes.append("no manifest and no --stain: every image taken as H&E (he)")
        rows = [(name, mpp, stain or "he") for name in stems]
    if not rows:
        raise DatasetError(f"{img_dir}: no images (.png, .jpg, .tif) to evaluate")
    if images is not None:
        rows = rows[:images]

    items = []
    for name, row_mpp, row_stain in rows:
        image = _find_image(img_dir, name)
        if image is None:
            raise DatasetError(
                f"{img_dir}: no image {name!r} (.png, .jpg, .jpeg, .tif) although the "
                "manifest lists it"
            )
        points = root / "points" / f"{name}_points.csv"
        labels = root / "labels" / f"{name}_labels.png"
        geojson = image.with_suffix(".geojson")
        has = [p.is_file() for p in (points, labels, geojson)]
        if not any(has):
            raise DatasetError(
                f"image {name!r} has no annotation: expected {points.relative_to(root)}, "
                f"{labels.relative_to(root)} or {geojson.relative_to(root)}"
            )
        try:
            with Slide(image, mpp=row_mpp) as slide:
                width, height = slide.dimensions
        except SlideError as exc:
            raise DatasetError(str(exc)) from None
        item = AnnotatedImage(
            name=name,
            path=image,
            mpp=row_mpp,
            stain=row_stain,
            width=int(width),
            height=int(height),
            points_path=points if has[0] else None,
            labels_path=labels if has[1] else None,
            geojson_path=geojson if not (has[0] or has[1]) else None,
        )
        item.load_truth()  # check it now, before any detection or output
        items.append(item)
    return Dataset(
        root, root.resolve().name, items, manifest if manifest.is_file() else None, split_col, notes
    )
