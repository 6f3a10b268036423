"""The cohort run: many slides on dask.distributed, resumable and fault-tolerant.

:func:`run_cohort` reads a folder of slides or a manifest CSV
(:func:`~napari_gbm.cohort.manifest.read_cohort_input`), sends one task per slide
(:func:`~napari_gbm.cohort.task.analyze_task`) to a dask.distributed cluster (an embedded
``LocalCluster`` by default, any running scheduler when given) and writes, under the output
folder ``DIR``::

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

import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_gbm import __version__
from napari_gbm.cohort.manifest import Cohort, CohortSlide, read_cohort_input
from napari_gbm.cohort.progress import CohortProgress
from napari_gbm.cohort.tables import (
    CohortResult,
    _check_survival_columns,
    _stratify,
    _write_tables,
)
from napari_gbm.cohort.task import (
    WorkerEnvironmentError,
    _address,
    _traceback_tail,
    analyze_task,
    check_workers,
)
from napari_gbm.pipeline import AnalyzeParams

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["default_n_workers", "run_cohort"]

#: the cohort's one logger, written to DIR/cohort.log during a run
log = logging.getLogger("napari_gbm.cohort")


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
            workers = check_workers(cl, __version__, timeout_s=worker_timeout_s)
            log.info(
                "run: %d slides from %s -> %s; scheduler %s, %d workers; napari-gbm %s",
                len(cohort.slides),
                cohort.source,
                out,
                _address(cl),
                len(workers),
                __version__,
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
        from distributed import Client, LocalCluster  # lazy: dask.distributed is heavy

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
    """Workers for a local cluster, as many as both the cores and the memory hold.

    Parameters
    ----------
    threads_per_worker : int
        Threads of each worker (one running slide per thread).
    memory_per_slide_gib : float
        Memory one running slide needs, in GiB.

    Returns
    -------
    int
        One worker per ``threads_per_worker`` cores, at most as many as the memory holds at
        ``memory_per_slide_gib`` per running slide; at least one.
    """
    # lazy: distributed.system imports dask.distributed, which is heavy
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
    from distributed import as_completed  # lazy: dask.distributed is heavy

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
            __version__,
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
