"""Cohorts: many slides on dask.distributed, resumable and fault-tolerant, one cohort table.

- :mod:`.manifest`: the slides of a cohort, from a folder or a manifest CSV
  (:func:`read_cohort_input`, :class:`Cohort`, :class:`CohortSlide`), checked;
- :mod:`.params`: analysis parameters to and from a plain dictionary (:func:`params_from_dict`);
- :mod:`.task`: what runs on a worker, one slide (:func:`analyze_task`), and the check of the
  workers' environment (:func:`check_workers`, :class:`WorkerEnvironmentError`);
- :mod:`.run`: the run on a cluster (:func:`run_cohort`; the output folder's layout);
- :mod:`.tables`: the slides, patients and failures tables and their stratification
  (:class:`CohortResult`, :func:`flatten_summary`);
- :mod:`.progress`: where a run stands (:class:`CohortProgress`, :func:`print_progress`).

docs/COHORT.md describes the command line and the outputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_gbm._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "DEFAULT_EVENT_COL": "manifest",
        "DEFAULT_TIME_COL": "manifest",
        "MANIFEST_COLUMNS": "manifest",
        "SLIDE_EXTENSIONS": "manifest",
        "Cohort": "manifest",
        "CohortSlide": "manifest",
        "read_cohort_input": "manifest",
        "params_from_dict": "params",
        "WorkerEnvironmentError": "task",
        "analyze_task": "task",
        "check_workers": "task",
        "run_cohort": "run",
        "default_n_workers": "run",
        "FAILURE_COLUMNS": "tables",
        "CohortResult": "tables",
        "flatten_summary": "tables",
        "CohortProgress": "progress",
        "format_progress": "progress",
        "print_progress": "progress",
    },
)

if TYPE_CHECKING:
    from napari_gbm.cohort.manifest import (
        DEFAULT_EVENT_COL,
        DEFAULT_TIME_COL,
        MANIFEST_COLUMNS,
        SLIDE_EXTENSIONS,
        Cohort,
        CohortSlide,
        read_cohort_input,
    )
    from napari_gbm.cohort.params import params_from_dict
    from napari_gbm.cohort.progress import CohortProgress, format_progress, print_progress
    from napari_gbm.cohort.run import default_n_workers, run_cohort
    from napari_gbm.cohort.tables import FAILURE_COLUMNS, CohortResult, flatten_summary
    from napari_gbm.cohort.task import WorkerEnvironmentError, analyze_task, check_workers
