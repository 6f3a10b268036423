"""Reading a stratification's table: files, event and time columns, covariates.

The one reading of these inputs for ``napari-gbm stratify``, the cohort manifest and the
Cohort dock (:func:`napari_gbm.survival.stratify.run_stratify` calls it):

- :func:`load_table`: a CSV, TSV or Parquet file (separator found from its first lines; a
  ``;`` file with decimal commas, as European Excel writes it), or a cohort output folder
  (its ``patients.parquet``);
- the event column: :func:`event_indicator`: 1/0 (also 1.0/0.0 and booleans), yes/no,
  y/n, true/false, dead/alive, deceased/living, died/censored in any case with spaces
  around; an empty cell is missing; anything else is refused, naming the column, the
  file and the first such values;
- the time column (and ``group_by``): numbers (:func:`numeric_values`); text such as
  ``'12 months'`` is refused the same way;
- covariates (:func:`covariate_values`, :func:`encode_covariates`): numbers and booleans
  as they are; a text column whose values are all numbers, or all yes/no words, as
  numbers (0/1); any other text column (IDH ``Mutant``/``WT``, sex ``M``/``F``) is
  categorical: one 0/1 column per level except the reference level, the most frequent
  one (ties: the first alphabetically), named ``idh=Mutant (vs WT)``; at most
  :data:`MAX_LEVELS` levels. A column mixing numbers and text is refused, naming the text
  values.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = [
    "EVENT_WORDS",
    "MAX_LEVELS",
    "column_sources",
    "covariate_values",
    "encode_covariates",
    "event_indicator",
    "load_table",
    "numeric_values",
    "require_columns",
]

#: event indicators as people write them (compared in lower case, spaces stripped)
EVENT_WORDS: dict[str, float] = {
    "1": 1.0, "yes": 1.0, "y": 1.0, "true": 1.0, "dead": 1.0, "deceased": 1.0, "died": 1.0,
    "0": 0.0, "no": 0.0, "n": 0.0, "false": 0.0, "alive": 0.0, "living": 0.0, "censored": 0.0,
}  # fmt: skip
#: most levels a categorical covariate may have (more: an id, or numbers written as text)
MAX_LEVELS = 10


def load_table(path: str | Path) -> pd.DataFrame:
    """A CSV, TSV or Parquet table, or a cohort output folder (its ``patients.parquet``).

    The separator of a text table is found from its first lines (``,``, tab, ``;``, ``|``
    or space: :func:`_separator`); a ``;`` file is read with decimal commas, as European
    Excel writes it.

    Parameters
    ----------
    path : str or Path
        A ``.csv``, ``.tsv``, ``.txt`` or ``.parquet`` file, or the output folder of
        ``napari-gbm cohort`` (its ``patients.parquet``, else its ``slides.parquet``).

    Returns
    -------
    DataFrame
        Its ``attrs["source"]`` is the file read, which
        :func:`~napari_gbm.survival.stratify.run_stratify` names in its messages about a
        column.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        Naming the file, for one that is not a table: empty, binary (a spreadsheet, an
        image), not UTF-8, an unreadable Parquet file, a header without rows.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("patients.parquet", "slides.parquet"):
            if (path / name).is_file():
                return _read_table(path / name)
        raise ValueError(
            f"{path} is a folder without patients.parquet or slides.parquet; "
            "pass a table or the output folder of `napari-gbm cohort`"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return _read_table(path)


def _separator(head: bytes) -> str:
    """The separator of a delimited text table from its first lines: the first of
    ``, tab ; | space`` that splits every line (quotes respected) into the same number
    (> 1) of fields; ``,`` when none does (one column). A European Excel CSV uses ';', R's
    ``write.table`` a space; a header such as ``Event (1=dead, 0=alive)`` in a ';' file
    does not fool it, as it would a sniffer of the header alone."""
    lines = head.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()
    if len(head) == 1 << 16:
        lines = lines[:-1]  # maybe cut in the middle
    lines = [ln for ln in lines if ln.strip()][:50]
    for sep in (",", "\t", ";", "|", " "):
        widths = {len(row) for row in csv.reader(lines, delimiter=sep)}
        if len(widths) == 1 and widths.pop() > 1:
            return sep
    return ","


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv", ".tsv", ".txt"):
        raise ValueError(f"{path.name}: give a .csv, .tsv or .parquet table")
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if not head.strip():
        raise ValueError(f"{path} is empty: a table needs a header row and one row per patient")
    if suffix == ".parquet":
        try:
            df = pd.read_parquet(path)
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(f"{path} is not a readable Parquet file: {exc}") from None
    else:
        if b"\x00" in head:
            raise ValueError(
                f"{path} is not a text table: it holds binary data (a spreadsheet, an image "
                "or a Parquet file named .csv?); save it as CSV (UTF-8) or Parquet"
            )
        sep = "\t" if suffix == ".tsv" else _separator(head)
        try:
            # a ';' file is a European Excel CSV: decimal commas
            df = pd.read_csv(path, sep=sep, decimal="," if sep == ";" else ".")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{path} is not UTF-8 text (it has the byte {exc.object[exc.start]:#04x}): "
                "save the table as CSV UTF-8 (Excel: Save As, 'CSV UTF-8')"
            ) from None
        except pd.errors.EmptyDataError:
            raise ValueError(
                f"{path} is empty: a table needs a header row and one row per patient"
            ) from None
        except pd.errors.ParserError as exc:
            raise ValueError(f"{path} is not a readable CSV table: {exc}") from None
        if sep == ";":  # columns written with '.' decimals: numbers as in any CSV
            for c in df.columns:
                if not pd.api.types.is_numeric_dtype(df[c].dtype):
                    numbers = pd.to_numeric(df[c], errors="coerce")
                    if numbers.notna().sum() == df[c].notna().sum():
                        df[c] = numbers
    if df.empty:
        raise ValueError(
            f"{path} has no rows under its header {[str(c) for c in df.columns][:8]}: "
            "a table needs one row per patient (or slide)"
        )
    df.attrs["source"] = str(path)
    return df


def _where(column: str | None, source: str | None, what: str) -> str:
    """ "the event column 'os_event' of clinical.csv" (as much as is known)."""
    text = f"the {what} column" + (f" {column!r}" if column is not None else "")
    return text + (f" of {source}" if source else "")


def _examples(values: list[Any], n_rows: int) -> str:
    return f"{values[:5]!r} ({n_rows} row{'s' if n_rows != 1 else ''})"


def _as_event(value: Any) -> float | None:
    """1.0, 0.0, NaN (an empty cell) or None (not an event indicator)."""
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value) if value in (0, 1) else None
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return float("nan")
        if text in EVENT_WORDS:
            return EVENT_WORDS[text]
        try:
            number = float(text)
        except ValueError:
            return None
        return number if number in (0.0, 1.0) else None
    return None


def _as_number(value: Any) -> float | None:
    """The number, NaN (an empty cell) or None (text that is not a number)."""
    if isinstance(value, bool | np.bool_ | int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return float("nan")
        try:
            return float(text)
        except ValueError:
            return None
    return None


def _parse(values: pd.Series, parse: Any) -> tuple[np.ndarray, list[Any], int]:
    """``parse`` on each distinct value: float64 values (NaN where missing), the values
    ``parse`` refused (first seen first) and how many rows hold them."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    parsed = [parse(v) for v in uniques]
    bad = [j for j, v in enumerate(parsed) if v is None]
    table = np.array([np.nan if v is None else v for v in parsed] + [np.nan], np.float64)
    out = table[codes]  # code -1 (missing) picks the NaN at the end
    n_bad = int(np.isin(codes, bad).sum()) if bad else 0
    shown = [uniques[j] for j in bad]
    return out, [v.item() if isinstance(v, np.generic) else v for v in shown], n_bad


def event_indicator(
    values: Any, *, column: str | None = None, source: str | None = None
) -> np.ndarray:
    """Event indicators as float64: 1.0 = event (death) observed, 0.0 = censored, NaN =
    missing (an empty cell).

    Reads 1/0, 1.0/0.0, booleans, and the words of :data:`EVENT_WORDS` (yes/no, y/n,
    true/false, dead/alive, deceased/living, died/censored) in any case, with spaces
    around. The one reading of an event column: ``napari-gbm stratify``, the cohort
    manifest (through :func:`~napari_gbm.survival.stratify.run_stratify`) and the Cohort
    dock.

    Parameters
    ----------
    values : Series or array-like
        The column.
    column, source : str, optional
        Its name and file, for messages.

    Returns
    -------
    ndarray of float64

    Raises
    ------
    ValueError
        For any other value (``'maybe'``, ``2``), naming ``column``, ``source`` (the file)
        and the first such values.
    """
    s = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    out, bad, n_bad = _parse(s, _as_event)
    if bad:
        raise ValueError(
            f"{_where(column, source, 'event')} has values that are not an event indicator: "
            f"{_examples(bad, n_bad)}; write 1/0, yes/no, true/false, dead/alive or "
            "deceased/living (1, yes, dead: death observed; 0, no, alive: censored), or "
            "leave the cell empty when unknown"
        )
    return out


def numeric_values(
    values: Any, *, column: str | None = None, source: str | None = None, what: str = "time"
) -> np.ndarray:
    """A column of numbers as float64 (NaN where missing), from numbers or from text that
    is a number (``' 12.5 '``).

    Parameters
    ----------
    values, column, source
        As for :func:`event_indicator`.
    what : str
        What the column is, for messages ("time", "group-by").

    Returns
    -------
    ndarray of float64

    Raises
    ------
    ValueError
        For text that is not a number (``'twelve'``, ``'12 months'``), naming ``column``,
        ``source`` (the file) and the first such values.
    """
    s = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    out, bad, n_bad = _parse(s, _as_number)
    if bad:
        raise ValueError(
            f"{_where(column, source, what)} must hold numbers; it has text "
            f"{_examples(bad, n_bad)}: write the number alone (12, not '12 months'; one unit "
            "for every patient), or leave the cell empty when unknown"
        )
    return out


def covariate_values(values: pd.Series, column: str, source: str | None) -> pd.Series:
    """A covariate as the model reads it.

    Parameters
    ----------
    values : Series
        The column.
    column, source : str
        Its name and file, for messages.

    Returns
    -------
    Series
        float64 for numbers, booleans, yes/no words and text that is all numbers (NaN
        where missing); else object dtype holding text categories (spaces stripped,
        empty cells None).

    Raises
    ------
    ValueError
        For a column mixing numbers and text, naming the text values.
    """
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(values.to_numpy(dtype=np.float64, na_value=np.nan), index=values.index)
    numbers, not_numbers, n_text = _parse(values, _as_number)
    if not not_numbers:
        return pd.Series(numbers, index=values.index)
    events, not_events, _ = _parse(values, _as_event)
    if not not_events:  # yes/no, true/false: present vs absent, as a 0/1 column
        return pd.Series(events, index=values.index)
    if np.isfinite(numbers).any():
        raise ValueError(
            f"{_where(column, source, 'covariate')} mixes numbers and text "
            f"{_examples(not_numbers, n_text)}: write numbers only (or leave the cell empty "
            "when unknown), or categories only (e.g. Mutant / WT)"
        )
    text = values.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
    return text.where(text.notna() & (text.astype(str) != ""), None).astype(object)


def encode_covariates(
    df: pd.DataFrame, covariates: list[str], sources: dict[str, str]
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """The model's covariate matrix.

    Parameters
    ----------
    df : DataFrame
        The patients, covariates read by :func:`covariate_values`.
    covariates : list of str
        The columns to encode, in order.
    sources : dict of str to str
        Column -> file, for messages (:func:`column_sources`).

    Returns
    -------
    X : DataFrame
        float64; numeric covariates as they are, each categorical one as a 0/1 column per
        level but the reference (the most frequent level; ties: the first alphabetically),
        named ``"<column>=<level> (vs <reference>)"``.
    categorical : dict
        Per categorical covariate: ``reference``, ``levels`` and ``columns`` (in ``X``).

    Raises
    ------
    ValueError
        For a categorical covariate with one level, or more than :data:`MAX_LEVELS`.
    """
    cols: dict[str, pd.Series] = {}
    categorical: dict[str, dict[str, Any]] = {}
    for c in covariates:
        s = df[c]
        if s.dtype != object:
            cols[c] = s.astype(np.float64)
            continue
        text = s.astype(str)
        counts = text.value_counts()
        levels = sorted(counts.index)
        where = _where(c, sources.get(c), "covariate")
        if len(levels) < 2:
            raise ValueError(
                f"{where} has the one value {levels!r} for every patient: it carries no "
                "information; remove it"
            )
        if len(levels) > MAX_LEVELS:
            raise ValueError(
                f"{where} has {len(levels)} different text values (e.g. {levels[:5]!r}), "
                f"more than the {MAX_LEVELS} levels a categorical covariate may have: is it "
                "an id, or numbers written as text?"
            )
        ref = min(levels, key=lambda lv: (-int(counts[lv]), lv))
        names = []
        for lv in levels:
            if lv != ref:
                names.append(f"{c}={lv} (vs {ref})")
                cols[names[-1]] = (text == lv).astype(np.float64)
        categorical[c] = {"reference": ref, "levels": levels, "columns": names}
    return pd.DataFrame(cols, index=df.index), categorical


def column_sources(
    table: pd.DataFrame,
    clinical: pd.DataFrame | None,
    id_col: str,
    table_name: str | None,
    clinical_name: str | None,
) -> dict[str, str]:
    """Which file each column comes from, for messages.

    Parameters
    ----------
    table, clinical : DataFrame
        The patient table and the optional clinical table.
    id_col : str
        The id column they are joined on.
    table_name, clinical_name : str, optional
        The tables' names; default: their ``attrs["source"]`` (set by :func:`load_table`).

    Returns
    -------
    dict of str to str
        Column -> file, with a clinical column renamed ``<name>_clinical`` as
        :func:`~napari_gbm.survival.patients.join_clinical` renames it.
    """
    name = table_name or table.attrs.get("source") or "the table"
    out = {str(c): str(name) for c in table.columns}
    if clinical is not None:
        cname = str(clinical_name or clinical.attrs.get("source") or "the clinical table")
        for c in map(str, clinical.columns):
            if c != id_col:
                out[f"{c}_clinical" if c in out else c] = cname
    return out


def require_columns(df: pd.DataFrame, cols: list[str], what: str) -> None:
    """Check that a table has the given columns.

    Parameters
    ----------
    df : DataFrame
        The table.
    cols : list of str
        The columns it needs.
    what : str
        What the table is, for the message (``"table"``).

    Raises
    ------
    ValueError
        Naming the columns of `cols` that `df` lacks, and the columns it has.
    """
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"the {what} has no column(s) {missing}; it has {list(df.columns)}")
