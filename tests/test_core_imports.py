"""The core never imports napari, Qt or magicgui: CLI and dask workers stay light."""

from __future__ import annotations

import subprocess
import sys

CORE = [
    "napari_gbm",
    "napari_gbm.slide",
    "napari_gbm.tissue",
    "napari_gbm.tiling",
    "napari_gbm.io",
    "napari_gbm.overview",
    "napari_gbm.pipeline",
    "napari_gbm.samples",
    "napari_gbm.synthetic",
    "napari_gbm.cli",
    "napari_gbm.cells",
    "napari_gbm.region",
    "napari_gbm.biomarkers",
    "napari_gbm.patients",
    "napari_gbm.stratify",
    "napari_gbm.survival",
    "napari_gbm.survival.cox",
    "napari_gbm.export",
    "napari_gbm.cohort",
    "napari_gbm.calibration",
    "napari_gbm.evaluation",
]
GUI = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy", "superqt")


def test_core_imports_no_gui() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + "from napari_gbm.cli import main\n"
        + "main(['info', 'sample_data/cmu-1-small-region.svs'])\n"
        + f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {GUI!r})\n"
        + "print('GUI modules:', bad)\n"
        + "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=__file__.rsplit("/tests/", 1)[0],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
