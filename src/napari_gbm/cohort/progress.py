"""Progress of a cohort run: where it stands after each slide, as a terminal line.

:func:`~napari_gbm.cohort.run.run_cohort` calls its ``progress`` callback with a
:class:`CohortProgress` after each slide's outcome; :func:`print_progress` is such a callback
for a terminal (``napari-gbm cohort`` uses it), :func:`format_progress` its line of text.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["CohortProgress", "format_progress", "print_progress"]


@dataclass(frozen=True)
class CohortProgress:
    """Where a cohort run stands, after each slide's outcome.

    Attributes
    ----------
    done, total : int
        Slides with an outcome, and all the slides of the cohort.
    analysed, skipped, failed : int
        The outcomes so far (skipped: analysed by an earlier run with the same parameters).
    n_cells : int
        Cells found in the analysed and skipped slides so far.
    elapsed_s : float
        Seconds since the submission of the tasks, after the cluster started.
    last_slide, last_status : str
        The slide whose outcome this is, and that outcome.
    last_message : str
        Why the last slide failed (``error_type: message``); empty otherwise.
    """

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


def format_progress(p: CohortProgress) -> str:
    """One terminal line: slides done / total, cells found, throughput, time left.

    Parameters
    ----------
    p : CohortProgress

    Returns
    -------
    str
        For example ``cohort: 3/8 slides (1 failed) | 41,230 cells | 2.5 slides/min |
        about 2m00s left``.
    """
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
    """Print a cohort run's progress.

    On a terminal, one line rewritten in place (a progress bar); otherwise one line per
    slide. A failed slide gets a line of its own either way.

    Parameters
    ----------
    p : CohortProgress
        Where the run stands.
    stream : file-like, optional
        Where to print (default: ``sys.stderr``).
    """
    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    if p.last_status == "failed":
        print(("\r\033[K" if tty else "") + f"{p.last_slide}: {p.last_message}", file=stream)
    line = format_progress(p)
    if tty:
        print(f"\r\033[K{line}", end="" if p.done < p.total else "\n", file=stream, flush=True)
    else:
        print(line, file=stream, flush=True)
