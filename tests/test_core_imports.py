"""The core never imports napari, Qt or magicgui: CLI and dask workers stay light."""

from __future__ import annotations

import subprocess
import sys

#: the napari side: the only modules allowed to load napari, Qt or magicgui
NAPARI_SIDE = ("napari_gbm._napari", "napari_gbm.widgets")


def _core_modules() -> list[str]:
    """Every module of the package (walked, not listed by hand) outside the napari side."""
    import pkgutil

    import napari_gbm

    names = ["napari_gbm"]
    for info in pkgutil.walk_packages(napari_gbm.__path__, "napari_gbm."):
        if not info.name.startswith(NAPARI_SIDE):
            names.append(info.name)
    return names


CORE = _core_modules()
GUI = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy", "superqt")


def test_core_imports_no_gui() -> None:
    assert len(CORE) > 40 and "napari_gbm.outputs" in CORE and "napari_gbm.qc" in CORE
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
