"""Where stage notebooks execute: in the runner's process, or in a pool of stage processes.

Papermill changes the working directory while it executes a notebook, so two notebooks never
execute in one process at the same time: with ``jobs > 1`` each stage runs in a process of its
own pool slot, each with its own kernel. The runner keeps the MLflow runs and the record; a stage
process only executes the notebook and renders its HTML.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtools.core.errors import InvalidParameterError, StageFailedError
from nbtools.core.records import HTML_RECORD

if TYPE_CHECKING:
    from nbtools.core.executor import SpareKernel

#: Where stages can execute.
EXECUTORS = ("local", "dask")
#: Thread-count variables of the numeric libraries, set per stage process to avoid oversubscription.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def default_jobs() -> int:
    """Return the default number of stages run at once: the machine's core count."""
    return os.cpu_count() or 1


def run_stage_notebook(
    stage: str,
    notebook: Path,
    executed: Path,
    injected: dict[str, Any],
    cwd: Path,
    timeout: int,
    environ: dict[str, str] | None = None,
    spare: SpareKernel | None = None,
    warm_next: bool = False,
) -> None:
    """Execute one stage notebook and render its HTML record next to the executed copy.

    ``environ`` is added to the environment of the stage's kernel (and restored afterwards).
    With ``spare``, the stage runs in the spare kernel when it fits, and with ``warm_next``
    the spare starts the next stage's kernel (same folder and environment) meanwhile.

    Raises
    ------
    StageFailedError
        When the notebook fails (the HTML record is rendered all the same).
    """
    from nbtools.core.executor import execute_stage

    km = None if spare is None else spare.take(cwd, {**os.environ, **(environ or {})})
    if spare is not None and warm_next:
        spare.prepare(cwd, os.environ)
    saved = {name: os.environ.get(name) for name in environ or {}}
    os.environ.update(environ or {})
    try:
        execute_stage(stage, notebook, executed, injected, cwd=cwd, timeout=timeout, km=km)
    finally:
        if km is not None:
            assert spare is not None
            spare.stop(km)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if executed.is_file():
            _render(executed, executed.parent / HTML_RECORD)


def _render(executed: Path, target: Path) -> None:
    from nbtools.core.executor import render_html

    try:
        render_html(executed, target)
    except Exception:  # a broken render must not hide the stage's own result
        target.write_text("<pre>" + traceback.format_exc() + "</pre>", encoding="utf-8")


class InlineExecutor(Executor):
    """Runs each submitted call at once in the calling process (``jobs=1``).

    Exceptions are kept in the returned future; interrupts (``KeyboardInterrupt``) propagate.
    Its :meth:`spare_kernel` starts the next stage's kernel while a stage runs; shutting the
    executor down stops a spare kernel nobody used.
    """

    def __init__(self) -> None:
        self._spare: SpareKernel | None = None

    def spare_kernel(self) -> SpareKernel:
        """Return the spare kernel of this executor's stages (made on first need)."""
        if self._spare is None:
            from nbtools.core.executor import SpareKernel

            self._spare = SpareKernel()
        return self._spare

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the spare kernel, if any (calls already ran when they were submitted)."""
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Call ``fn(*args, **kwargs)`` now and return a finished future."""
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def stage_pool(jobs: int, executor: str = "local", scheduler: str | None = None) -> Executor:
    """Return an executor running up to ``jobs`` stages at once, each in its own process.

    Parameters
    ----------
    jobs : int
        Stages run at once. Locally with one job, stages run in the calling process, which
        saves starting a process.
    executor : {"local", "dask"}
        Where stages run: processes on this machine, or tasks on a Dask cluster.
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
        from nbtools.core.dask_executor import DaskStagePool

        return DaskStagePool(scheduler, jobs)
    if jobs <= 1:
        return InlineExecutor()
    threads = max(1, default_jobs() // jobs)
    return ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_limit_threads,
        initargs=(threads,),
    )


def _limit_threads(threads: int) -> None:
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))


def stage_error(stage: str, executed: Path, exc: BaseException) -> StageFailedError:
    """Return ``exc`` as the :class:`StageFailedError` of ``stage`` (a dead stage process too)."""
    if isinstance(exc, StageFailedError):
        return exc
    reason = f"the stage process stopped ({type(exc).__name__}: {exc})"
    return StageFailedError(stage, reason, None, str(executed))
