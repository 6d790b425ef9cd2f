"""Compute threads of the service: no spin-waiting, and a thread count that fits the batch.

scikit-learn's tree models (HistGradientBoosting) predict with an OpenMP team of as many threads
as cores. For a few rows the team only costs barrier waits, and with OpenMP's default wait policy
those waits spin: when another process holds one of the cores, the team burns the other one
waiting for it, and a one-row prediction takes seconds instead of milliseconds. So the service:

- sets ``OMP_WAIT_POLICY=PASSIVE`` (:func:`configure_process`) before OpenMP is loaded, so idle
  OpenMP threads sleep instead of spinning (unless the user set the variable already);
- predicts in a worker thread limited to one compute thread (:func:`one_thread`, through
  threadpoolctl), and lifts the limit to every core only for batches of :data:`PARALLEL_ROWS`
  rows or more (:func:`for_rows`), where the team's work outweighs its start and barriers, and
  only while the machine has a core to spare (the load average, which counts the service's own
  busy thread, below the number of cores minus a half). On a loaded machine a second thread only
  waits for a core, and the whole batch waits for it at the next barrier.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from nbtools.runner.scheduler import QUIET_WAITING

logger = logging.getLogger("nbtools.serving")

#: Batches of at least this many rows predict with every core; smaller ones with one thread.
PARALLEL_ROWS = 1000


def configure_process() -> None:
    """Make OpenMP threads of this process (and its workers) sleep when idle.

    Must run before scikit-learn's compiled modules load OpenMP; logs a warning if it ran too
    late. A value the user set already is kept.
    """
    unset = {name: value for name, value in QUIET_WAITING.items() if name not in os.environ}
    if not unset:  # the user's choice, or set by an earlier call
        return
    os.environ.update(unset)
    if _openmp_loaded():
        logger.warning(
            "OpenMP was loaded before %s was set: its threads may spin-wait while the "
            "machine is busy. Start the service with `nbtools serve`, or set the variable "
            "before Python starts.",
            ", ".join(f"{name}={value}" for name, value in unset.items()),
        )


def describe() -> dict[str, object]:
    """How this process's compute threads run, for ``/metadata``."""
    return {
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "compute_threads": {
            "small_batches": 1,
            "large_batches": os.cpu_count(),  # while the machine has a core to spare
            "large_from_rows": PARALLEL_ROWS,
        },
    }


def one_thread() -> None:
    """Limit the calling thread's compute thread pools (OpenMP, BLAS) to one thread."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


@contextlib.contextmanager
def for_rows(rows: int) -> Iterator[None]:
    """Within the block, let a batch of ``rows`` rows use every core if it is large enough."""
    cores = os.cpu_count() or 1
    if rows < PARALLEL_ROWS or cores == 1 or os.getloadavg()[0] > cores - 0.5:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=cores):  # back to one thread on leaving
        yield


def _openmp_loaded() -> bool:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: cannot tell
        return False
    return "libgomp" in maps or "libomp" in maps
