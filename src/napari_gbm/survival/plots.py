"""Kaplan-Meier and forest plots as PNG files (matplotlib Agg, no pyplot).

Figures are ``matplotlib.figure.Figure`` objects drawn on their own Agg canvas, so nothing
touches pyplot's global state or needs a display; files are written atomically
(:func:`napari_gbm.io.atomic_path`) at exactly ``size_px`` pixels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from napari_gbm.io import atomic_path
from napari_gbm.survival._validate import check_groups, check_survival
from napari_gbm.survival.km import at_risk_counts, kaplan_meier
from napari_gbm.survival.logrank import logrank_test

__all__ = ["draw_km", "forest_plot", "format_p", "km_plot"]

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
# risk groups are ordered (0 = lowest risk): blue -> green -> orange -> red
_RISK_RAMP = ("#1f77b4", "#2ca02c", "#ff7f0e", "#d62728")


def group_colors(k: int) -> list[str]:
    """Colours of k ordered risk groups, lowest blue to highest red.

    Parameters
    ----------
    k : int
        Number of groups.

    Returns
    -------
    list of str
        k hex colours: a blue-green-orange-red ramp for up to 4 groups; more groups cycle
        through a 7-colour palette (no longer ordered).
    """
    picks = {1: (0,), 2: (0, 3), 3: (0, 2, 3), 4: (0, 1, 2, 3)}
    if k in picks:
        return [_RISK_RAMP[i] for i in picks[k]]
    return [_COLORS[g % len(_COLORS)] for g in range(k)]


def _figure(size_px: tuple[int, int], dpi: int) -> Figure:
    w, h = (int(v) for v in size_px)
    if w < 100 or h < 100 or dpi < 10:
        raise ValueError(f"size_px must be at least 100 x 100 and dpi >= 10, got {size_px}, {dpi}")
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike[str], dpi: int) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(path)


def format_p(p: float | None) -> str:
    """A p-value as every report, plot and dock shows it.

    Parameters
    ----------
    p : float or None
        The p-value.

    Returns
    -------
    str
        3 decimals (``"0.042"``), or scientific notation with 3 significant digits below
        0.001 (``"1.23e-04"``); ``"n/a"`` when None or not finite.
    """
    if p is None or not np.isfinite(p):
        return "n/a"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def km_plot(
    time: Any,
    event: Any,
    groups: Any,
    path: str | os.PathLike[str],
    title: str | None = None,
    *,
    group_names: Mapping[Any, str] | Sequence[str] | None = None,
    time_label: str = "time",
    alpha: float = 0.05,
    size_px: tuple[int, int] = (1200, 900),
    dpi: int = 150,
) -> Path:
    """Kaplan-Meier curves per group, written as a PNG.

    With confidence bands, censoring ticks, the log-rank p-value and a number-at-risk table
    under the axes (see :func:`draw_km`).

    Parameters
    ----------
    time : array_like, shape (n,)
        Follow-up times, > 0.
    event : array_like of 0/1 or bool, shape (n,)
        1 where the event was observed.
    groups : array_like, shape (n,), or None
        Group label per subject (None: one curve for everyone, no test).
    path : str or os.PathLike
        PNG file to write (atomically).
    title : str, optional
        Plot title; None for none.
    group_names : mapping or sequence of str, optional
        Label -> name, or names in sorted-label order; None uses the labels.
    time_label : str, default "time"
        x-axis label, with its unit (e.g. "overall survival (months)").
    alpha : float, default 0.05
        1 - level of the pointwise bands (0.05: 95 %).
    size_px : tuple of int, default (1200, 900)
        ``(width, height)`` of the image, pixels (at least 100 x 100).
    dpi : int, default 150
        Resolution, dots per inch (font sizes scale with it).

    Returns
    -------
    pathlib.Path
        The written PNG.

    Raises
    ------
    ValueError
        For invalid survival data or groups, a wrong number of group names, a size under
        100 x 100 px or dpi under 10, or when the log-rank test fails (e.g. no event).
    """
    t, e = check_survival(time, event)
    if groups is None:
        codes = np.zeros(t.size, dtype=np.intp)
        labels: list[Any] = ["all"]
    else:
        codes, labels = check_groups(groups, t.size)
    fig = _figure(size_px, dpi)
    draw_km(
        fig, t, e, codes, _names(labels, group_names), title=title, time_label=time_label,
        alpha=alpha,
    )  # fmt: skip
    fig.subplots_adjust(left=0.14, right=0.97, top=0.93 if title else 0.97, bottom=0.06)
    return _save(fig, path, dpi)


def draw_km(
    fig: Figure,
    t: np.ndarray,
    e: np.ndarray,
    codes: np.ndarray,
    names: Sequence[str],
    *,
    title: str | None = None,
    time_label: str = "time",
    alpha: float = 0.05,
) -> tuple[Any, Any]:
    """Draw Kaplan-Meier curves of groups onto a figure.

    Confidence bands, censoring ticks, the log-rank p-value (k > 1) and a number-at-risk
    table under the axes. The one drawing of a KM plot: the PNG report (:func:`km_plot`)
    and the napari Cohort dock both call it. Each curve's line has the gid ``km:<name>``.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Empty figure to draw on.
    t : numpy.ndarray of float64, shape (n,)
        Checked follow-up times.
    e : numpy.ndarray of bool, shape (n,)
        Checked event indicators.
    codes : numpy.ndarray of int, shape (n,)
        Group of each subject, 0..k-1.
    names : sequence of str
        Name of each group (k names).
    title : str, optional
        Plot title; None for none.
    time_label : str, default "time"
        x-axis label, with its unit.
    alpha : float, default 0.05
        1 - level of the pointwise bands.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The plot's axes.
    ax_table : matplotlib.axes.Axes
        The number-at-risk table's axes.

    Raises
    ------
    ValueError
        When the log-rank test fails (e.g. no event, with more than one group).
    """
    k = len(names)
    colors = group_colors(k)
    table_share = 0.12 + 0.05 * k
    gs = fig.add_gridspec(2, 1, height_ratios=(1.0 - table_share, table_share), hspace=0.35)
    ax = fig.add_subplot(gs[0])
    ax_tab = fig.add_subplot(gs[1], sharex=ax)

    t_max = float(t.max()) if t.size else 1.0
    for g in range(k):
        sel = codes == g
        if not sel.any():
            continue
        km = kaplan_meier(t[sel], e[sel], alpha=alpha)
        x = np.concatenate(([0.0], km["time"].to_numpy()))
        s = np.concatenate(([1.0], km["survival"].to_numpy()))
        lo = np.concatenate(([1.0], km["ci_lower"].to_numpy()))
        hi = np.concatenate(([1.0], km["ci_upper"].to_numpy()))
        color = colors[g]
        label = f"{names[g]} (n={int(sel.sum())}, events={int(e[sel].sum())})"
        (line,) = ax.step(x, s, where="post", color=color, lw=1.8, label=label)
        line.set_gid(f"km:{names[g]}")
        ax.fill_between(x, lo, hi, step="post", color=color, alpha=0.15, lw=0)
        cens = km["n_censored"].to_numpy() > 0
        ax.plot(
            km["time"].to_numpy()[cens],
            km["survival"].to_numpy()[cens],
            ls="none",
            marker="|",
            ms=8,
            mew=1.2,
            color=color,
        )
    legend_title = None
    if k > 1 and len(np.unique(codes)) > 1:
        if np.any(e):
            legend_title = f"log-rank p = {format_p(logrank_test(t, e, codes).p_value)}"
        else:  # the curves still show follow-up; a test needs an event
            legend_title = "log-rank: no events"
    ax.legend(title=legend_title, loc="best", fontsize="small", title_fontsize="small")
    ax.set_ylim(0.0, 1.05)
    ax.set_xlim(0.0, t_max * 1.02)
    ax.set_ylabel("survival probability")
    ax.set_xlabel(time_label)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize="medium")

    ticks = [v for v in ax.get_xticks() if 0.0 <= v <= t_max * 1.02]
    ax.set_xticks(ticks)
    for g in range(k):
        counts = at_risk_counts(t[codes == g], ticks)
        for x_tick, c in zip(ticks, counts, strict=True):
            ax_tab.text(
                x_tick, k - 1 - g, str(int(c)), ha="center", va="center", fontsize="small",
                color=colors[g],
            )  # fmt: skip
    ax_tab.set_ylim(-0.5, k - 0.5)
    ax_tab.set_yticks(range(k))
    ax_tab.set_yticklabels([names[g] for g in range(k - 1, -1, -1)], fontsize="small")
    ax_tab.tick_params(axis="x", labelbottom=False, length=0)
    ax_tab.tick_params(axis="y", length=0, pad=24)
    for spine in ax_tab.spines.values():
        spine.set_visible(False)
    ax_tab.set_title("number at risk", fontsize="small", loc="left")
    return ax, ax_tab


def _names(labels: list[Any], group_names: Mapping[Any, str] | Sequence[str] | None) -> list[str]:
    if group_names is None:
        return [str(v) for v in labels]
    if isinstance(group_names, Mapping):
        return [str(group_names.get(v, v)) for v in labels]
    names = [str(v) for v in group_names]
    if len(names) != len(labels):
        raise ValueError(f"{len(names)} group names given for {len(labels)} groups")
    return names


def forest_plot(
    summary: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    size_px: tuple[int, int] | None = None,
    dpi: int = 150,
) -> Path:
    """Hazard ratios with confidence intervals on a log axis, one row per covariate, as a PNG.

    Parameters
    ----------
    summary : pandas.DataFrame
        Columns ``covariate``, ``hazard_ratio``, ``ci_lower``, ``ci_upper`` (and ``p``,
        printed if present): :meth:`napari_gbm.survival.cox.CoxModel.summary`. Limits of 0
        or inf are drawn to the axis edge.
    path : str or os.PathLike
        PNG file to write (atomically).
    title : str, optional
        Plot title; None for none.
    size_px : tuple of int, optional
        ``(width, height)`` in pixels; default 1200 px wide, 160 + 50 px per covariate high.
    dpi : int, default 150
        Resolution, dots per inch.

    Returns
    -------
    pathlib.Path
        The written PNG.

    Raises
    ------
    ValueError
        If a column is missing, the table is empty, a hazard ratio is not finite and > 0, a
        confidence limit is NaN, or the size is under 100 x 100 px.
    """
    need = ["covariate", "hazard_ratio", "ci_lower", "ci_upper"]
    missing = [c for c in need if c not in summary.columns]
    if missing:
        raise ValueError(f"forest_plot needs a Cox summary table; missing column(s) {missing}")
    if len(summary) == 0:
        raise ValueError("forest_plot got an empty summary table")
    hr = summary["hazard_ratio"].to_numpy(dtype=np.float64)
    lo = summary["ci_lower"].to_numpy(dtype=np.float64)
    hi = summary["ci_upper"].to_numpy(dtype=np.float64)
    if not (np.isfinite(hr).all() and (hr > 0).all()):
        raise ValueError("hazard ratios must be finite and > 0")
    if (np.isnan(lo) | np.isnan(hi)).any():
        raise ValueError("confidence limits must not be NaN")
    n = len(summary)
    size = size_px if size_px is not None else (1200, 160 + 50 * n)
    fig = _figure(size, dpi)
    ax = fig.add_subplot(1, 1, 1)

    finite = np.concatenate([hr, lo[np.isfinite(lo) & (lo > 0)], hi[np.isfinite(hi)]])
    x_min = min(float(finite.min()), 1.0) / 1.5
    x_max = max(float(finite.max()), 1.0) * 1.5
    lo_draw = np.clip(np.where(lo > 0, lo, x_min), x_min, x_max)
    hi_draw = np.clip(np.where(np.isfinite(hi), hi, x_max), x_min, x_max)
    y = np.arange(n)[::-1]
    ax.hlines(y, lo_draw, hi_draw, color="#333333", lw=1.6)
    ax.plot(hr, y, "s", color="#1f77b4", ms=7)
    ax.axvline(1.0, color="#888888", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlim(x_min, x_max)
    nice = [v * 10.0**e for e in range(-4, 5) for v in (1.0, 2.0, 5.0)]
    ax.xaxis.set_major_locator(FixedLocator([v for v in nice if x_min <= v <= x_max]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_yticks(y)
    ax.set_yticklabels([str(c) for c in summary["covariate"]])
    ax.set_xlabel("hazard ratio (log scale)")
    ax.grid(axis="x", alpha=0.3, which="both")
    p = summary["p"].to_numpy(dtype=np.float64) if "p" in summary.columns else None
    for i in range(n):
        text = f"{hr[i]:.2f} [{lo[i]:.2f}, {hi[i]:.2f}]"
        if p is not None:
            text += f"  p={format_p(float(p[i]))}"
        ax.annotate(
            text, (1.01, y[i]), xycoords=("axes fraction", "data"), va="center", fontsize="small"
        )
    if title:
        ax.set_title(title)
    height_in = size[1] / dpi
    # room for the longest covariate label (about 0.6 em per character at this size)
    longest = max(len(str(c)) for c in summary["covariate"])
    left = min(0.45, max(0.22, 0.6 * 10 / 72 * longest / (size[0] / dpi) + 0.03))
    fig.subplots_adjust(
        left=left,
        right=0.68,
        top=1.0 - (0.45 if title else 0.15) / height_in,
        bottom=0.6 / height_in,
    )
    return _save(fig, path, dpi)
