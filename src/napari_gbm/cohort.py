"""Cohorts: many slides on dask.distributed, resumable and fault-tolerant, one cohort table.

:func:`run_cohort` reads a folder of slides or a manifest CSV (:func:`read_cohort_input`),
sends one task per slide to a dask.distributed cluster (an embedded ``LocalCluster`` by
default, any running scheduler when given) and writes, under the output folder ``DIR``::

    DIR/slides/<slide_id>/   what ``napari-gbm analyze`` writes for that slide
    DIR/slides.parquet       one row per analysed slide: its biomarkers, ids, clinical columns
    DIR/patients.parquet     one row per patient (napari_gbm.survival.patients.aggregate_patients)
    DIR/failures.csv         one row per slide that could not be analysed, with the reason
    DIR/failures.parquet     the same table
    DIR/cohort.json          the run: input, parameters, counts (written after the tables)
    DIR/cohort.log           what happened to each slide, appended run after run
    DIR/stratify/            survival stratification, when the manifest has time and event

A task receives paths and a plain parameter dictionary, never open handles, so it runs on
any worker that sees the same files. A slide whose folder holds a complete analysis of the
same file (checksum) with the same parameters is skipped, so a re-run resumes where a killed
run stopped; every file is written atomically, and the cohort tables are removed when a run
starts and written only once every slide has an outcome. An unreadable slide becomes a row
of the failures table and the others go on. A worker that dies mid-slide is replaced by the
scheduler and its task rerun elsewhere (``distributed.scheduler.allowed-failures`` deaths,
3 by default); an unexpected exception inside a task is retried ``retries`` times.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import traceback
import types
import typing
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from distributed import Client

    from napari_gbm.pipeline import AnalyzeParams

__all__ = [
    "DEFAULT_EVENT_COL",
    "DEFAULT_TIME_COL",
    "FAILURE_COLUMNS",
    "MANIFEST_COLUMNS",
    "SLIDE_EXTENSIONS",
    "Cohort",
    "CohortProgress",
    "CohortResult",
    "CohortSlide",
    "WorkerEnvironmentError",
    "analyze_task",
    "check_workers",
    "flatten_summary",
    "params_from_dict",
    "read_cohort_input",
    "run_cohort",
]

log = logging.getLogger(__name__)

#: manifest columns with a meaning; every other column is a clinical variable
MANIFEST_COLUMNS = {
    "slide_path": "path of the slide (absolute, or relative to the manifest's folder)",
    "patient_id": "the patient the slide comes from (several slides may share one)",
    "slide_id": "optional: name of the slide's output folder (default: the file name stem)",
    "mpp": "optional: level-0 pixel size in µm/px, overriding the file's metadata",
    "stain": "optional: 'he' or 'hdab' for this slide (default: the run's stain)",
}
REQUIRED_COLUMNS = ("slide_path", "patient_id")

#: whole-slide formats a folder scan picks up. Plain images (PNG, JPEG) need a pixel size
#: and often lie beside slides as masks or thumbnails: list them in a manifest, with ``mpp``.
#: A DICOM slide is a folder of files, one per level: list it in a manifest too.
SLIDE_EXTENSIONS = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".scn",
    ".mrxs",
    ".svslide",
    ".bif",
)

#: survival columns looked for in the manifest when none are named
DEFAULT_TIME_COL = "time_months"
DEFAULT_EVENT_COL = "event"

FAILURE_COLUMNS = (
    "slide_id",
    "patient_id",
    "path",
    "error_type",
    "message",
    "traceback",
    "worker",
)

#: columns the runner adds to each slide row (clinical columns may not use these names)
_ID_COLUMNS = ("slide_id", "patient_id", "path")
_META_COLUMNS = ("stain", "slide_mpp", "whole_image_analysed", "elapsed_s", "napari_gbm_version")
#: summary entries that are metadata or label dictionaries, not biomarkers
_NOT_BIOMARKERS = frozenset(
    {
        "slide_id",
        "software",
        "input",
        "slide",
        "parameters",
        "positive_class_names",
        "region_classes",
        "whole_image_analysed",
        "elapsed_s",
    }
)
_TRACEBACK_LINES = 12


class WorkerEnvironmentError(RuntimeError):
    """A worker of the cluster cannot run napari-gbm, or runs another version of it."""


# --- the cohort's slides: a folder or a manifest ---


@dataclass(frozen=True)
class CohortSlide:
    """One slide of a cohort, as the manifest (or the folder) gives it."""

    slide_id: str
    path: Path
    patient_id: str
    mpp: float | None = None
    stain: str | None = None
    clinical: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cohort:
    """The slides of a cohort and the names of its clinical columns (manifest order)."""

    slides: tuple[CohortSlide, ...]
    clinical_columns: tuple[str, ...]
    source: Path

    def clinical_table(self) -> pd.DataFrame:
        """One row per patient: ``patient_id`` and the clinical columns (a value missing on
        one slide of a patient is taken from another)."""
        rows: dict[str, dict[str, Any]] = {}
        for s in self.slides:
            row = rows.setdefault(s.patient_id, {"patient_id": s.patient_id})
            for col in self.clinical_columns:
                if row.get(col) is None:
                    row[col] = s.clinical.get(col)
        return pd.DataFrame(list(rows.values()), columns=["patient_id", *self.clinical_columns])


def read_cohort_input(source: str | os.PathLike[str]) -> Cohort:
    """The slides of a cohort from a folder of slides or a manifest CSV.

    A folder gives every file with a whole-slide extension (:data:`SLIDE_EXTENSIONS`) directly
    in it, sorted by name; each slide is its own patient (``patient_id`` = ``slide_id`` = the
    file name stem). A manifest is a CSV with the columns of :data:`MANIFEST_COLUMNS`
    (``slide_path`` and ``patient_id`` required); any other column is clinical, and must have
    one value per patient.

    Slides that do not exist are kept: running them records a failure, so that the other
    slides still run. Everything else wrong with the input raises ``ValueError`` naming the
    rows or columns concerned.
    """
    source = Path(source)
    if source.is_dir():
        return _scan_folder(source)
    if not source.exists():
        raise FileNotFoundError(f"cohort input '{source}' does not exist")
    if source.suffix.lower() in SLIDE_EXTENSIONS:
        raise ValueError(
            f"'{source}' is a slide; give a folder of slides or a manifest CSV "
            "(napari-gbm analyze runs a single slide)"
        )
    return _read_manifest(source)


def _scan_folder(folder: Path) -> Cohort:
    paths = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SLIDE_EXTENSIONS
    )
    if not paths:
        raise ValueError(
            f"no slides in '{folder}' (looked for {', '.join(SLIDE_EXTENSIONS)}); plain images "
            "and DICOM folders go in a manifest CSV with a slide_path column"
        )
    slides = [CohortSlide(slide_id=p.stem, path=p.resolve(), patient_id=p.stem) for p in paths]
    _check_unique_ids(slides, hint="rename the files, or list them in a manifest with slide_id")
    return Cohort(tuple(slides), (), folder)


def _read_manifest(path: Path) -> Cohort:
    try:
        df = pd.read_csv(path, dtype={"slide_path": str, "patient_id": str, "slide_id": str})
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"manifest '{path}' is not a readable CSV file: {exc}") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"manifest '{path}' is empty") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"manifest '{path}' lacks the column(s) {', '.join(missing)}; it has "
            f"{', '.join(df.columns) or 'none'}. Required: slide_path (the slide file) and "
            "patient_id; optional: slide_id, mpp, stain; any other column is clinical"
        )
    duplicated_cols = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if duplicated_cols:
        raise ValueError(f"manifest '{path}' repeats the column(s) {', '.join(duplicated_cols)}")
    if df.empty:
        raise ValueError(f"manifest '{path}' has no rows")
    for col in ("slide_path", "patient_id"):
        blank = df.index[df[col].isna() | (df[col].astype(str).str.strip() == "")]
        if len(blank):
            raise ValueError(
                f"manifest '{path}': {col} is empty on row(s) {_rows(blank)} (rows count from 1 "
                "after the header)"
            )
    base = path.resolve().parent
    resolved = [_resolve(base, str(p).strip()) for p in df["slide_path"]]
    dupes = _duplicates(str(p) for p in resolved)
    if dupes:
        detail = "; ".join(f"{p} on rows {_rows(rows)}" for p, rows in dupes.items())
        raise ValueError(f"manifest '{path}' lists a slide more than once: {detail}")
    mpps = _optional_mpp(df, path)
    stains = _optional_stain(df, path)
    if "slide_id" in df.columns:
        ids = [
            str(v).strip() if isinstance(v, str) and v.strip() else p.stem
            for v, p in zip(df["slide_id"], resolved, strict=True)
        ]
    else:
        ids = [p.stem for p in resolved]
    clinical_cols = tuple(c for c in df.columns if c not in MANIFEST_COLUMNS)
    reserved = [c for c in clinical_cols if c in _ID_COLUMNS or c in _META_COLUMNS]
    if reserved:
        raise ValueError(
            f"manifest '{path}': the clinical column(s) {', '.join(reserved)} would clash with "
            "columns of the slide table; rename them"
        )
    patients = df["patient_id"].astype(str).str.strip()
    _check_clinical_per_patient(df, patients, clinical_cols, path)
    slides = [
        CohortSlide(
            slide_id=ids[i],
            path=resolved[i],
            patient_id=patients.iloc[i],
            mpp=mpps[i],
            stain=stains[i],
            clinical={c: _scalar(df[c].iloc[i]) for c in clinical_cols},
        )
        for i in range(len(df))
    ]
    _check_unique_ids(slides, hint="add a slide_id column to the manifest")
    return Cohort(tuple(slides), clinical_cols, path)


def _resolve(base: Path, text: str) -> Path:
    p = Path(text).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


def _rows(index: Iterable[Any]) -> str:
    """Manifest row numbers as a person counts them (first data row = 1)."""
    return ", ".join(str(int(i) + 1) for i in index)


def _duplicates(values: Iterable[str]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        seen.setdefault(v, []).append(i)
    return {v: rows for v, rows in seen.items() if len(rows) > 1}


def _optional_mpp(df: pd.DataFrame, path: Path) -> list[float | None]:
    if "mpp" not in df.columns:
        return [None] * len(df)
    values = pd.to_numeric(df["mpp"], errors="coerce")
    bad = df.index[(df["mpp"].notna() & values.isna()) | (values <= 0)]
    if len(bad):
        raise ValueError(
            f"manifest '{path}': mpp must be a positive number of µm per pixel (or empty to "
            f"use the slide's metadata); row(s) {_rows(bad)} have "
            f"{', '.join(repr(df['mpp'].iloc[i]) for i in bad)}"
        )
    return [None if pd.isna(v) else float(v) for v in values]


def _optional_stain(df: pd.DataFrame, path: Path) -> list[str | None]:
    if "stain" not in df.columns:
        return [None] * len(df)
    out: list[str | None] = []
    bad = []
    for i, v in enumerate(df["stain"]):
        if pd.isna(v) or not str(v).strip():
            out.append(None)
            continue
        text = str(v).strip().lower()
        if text not in ("he", "hdab"):
            bad.append(i)
        out.append(text)
    if bad:
        raise ValueError(
            f"manifest '{path}': stain must be 'he' or 'hdab' (or empty); row(s) {_rows(bad)} "
            f"have {', '.join(repr(df['stain'].iloc[i]) for i in bad)}"
        )
    return out


def _check_clinical_per_patient(
    df: pd.DataFrame, patients: pd.Series, cols: Sequence[str], path: Path
) -> None:
    for col in cols:
        conflict = [
            pid
            for pid, values in df[col].groupby(patients, sort=False)
            if values.dropna().nunique() > 1
        ]
        if conflict:
            raise ValueError(
                f"manifest '{path}': the clinical column '{col}' has different values on the "
                f"slides of patient(s) {', '.join(map(str, conflict))}; a clinical variable "
                "has one value per patient"
            )


def _check_unique_ids(slides: Sequence[CohortSlide], *, hint: str) -> None:
    dupes = _duplicates(s.slide_id for s in slides)
    if dupes:
        detail = "; ".join(
            f"{sid!r} ({', '.join(str(slides[i].path) for i in rows)})"
            for sid, rows in dupes.items()
        )
        raise ValueError(f"two slides would share an output folder: {detail}; {hint}")
    for s in slides:
        if s.slide_id in (".", "..") or "/" in s.slide_id or "\\" in s.slide_id:
            raise ValueError(f"slide_id {s.slide_id!r} cannot name a folder; {hint}")


def _scalar(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v


# --- parameters travel as a plain dictionary ---


def params_from_dict(data: Mapping[str, Any]) -> AnalyzeParams:
    """The :class:`~napari_gbm.pipeline.AnalyzeParams` that ``AnalyzeParams.to_dict()``
    (or the ``parameters`` of a ``summary.json``, which holds a few derived entries more)
    describes. Unknown keys raise ``ValueError``: they mean another napari-gbm version."""
    from napari_gbm.pipeline import AnalyzeParams

    derived = ("tiling_grid", "tissue_summary", "stain_vectors")
    return _from_dict(
        AnalyzeParams, {k: v for k, v in data.items() if k not in derived}, "parameters"
    )


def _from_dict(cls: Any, data: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(
            f"unknown {where} entries {', '.join(unknown)}: written by another napari-gbm version?"
        )
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        hint = hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        options = typing.get_args(hint) if union else (hint,)
        sub = next((t for t in options if is_dataclass(t)), None)
        if sub is not None and isinstance(value, Mapping):
            value = _from_dict(sub, value, f"{where}.{f.name}")
        elif isinstance(value, list) and any(typing.get_origin(t) is tuple for t in options):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _jsonable(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists, numpy scalars numbers)."""
    from napari_gbm.io import _json_default

    return json.loads(json.dumps(obj, default=_json_default))


# --- one task: one slide (runs on a worker) ---


def analyze_task(
    path: str,
    out: str,
    params: dict[str, Any],
    mpp: float | None = None,
    slide_id: str | None = None,
    expected_version: str | None = None,
) -> dict[str, Any]:
    """Analyse one slide into ``out`` unless ``out`` already holds the same analysis.

    Runs on a dask worker: it takes paths and a parameter dictionary (``AnalyzeParams.to_dict``)
    and returns a plain dictionary: ``status`` ("analysed", "skipped" or "failed"), the
    slide's ``summary`` (as ``summary.json`` holds it), or ``error_type``, ``message`` and
    ``traceback``, and the ``worker`` and ``warnings`` seen. Errors about the input (an
    unreadable slide, a missing file, no pixel size) are returned as a failure; any other
    exception propagates so that dask retries the task.
    """
    import napari_gbm
    from napari_gbm.pipeline import analyze_slide
    from napari_gbm.wsi.slide import SlideError

    t0 = time.perf_counter()
    worker = _worker_address()
    base = {"path": path, "slide_id": slide_id, "worker": worker}
    if expected_version is not None and napari_gbm.__version__ != expected_version:
        return {
            **base,
            "status": "failed",
            "error_type": "WorkerEnvironmentError",
            "message": f"worker {worker} runs napari-gbm {napari_gbm.__version__}, the "
            f"client {expected_version}; install the same version on every worker",
            "traceback": "",
        }
    out_dir = Path(out)
    previous = _previous_summary(out_dir, path, params, mpp, slide_id)
    if previous is not None:
        return {**base, "status": "skipped", "summary": previous, "task_s": 0.0}
    try:
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"slide '{path}' does not exist (where the workers run: give paths every "
                "worker sees)"
            )
        for stale in out_dir.glob(".*.tmp") if out_dir.is_dir() else ():
            stale.unlink(missing_ok=True)  # left by a worker killed while writing
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            analyze_slide(path, out_dir, params_from_dict(params), mpp=mpp, slide_id=slide_id)
        summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    except (SlideError, OSError, ValueError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            raise  # a file system hiccup: let dask retry the task
        return {
            **base,
            "status": "failed",
            "error_type": type(exc).__name__,
            "message": str(exc),
            "traceback": _traceback_tail(exc),
        }
    return {
        **base,
        "status": "analysed",
        "summary": summary,
        "warnings": [str(w.message) for w in caught],
        "task_s": round(time.perf_counter() - t0, 3),
    }


def _previous_summary(
    out: Path, path: str, params: dict[str, Any], mpp: float | None, slide_id: str | None
) -> dict[str, Any] | None:
    """The summary of a complete analysis of the same file with the same parameters in
    ``out``, or None (then the slide is analysed again)."""
    from napari_gbm.pipeline import is_complete

    if not Path(path).is_file() or not is_complete(out, path):
        return None
    try:
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    used = summary.get("parameters", {})
    wanted = _jsonable(params)
    if any(used.get(k) != v for k, v in wanted.items()):
        return None
    if slide_id is not None and summary.get("slide_id") != slide_id:
        return None
    if mpp is not None and summary.get("slide", {}).get("mpp") != mpp:
        return None
    return dict(summary)


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def _traceback_tail(exc: BaseException, tb: Any = None) -> str:
    lines = traceback.format_exception(type(exc), exc, tb if tb is not None else exc.__traceback__)
    text = "".join(lines).rstrip().splitlines()
    return "\n".join(text[-_TRACEBACK_LINES:])


def _address(client: Client) -> str:
    return str(client.scheduler_info().get("address", "?"))


def _worker_probe() -> dict[str, str]:
    """What a worker runs: imported on the worker, so a worker without napari-gbm fails."""
    import platform

    import napari_gbm
    import napari_gbm.pipeline  # the whole analysis stack imports

    return {"napari_gbm": napari_gbm.__version__, "python": platform.python_version()}


def check_workers(
    client: Client, expected_version: str | None = None, *, timeout_s: float = 60.0
) -> dict[str, str]:
    """Check that every worker of ``client``'s cluster imports napari-gbm at
    ``expected_version`` (default: this process's). Waits up to ``timeout_s`` for a first
    worker. Returns ``{worker address: version}``; raises :class:`WorkerEnvironmentError`
    naming each worker that cannot, and why."""
    import napari_gbm

    expected = expected_version or napari_gbm.__version__
    if not client.scheduler_info().get("workers"):
        try:
            client.wait_for_workers(1, timeout=timeout_s)
        except (TimeoutError, OSError):
            raise WorkerEnvironmentError(
                f"no worker joined the scheduler {_address(client)} within "
                f"{timeout_s:g} s; start some (dask worker {_address(client)}) or "
                "scale the cluster to at least one worker"
            ) from None
    answers = client.run(_worker_probe, on_error="return")
    problems = []
    versions = {}
    for address, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            problems.append(
                f"{address}: cannot import napari_gbm ({type(answer).__name__}: {answer})"
            )
        elif answer["napari_gbm"] != expected:
            problems.append(f"{address}: napari-gbm {answer['napari_gbm']}, not {expected}")
        else:
            versions[address] = answer["napari_gbm"]
    if problems:
        raise WorkerEnvironmentError(
            f"{len(problems)} of {len(answers)} worker(s) cannot run napari-gbm {expected}: "
            + "; ".join(problems)
            + ". Install the same napari-gbm version in every worker's environment"
        )
    return versions


# --- the run ---


@dataclass(frozen=True)
class CohortProgress:
    """Where a cohort run stands, after each slide's outcome (``elapsed_s`` counts from the
    submission of the tasks, after the cluster started)."""

    done: int
    total: int
    analysed: int
    skipped: int
    failed: int
    n_cells: int
    elapsed_s: float
    last_slide: str
    last_status: str
    last_message: str = ""

    @property
    def slides_per_min(self) -> float:
        """Analysed slides per minute (skipped ones excluded)."""
        return 60.0 * self.analysed / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class CohortResult:
    """What :func:`run_cohort` wrote (the tables are also on disk, under ``out``)."""

    out: Path
    slides: pd.DataFrame
    failures: pd.DataFrame
    patients: pd.DataFrame | None
    n_analysed: int
    n_skipped: int
    n_failed: int
    elapsed_s: float
    stratify: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def run_cohort(
    source: str | os.PathLike[str] | Cohort,
    out: str | os.PathLike[str],
    params: AnalyzeParams | None = None,
    *,
    mpp: float | None = None,
    client: Client | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    retries: int = 2,
    worker_timeout_s: float = 60.0,
    time_col: str | None = None,
    event_col: str | None = None,
    covariates: Sequence[str] | None = None,
    model: str = "cox",
    progress: Callable[[CohortProgress], None] | None = None,
) -> CohortResult:
    """Analyse every slide of a cohort on dask.distributed and write the cohort tables.

    Parameters
    ----------
    source : path or Cohort
        A folder of slides or a manifest CSV (see :func:`read_cohort_input`).
    out : path
        Output folder (see the module documentation for its layout). Re-running into the
        same folder skips the slides already analysed with the same parameters.
    params : AnalyzeParams, optional
        The analysis of each slide; a manifest's ``stain`` column overrides ``cells.stain``.
    mpp : float, optional
        Level-0 pixel size in µm/px for every slide, overriding the files' metadata (as
        ``napari-gbm analyze --mpp``); a manifest's ``mpp`` column overrides it per slide.
    client : distributed.Client, optional
        Run on this client's cluster. Otherwise ``scheduler`` (an address such as
        ``tcp://host:8786``) is connected to, or a ``LocalCluster`` of ``n_workers``
        processes with ``threads_per_worker`` threads each (one slide per thread) is started.
    retries : int
        Reruns of a task that raised something other than an input error.
    worker_timeout_s : float
        How long to wait for a first worker on an existing cluster.
    time_col, event_col, covariates, model :
        Stratification of the patients table (:func:`napari_gbm.run_stratify`), run when
        the manifest has both survival columns (default names :data:`DEFAULT_TIME_COL` and
        :data:`DEFAULT_EVENT_COL`).
    progress : callable, optional
        Called with a :class:`CohortProgress` after each slide's outcome.

    Returns
    -------
    CohortResult

    Raises
    ------
    ValueError
        For a bad manifest or folder (nothing is analysed).
    WorkerEnvironmentError
        When a worker of an existing cluster cannot run this napari-gbm.
    """
    import napari_gbm
    from napari_gbm.pipeline import AnalyzeParams

    t0 = time.perf_counter()
    cohort = source if isinstance(source, Cohort) else read_cohort_input(source)
    params = params or AnalyzeParams()
    _check_survival_columns(cohort, time_col, event_col, covariates)
    if threads_per_worker < 1 or (n_workers is not None and n_workers < 1):
        raise ValueError("n_workers and threads_per_worker must be at least 1")
    out = Path(os.path.abspath(out))  # workers may run elsewhere: never a relative path
    (out / "slides").mkdir(parents=True, exist_ok=True)
    for name in ("cohort.json", "slides.parquet", "patients.parquet", "failures.csv"):
        (out / name).unlink(missing_ok=True)  # a killed run leaves no table that looks complete
    (out / "failures.parquet").unlink(missing_ok=True)

    handler = logging.FileHandler(out / "cohort.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    previous_level, previous_propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        with _Cluster(client, scheduler, n_workers, threads_per_worker) as cl:
            workers = check_workers(cl, napari_gbm.__version__, timeout_s=worker_timeout_s)
            log.info(
                "run: %d slides from %s -> %s; scheduler %s, %d workers; napari-gbm %s",
                len(cohort.slides),
                cohort.source,
                out,
                _address(cl),
                len(workers),
                napari_gbm.__version__,
            )
            outcomes = _run_tasks(cl, cohort, out, params, mpp, retries, progress)
        result = _write_tables(cohort, out, params, outcomes, t0)
        result.stratify = _stratify(cohort, result, out, time_col, event_col, covariates, model)
        log.info(
            "done: %d analysed, %d skipped, %d failed in %.1f s",
            result.n_analysed,
            result.n_skipped,
            result.n_failed,
            time.perf_counter() - t0,
        )
        return result
    except BaseException as exc:
        log.error("run stopped: %s: %s", type(exc).__name__, exc)
        raise
    finally:
        log.removeHandler(handler)
        handler.close()
        log.setLevel(previous_level)
        log.propagate = previous_propagate


class _Cluster:
    """The client to run on: the caller's, one connected to ``scheduler``, or a new
    LocalCluster's; closes what it opened."""

    def __init__(
        self, client: Client | None, scheduler: str | None, n_workers: int | None, threads: int
    ) -> None:
        self.client, self.scheduler, self.n_workers, self.threads = (
            client,
            scheduler,
            n_workers,
            threads,
        )
        self._opened: list[Any] = []

    def __enter__(self) -> Client:
        from distributed import Client, LocalCluster

        if self.client is not None:
            return self.client
        if self.scheduler is not None:
            try:
                client = Client(self.scheduler, timeout="30s")
            except OSError as exc:
                raise WorkerEnvironmentError(
                    f"cannot connect to the dask scheduler at {self.scheduler}: {exc}"
                ) from None
            self._opened.append(client)
            return client
        n = self.n_workers or default_n_workers(self.threads)
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=self.threads,
            processes=True,
            dashboard_address=None,
        )
        self._opened.append(cluster)
        client = Client(cluster)
        self._opened.append(client)
        return client

    def __exit__(self, *exc: object) -> None:
        for obj in reversed(self._opened):
            obj.close()


def default_n_workers(threads_per_worker: int = 1, memory_per_slide_gib: float = 2.0) -> int:
    """Workers for a local cluster: one per ``threads_per_worker`` cores, as many as the
    memory holds at ``memory_per_slide_gib`` per running slide (at least one)."""
    from dask.system import CPU_COUNT
    from distributed.system import MEMORY_LIMIT

    by_cpu = max(1, CPU_COUNT // threads_per_worker)
    by_memory = max(1, int(MEMORY_LIMIT / 2**30 / (memory_per_slide_gib * threads_per_worker)))
    return min(by_cpu, by_memory)


def _run_tasks(
    client: Client,
    cohort: Cohort,
    out: Path,
    params: AnalyzeParams,
    mpp: float | None,
    retries: int,
    progress: Callable[[CohortProgress], None] | None,
) -> dict[str, dict[str, Any]]:
    """Submit one task per slide and gather their outcomes, keyed by slide_id."""
    from distributed import as_completed

    import napari_gbm

    t0 = time.perf_counter()
    run_token = uuid.uuid4().hex[:8]
    futures = {}
    # largest files first, so that the longest slides do not start last and hold up the end
    for s in sorted(cohort.slides, key=_file_size, reverse=True):
        slide_params = (
            params
            if s.stain is None
            else replace(params, cells=replace(params.cells, stain=s.stain))
        )
        future = client.submit(
            analyze_task,
            str(s.path),
            str(out / "slides" / s.slide_id),
            slide_params.to_dict(),
            s.mpp if s.mpp is not None else mpp,
            s.slide_id,
            napari_gbm.__version__,
            key=f"napari-gbm-slide-{s.slide_id}-{run_token}",
            pure=False,
            retries=retries,
        )
        futures[future] = s
    outcomes: dict[str, dict[str, Any]] = {}
    counts = {"analysed": 0, "skipped": 0, "failed": 0}
    n_cells = 0
    try:
        for future in as_completed(futures):
            s = futures[future]
            if future.status == "finished":
                outcome = future.result()
            else:  # raised after its retries, or its worker died too often (KilledWorker)
                exc = future.exception()
                outcome = {
                    "path": str(s.path),
                    "slide_id": s.slide_id,
                    "worker": "",
                    "status": "failed",
                    "error_type": type(exc).__name__,
                    "message": str(exc)
                    + (
                        " (the workers running this slide died; out of memory?)"
                        if type(exc).__name__ == "KilledWorker"
                        else f" (after {retries} retries)"
                    ),
                    "traceback": _traceback_tail(exc, future.traceback()),
                }
            future.release()
            outcomes[s.slide_id] = outcome
            status = outcome["status"]
            counts[status] += 1
            message = ""
            if status == "failed":
                message = f"{outcome['error_type']}: {outcome['message']}"
                log.warning("%s failed on %s: %s", s.slide_id, outcome["worker"], message)
            else:
                cells = int(outcome["summary"].get("n_cells") or 0)
                n_cells += cells
                log.info(
                    "%s %s on %s: %d cells%s",
                    s.slide_id,
                    status,
                    outcome["worker"],
                    cells,
                    f" in {outcome['task_s']:.1f} s" if status == "analysed" else "",
                )
                for w in outcome.get("warnings", ()):
                    log.info("%s: warning: %s", s.slide_id, w)
            if progress is not None:
                progress(
                    CohortProgress(
                        done=len(outcomes),
                        total=len(futures),
                        analysed=counts["analysed"],
                        skipped=counts["skipped"],
                        failed=counts["failed"],
                        n_cells=n_cells,
                        elapsed_s=time.perf_counter() - t0,
                        last_slide=s.slide_id,
                        last_status=status,
                        last_message=message,
                    )
                )
    except BaseException:
        client.cancel(list(futures))
        raise
    return outcomes


def _file_size(s: CohortSlide) -> int:
    try:
        return s.path.stat().st_size
    except OSError:
        return -1


# --- the cohort tables ---


def flatten_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A slide's ``summary.json`` as one table row: its scalar biomarkers, the
    ``heterogeneity`` entries as ``heterogeneity_<biomarker>_<statistic>``, and the stain,
    pixel size, analysis time and napari-gbm version. Metadata dictionaries (input, slide,
    parameters) and label dictionaries are left out."""
    row: dict[str, Any] = {}
    for key, value in summary.items():
        if key in _NOT_BIOMARKERS:
            continue
        if key == "heterogeneity" and isinstance(value, Mapping):
            for name, stats in value.items():
                if isinstance(stats, Mapping):
                    for stat, v in stats.items():
                        row[f"heterogeneity_{name}_{stat}"] = v
                else:
                    row[f"heterogeneity_{name}"] = stats
        elif not isinstance(value, Mapping | list | tuple):
            row[key] = value
    row["stain"] = summary.get("parameters", {}).get("cells", {}).get("stain")
    row["slide_mpp"] = summary.get("slide", {}).get("mpp")
    row["whole_image_analysed"] = summary.get("whole_image_analysed")
    row["elapsed_s"] = summary.get("elapsed_s")
    row["napari_gbm_version"] = summary.get("software", {}).get("napari_gbm")
    # plausibility warnings (napari_gbm.qc), e.g. a wrong pixel size: one cell per slide
    row["warnings"] = "; ".join(summary.get("warnings", []))
    return row


def _slides_table(cohort: Cohort, outcomes: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    rows = []
    for s in cohort.slides:
        outcome = outcomes.get(s.slide_id)
        if outcome is None or outcome["status"] == "failed":
            continue
        row = {
            "slide_id": s.slide_id,
            "patient_id": s.patient_id,
            "path": str(s.path),
            **flatten_summary(outcome["summary"]),
        }
        for col, value in s.clinical.items():
            row[_clinical_name(col, row)] = value
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=[*_ID_COLUMNS, *cohort.clinical_columns])
    for col in df.columns:
        if df[col].dtype == object:
            values = df[col].dropna()
            if values.empty or all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values
            ):
                df[col] = pd.to_numeric(df[col], errors="raise").astype("float64")
    return df


def _clinical_name(col: str, row: Mapping[str, Any]) -> str:
    """A clinical column named like a biomarker keeps its values as ``<name>_clinical``
    (as :func:`napari_gbm.survival.patients.join_clinical` names such clashes)."""
    if col not in row:
        return col
    log.warning("clinical column %r is also a biomarker: stored as %r", col, f"{col}_clinical")
    return f"{col}_clinical"


def _failures_table(cohort: Cohort, outcomes: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    rows = [
        {
            "slide_id": s.slide_id,
            "patient_id": s.patient_id,
            "path": str(s.path),
            **{k: str(outcomes[s.slide_id].get(k, "")) for k in FAILURE_COLUMNS[3:]},
        }
        for s in cohort.slides
        if outcomes.get(s.slide_id, {}).get("status") == "failed"
    ]
    return pd.DataFrame(rows, columns=list(FAILURE_COLUMNS)).astype(str)


def _write_tables(
    cohort: Cohort,
    out: Path,
    params: AnalyzeParams,
    outcomes: Mapping[str, Mapping[str, Any]],
    t0: float,
) -> CohortResult:
    import napari_gbm
    from napari_gbm.io import write_csv, write_json, write_parquet

    slides = _slides_table(cohort, outcomes)
    failures = _failures_table(cohort, outcomes)
    counts = {k: sum(o["status"] == k for o in outcomes.values()) for k in ("analysed", "skipped")}
    meta = {
        "software": {"napari_gbm": napari_gbm.__version__},
        "input": os.path.abspath(cohort.source),
        "parameters": params.to_dict(),
    }
    notes: list[str] = []
    write_parquet(slides, out / "slides.parquet", metadata=meta)
    patients = _patients_table(slides, cohort, notes)
    if patients is not None:
        write_parquet(patients, out / "patients.parquet", metadata=meta)
    write_parquet(failures, out / "failures.parquet", metadata=meta)
    write_csv(failures, out / "failures.csv")  # a slide named "=HYPERLINK(..)" stays text
    result = CohortResult(
        out=out,
        slides=slides,
        failures=failures,
        patients=patients,
        n_analysed=counts["analysed"],
        n_skipped=counts["skipped"],
        n_failed=len(failures),
        elapsed_s=round(time.perf_counter() - t0, 3),
        notes=notes,
    )
    write_json(
        {
            **meta,
            "n_slides": len(cohort.slides),
            "n_analysed": result.n_analysed,
            "n_skipped": result.n_skipped,
            "n_failed": result.n_failed,
            "n_patients": None if patients is None else len(patients),
            "clinical_columns": list(cohort.clinical_columns),
            "elapsed_s": result.elapsed_s,
            "notes": notes,
        },
        out / "cohort.json",
    )
    return result


def _patients_table(slides: pd.DataFrame, cohort: Cohort, notes: list[str]) -> pd.DataFrame | None:
    try:
        from napari_gbm.survival.patients import aggregate_patients, join_clinical
    except ModuleNotFoundError as exc:
        if exc.name != "napari_gbm.survival.patients":
            raise
        notes.append("patients.parquet not written: napari_gbm.survival.patients is not available")
        log.warning(notes[-1])
        return None
    if slides.empty:
        notes.append("patients.parquet not written: no slide was analysed")
        log.warning(notes[-1])
        return None
    clinical_in_table = [
        f"{c}_clinical" if f"{c}_clinical" in slides.columns else c for c in cohort.clinical_columns
    ]
    biomarkers = slides.drop(columns=clinical_in_table)
    patients = aggregate_patients(biomarkers, id_col="patient_id")
    if cohort.clinical_columns:
        clinical = cohort.clinical_table()
        patients = join_clinical(
            patients, clinical[clinical["patient_id"].isin(slides["patient_id"])], "patient_id"
        )
    return patients


def _check_survival_columns(
    cohort: Cohort,
    time_col: str | None,
    event_col: str | None,
    covariates: Sequence[str] | None,
) -> None:
    named = [c for c in (time_col, event_col) if c is not None]
    missing = [c for c in named if c not in cohort.clinical_columns]
    if missing:
        raise ValueError(
            f"the survival column(s) {', '.join(missing)} are not in the manifest; its clinical "
            f"columns are {', '.join(cohort.clinical_columns) or 'none'}"
        )
    if covariates and (time_col or DEFAULT_TIME_COL) not in cohort.clinical_columns:
        raise ValueError("covariates were given but the manifest has no survival time column")


def _stratify(
    cohort: Cohort,
    result: CohortResult,
    out: Path,
    time_col: str | None,
    event_col: str | None,
    covariates: Sequence[str] | None,
    model: str,
) -> dict[str, Any] | None:
    t_col = time_col or DEFAULT_TIME_COL
    e_col = event_col or DEFAULT_EVENT_COL
    if t_col not in cohort.clinical_columns or e_col not in cohort.clinical_columns:
        if cohort.clinical_columns:
            result.notes.append(
                f"no stratification: the manifest has no '{t_col}' and '{e_col}' columns "
                "(name the survival columns with --time-col and --event-col)"
            )
            log.info(result.notes[-1])
        return None
    if result.patients is None:
        result.notes.append("no stratification: there is no patients table")
        log.warning(result.notes[-1])
        return None
    try:
        from napari_gbm.survival.stratify import run_stratify
    except ModuleNotFoundError as exc:
        if exc.name != "napari_gbm.survival.stratify":
            raise
        result.notes.append("no stratification: napari_gbm.survival.stratify is not available")
        log.warning(result.notes[-1])
        return None
    log.info("stratify: %d patients, time %s, event %s", len(result.patients), t_col, e_col)
    return run_stratify(
        result.patients,
        out / "stratify",
        time_col=t_col,
        event_col=e_col,
        covariates=list(covariates) if covariates else None,
        model=model,
        id_col="patient_id",
        table_name=f"the manifest {cohort.source}",  # where time, event, categories come from
    )


def format_progress(p: CohortProgress) -> str:
    """One terminal line: slides done / total, cells found, throughput, time left."""
    parts = [f"{p.done}/{p.total} slides"]
    extra = [f"{n} {k}" for k, n in (("skipped", p.skipped), ("failed", p.failed)) if n]
    if extra:
        parts[0] += f" ({', '.join(extra)})"
    parts.append(f"{p.n_cells:,} cells")
    rate = p.slides_per_min
    if p.analysed:
        parts.append(f"{rate:.1f} slides/min")
    left = p.total - p.done
    if rate > 0 and left:
        parts.append(f"about {_duration(60.0 * left / rate)} left")
    return "cohort: " + " | ".join(parts)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def print_progress(p: CohortProgress, stream: Any = None) -> None:
    """A progress bar for a terminal (one line rewritten in place), or one line per slide
    when ``stream`` is not a terminal. Failures get a line of their own."""
    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    if p.last_status == "failed":
        print(("\r\033[K" if tty else "") + f"{p.last_slide}: {p.last_message}", file=stream)
    line = format_progress(p)
    if tty:
        print(f"\r\033[K{line}", end="" if p.done < p.total else "\n", file=stream, flush=True)
    else:
        print(line, file=stream, flush=True)
