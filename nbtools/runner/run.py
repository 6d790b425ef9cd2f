"""Running a pipeline: validate everything, then execute what changed and record what happened.

All parameters are resolved and validated before any kernel starts. The stages then run as a
graph: a stage starts once its inputs are done, up to ``jobs`` at a time, each in its own kernel
with its inputs, output folder and MLflow run injected. A stage whose cache key (see
:mod:`nbtools.runner.cache`) matches an earlier execution is not executed: its outputs and record
are reused. A failed stage stops the stages that depend on it; independent branches finish.
The manifest is rewritten atomically after every change, so a run killed at any moment leaves a
readable record, and ``resume`` continues it, reusing what finished.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from nbtools.errors import RunNotFoundError
from nbtools.pipeline.spec import Pipeline, load_pipeline
from nbtools.pipeline.stage_selection import select_stages
from nbtools.records.history import process_alive
from nbtools.records.manifest import DONE
from nbtools.records.notify import notify_run_failed
from nbtools.records.runs import RunResult, load_run
from nbtools.runner.graph import start_run
from nbtools.runner.pool import StagePool
from nbtools.runner.scheduler import default_jobs

__all__ = ["RunResult", "run_pipeline"]

Echo = Callable[[str], None]


def run_pipeline(
    project_dir: str | Path = ".",
    *,
    profile: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    targets: Iterable[str] | None = None,
    only: Iterable[str] | None = None,
    start: str | None = None,
    stop: str | None = None,
    force: bool | Iterable[str] = False,
    jobs: int | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    resume: str | None = None,
    echo: Echo | None = None,
    pool: StagePool | None = None,
) -> RunResult:
    """Run the pipeline of a project and keep its run record.

    Parameters
    ----------
    project_dir : str or Path
        The project folder, or any folder inside it.
    profile : str, optional
        Name of a parameter profile from ``pipeline.yaml``.
    overrides : mapping, optional
        Parameter values with the highest precedence, keyed ``NAME`` or ``STAGE.NAME``.
    targets : iterable of str, optional
        Run these stages and the stages they depend on (as ``stop`` for several stages).
    only : iterable of str, optional
        Run only these stages; their inputs come from the cache or the newest earlier run.
    start : str, optional
        Run this stage and everything downstream of it (``--from``).
    stop : str, optional
        Run this stage and everything it depends on (``--to``).
    force : bool or iterable of str
        Execute every stage (``True``) or the named stages even when their cache key matches.
    jobs : int, optional
        How many stages may run at once, each in its own process; the core count by default.
    executor : {"local", "dask"}
        Run stages as processes on this machine, or as tasks on a Dask cluster.
    scheduler : str, optional
        Address of the Dask scheduler (``tcp://host:port``); without it, the dask executor
        starts a local cluster of ``jobs`` workers. Stage kernels then use joblib's Dask
        backend on the same cluster.
    resume : str, optional
        Id (or unique prefix) of a failed or killed run to continue: its profile, overrides and
        stage selection are used again and the stages it finished are reused; the stages it
        forced and had not finished are forced again.
    echo : callable, optional
        Called with one line of progress at a time.
    pool : StagePool, optional
        Where stages execute, from :func:`~nbtools.runner.scheduler.stage_pool`, shared with
        runs going on at the same time (a sweep's variants); the caller shuts it down. By
        default the run makes its own from ``jobs``, ``executor`` and ``scheduler`` when the
        first stage needs executing.

    Returns
    -------
    RunResult
        The run's id, record folder, MLflow run and manifest; ``error`` is set when a stage
        failed (the record and MLflow runs are marked failed, nothing already recorded is lost).
        A failed or cancelled run posts ``run-failed`` to the webhook of ``notify`` in
        ``pipeline.yaml``, when it lists that event (:mod:`nbtools.records.notify`).

    Raises
    ------
    PipelineSpecError, InvalidParameterError
        Before anything runs, when the pipeline, a stage name or a parameter is invalid.
    RunNotFoundError
        When ``resume`` names no run, or a run that is still running.
    ClusterError
        When the Dask scheduler cannot be reached.
    """
    pipeline = load_pipeline(project_dir)
    resumed: dict[str, Any] | None = None
    if resume is not None:
        resumed = _resumable(pipeline, resume)
        profile, overrides, force = resumed["profile"], resumed["overrides"], _unfinished(resumed)
        only, targets, start, stop = resumed["selected"], None, None, None
    parameters = pipeline.resolve(profile, overrides)
    selected = select_stages(pipeline, only=only, start=start, stop=stop, targets=targets)
    settings = {"profile": profile, "overrides": overrides, "jobs": jobs or default_jobs()}
    run = start_run(
        pipeline,
        parameters,
        selected,
        forced=_forced(pipeline, force),
        resumed=resumed,
        settings={**settings, "executor": executor, "scheduler": scheduler},
        say=echo or (lambda _line: None),
        pool=pool,
    )
    try:
        result = run.execute()
    except BaseException:  # cancelled, or the runner crashed: the record is closed and says so
        notify_run_failed(pipeline, run.record.to_dict())
        raise
    if not result.succeeded:
        notify_run_failed(pipeline, result.manifest)
    return result


def _unfinished(resumed: dict[str, Any]) -> list[str]:
    """Return the stages a resumed run forced and had not finished: they stay forced."""
    return [
        name
        for name in resumed.get("forced", [])
        if resumed["stages"].get(name, {}).get("status") not in DONE
    ]


def _forced(pipeline: Pipeline, force: bool | Iterable[str]) -> set[str]:
    if force is True:
        return {s.name for s in pipeline.stages}
    if force is False:
        return set()
    return {pipeline.stage(name).name for name in force}


def _resumable(pipeline: Pipeline, run_id: str) -> dict[str, Any]:
    manifest = load_run(pipeline.runs_dir, run_id)
    owner = manifest.get("process", {})
    if (
        manifest["status"] == "running"
        and owner.get("host") == socket.gethostname()
        and process_alive(owner.get("pid"))
    ):
        raise RunNotFoundError(
            f"Run {manifest['run_id']} is still running (process {owner['pid']}). "
            "Wait for it to finish or stop it before resuming it."
        )
    return manifest
