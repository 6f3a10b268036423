"""What runs on a dask worker: one slide's task, and the check of the workers' environment.

:func:`analyze_task` takes paths and a plain parameter dictionary, never open handles, so it
runs on any worker that sees the same files; dask pickles it by reference
(``napari_gbm.cohort.task.analyze_task``), so every worker imports this module. A slide whose
folder holds a complete analysis of the same file (checksum) with the same parameters is
skipped (:func:`_previous_summary`), so a re-run resumes where a killed run stopped.
:func:`check_workers` makes sure, before any task is sent, that every worker runs this
napari-gbm version.
"""

from __future__ import annotations

import json
import os
import platform
import time
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_gbm import __version__
from napari_gbm.cohort.params import _jsonable, params_from_dict
from napari_gbm.outputs import is_complete
from napari_gbm.pipeline import analyze_slide
from napari_gbm.wsi.slide import SlideError

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["WorkerEnvironmentError", "analyze_task", "check_workers"]

_TRACEBACK_LINES = 12


class WorkerEnvironmentError(RuntimeError):
    """A worker of the cluster cannot run napari-gbm, or runs another version of it."""


def analyze_task(
    path: str,
    out: str,
    params: dict[str, Any],
    mpp: float | None = None,
    slide_id: str | None = None,
    expected_version: str | None = None,
) -> dict[str, Any]:
    """Analyse one slide into ``out`` unless ``out`` already holds the same analysis.

    Runs on a dask worker. Errors about the input (an unreadable slide, a missing file, no
    pixel size) are returned as a failure; any other exception propagates so that dask
    retries the task.

    Parameters
    ----------
    path : str
        The slide file, as the worker sees it.
    out : str
        The slide's output folder (what ``napari-gbm analyze`` writes).
    params : dict
        The analysis parameters, as ``AnalyzeParams.to_dict()`` writes them.
    mpp : float, optional
        Level-0 pixel size in µm/px, overriding the file's metadata.
    slide_id : str, optional
        The slide's name in its ``summary.json``.
    expected_version : str, optional
        The client's napari-gbm version: a worker running another one fails the slide.

    Returns
    -------
    dict
        ``path``, ``slide_id``, ``worker`` and ``status`` ("analysed", "skipped" or
        "failed"); with the slide's ``summary`` (as ``summary.json`` holds it) and ``task_s``
        (and the ``warnings`` seen when analysed), or ``error_type``, ``message`` and
        ``traceback`` when failed.

    Raises
    ------
    OSError
        For a file system error other than a missing file (dask retries the task).
    Exception
        Anything unexpected raised by the analysis (dask retries the task).
    """
    t0 = time.perf_counter()
    worker = _worker_address()
    base = {"path": path, "slide_id": slide_id, "worker": worker}
    if expected_version is not None and __version__ != expected_version:
        return {
            **base,
            "status": "failed",
            "error_type": "WorkerEnvironmentError",
            "message": f"worker {worker} runs napari-gbm {__version__}, the "
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
        from distributed import get_worker  # lazy: dask.distributed is heavy

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def _traceback_tail(exc: BaseException, tb: Any = None) -> str:
    """The last lines of ``exc``'s traceback (of ``tb`` when given), as text."""
    lines = traceback.format_exception(type(exc), exc, tb if tb is not None else exc.__traceback__)
    text = "".join(lines).rstrip().splitlines()
    return "\n".join(text[-_TRACEBACK_LINES:])


def _address(client: Client) -> str:
    return str(client.scheduler_info().get("address", "?"))


def _worker_probe() -> dict[str, str]:
    """What a worker runs. Sent by reference, so the worker imports this module and with it
    the whole analysis stack (napari_gbm.pipeline): a worker without napari-gbm fails."""
    return {"napari_gbm": __version__, "python": platform.python_version()}


def check_workers(
    client: Client, expected_version: str | None = None, *, timeout_s: float = 60.0
) -> dict[str, str]:
    """Check that every worker of ``client``'s cluster imports napari-gbm at a version.

    Parameters
    ----------
    client : distributed.Client
        The client of the cluster to check.
    expected_version : str, optional
        The napari-gbm version every worker must run (default: this process's).
    timeout_s : float
        How long to wait for a first worker when the cluster has none.

    Returns
    -------
    dict of str to str
        ``{worker address: napari-gbm version}``.

    Raises
    ------
    WorkerEnvironmentError
        When no worker joins within ``timeout_s``, or naming each worker that cannot import
        napari-gbm or runs another version, and why.
    """
    expected = expected_version or __version__
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
