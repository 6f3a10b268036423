"""Biomarkers dock widget: DAB positivity thresholds with the effect visible at once (the
cells recoloured), the scores of the cells layer (positive %, H-score, Allred, density),
colour by any measurement, biomarker maps as Image layers, the vessels and microvascular
proliferation (MVP) foci of a whole-slide analysis as layers, a histogram, and a sortable
table of cells where a double click centres the view on that cell."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, FileEdit, FloatSpinBox, Label, PushButton

from napari_gbm._napari._cell_view import CellsInView, cells_in_view_of
from napari_gbm._napari._layers import (
    CLASS_COLORS,
    MEASURE_LEGEND,
    camera_of,
    map_layer,
    map_title,
    put_layer,
    value_colors,
)
from napari_gbm._napari._vessels import vascular_text, vessel_layers
from napari_gbm.biomarkers import PositivityParams, ihc_scores, positive_class, spatial_biomarkers
from napari_gbm.widgets._dock import ScrollingDock
from napari_gbm.widgets._event_loop import Debounced

if TYPE_CHECKING:
    import napari

TABLE_ROWS = 500


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


class BiomarkersWidget(ScrollingDock):
    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = napari_viewer
        self._layer = ComboBox(label="cells layer", choices=self._cells_choices)
        self._column = ComboBox(
            label="graded measurement",
            choices=self._stain_columns,
            tooltip="The measurement graded for positivity (QuPath: nucleus DAB OD mean).",
        )
        self._mode = ComboBox(
            label="grades", choices=("1+/2+/3+", "positive/negative"), value="1+/2+/3+"
        )
        self._t1 = FloatSpinBox(label="1+ (or positive) ≥", value=0.2, min=0, max=10, step=0.01)
        self._t2 = FloatSpinBox(label="2+ ≥", value=0.4, min=0, max=10, step=0.01)
        self._t3 = FloatSpinBox(label="3+ ≥", value=0.6, min=0, max=10, step=0.01)
        self._colour = ComboBox(label="colour by", choices=self._colour_choices)
        self._scores = Label(label="scores", value="")
        # what the colours mean when cells are coloured by a measurement (else empty)
        self._legend = Label(label="", value="")
        self._maps_btn = PushButton(text="Add biomarker maps")
        self._vessels_btn = PushButton(
            text="Add vessels and MVP foci",
            tooltip="From the cells' whole-slide analysis (H&E, CD31, CD34): the vessels as "
            "rings (yellow in an MVP focus, cyan otherwise), the MVP foci outlined in green, "
            "the vessel density and MVP maps.",
        )
        self._vessels = Label(label="vessels", value="")
        self._in_view_btn = PushButton(
            text="Show only the cells in view",
            tooltip="For whole slides (10^5-10^6 cells): the layer holds the cells in view "
            "only, so napari stays fast; zoomed out, the maps show the slide.",
        )
        self._hist_column = ComboBox(label="histogram / table of", choices=self._numeric_columns)
        self._export_path = FileEdit(
            label="export to",
            mode="w",
            filter="*.csv *.tsv *.parquet *.geojson *.h5ad *.json",
            tooltip="cells: .csv/.tsv/.parquet (table), .geojson (QuPath) or .h5ad (AnnData, "
            "for scanpy/squidpy); scores: .json",
        )
        self._naming = ComboBox(
            label="column names",
            choices=("napari_gbm", "qupath", "histomicstk"),
            value="napari_gbm",
            tooltip="Our names, QuPath's ('Nucleus: Area µm^2', ...) or HistomicsTK's.",
        )
        self._export_btn = PushButton(text="Export cells (or scores, .json)")
        self.extend(
            [
                self._layer,
                self._column,
                self._mode,
                self._t1,
                self._t2,
                self._t3,
                self._colour,
                self._legend,
                self._scores,
                self._maps_btn,
                self._vessels_btn,
                self._vessels,
                self._in_view_btn,
                self._export_path,
                self._naming,
                self._export_btn,
                self._hist_column,
            ]
        )
        self._figure, self._canvas = _histogram_canvas()
        self._table = _table_widget(self._locate)
        self.body.layout().addWidget(self._canvas)
        self.body.layout().addWidget(self._table)
        for w in (self._column, self._mode, self._t1, self._t2, self._t3):
            w.changed.connect(self.apply_thresholds)
        self._colour.changed.connect(self.recolour)
        self._layer.changed.connect(self._layer_changed)
        self._hist_column.changed.connect(self.show_distribution)
        self._maps_btn.changed.connect(self.add_maps)
        self._vessels_btn.changed.connect(self.add_vessels)
        self._in_view_btn.changed.connect(self.in_view_only)
        self._export_btn.changed.connect(self.export)
        napari_viewer.layers.events.inserted.connect(self._refresh)
        napari_viewer.layers.events.removed.connect(self._refresh)
        self._refresh()
        self.fit_width()

    # -- choices ---------------------------------------------------------------------------
    def _cells_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return [
            (ly.name, ly)
            for ly in self._viewer.layers
            if ly.metadata.get("napari_gbm", {}).get("kind") == "cells"
        ]

    def _numeric_columns(self, _: Any = None) -> list[str]:
        layer = self._layer.value if hasattr(self, "_layer") else None
        if layer is None:
            return []
        f = layer.features
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        return [
            c
            for c in f.columns
            if is_numeric_dtype(f[c]) and not is_bool_dtype(f[c]) and c != "cell_id"
        ]

    def _stain_columns(self, _: Any = None) -> list[str]:
        """What can be graded: the stain intensities (``<compartment>_<stain>_od_<stat>``),
        DAB first; not ids, positions or shapes."""
        cols = [c for c in self._numeric_columns() if "_od_" in c]
        return sorted(cols, key=lambda c: "_dab_od_" not in c) or self._numeric_columns()

    def _colour_choices(self, _: Any = None) -> list[str]:
        return ["positive_class", *[c for c in self._numeric_columns() if c != "positive_class"]]

    def _refresh(self, *_: Any) -> None:
        self._layer.reset_choices()
        self._layer_changed()

    def _layer_changed(self, *_: Any) -> None:
        for w in (self._column, self._colour, self._hist_column):
            w.reset_choices()
        cols = self._column.choices
        if "nucleus_dab_od_mean" in cols:
            self._column.value = "nucleus_dab_od_mean"
        if "nucleus_area_um2" in self._hist_column.choices:
            self._hist_column.value = "nucleus_area_um2"
        self.show_scores()
        self.show_distribution()

    # -- the whole table (all cells, also when the layer shows those in view only) ---------
    def table(self) -> Any:
        layer = self._layer.value
        view = cells_in_view_of(layer) if layer is not None else None
        return view.cells if view is not None else layer.features

    def positions_px(self) -> tuple[np.ndarray, np.ndarray]:
        layer = self._layer.value
        view = cells_in_view_of(layer)
        if view is not None:
            return view.y, view.x
        return np.asarray(layer.data[:, -2]), np.asarray(layer.data[:, -1])

    def in_view_only(self, *_: Any) -> CellsInView | None:
        layer = self._layer.value
        if layer is None:
            return None
        view = cells_in_view_of(layer)
        if view is None:
            view = CellsInView(self._viewer, layer, debounce=Debounced)
        self._scores.value = self._scores.value.split("\n[")[0] + f"\n[{view.status}]"
        return view

    # -- thresholds and colours --------------------------------------------------------------
    def thresholds(self) -> tuple[float, ...]:
        if self._mode.value == "positive/negative":
            return (float(self._t1.value),)
        return (float(self._t1.value), float(self._t2.value), float(self._t3.value))

    def apply_thresholds(self, *_: Any) -> None:
        """Regrade every cell of the layer with the current thresholds and recolour."""
        layer = self._layer.value
        if layer is None or self._column.value is None:
            return
        try:
            params = PositivityParams(column=self._column.value, thresholds=self.thresholds())
        except ValueError as exc:
            self._scores.value = f"invalid thresholds: {exc}"
            return
        table = self.table()
        values = table[params.column].to_numpy()
        table["positive_class"] = positive_class(values, params.thresholds)
        view = cells_in_view_of(layer)
        if view is not None:
            view.refresh()
        layer.metadata.setdefault("napari_gbm", {})["positivity"] = {
            "column": params.column,
            "thresholds": list(params.thresholds),
        }
        if self._colour.value in (None, "positive_class"):
            self.recolour()
        self.show_scores()
        if self._hist_column.value is not None:  # the table shows the new grades too
            _fill_table(self._table, table, self._hist_column.value)

    def recolour(self, *_: Any) -> None:
        layer = self._layer.value
        if layer is None:
            return
        by = self._colour.value or "positive_class"
        f = layer.features
        self._legend.value = ""
        view = cells_in_view_of(layer)
        if view is not None:
            if by == "positive_class":
                layer.metadata["napari_gbm"]["colour_by"] = "positive_class"
            else:
                _, limits = value_colors(view.cells[by].to_numpy())
                layer.metadata["napari_gbm"]["colour_by"] = {"column": by, "limits": limits}
                self._legend.value = _legend(limits)
            view.refresh()
            return
        if by == "positive_class":
            if "positive_class" not in f:
                layer.features["positive_class"] = np.full(len(f), -1, np.int8)
            if layer.face_color_mode == "cycle" and layer._face.color_properties.name == by:
                layer.refresh_colors(update_color_mapping=False)
            else:
                layer.face_color_cycle = CLASS_COLORS
                layer.face_color = "positive_class"
            layer.metadata["napari_gbm"]["colour_by"] = "positive_class"
        else:
            rgba, limits = value_colors(f[by].to_numpy())
            layer.face_color = rgba
            layer.metadata["napari_gbm"]["colour_by"] = {"column": by, "limits": limits}
            self._legend.value = _legend(limits)

    def scores(self) -> dict[str, Any]:
        layer = self._layer.value
        if layer is None:
            return {}
        f = self.table()
        cls = f["positive_class"].to_numpy() if "positive_class" in f else np.full(len(f), -1)
        s = ihc_scores(cls, graded=len(self.thresholds()) == 3)
        meta = layer.metadata.get("napari_gbm", {})
        area = meta.get("area_mm2") or meta.get("analysed_tissue_area_mm2")
        s["n_cells"] = len(f)
        s["cell_density_per_mm2"] = len(f) / area if area else None
        return s

    def show_scores(self) -> None:
        s = self.scores()
        if not s:
            self._scores.value = "(no cells layer: detect cells first)"
            return

        def fmt(v: Any, spec: str) -> str:
            return "n/a" if v is None else format(v, spec)

        self._scores.value = (
            f"{s['n_cells']} cells, density {fmt(s['cell_density_per_mm2'], '.0f')}/mm²\n"
            f"positive {fmt(s['positive_percent'], '.1f')} % "
            f"(1+ {s['n_1plus']}, 2+ {s['n_2plus']}, 3+ {s['n_3plus']})\n"
            f"H-score {fmt(s['h_score'], '.0f')}, Allred {fmt(s['allred_score'], 'd')}"
        )

    # -- export -----------------------------------------------------------------------------
    def export(self, *_: Any) -> Any:
        """Write the whole cell table (.csv/.tsv/.parquet, chosen names), a QuPath GeoJSON
        (.geojson), AnnData (.h5ad) or the scores (.json), with the layer's parameters and
        version: the writers of ``napari-gbm export`` (:func:`napari_gbm.export.export_cells`)."""
        from napari_gbm import __version__
        from napari_gbm.export.formats import EXPORT_FORMATS, export_cells
        from napari_gbm.io import write_json

        layer = self._layer.value
        path = Path(str(self._export_path.value))
        if layer is None:
            _notify_error("no cells layer to export: detect cells first")
            return None
        # SpatialData holds the slide image too: `napari-gbm export DIR --to spatialdata`
        by_suffix = {
            ext: to for to, exts in EXPORT_FORMATS.items() if to != "spatialdata" for ext in exts
        }
        suffix = path.suffix.lower()
        if suffix != ".json" and suffix not in by_suffix:
            _notify_error(
                f"export to .csv, .tsv, .parquet, .geojson, .h5ad or .json, not '{path.name}'"
            )
            return None
        meta = {**layer.metadata.get("napari_gbm", {}), "exported_by": __version__}
        try:
            if suffix == ".json":
                return write_json({"scores": self.scores(), "metadata": meta}, path)
            names = {"napari_gbm": "ours"}.get(self._naming.value, self._naming.value)
            if by_suffix[suffix] in ("geojson", "anndata"):
                names = None  # GeoJSON: QuPath's measurement names; AnnData: ours
            return export_cells(
                self.table(), path, by_suffix[suffix], names=names, metadata=meta,
                mpp=float(layer.scale[-1]),
            )  # fmt: skip
        except (OSError, ValueError) as exc:
            _notify_error(f"could not export to {path}: {exc}")
            return None

    # -- maps -------------------------------------------------------------------------------
    def add_maps(self, *_: Any) -> list[Any]:
        """Density and (IHC) local positive % maps of the layer's cells as Image layers."""

        layer = self._layer.value
        if layer is None:
            _notify_error("no cells layer: detect cells first")
            return []
        f = self.table()
        mpp = float(layer.scale[-1])
        yp, xp = self.positions_px()
        y, x = yp * mpp, xp * mpp
        if len(x) == 0:
            _notify_error("the cells layer is empty")
            return []
        w_um, h_um = float(x.max()) + 500.0, float(y.max()) + 500.0
        cls = f["positive_class"].to_numpy() if "positive_class" in f else None
        graded = cls is not None and bool((cls >= 0).any())
        maps = spatial_biomarkers(
            x,
            y,
            np.ones((1, 1), bool),
            (w_um, h_um),
            positive=(cls > 0) if graded and cls is not None else None,
        )
        added = []
        for key in ("cell_density_per_mm2", "positive_percent"):
            if key not in maps.maps:
                continue
            title, cmap = map_title(key)
            data = map_layer(
                maps.maps[key],
                maps.bin_um,
                mpp,
                # not the analysis's own map (the reader's): these follow the dock's grades
                name=f"{layer.name}: {title}, current thresholds",
                colormap=cmap,
                metadata={"map": key},
            )
            added.append(put_layer(self._viewer, data))
        self._viewer.layers.selection.active = layer
        return added

    def add_vessels(self, *_: Any) -> list[Any]:
        """The vessels (rings), MVP foci (outlines) and vascular maps of the analysis folder
        the cells layer comes from (opened, or the Cells dock's whole-slide run), named as
        the reader names them (so a reopened folder's layers are updated, not doubled)."""
        layer = self._layer.value
        meta = layer.metadata.get("napari_gbm", {}) if layer is not None else {}
        folder = meta.get("analysis_folder") or meta.get("output")
        if not folder or not (Path(folder) / "summary.json").is_file():
            _notify_error(
                "vessels come with a whole-slide analysis: open an analysis folder, or run "
                "the Cells dock on the whole slide"
            )
            return []
        base = layer.name.removesuffix(" cells")
        tuples = vessel_layers(folder, float(layer.scale[-1]), name=base, maps=True)
        if not any(kind in ("points", "shapes") for _, _, kind in tuples):
            self._vessels.value = "none in this analysis (found on H&E, CD31, CD34)"
            return []
        added = [put_layer(self._viewer, t) for t in tuples]
        self._vessels.value = vascular_text(folder)
        self._viewer.layers.selection.active = layer
        return added

    # -- distribution, table, locate --------------------------------------------------------
    def show_distribution(self, *_: Any) -> None:
        layer = self._layer.value
        col = self._hist_column.value
        ax = self._figure.axes[0]
        ax.clear()
        if layer is None or col is None:
            self._canvas.draw_idle()
            return
        table = self.table()
        v = table[col].to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        ax.hist(v, bins=60, color="#4477aa")
        ax.set_xlabel(col)
        ax.set_ylabel("cells")
        self._figure.tight_layout()
        self._canvas.draw_idle()
        _fill_table(self._table, table, col)

    def _locate(self, row: int) -> None:
        layer = self._layer.value
        item = self._table.item(row, 0)
        if layer is None or item is None:
            return
        idx = int(item.data(0x0100))  # Qt.UserRole: the cell's row in the whole table
        mpp = float(layer.scale[-1])
        yp, xp = self.positions_px()
        camera_of(self._viewer).center = (float(yp[idx] * mpp), float(xp[idx] * mpp))
        camera_of(self._viewer).zoom = max(camera_of(self._viewer).zoom, 2.0 / mpp)
        view = cells_in_view_of(layer)
        if view is not None:
            view.update()
            where = np.flatnonzero(view.shown == idx)
            layer.selected_data = {int(where[0])} if where.size else set()
        else:
            layer.selected_data = {idx}


def _legend(limits: tuple[float, float]) -> str:
    """Two short lines (the dock keeps its width): the colours and the value range."""
    return f"{MEASURE_LEGEND}\n{limits[0]:.3g} to {limits[1]:.3g}"


def _histogram_canvas() -> tuple[Any, Any]:
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 2.2), dpi=90)
    fig.add_subplot(111)
    canvas = FigureCanvasQTAgg(fig)
    canvas.setMinimumHeight(180)
    return fig, canvas


def _table_widget(on_activate: Any) -> Any:
    from qtpy.QtWidgets import QTableWidget

    t = QTableWidget()
    t.setMinimumHeight(200)
    t.setSortingEnabled(True)
    t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    t.cellDoubleClicked.connect(lambda r, _c: on_activate(r))
    return t


def _fill_table(table: Any, features: Any, col: str) -> None:
    """The ``TABLE_ROWS`` cells with the highest ``col`` (sortable by any column)."""
    from qtpy.QtWidgets import QTableWidgetItem

    cols = [c for c in ("cell_id", col, "positive_class", "nucleus_area_um2") if c in features]
    cols = list(dict.fromkeys(cols))
    order = np.argsort(-np.nan_to_num(features[col].to_numpy(dtype=np.float64), nan=-np.inf))
    top = order[:TABLE_ROWS]
    table.setSortingEnabled(False)
    table.clear()
    table.setColumnCount(len(cols))
    table.setRowCount(len(top))
    table.setHorizontalHeaderLabels(cols)
    for r, idx in enumerate(top):
        for c, name in enumerate(cols):
            v = features[name].iloc[idx]
            item = QTableWidgetItem()
            item.setData(0, float(v) if np.issubdtype(type(v), np.floating) else int(v))
            if c == 0:
                item.setData(0x0100, int(idx))
            table.setItem(r, c, item)
    table.setSortingEnabled(True)
    table.resizeColumnsToContents()  # whole headers ("nucleus_area_um2"), not cut
