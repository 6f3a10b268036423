"""Kaplan-Meier and forest plots: the PNG exists at the requested size, shows something,
is written atomically, and pyplot is never involved."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from napari_gbm.survival.plots import forest_plot, km_plot

ROOT = Path(__file__).resolve().parents[1]


def _cohort(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 3, n)
    time = np.ceil(rng.exponential(size=n) * 20 / (1 + groups)) + 1
    return time, rng.random(n) < 0.7, groups


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64)


def _summary() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "covariate": ["ki67_pct", "age_years", "necrosis_fraction"],
            "coef": [0.4, -0.02, 1.2],
            "hazard_ratio": np.exp([0.4, -0.02, 1.2]),
            "ci_lower": np.exp([0.1, -0.05, -0.3]),
            "ci_upper": np.exp([0.7, 0.01, 2.7]),
            "p": [0.008, 0.2, 0.11],
        }
    )


def test_km_plot_png(tmp_path: Path) -> None:
    time, event, groups = _cohort()
    out = km_plot(
        time, event, groups, tmp_path / "km.png", title="OS by risk group",
        group_names=["T1", "T2", "T3"], time_label="months", size_px=(900, 700), dpi=100,
    )  # fmt: skip
    assert out == tmp_path / "km.png"
    px = _pixels(out)
    assert px.shape == (700, 900, 3)
    assert px.std() > 20  # not blank
    # three ordered risk groups drawn blue (low), orange, red (high)
    blue = ((px[..., 2] > 150) & (px[..., 0] < 80)).sum()
    red = ((px[..., 0] > 180) & (px[..., 1] < 80) & (px[..., 2] < 80)).sum()
    orange = ((px[..., 0] > 200) & (px[..., 1] > 90) & (px[..., 1] < 160) & (px[..., 2] < 60)).sum()
    assert min(blue, red, orange) > 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["km.png"]  # no temporary left


def test_km_plot_single_curve_and_labels(tmp_path: Path) -> None:
    time, event, _ = _cohort()
    out = km_plot(time, event, None, tmp_path / "one.png")
    assert _pixels(out).shape == (900, 1200, 3)
    named = km_plot(
        time, event, np.where(time > 5, "late", "early"), tmp_path / "two.png",
        group_names={"early": "E", "late": "L"},
    )  # fmt: skip
    assert _pixels(named).std() > 20


def test_km_plot_failure_leaves_existing_file(tmp_path: Path) -> None:
    time, event, groups = _cohort()
    target = tmp_path / "km.png"
    target.write_bytes(b"previous")
    with pytest.raises(ValueError, match="group names"):
        km_plot(time, event, groups, target, group_names=["a", "b"])
    with pytest.raises(ValueError, match="time must be > 0"):
        km_plot(time - 100, event, groups, target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["km.png"]


def test_forest_plot_png(tmp_path: Path) -> None:
    out = forest_plot(_summary(), tmp_path / "forest.png", title="Cox model")
    px = _pixels(out)
    assert px.shape == (160 + 50 * 3, 1200, 3)
    assert px.std() > 20
    sized = forest_plot(_summary(), tmp_path / "f2.png", size_px=(800, 400), dpi=100)
    assert _pixels(sized).shape == (400, 800, 3)
    # an unbounded interval (huge standard error) still draws
    wide = _summary().assign(ci_upper=[np.inf, 1.1, 20.0], ci_lower=[0.0, 0.9, 0.5])
    assert _pixels(forest_plot(wide, tmp_path / "f3.png")).std() > 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f2.png", "f3.png", "forest.png"]


def test_forest_plot_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing column\(s\) \['ci_upper'\]"):
        forest_plot(_summary().drop(columns="ci_upper"), tmp_path / "f.png")
    with pytest.raises(ValueError, match="empty"):
        forest_plot(_summary().iloc[:0], tmp_path / "f.png")
    with pytest.raises(ValueError, match="finite"):
        forest_plot(_summary().assign(hazard_ratio=np.nan), tmp_path / "f.png")
    assert not any(tmp_path.iterdir())


def test_plots_do_not_use_pyplot(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from napari_gbm.survival.plots import km_plot\n"
        f"km_plot(np.arange(1.0, 21.0), np.ones(20), np.arange(20) % 2, r'{tmp_path}/k.png')\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "k.png").is_file()


def test_km_plot_without_events_draws_the_curves(tmp_path: Path) -> None:
    """Groups with no event (all censored: a young cohort) still get their curves, flat at
    1 with censoring ticks; the legend says why there is no log-rank p instead of the whole
    plot failing (logrank_test refuses data without events)."""
    from matplotlib.figure import Figure

    from napari_gbm.survival.plots import draw_km

    time, _, groups = _cohort()
    none = np.zeros_like(time, dtype=int)
    out = km_plot(time, none, groups, tmp_path / "none.png")
    assert _pixels(out).std() > 20
    codes = np.unique(groups, return_inverse=True)[1]
    ax, _ = draw_km(Figure(), time, none, codes, ["a", "b", "c"])
    assert ax.get_legend().get_title().get_text() == "log-rank: no events"
    ax, _ = draw_km(Figure(), time, np.ones_like(none), codes, ["a", "b", "c"])
    assert ax.get_legend().get_title().get_text().startswith("log-rank p = ")
