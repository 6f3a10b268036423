"""Cells as SpatialData (``.zarr``) for napari-spatialdata and the scverse tools.

One SpatialData store per slide, every element in one coordinate system, ``"global"``, in µm
(origin at the slide's top-left corner, x to the right, y down):

- ``slide``: the slide as a multiscale RGB image, its finest level about
  :data:`IMAGE_UM_PER_PX` µm per pixel (never level 0 of a whole slide), each coarser level
  half the last down to :data:`MIN_LEVEL_PX` pixels; read lazily, chunk by chunk, through
  :meth:`napari_gbm.wsi.slide.Slide.read_downsampled`, so memory stays bounded;
- ``nuclei``: one polygon per cell. The analysis folder keeps no outlines, so each nucleus is
  its moment ellipse (24 vertices, area pi/4 major minor), as in the QuPath GeoJSON export
  (:mod:`._geometry`); indexed by ``cell_id``;
- ``cells``: each cell as a circle of its equivalent diameter (a point and a ``radius``);
- ``table``: the cells as AnnData, made by :func:`napari_gbm.export.anndata.cells_to_anndata`
  (the ``.h5ad`` export's ``X``, ``var``, ``obs``, ``obsm``), annotating ``nuclei``: the
  column ``element`` names the shapes element and ``cell_id`` the shape (spatialdata's
  ``region_key`` and ``instance_key``).

spatialdata needs anndata, which on Python 3.11 needs pandas < 3, so it is the optional
extra ``napari-gbm[spatialdata]`` (docs/NOTES.md) and is imported only here, when called.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_gbm.export._geometry import (
    _centroids,
    _ellipse_rings,
    _semi_axis_px,
    plan_geometry,
)
from napari_gbm.export.anndata import cells_to_anndata
from napari_gbm.wsi.slide import Slide

__all__ = [
    "COORDINATE_SYSTEM",
    "IMAGE_UM_PER_PX",
    "MIN_LEVEL_PX",
    "MISSING_EXTRA",
    "require_spatialdata",
    "write_cells_spatialdata",
]

#: the coordinate system of every element, in µm
COORDINATE_SYSTEM = "global"
#: pixel size of the image's finest level, µm (coarser when the slide itself is coarser)
IMAGE_UM_PER_PX = 2.0
#: the pyramid stops when a level's shorter side would fall under this many pixels
MIN_LEVEL_PX = 256
#: chunk side of the image, pixels
CHUNK_PX = 1024
#: the one-line error without the optional extra
MISSING_EXTRA = (
    "--to spatialdata needs the optional extra: pip install 'napari-gbm[spatialdata]' "
    "(it pins pandas < 3)"
)
#: names of the elements
IMAGE, NUCLEI, CELLS, TABLE = "slide", "nuclei", "cells", "table"
REGION_KEY = "element"
INSTANCE_KEY = "cell_id"


def require_spatialdata() -> Any:
    """The spatialdata package, or a ValueError saying how to install it.

    Returns
    -------
    module
        ``spatialdata``.

    Raises
    ------
    ValueError
        :data:`MISSING_EXTRA`, when spatialdata (or anndata) cannot be imported.
    """
    try:
        with warnings.catch_warnings():
            # xarray-schema's import of pkg_resources warns; not the user's business
            warnings.simplefilter("ignore")
            import spatialdata  # lazy: optional extra
    except ImportError:
        raise ValueError(MISSING_EXTRA) from None
    return spatialdata


def write_cells_spatialdata(
    cells: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    slide: str | os.PathLike[str] | None = None,
    mpp: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    image_um_per_px: float = IMAGE_UM_PER_PX,
) -> Path:
    """Write one slide's cells, their shapes and the slide image as a SpatialData store.

    The store is written beside `path` under a hidden name and renamed into place: an
    interrupted export leaves no half-written store at `path` (an existing store there is
    replaced).

    Parameters
    ----------
    cells : pandas.DataFrame
        One slide's cell table (``cells.parquet``, perhaps with ``region_class`` from
        :func:`napari_gbm.export.anndata.read_analysis_for_anndata`); it needs the
        centroids, ``cell_id`` and the nucleus axes (:data:`._geometry.NUCLEUS_AXES`).
    path : str or os.PathLike
        Destination, a ``.zarr`` folder.
    slide : str or os.PathLike, optional
        The whole-slide image the cells come from; without it the store has no image.
    mpp : float, optional
        µm per level-0 pixel (default: the slide's, else from the centroid columns).
    metadata : mapping, optional
        JSON-able (the slide's ``summary.json``); stored in the table's ``uns``.
    image_um_per_px : float, default :data:`IMAGE_UM_PER_PX`
        Pixel size of the image's finest level, µm.

    Returns
    -------
    pathlib.Path
        `path`.

    Raises
    ------
    ValueError
        Without the optional extra (:data:`MISSING_EXTRA`); for a table the shapes or the
        AnnData cannot be made from (missing columns, named); if the pixel size is unknown;
        or if `path` is a folder that is not a zarr store.
    """
    sd = require_spatialdata()
    from spatialdata.transformations import Identity  # lazy: optional extra

    path = Path(path)
    _check_target(path)
    opened = None
    if slide is not None:
        opened = Slide(slide, mpp=mpp)
        mpp = mpp if mpp is not None else opened.mpp
    geo = plan_geometry(cells, None, None, "cell", mpp)
    mpp = geo.mpp if geo.mpp is not None else mpp
    if mpp is None:
        raise ValueError("the SpatialData export needs the pixel size: pass mpp= (µm per px)")
    identity = {COORDINATE_SYSTEM: Identity()}
    images = {} if opened is None else {IMAGE: _image(opened, mpp, image_um_per_px)}
    shapes = {
        NUCLEI: _nuclei(cells, geo.mpp or mpp, identity),
        CELLS: _cell_circles(cells, mpp, identity),
    }
    table = _table(cells, metadata, mpp, image_um_per_px if opened is not None else None)
    sdata = sd.SpatialData(images=images, shapes=shapes, tables={TABLE: table})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        import dask  # a Slide is read from one thread at a time

        with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # spatialdata's and zarr's own deprecations
            sdata.write(tmp / "store.zarr")
        _replace_dir(tmp / "store.zarr", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if opened is not None:
            opened.close()
    return path


# ------------------------------------------------------------------------------ elements


def _image(slide: Any, mpp: float, um_per_px: float) -> Any:
    """The slide as a lazy multiscale image (c, y, x), scaled to µm."""
    import dask.array as da  # lazy: optional extra
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Scale

    width, height = slide.dimensions
    ds = max(1.0, um_per_px / mpp)  # level-0 px per image px
    ow, oh = max(1, math.ceil(width / ds)), max(1, math.ceil(height / ds))

    def read(block_info: Any = None) -> np.ndarray:
        _, (y0, y1), (x0, x1) = block_info[None]["array-location"]
        box = (x0 * ds, y0 * ds, (x1 - x0) * ds, (y1 - y0) * ds)
        rgb = slide.read_downsampled(box, (x1 - x0, y1 - y0))
        return np.ascontiguousarray(rgb.transpose(2, 0, 1))

    chunks = ((3,), _split(oh, CHUNK_PX), _split(ow, CHUNK_PX))
    data = da.map_blocks(read, chunks=chunks, dtype=np.uint8, meta=np.empty((0, 0, 0), np.uint8))
    levels = 0
    while min(ow, oh) // 2 ** (levels + 1) >= MIN_LEVEL_PX:
        levels += 1
    step = ds * mpp  # µm per image px
    return Image2DModel.parse(
        data,
        dims=("c", "y", "x"),
        c_coords=["r", "g", "b"],
        scale_factors=[2] * levels or None,
        transformations={COORDINATE_SYSTEM: Scale([step, step], axes=("y", "x"))},
        chunks=(3, CHUNK_PX, CHUNK_PX),
    )


def _split(n: int, size: int) -> tuple[int, ...]:
    return tuple(min(size, n - i) for i in range(0, n, size))


def _nuclei(cells: pd.DataFrame, mpp: float, transformations: dict[str, Any]) -> Any:
    """Each nucleus as its moment ellipse (:mod:`._geometry`), in µm, by cell id."""
    import geopandas as gpd  # lazy: optional extra
    import shapely
    from spatialdata.models import ShapesModel

    a = _semi_axis_px(cells["nucleus_major_axis_um"].to_numpy(np.float64), mpp)
    b = _semi_axis_px(cells["nucleus_minor_axis_um"].to_numpy(np.float64), mpp)
    theta = np.nan_to_num(cells["nucleus_orientation_rad"].to_numpy(dtype=np.float64))
    x, y = _ellipse_rings(*_centroids(cells), a, b, theta)  # level-0 px, corner origin
    polygons = shapely.polygons(np.stack([x, y], axis=-1) * mpp)
    gdf = gpd.GeoDataFrame(geometry=polygons, index=_index(cells))
    return ShapesModel.parse(gdf, transformations=transformations)


def _cell_circles(cells: pd.DataFrame, mpp: float, transformations: dict[str, Any]) -> Any:
    """Each cell as a circle of its equivalent diameter, in µm, by cell id."""
    import geopandas as gpd  # lazy: optional extra
    import shapely
    from spatialdata.models import ShapesModel

    if "cell_equivalent_diameter_um" in cells:
        d = cells["cell_equivalent_diameter_um"].to_numpy(np.float64)
    else:
        d = np.sqrt(4 * cells["cell_area_um2"].to_numpy(np.float64) / np.pi)
    radius = _semi_axis_px(d, mpp) * mpp
    cx, cy = _centroids(cells)
    gdf = gpd.GeoDataFrame(
        {"radius": radius}, geometry=shapely.points(cx * mpp, cy * mpp), index=_index(cells)
    )
    return ShapesModel.parse(gdf, transformations=transformations)


def _index(cells: pd.DataFrame) -> pd.Index:
    return pd.Index(cells[INSTANCE_KEY].to_numpy(dtype=np.int64), name=INSTANCE_KEY)


def _table(
    cells: pd.DataFrame, metadata: Mapping[str, Any] | None, mpp: float, um_per_px: float | None
) -> Any:
    """The cells as AnnData (the ``.h5ad`` export's fields), annotating the nuclei."""
    import anndata as ad  # lazy: optional extra
    from spatialdata.models import TableModel

    fields = cells_to_anndata(cells, metadata=metadata)
    obs = fields["obs"].copy()
    obs[REGION_KEY] = pd.Categorical([NUCLEI] * len(obs))
    uns = dict(fields["uns"])
    uns["export"] = {
        **uns.get("export", {}),
        "format": "spatialdata",
        "coordinate_system": f"{COORDINATE_SYSTEM}, µm, origin at the slide's top-left corner",
        "mpp": mpp,
        "image_um_per_px": um_per_px,
        "nucleus_geometry": "ellipse of the moment axes, area pi/4 major minor",
        "cell_geometry": "circle of the equivalent diameter",
    }
    var = fields["var"].copy()
    var.index = pd.Index([str(v) for v in fields["var_names"]])
    adata = ad.AnnData(X=fields["X"], obs=obs, var=var, obsm=dict(fields["obsm"]), uns=_uns(uns))
    return TableModel.parse(adata, region=NUCLEI, region_key=REGION_KEY, instance_key=INSTANCE_KEY)


def _uns(value: Any) -> Any:
    """JSON metadata as anndata stores it: None left out, lists of numbers or text as
    arrays, other lists (of dicts, mixed) as their JSON text."""
    if isinstance(value, Mapping):
        return {str(k): _uns(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        if all(isinstance(v, bool | int | float) for v in value):
            return np.asarray(value, dtype=np.float64)
        if all(isinstance(v, str) for v in value):
            return np.asarray(value, dtype=object)
        return json.dumps(value)
    return value


# ------------------------------------------------------------------------------ writing


def _is_store(path: Path) -> bool:
    return (path / "zarr.json").is_file() or (path / ".zgroup").is_file()


def _check_target(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file: a SpatialData store is a folder (.zarr)")
    if path.is_dir() and any(path.iterdir()) and not _is_store(path):
        raise ValueError(
            f"{path} is a folder that is not a zarr store: choose a new name ending in .zarr"
        )


def _replace_dir(new: Path, path: Path) -> None:
    """Move the store `new` to `path`, replacing an existing store there."""
    if not path.exists():
        os.replace(new, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    try:
        os.replace(path, old / "store")
        os.replace(new, path)
    finally:
        shutil.rmtree(old, ignore_errors=True)
