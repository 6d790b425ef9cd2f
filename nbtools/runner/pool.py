"""The stage-pool protocol: what the run loop asks of the place where stages execute.

Two pools implement it: :class:`~nbtools.runner.scheduler.LocalStagePool` (kernels on this
machine) and :class:`~nbtools.runner.dask_executor.DaskStagePool` (tasks on a Dask cluster).
The loop only talks to this protocol, so it never asks which one it has.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from nbtools.pipeline.deployment import Resources


@runtime_checkable
class StagePool(Protocol):
    """Where stage notebooks execute, up to a number of stages at once.

    A pool may be shared by several runs at the same time (a sweep's variants); whoever made
    it shuts it down.
    """

    def prepare(self, cwd: Path, wanted: int = 1) -> None:
        """Get ready for ``wanted`` stages to come, in project folder ``cwd``.

        Local kernels start ahead here; a pool with nothing to prepare does nothing.
        """

    def open_store(self, tracking_uri: str) -> None:
        """Say that the MLflow store at ``tracking_uri`` exists now, so stages may open it early."""

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
        """Execute a stage notebook with ``injected`` parameters, saving it as ``executed``.

        ``resources`` is what the stage declares it needs; a pool that places stages on
        machines of a cluster places it where they are.

        Returns
        -------
        Future
            Done when the notebook and its HTML record are written; its exception is the
            stage's failure.
        """
        ...

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the pool; without ``wait``, stop the stages still running at once."""
