"""Where stage notebooks execute: kernels driven from the runner's process, or Dask tasks.

Locally, each stage runs in a kernel of its own (the separate process) that the runner's
process started, usually ahead of time, and drives from one thread per running stage; the
kernels belong to the runner, so none outlives the run. On Dask, a stage is a task that
executes its notebook on a worker. Either way the runner keeps the MLflow runs and the record;
the stage only executes the notebook and renders its HTML.
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nbtools.errors import InvalidParameterError, StageFailedError
from nbtools.pipeline.deployment import Resources
from nbtools.records.runs import HTML_RECORD
from nbtools.runner.pool import StagePool

#: Where stages can execute.
EXECUTORS = ("local", "dask")
#: Thread-count variables of the numeric libraries, set per stage kernel to avoid oversubscription.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

#: Set in every stage kernel's environment unless the user has set it: OpenMP threads
#: (scikit-learn's gradient boosting, for one) that wait at a barrier sleep instead of
#: spinning. A spinning team holds cores that other stages, the kernels started ahead and
#: services on the same machine need: on a busy two-core machine one gradient-boosting fit of
#: 54,000 rows took 19 to 30 s with spinning threads and under 4 s with sleeping ones.
QUIET_WAITING = {"OMP_WAIT_POLICY": "PASSIVE"}


def stage_environment(base: Mapping[str, str]) -> dict[str, str]:
    """Return the environment of a stage kernel: ``base`` with :data:`QUIET_WAITING`'s
    variables added where ``base`` does not set them."""
    return {**QUIET_WAITING, **base}


def default_jobs() -> int:
    """Return the default number of stages run at once: the core count, fewer on little memory.

    See :func:`nbtools.runner.memory.default_jobs`.
    """
    from nbtools.runner import memory

    return memory.default_jobs(os.cpu_count() or 1, memory.memory_limit())


def run_stage_notebook(
    stage: str,
    notebook: Path,
    executed: Path,
    injected: dict[str, Any],
    cwd: Path,
    timeout: int,
    environ: dict[str, str] | None = None,
) -> None:
    """Execute one stage notebook in a fresh kernel and render its HTML record beside it.

    This is how a stage runs as a task on a Dask worker. ``environ`` is added to the
    environment of the stage's kernel (and restored afterwards), as are
    :data:`QUIET_WAITING`'s variables that the worker's environment does not set.

    Raises
    ------
    StageFailedError
        When the notebook fails (the HTML record is rendered all the same), or when this
        worker cannot reach the project folder.
    """
    from nbtools.runner.executor import execute_stage

    _require_shared(stage, notebook, executed)
    unset = {name: value for name, value in QUIET_WAITING.items() if name not in os.environ}
    environ = {**unset, **(environ or {})}
    saved = {name: os.environ.get(name) for name in environ}
    os.environ.update(environ)
    try:
        execute_stage(stage, notebook, executed, injected, cwd=cwd, timeout=timeout)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if executed.is_file():
            _render(executed, executed.parent / HTML_RECORD)


def _require_shared(stage: str, notebook: Path, executed: Path) -> None:
    """Fail with what to do when this worker does not see the project folder at its path."""
    missing = [str(p) for p in (notebook, executed.parent) if not p.exists()]
    if missing:
        raise StageFailedError(
            stage,
            f"the worker on host {socket.gethostname()} cannot reach the project folder: "
            f"{' and '.join(missing)} must exist there but does not. Every Dask worker must "
            "see the project folder at the same path: run the workers on this machine, or put "
            "the project on a shared file system mounted at the same path on every worker",
            None,
            str(executed),
        )


def run_local_stage(
    stage: str,
    notebook: Path,
    executed: Path,
    injected: dict[str, Any],
    cwd: Path,
    timeout: int,
    pool: LocalStagePool,
) -> None:
    """Execute one stage notebook in a kernel of ``pool`` and render its HTML record beside it.

    The stage takes a kernel started ahead when one fits, or else starts one.

    Raises
    ------
    StageFailedError
        When the notebook fails (the HTML record is rendered all the same).
    """
    from nbtools.runner.executor import execute_stage

    kernels = pool.kernels
    km = kernels.take(cwd, pool.env)
    try:
        if km is None:
            km = kernels.start(cwd, pool.env)
        execute_stage(stage, notebook, executed, injected, cwd=cwd, timeout=timeout, km=km)
    finally:
        if km is not None:
            kernels.stop(km)
        if executed.is_file():
            _render(executed, executed.parent / HTML_RECORD)


def _render(executed: Path, target: Path) -> None:
    from nbtools.runner.executor import render_html

    try:
        render_html(executed, target)
    except Exception:  # a broken render must not hide the stage's own result
        target.write_text("<pre>" + traceback.format_exc() + "</pre>", encoding="utf-8")


class LocalStagePool(Executor):
    """Runs stages on this machine, up to ``jobs`` at once, each in a kernel of its own.

    The stage kernels are the separate processes; the runner's process only drives them, on
    one thread per running stage (with one job, in the calling thread). Every kernel belongs
    to :attr:`kernels`, which starts them ahead while stages run (as many as the memory
    allows: :func:`~nbtools.runner.memory.kernels_ahead`); shutting the pool down stops them
    all, including the kernel of a stage still running when the run is interrupted.

    Parameters
    ----------
    jobs : int
        Stages run at once.
    """

    def __init__(self, jobs: int) -> None:
        from nbtools.runner.kernels import KernelPool
        from nbtools.runner.memory import kernels_ahead, memory_limit

        self.jobs = jobs
        self.kernels = KernelPool(ahead=kernels_ahead(jobs, memory_limit()))
        #: The environment of every stage kernel: OpenMP threads sleep while they wait, and
        #: with several jobs numeric libraries get their share of the cores (unless the user
        #: set either already).
        self.env = stage_environment(os.environ)
        self._threads: ThreadPoolExecutor | None = None
        if jobs > 1:
            threads = str(max(1, (os.cpu_count() or 1) // jobs))
            self.env.update({name: threads for name in THREAD_VARIABLES if name not in os.environ})
            self._threads = ThreadPoolExecutor(jobs, thread_name_prefix="nbtools-stage")

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on a stage thread (with one job: now, in this thread).

        With one job, exceptions are kept in the returned future and interrupts propagate.
        """
        if self._threads is not None:
            return self._threads.submit(fn, *args, **kwargs)
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def prepare(self, cwd: Path, wanted: int = 1) -> None:
        """Start kernels ahead in ``cwd`` for ``wanted`` stages to come (within the memory)."""
        self.kernels.prepare(cwd, self.env, wanted)

    def open_store(self, tracking_uri: str) -> None:
        """Let kernels started from now on open the MLflow store at ``tracking_uri`` ahead."""
        self.kernels.open_store(tracking_uri)

    def run_stage(
        self,
        stage: str,
        notebook: Path,
        executed: Path,
        injected: dict[str, Any],
        cwd: Path,
        timeout: int,
        *,
        resources: Resources | None = None,
    ) -> Future[None]:
        """Execute a stage notebook in a kernel of this pool (see :func:`run_local_stage`).

        ``resources`` is not enforced here: a stage on this machine has what the machine has.
        """
        return self.submit(run_local_stage, stage, notebook, executed, injected, cwd, timeout, self)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the stage kernels and the threads.

        With ``wait``, running stages finish first; without it, their kernels are stopped,
        which ends them at once.
        """
        if self._threads is not None and wait:
            self._threads.shutdown(wait=True, cancel_futures=cancel_futures)
        self.kernels.close()
        if self._threads is not None and not wait:
            self._threads.shutdown(wait=True, cancel_futures=cancel_futures)


def stage_pool(jobs: int, executor: str = "local", scheduler: str | None = None) -> StagePool:
    """Return a stage pool running up to ``jobs`` stages at once, each in its own kernel.

    Parameters
    ----------
    jobs : int
        Stages run at once.
    executor : {"local", "dask"}
        Where stages run: kernels on this machine, or tasks on a Dask cluster.
    scheduler : str, optional
        Address of the Dask scheduler; without it the dask executor starts a local cluster
        of ``jobs`` workers.

    Raises
    ------
    ClusterError
        When the Dask scheduler cannot be reached.
    """
    if executor not in EXECUTORS:
        raise InvalidParameterError(
            f"The executor must be one of {', '.join(EXECUTORS)}. Got {executor!r} instead."
        )
    if executor == "dask":
        from nbtools.runner.dask_executor import DaskStagePool

        return DaskStagePool(scheduler, jobs)
    return LocalStagePool(jobs)


def stage_error(stage: str, executed: Path, exc: BaseException) -> StageFailedError:
    """Return ``exc`` as the :class:`StageFailedError` of ``stage`` (a lost Dask worker too)."""
    if isinstance(exc, StageFailedError):
        return exc
    if type(exc).__name__ == "KilledWorker":  # distributed's error, without importing it
        reason = (
            "the Dask worker running it died, and so did the worker of every retry "
            f"({exc}); the stage never finished"
        )
    else:
        reason = f"the stage could not run ({type(exc).__name__}: {exc})"
    return StageFailedError(stage, reason, None, str(executed))
