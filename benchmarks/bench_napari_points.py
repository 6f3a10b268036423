"""How long whole-slide cell layers take in napari: adding a Points layer of N cells with
their table, and recolouring it (a new positivity threshold), at 10^5 and 10^6 cells.

    xvfb-run -a -s "-screen 0 1600x1100x24" .venv/bin/python benchmarks/bench_napari_points.py

napari-gbm's way (cells_points_layer: RGBA colours computed in NumPy, key columns as
features above 200k cells) against the plain napari way in the same run (add_points with
the whole table as features and ``face_color="positive_class"``, napari's colour cycle;
recolour = set the feature and call ``refresh_colors``). Wall times, viewer shown, the
canvas drawn once after each step (processEvents) so the GPU upload is included.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd


def _table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    side = 50_000.0 * np.sqrt(n / 1e6)
    df = pd.DataFrame(
        {
            "cell_id": np.arange(1, n + 1),
            "tile_id": rng.integers(0, 2000, n),
            "centroid_x_px": rng.uniform(0, side / 0.5, n),
            "centroid_y_px": rng.uniform(0, side / 0.5, n),
        }
    )
    df["centroid_x_um"] = df["centroid_x_px"] * 0.5
    df["centroid_y_um"] = df["centroid_y_px"] * 0.5
    for i in range(100):  # the width of a real cell table
        df[f"m{i}"] = rng.random(n).astype(np.float32)
    df["nucleus_dab_od_mean"] = rng.gamma(2, 0.12, n).astype(np.float32)
    df["nucleus_area_um2"] = rng.gamma(6, 9, n).astype(np.float32)
    df["positive_class"] = np.searchsorted([0.2, 0.4, 0.6], df["nucleus_dab_od_mean"]).astype(
        np.int8
    )
    return df


def _draw() -> None:
    from qtpy.QtWidgets import QApplication

    for _ in range(3):
        QApplication.processEvents()


def main() -> None:
    import napari

    from napari_gbm._napari._layers import cells_points_layer
    from napari_gbm.biomarkers import positive_class

    sizes = [int(float(a)) for a in sys.argv[1:]] or [100_000, 1_000_000]
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    _draw()
    warm = _table(1000)  # first-layer costs (shaders, imports) out of the timings
    wdata, wkw, _ = cells_points_layer(warm, 0.5)
    viewer.layers.remove(viewer.add_points(wdata, **wkw))
    _draw()
    print("| cells | step | napari-gbm (s) | plain napari (s) | ratio |")
    print("|---|---|---|---|---|")
    for n in sizes:
        df = _table(n)
        # napari-gbm
        t = time.perf_counter()
        data, kw, _ = cells_points_layer(df, 0.5, name="gbm")
        ours = viewer.add_points(data, **kw)
        viewer.reset_view()
        _draw()
        add_ours = time.perf_counter() - t
        t = time.perf_counter()
        cls = positive_class(df["nucleus_dab_od_mean"].to_numpy(), (0.3, 0.45, 0.65))
        ours.features["positive_class"] = cls
        ours.refresh_colors(update_color_mapping=False)
        _draw()
        rec_ours = time.perf_counter() - t
        viewer.layers.remove(ours)
        # plain napari
        t = time.perf_counter()
        plain = viewer.add_points(
            df[["centroid_y_px", "centroid_x_px"]].to_numpy(),
            features=df,
            face_color="positive_class",
            size=14,
            border_width=0,
            scale=(0.5, 0.5),
        )
        viewer.reset_view()
        _draw()
        add_plain = time.perf_counter() - t
        t = time.perf_counter()
        plain.features["positive_class"] = cls
        plain.refresh_colors(update_color_mapping=False)
        _draw()
        rec_plain = time.perf_counter() - t
        viewer.layers.remove(plain)
        # napari-gbm, cells in view only (CellsInView): zoomed to ~20k cells
        from napari_gbm._napari._cell_view import CellsInView
        from napari_gbm._napari._layers import camera_of

        t = time.perf_counter()
        data, kw, _ = cells_points_layer(df, 0.5, name="gbm in view")
        lay = viewer.add_points(data[:0], **{**kw, "features": kw["features"].iloc[:0]})
        view = CellsInView(viewer, lay, df, max_points=50_000)
        side_um = float(df["centroid_x_um"].max())
        cam = camera_of(viewer)
        cam.center = (side_um / 2, side_um / 2)
        _h, w = viewer.canvas.size
        cam.zoom = w / (side_um * np.sqrt(20_000 / n)) if n > 20_000 else cam.zoom
        view.update()
        _draw()
        add_view = time.perf_counter() - t
        t = time.perf_counter()
        df["positive_class"] = cls
        view.refresh()
        _draw()
        rec_view = time.perf_counter() - t
        t = time.perf_counter()
        cam.center = (side_um / 3, side_um / 3)
        view.update()
        _draw()
        pan_view = time.perf_counter() - t
        shown = len(lay.data)
        viewer.layers.remove(lay)
        print(
            f"| {n:,} | in view only ({shown:,} shown): add / recolour / pan | "
            f"{add_view:.2f} / {rec_view:.2f} / {pan_view:.2f} | | |"
        )
        print(
            f"| {n:,} | add layer | {add_ours:.2f} | {add_plain:.2f} "
            f"| {add_plain / add_ours:.1f}x |"
        )
        print(
            f"| {n:,} | recolour | {rec_ours:.2f} | {rec_plain:.2f} | {rec_plain / rec_ours:.1f}x |"
        )
    viewer.close()


if __name__ == "__main__":
    main()
