"""The inputs of a stratification, as the Cohort dock chooses them (without Qt).

:func:`read_table` reads a table with every failure as a ValueError naming the file;
:func:`column_choices` guesses the id, time and event columns by name and lists the
candidate covariates; :func:`stratify_kwargs` checks the choices and makes the arguments of
:func:`~napari_gbm.survival.stratify.run_stratify`; :func:`parse_cuts` reads manual cuts;
:func:`unused_folder` finds an output folder that overwrites nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from napari_gbm.survival.stratify_params import DEFAULT_COVARIATES
from napari_gbm.survival.table_input import MAX_LEVELS, load_table

__all__ = [
    "ColumnChoices",
    "column_choices",
    "parse_cuts",
    "read_table",
    "stratify_kwargs",
    "unused_folder",
]


def read_table(path: Path, what: str) -> pd.DataFrame:
    """A table read by :func:`~napari_gbm.survival.table_input.load_table`.

    Parameters
    ----------
    path : Path
        A CSV, TSV or Parquet file.
    what : str
        What the table is, for messages (``"cohort table"``).

    Returns
    -------
    DataFrame

    Raises
    ------
    ValueError
        For every reading failure (parser, encoding and Arrow errors of a damaged file
        included) and for a table with no rows or a single column, naming the file.
    """
    try:
        df = load_table(path)
    except ValueError as exc:  # load_table's messages name the file
        raise ValueError(f"could not read the {what}: {exc}") from None
    except Exception as exc:  # parser, encoding and Arrow errors of a damaged file
        raise ValueError(
            f"could not read the {what} {path.name} ({type(exc).__name__}: {exc}); "
            "give a CSV, TSV or Parquet table with a header row"
        ) from None
    if len(df) == 0 or len(df.columns) < 2:
        raise ValueError(
            f"the {what} {path.name} has {len(df)} rows and {len(df.columns)} column(s) "
            f"{[str(c) for c in df.columns][:5]}: is it a table with a header row and one "
            "row per patient or slide?"
        )
    return df


@dataclass(frozen=True)
class ColumnChoices:
    """The dock's column choices for a table (and clinical table): see
    :func:`column_choices`.

    Attributes
    ----------
    columns : list of str
        Every column of the table, then the clinical table's others.
    id_col : str
        The patient id column, guessed by name (``patient_id`` first; else the first
        column).
    time_col, event_col : str or None
        The follow-up time and event columns, guessed by name (``time_months``,
        ``event`` first); None where no column looks like one.
    group_by : list of str
        The number and yes/no columns other than the id, time, event and ``slide_id``.
    covariates : list of str
        ``group_by`` and the text columns with 2 to ``MAX_LEVELS`` values.
    default_covariates : list of str
        The ``DEFAULT_COVARIATES`` among ``group_by``.
    """

    columns: list[str]
    id_col: str
    time_col: str | None
    event_col: str | None
    group_by: list[str]
    covariates: list[str]
    default_covariates: list[str]


def _pick(columns: list[str], exact: str, pattern: str, exclude: str = "$^") -> str | None:
    if exact in columns:
        return exact
    for c in columns:
        low = c.lower()
        if re.search(pattern, low) and not re.search(exclude, low):
            return c
    return None


def _is_number(s: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype))


def _is_category(s: pd.Series) -> bool:
    """Text with 2 to MAX_LEVELS values (IDH Mutant / WT, sex M / F): a Cox covariate
    that run_stratify encodes as one 0/1 column per level."""
    if _is_number(s):
        return False
    try:
        text = s.dropna().astype(str).str.strip()
        n = text[text != ""].nunique()
    except TypeError:  # unhashable cells
        return False
    return bool(2 <= n <= MAX_LEVELS)


def column_choices(table: pd.DataFrame, clinical: pd.DataFrame | None = None) -> ColumnChoices:
    """The columns the dock offers for a table and its clinical table.

    Parameters
    ----------
    table : DataFrame
        The cohort table.
    clinical : DataFrame, optional
        The clinical table; its columns follow the table's (those the table has are
        not repeated).

    Returns
    -------
    ColumnChoices
        ``columns``: every column; ``id_col``, ``time_col``, ``event_col``: guessed by
        name (``patient_id``, ``time_months``, ``event`` first; None where no column
        looks like a time or an event); ``group_by``: the number and yes/no columns other
        than the id, time, event and ``slide_id``; ``covariates``: those and the text
        columns with 2 to ``MAX_LEVELS`` values; ``default_covariates``: the
        ``DEFAULT_COVARIATES`` among ``group_by``.
    """
    tables = [df for df in (table, clinical) if df is not None]
    cols: list[str] = []
    numeric: list[str] = []
    categories: list[str] = []
    for df in tables:
        for c in df.columns:
            name = str(c)
            if name not in cols:
                cols.append(name)
            if _is_number(df[c]) and name not in numeric:
                numeric.append(name)
    for df in tables:
        for c in df.columns:
            if str(c) not in categories and _is_category(df[c]):
                categories.append(str(c))
    id_col = _pick(cols, "patient_id", r"patient|case|subject") or cols[0]
    time_col = _pick(cols, "time_months", r"(^|_)(time|months?|days|os|survival|follow)", r"censor")
    event_col = _pick(cols, "event", r"event|status|death|dead|vital", r"censor|time|month|day")
    skip = {id_col, time_col, event_col, "slide_id"}
    candidates = [c for c in numeric if c not in skip]
    categories = [c for c in categories if c not in skip and c not in candidates]
    return ColumnChoices(
        columns=cols,
        id_col=id_col,
        time_col=time_col,
        event_col=event_col,
        group_by=candidates,
        covariates=[*candidates, *categories],
        default_covariates=[c for c in DEFAULT_COVARIATES if c in candidates],
    )


def parse_cuts(text: str) -> list[float]:
    """Manual cut values from text.

    Parameters
    ----------
    text : str
        Numbers separated by commas, semicolons or spaces (``"10, 25"``).

    Returns
    -------
    list of float

    Raises
    ------
    ValueError
        For text that is not numbers, or no numbers at all.
    """
    parts = [p for p in re.split(r"[,;\s]+", text.strip()) if p]
    try:
        cuts = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"manual cuts must be numbers separated by commas, got {text!r}") from None
    if not cuts:
        raise ValueError("the manual cut-off needs one or more cut values, e.g. '15' or '10, 25'")
    return cuts


def stratify_kwargs(
    columns: Sequence[str],
    *,
    id_col: str,
    time_col: str | None,
    event_col: str | None,
    covariates: Sequence[str],
    group_by: str | None,
    cutoff: str,
    cuts: str,
    model: str,
    ties: str,
    l2: float,
    cv_folds: int,
    dropna: bool,
) -> dict[str, Any]:
    """The keyword arguments of :func:`~napari_gbm.survival.stratify.run_stratify` from the
    dock's choices, checked.

    Parameters
    ----------
    columns : sequence of str
        The columns of the loaded tables.
    id_col, time_col, event_col : str
        The chosen columns (time and event None when none was found).
    covariates : sequence of str
        The chosen covariates (none: ``run_stratify``'s defaults).
    group_by : str or None
        The biomarker to group by, or None for the model's risk score.
    cutoff : str
        One of ``CUTOFFS``.
    cuts : str
        The manual cuts as typed (read for ``cutoff="manual"`` only).
    model, ties, l2, cv_folds, dropna
        As ``run_stratify`` takes them.

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        When the time or event column is missing, not in the tables, or the two are
        the same; when a covariate is the id, time or event column; for bad manual cuts.
    """
    if time_col is None or event_col is None:
        raise ValueError(
            "choose the time and event columns; the table has no survival columns "
            "recognised by name: load the clinical table with the follow-up time and "
            "event (1 = death) per patient"
        )
    for what, col in (("time", time_col), ("event", event_col)):
        if col not in columns:
            raise ValueError(f"the {what} column {col!r} is not in the loaded tables")
    if time_col == event_col:
        raise ValueError(f"the time and event columns are the same ({time_col!r})")
    chosen = [str(c) for c in covariates]
    clash = [c for c in chosen if c in (time_col, event_col, id_col)]
    if clash:
        raise ValueError(f"{clash} cannot be a covariate: it is the id, time or event")
    return {
        "time_col": str(time_col),
        "event_col": str(event_col),
        "covariates": chosen or None,
        "model": model,
        "ties": ties,
        "id_col": id_col,
        "cutoff": cutoff,
        "cuts": parse_cuts(cuts) if cutoff == "manual" else None,
        "group_by": group_by,
        "l2": float(l2),
        "cv_folds": int(cv_folds),
        "dropna": bool(dropna),
    }


def unused_folder(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``, ...: the first that holds no stratification
    and no other files yet, so a run from the dock never overwrites one (such as the
    demo's).

    Parameters
    ----------
    base : Path

    Returns
    -------
    Path
    """
    path, k = base, 1
    while (path / "metrics.json").exists() or (path.exists() and any(path.iterdir())):
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path
