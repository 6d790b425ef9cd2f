"""Stages as tasks on a ``dask.distributed`` cluster.

The runner keeps the record and the MLflow runs; each stage notebook executes as one task on a
worker, in the worker's process (one task at a time: start workers with ``--nthreads 1``, since
Papermill changes the working directory while it runs). A task whose worker dies is rescheduled
on another worker by the scheduler; a stage that still cannot finish is recorded as failed. Run
records and stage outputs are plain paths, so every worker must reach the project folder (one
machine, or a shared file system). A stage's ``resources`` in ``pipeline.yaml`` become Dask's
worker resources (``CPU``, ``MEMORY``, ``GPU``), so it runs only on a worker that offers them.
Dask is imported here only: a local run never pays for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

from nbtools.errors import ClusterError, StageFailedError
from nbtools.pipeline.deployment import Resources
from nbtools.runner.scheduler import run_stage_notebook

#: Environment variable that hands the scheduler address to stage kernels (joblib's Dask backend).
SCHEDULER_VARIABLE = "NBTOOLS_DASK_SCHEDULER"
#: Seconds to wait for a scheduler to answer.
CONNECT_TIMEOUT = 10


class DaskStagePool(Executor):
    """Submits stage executions to a Dask cluster as tasks.

    A task whose worker dies is rescheduled on another worker by the scheduler (up to its
    ``distributed.scheduler.allowed-failures``); a notebook that fails is not retried.

    Parameters
    ----------
    scheduler : str or None
        Address of a running scheduler (``tcp://host:port``); ``None`` starts a local cluster
        of ``workers`` single-threaded worker processes for the length of the run.
    workers : int
        Worker processes of a local cluster.

    Raises
    ------
    ClusterError
        When the scheduler cannot be reached, or dask.distributed is not installed.
    """

    def __init__(self, scheduler: str | None, workers: int) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ClusterError(
                "The dask executor needs dask.distributed, which is not installed. "
                "Install it with `pip install 'nbtools[dask]'`."
            ) from exc
        self._cluster: Any = None
        if scheduler is None:
            self._cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                resources=local_worker_resources(),
            )
            scheduler = str(self._cluster.scheduler_address)
        try:
            self.client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"Cannot reach the Dask scheduler at '{scheduler}' within {CONNECT_TIMEOUT} s "
                f"({exc}). Start one with `dask scheduler` and workers with "
                "`dask worker ADDRESS --nthreads 1`, or name no scheduler to start a local cluster."
            ) from exc
        self.address = str(self.client.scheduler.address)
        self._executor = self.client.get_executor(pure=False)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` as a task on the cluster; return a standard future."""
        future: Future[Any] = self._executor.submit(fn, *args, **kwargs)
        return future

    def prepare(self, cwd: Path, wanted: int = 1) -> None:
        """Nothing to prepare: the workers start their kernels as tasks come."""

    def open_store(self, tracking_uri: str) -> None:
        """Nothing to do: each task opens the MLflow store when it runs."""

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
        """Execute a stage notebook as a task on the cluster (see
        :func:`~nbtools.runner.scheduler.run_stage_notebook`), its kernel told the scheduler's
        address for joblib's Dask backend.

        A stage that declares ``resources`` runs only on a worker that has them (see
        :func:`worker_resources`); when no worker of the cluster has them, the stage fails at
        once, saying how to start one, rather than wait for ever.
        """
        environ = {SCHEDULER_VARIABLE: self.address}
        wanted = worker_resources(resources or Resources())
        if wanted:
            missing = self._unplaceable(wanted)
            if missing is not None:
                failed: Future[None] = Future()
                failed.set_exception(StageFailedError(stage, missing, None, str(executed)))
                return failed
        future: Future[None] = self._executor.submit(
            run_stage_notebook,
            stage,
            notebook,
            executed,
            injected,
            cwd,
            timeout,
            environ,
            resources=wanted or None,
        )
        return future

    def _unplaceable(self, wanted: dict[str, float]) -> str | None:
        """Say why no worker can take a task needing ``wanted``, or None when one can."""
        workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        for worker in workers:
            has = worker.get("resources") or {}
            if all(has.get(name, 0) >= amount for name, amount in wanted.items()):
                return None
        needed = ",".join(f"{name}={amount:g}" for name, amount in wanted.items())
        return (
            f"it declares resources {needed}, and no worker of the Dask cluster at "
            f"{self.address} has them (its workers have: "
            f"{'; '.join(str(w.get('resources') or {}) for w in workers) or 'no workers'}). "
            f"Start a worker that has them, e.g. `dask worker {self.address} --nthreads 1 "
            f'--resources "{needed}"`, or lower the stage\'s resources in pipeline.yaml'
        )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop submitting, close the client, and stop the local cluster if one was started."""
        self._executor.shutdown(wait=wait)
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def worker_resources(resources: Resources) -> dict[str, float]:
    """Return a stage's ``resources`` as Dask's abstract worker resources.

    ``cpu`` becomes ``CPU`` (cores), ``memory`` ``MEMORY`` (bytes) and ``gpu`` ``GPU``; a
    worker offers them with ``dask worker --resources "CPU=4,MEMORY=16e9,GPU=1"``.
    """
    wanted: dict[str, float] = {}
    if resources.cpu is not None:
        wanted["CPU"] = float(resources.cpu)
    if resources.memory_bytes is not None:
        wanted["MEMORY"] = float(resources.memory_bytes)
    if resources.gpu:
        wanted["GPU"] = float(resources.gpu)
    return wanted


def local_worker_resources() -> dict[str, float]:
    """The resources each worker of a local cluster offers: this machine's cores and memory.

    The workers share the machine, one stage each at a time, so each offers all of it; a stage
    asking for more than the machine has (or for a GPU) is refused at once.
    """
    from nbtools.runner import memory

    offered = {"CPU": float(os.cpu_count() or 1)}
    limit = memory.memory_limit()
    if limit is not None:
        offered["MEMORY"] = float(limit)
    return offered


def dask_joblib_backend(address: str) -> Any:
    """Make joblib's Dask backend the default of this process, on the cluster at ``address``.

    Called by a stage kernel, so that scikit-learn searches (``n_jobs``) fan out over the
    cluster's workers without a change to the notebook.

    Returns
    -------
    distributed.Client
        The client the backend uses; keep it alive as long as the backend is used.
    """
    import joblib
    from distributed import Client

    client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=True)
    # parallel_config is a context manager; entering it without leaving makes it the
    # default for the rest of the kernel's life.
    joblib.parallel_config(backend="dask", n_jobs=-1).__enter__()
    return client
