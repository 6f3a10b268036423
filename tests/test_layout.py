"""The rules of docs/ARCHITECTURE.md, checked on the source: module size, imports flowing down
the pipeline's stages, and the public API at the package root."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "napari_gbm"

#: The stages, lowest first. A module may import napari-gbm code from its own unit or a lower
#: layer, never from a higher one (docs/ARCHITECTURE.md explains the order).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("_lazy", "io", "masks", "outputs", "features", "schema"),
    ("wsi", "synthetic", "biomarkers"),
    ("detect",),
    ("qc", "pipeline", "samples", "evaluation", "survival", "export", "spots"),
    ("cohort",),
    ("cli", "_napari", "_testing"),
    ("widgets",),
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
MAX_LINES = 500


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _unit(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_units(path: Path) -> set[str]:
    """napari-gbm units a module imports, anywhere in the file (inside functions too)."""
    units: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "napari_gbm":
                names = [f"napari_gbm.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "napari_gbm" and len(parts) > 1 and parts[1] != "__version__":
                units.add(parts[1])
    return units


def test_every_module_is_short() -> None:
    lengths = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in _modules()}
    assert len(lengths) > 70
    long = {str(p.relative_to(SRC)): n for p, n in lengths.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by idea): {long}"


def test_every_unit_has_a_layer() -> None:
    units = {_unit(p) for p in _modules()} - {"__init__"}
    assert units <= set(RANK), f"place these in LAYERS and ARCHITECTURE.md: {units - set(RANK)}"


def test_imports_flow_down_the_stages() -> None:
    upward = []
    for path in _modules():
        unit = _unit(path)
        if unit == "__init__":
            continue  # the root re-exports the public API from every stage
        for target in _imported_units(path) - {unit}:
            if RANK[target] > RANK[unit]:
                upward.append(f"{path.relative_to(SRC)} imports napari_gbm.{target}")
    assert not upward, "imports against the stages' order:\n" + "\n".join(sorted(upward))


def test_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The check itself can fail: an import of the CLI from wsi/ is seen."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from napari_gbm.cli import main\n")
    assert _imported_units(bad) == {"cli"}
    assert RANK["cli"] > RANK["wsi"]


def test_root_api_loads_lazily_and_resolves() -> None:
    """``import napari_gbm`` loads neither numba, torch, dask nor matplotlib; every name in
    ``__all__`` (root and packages) then resolves to the object of its defining module."""
    code = (
        "import sys, importlib, napari_gbm\n"
        "heavy = [m for m in ('numba', 'torch', 'dask', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "for pkg in ['napari_gbm', 'napari_gbm.wsi', 'napari_gbm.detect', 'napari_gbm.features',\n"
        "            'napari_gbm.survival', 'napari_gbm.cohort', 'napari_gbm.export']:\n"
        "    mod = importlib.import_module(pkg)\n"
        "    for name in mod.__all__:\n"
        "        obj = getattr(mod, name)\n"
        "        assert name in dir(mod), (pkg, name)\n"
        "        if callable(obj) and hasattr(obj, '__module__'):\n"
        "            assert obj.__module__.startswith('napari_gbm'), (pkg, name)\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_root_exports_the_entry_points() -> None:
    import napari_gbm
    from napari_gbm.pipeline import analyze_slide
    from napari_gbm.wsi.slide import Slide

    assert napari_gbm.analyze_slide is analyze_slide and napari_gbm.Slide is Slide
    for name in (
        "analyze_region",
        "measure_cells",
        "run_cohort",
        "run_stratify",
        "evaluate_dataset",
    ):
        assert name in napari_gbm.__all__ and callable(getattr(napari_gbm, name))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        napari_gbm.nonexistent  # noqa: B018
