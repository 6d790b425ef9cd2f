"""One pipeline run executed by separate processes: the tasks of an orchestrator.

Airflow or Kubeflow run each stage as a task of its own, in its own process or pod. The three
steps here make those tasks one nbtools run, with the same cache, run record and MLflow parent
and child runs as ``nbtools run``:

- :func:`start_task_run` creates the run record and its MLflow parent run;
- :func:`run_task_stage` executes one stage into it (or reuses it from the cache) once the
  stage's inputs are done;
- :func:`finish_task_run` closes the record and the parent run.

The orchestrator names the run by its own run identifier (the *key*), so every step, and a
retried one, finds the same run. A retried stage task leaves one stage record and one MLflow
run: it logs into the child run of its first attempt and records which attempt it was. Each
task changes only its own stage in the shared manifest, under a lock of the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nbtools.errors import RunNotFoundError, StageFailedError
from nbtools.pipeline.sources import fingerprint_stages
from nbtools.pipeline.spec import Pipeline, load_pipeline
from nbtools.records.history import process_alive
from nbtools.records.manifest import DONE, RunRecord, StageRecord, load_record
from nbtools.records.notify import notify_run_failed
from nbtools.records.runs import EXECUTED_NOTEBOOK, HTML_RECORD, RunResult, project_lock
from nbtools.runner.cache import CacheIndex, CacheKey
from nbtools.runner.cache_policy import CachePolicy, store_under_own_champion
from nbtools.runner.graph import start_run
from nbtools.runner.mlflow_runs import MlflowRuns
from nbtools.runner.scheduler import run_stage_notebook, stage_error

#: Where a project remembers which run each orchestrator key names.
KEYS_DIR = Path(".nbtools") / "task-runs"
#: The ``executor`` an orchestrated run's manifest names.
EXECUTOR = "tasks"

Echo = Callable[[str], None]


class InputsNotDoneError(RunNotFoundError):
    """A stage task started before the stages it reads were done in its run."""


def start_task_run(
    project_dir: str | Path,
    key: str,
    *,
    profile: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    echo: Echo | None = None,
) -> str:
    """Create the run named ``key`` (every stage pending) and its MLflow parent run.

    A second call with the same key, a retried task, returns the same run.

    Parameters
    ----------
    project_dir : str or Path
        The project folder.
    key : str
        The orchestrator's identifier of this run (Airflow's ``run_id``, a KFP job name).
    profile, overrides
        The parameters of the run, as with ``nbtools run``.
    echo : callable, optional
        Called with each line of progress.

    Returns
    -------
    str
        The nbtools run id.

    Raises
    ------
    PipelineSpecError, InvalidParameterError
        When the pipeline or a parameter is invalid.
    RunNotFoundError
        When ``key`` names a run started with other parameters.
    """
    say = echo or (lambda _line: None)
    pipeline = load_pipeline(project_dir)
    parameters = pipeline.resolve(profile, overrides)
    settings = {"profile": profile, "overrides": dict(overrides or {})}
    with project_lock(pipeline.project_dir, "task-runs.lock"):
        known = _known(pipeline, key)
        if known is None:
            run = start_run(
                pipeline,
                parameters,
                [s.name for s in pipeline.stages],
                forced=set(),
                resumed=None,
                settings={**settings, "jobs": 1, "executor": EXECUTOR, "scheduler": None},
                say=say,
            )
            run.record.process = {"orchestrator_key": key}
            run.record.write()
            path = _key_file(pipeline, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"key": key, "run_id": run.record.run_id, **settings}))
            known = json.loads(path.read_text())
        elif {k: known.get(k) for k in settings} != settings:
            raise RunNotFoundError(
                f"The orchestrator's run '{key}' is nbtools run {known['run_id']}, started with "
                f"profile={known.get('profile')!r} and parameters {known.get('overrides')}; "
                f"this task asks for profile={profile!r} and {settings['overrides']}. Give "
                "every task of one run the same parameters."
            )
    run_dir = pipeline.runs_dir / known["run_id"]
    with _run_lock(run_dir):
        record = load_record(run_dir)
        if not record.mlflow.get("parent_run_id"):  # a retried start opens it if it never did
            MlflowRuns(pipeline, record).open()
            record.write()
    say(f"Run {record.run_id} for '{key}': record in {run_dir}")
    return record.run_id


def run_task_stage(
    project_dir: str | Path, key: str, stage_name: str, *, echo: Echo | None = None
) -> StageRecord:
    """Execute ``stage_name`` into the run named ``key``, or reuse it from the cache.

    Parameters
    ----------
    project_dir : str or Path
        The project folder.
    key : str
        The orchestrator's identifier of the run (as given to :func:`start_task_run`).
    stage_name : str
        The stage to execute.
    echo : callable, optional
        Called with each line of progress.

    Returns
    -------
    StageRecord
        The stage's record: ``succeeded``, ``reused`` or ``failed`` (see its ``error``).

    Raises
    ------
    RunNotFoundError
        When no run has that key, the run is closed, or the stage runs in another live task.
    InputsNotDoneError
        When a stage it reads is not done in the run.
    """
    say = echo or (lambda _line: None)
    pipeline = load_pipeline(project_dir)
    stage = pipeline.stage(stage_name)
    run_dir = _run_dir(pipeline, key)
    with _run_lock(run_dir):
        record = load_record(run_dir)
        entry = _claim(record, stage_name)
        if entry.status in DONE:
            say(f"  {stage_name:<10} {entry.status} already in run {record.run_id}")
            return entry
        attempt = (entry.task or {}).get("attempt", 0) + 1
        entry.task = {"attempt": attempt, "host": socket.gethostname(), "pid": os.getpid()}
        entry.status, entry.started_at = "running", None
        record.write()
    try:
        parameters = {name: dict(s.parameters) for name, s in record.stages.items()}
        sources = fingerprint_stages(
            [stage], parameters, pipeline.project_dir, required={stage_name}
        )
        policy = CachePolicy(pipeline, parameters, sources, set(record.forced))
        inputs = {name: record.stages[name].output_hashes for name in stage.inputs}
        key_ = policy.key(stage, inputs)
        entry.cache = {"key": key_.digest, "parts": key_.parts}
        entry.sources = policy.source_record(stage_name)
        hit = policy.lookup(key_)
        if hit is None:
            return _execute(pipeline, record, entry, policy, key_, attempt, say)
    except BaseException as exc:  # a source out of reach, MLflow down, the task killed
        if entry.status == "running":
            entry.fail(f"the task stopped before the stage finished: {type(exc).__name__}: {exc}")
            _save(run_dir, stage_name, entry)
            if entry.mlflow_run_id is not None:
                with contextlib.suppress(Exception):  # MLflow may be what failed
                    mlflow = MlflowRuns(pipeline, record)
                    mlflow.open()
                    mlflow.fail([entry.mlflow_run_id])
        raise
    entry.reuse(hit, policy.why_reused(stage_name))
    entry.task = None
    say(f"  {stage_name:<10} reused    from run {hit['run_id']} ({entry.why})")
    return _save(run_dir, stage_name, entry)


def finish_task_run(project_dir: str | Path, key: str, *, echo: Echo | None = None) -> RunResult:
    """Close the run named ``key``: its status, unfinished stages and MLflow parent run.

    A stage still pending (its task never ran) is ``not run``; one still running is failed,
    as interrupted. A run that did not succeed posts ``run-failed`` to the webhook of
    ``notify`` in ``pipeline.yaml``. Calling it again on a closed run changes nothing.

    Returns
    -------
    RunResult
        The closed run; ``error`` names the first failed stage, if any.

    Raises
    ------
    RunNotFoundError
        When no run has that key.
    """
    say = echo or (lambda _line: None)
    pipeline = load_pipeline(project_dir)
    run_dir = _run_dir(pipeline, key)
    with _run_lock(run_dir):
        record = load_record(run_dir)
        closing = record.status == "running"
        if closing:
            succeeded = all(s.status in DONE for s in record.stages.values())
            _close(pipeline, record, succeeded=succeeded)
    if closing:  # a retried finish does not post twice
        notify_run_failed(pipeline, record.to_dict())
    error = _first_error(record)
    say(f"Run {record.run_id}: {record.status}" + (f" ({error})" if error else ""))
    return RunResult(
        record.run_id,
        record.run_dir,
        record.mlflow.get("parent_run_id"),
        record.to_dict(),
        error,
    )


def _execute(
    pipeline: Pipeline,
    record: RunRecord,
    entry: StageRecord,
    policy: CachePolicy,
    key: CacheKey,
    attempt: int,
    say: Echo,
) -> StageRecord:
    """Execute the stage in a fresh kernel in this process, logging into its child run."""
    name = key.stage
    stage = pipeline.stage(name)
    mlflow = MlflowRuns(pipeline, record)
    stage_dir = record.run_dir / entry.dir
    if entry.mlflow_run_id is not None:  # an earlier attempt was interrupted: log into its run
        tracker, _ = mlflow.open()
        tracker.reopen(entry.mlflow_run_id)
        child = entry.mlflow_run_id
    else:
        child = mlflow.start_stage(name)
    shutil.rmtree(stage_dir, ignore_errors=True)  # what an interrupted attempt left
    stage_dir.mkdir(parents=True)
    why = policy.why_run(name, key)
    entry.start(stage_dir, why if attempt == 1 else f"{why}; attempt {attempt}", child)
    _save(record.run_dir, name, entry)
    say(f"  {name:<10} running   ({entry.why})")
    injected = {
        **entry.parameters,
        "inputs": {upstream: str(record.stages[upstream].output_dir) for upstream in stage.inputs},
        "output_dir": str(stage_dir),
        "mlflow_run_id": child,
        "tracking_uri": pipeline.tracking_uri,
    }
    executed, clock = stage_dir / EXECUTED_NOTEBOOK, time.monotonic()
    error: StageFailedError | None = None
    try:
        run_stage_notebook(
            name, stage.notebook, executed, injected, pipeline.project_dir, stage.timeout
        )
    except Exception as exc:
        error = stage_error(name, executed, exc)
    entry.finish(error, round(time.monotonic() - clock, 2))
    if error is None:
        policy.store(name, record.run_id, entry)
    saved = _save(record.run_dir, name, entry)
    mlflow.finish_stage(saved, entry.parameters, [executed, stage_dir / HTML_RECORD])
    say(
        f"  {name:<10} {entry.status:<9} {entry.duration_s:6.1f} s"
        + (f"  {error.reason}" if error else "")
    )
    return saved


def _claim(record: RunRecord, stage: str) -> StageRecord:
    """Return the stage's record if this task may run it now (under the run's lock)."""
    if record.status != "running":
        raise RunNotFoundError(
            f"Run {record.run_id} is already closed ({record.status}); a stage cannot run in "
            "it any more. Start a new orchestrator run."
        )
    if stage not in record.stages:
        raise RunNotFoundError(f"Run {record.run_id} has no stage '{stage}'.")
    entry = record.stages[stage]
    owner = entry.task or {}
    if (
        entry.status == "running"
        and owner.get("host") == socket.gethostname()
        and owner.get("pid") != os.getpid()
        and process_alive(owner.get("pid"))
    ):
        raise RunNotFoundError(
            f"Stage '{stage}' of run {record.run_id} is running in process {owner['pid']}. "
            "Wait for that task to end before retrying it."
        )
    if entry.status not in DONE:
        waiting = {
            name: record.stages[name].status
            for name in entry.inputs
            if record.stages[name].status not in DONE
        }
        if waiting:
            listing = ", ".join(f"{name} ({status})" for name, status in waiting.items())
            raise InputsNotDoneError(
                f"Stage '{stage}' of run {record.run_id} reads {listing}, which is not done. "
                "Make its task depend on theirs, as pipeline.yaml's inputs say."
            )
    return entry


def _save(run_dir: Path, stage: str, entry: StageRecord) -> StageRecord:
    """Write ``entry`` as the stage's record into the manifest, keeping every other stage's."""
    with _run_lock(run_dir):
        record = load_record(run_dir)
        record.stages[stage] = entry
        record.write()
    return entry


def _close(pipeline: Pipeline, record: RunRecord, *, succeeded: bool) -> None:
    """Settle the record and the MLflow runs (under the run's lock)."""
    keys = {
        name: CacheKey(name, entry.cache["parts"])
        for name, entry in record.stages.items()
        if entry.cache and entry.status == "succeeded" and pipeline.stage(name).reads_registry
    }
    if succeeded and keys:
        index = CacheIndex(pipeline.project_dir)
        store_under_own_champion(pipeline, index, record.run_id, record.stages, keys)
    error = _first_error(record)
    if error is not None:
        record.error = str(error)
    elif not succeeded:
        unfinished = [n for n, s in record.stages.items() if s.status not in DONE]
        record.error = f"The run was closed before these stages ran: {', '.join(unfinished)}."
    interrupted = record.close(succeeded=succeeded)
    started = datetime.fromisoformat(record.started_at)
    record.duration_s = round((datetime.now(UTC) - started).total_seconds(), 2)
    manifest = record.write()
    if record.mlflow.get("parent_run_id"):
        mlflow = MlflowRuns(pipeline, record)
        mlflow.open()
        mlflow.fail(interrupted)
        mlflow.close(manifest, succeeded=succeeded)


def _first_error(record: RunRecord) -> StageFailedError | None:
    for name, entry in record.stages.items():
        if entry.status == "failed":
            error = entry.error or {}
            return StageFailedError(
                name,
                str(error.get("message")),
                error.get("cell_index"),
                str(error.get("notebook") or entry.executed_notebook),
            )
    return None


def _key_file(pipeline: Pipeline, key: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return pipeline.project_dir / KEYS_DIR / f"{digest}.json"


def _known(pipeline: Pipeline, key: str) -> dict[str, Any] | None:
    path = _key_file(pipeline, key)
    if not path.is_file():
        return None
    known: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return known


def _run_dir(pipeline: Pipeline, key: str) -> Path:
    known = _known(pipeline, key)
    if known is None:
        raise RunNotFoundError(
            f"No run of pipeline '{pipeline.name}' has the key '{key}'. Run "
            f"`nbtools task start --key {key}` first (the first task of every orchestrator run)."
        )
    return pipeline.runs_dir / known["run_id"]


@contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the lock of one run's manifest, which its tasks rewrite in turn."""
    with project_lock(run_dir.parent.parent, f"run-{run_dir.name}.lock"):
        yield
