"""Running a pipeline: validate everything, then execute what changed and record what happened.

All parameters are resolved and validated before any kernel starts. The stages then run as a
graph: a stage starts once its inputs are done, up to ``jobs`` at a time, each in its own kernel
with its inputs, output folder and MLflow run injected. A stage whose cache key (see
:mod:`nbtools.core.cache`) matches an earlier execution is not executed: its outputs and record
are reused. A failed stage stops the stages that depend on it; independent branches finish.
The manifest is rewritten atomically after every change, so a run killed at any moment leaves a
readable record, and ``resume`` continues it, reusing what finished.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtools.core import environment
from nbtools.core.cache import CacheIndex, CacheKey, code_hash, environment_fingerprint, stage_key
from nbtools.core.dask_executor import SCHEDULER_VARIABLE, DaskStagePool
from nbtools.core.errors import PipelineSpecError, RunNotFoundError, StageFailedError
from nbtools.core.records import (
    EXECUTED_NOTEBOOK,
    HTML_RECORD,
    hash_outputs,
    list_runs,
    load_run,
    new_run_id,
    now,
    read_recorded,
    stage_dir_name,
    write_manifest,
)
from nbtools.core.scheduler import (
    InlineExecutor,
    default_jobs,
    run_stage_notebook,
    stage_error,
    stage_pool,
)
from nbtools.core.selection import select_stages
from nbtools.core.spec import Pipeline, Stage, load_pipeline

if TYPE_CHECKING:
    from nbtools.core.tracking import Tracker

Echo = Callable[[str], None]
#: Stage statuses whose outputs downstream stages can read.
DONE = ("succeeded", "reused")
_LOCK_FILE = Path(".nbtools") / "lock"


@dataclass(frozen=True)
class RunResult:
    """The outcome of a pipeline run.

    Parameters
    ----------
    run_id : str
        The run's id, also the name of its record folder.
    run_dir : Path
        The run record folder.
    mlflow_run_id : str or None
        Id of the parent MLflow run; ``None`` when every stage was reused and nothing was logged.
    manifest : dict
        The final manifest.
    error : StageFailedError or None
        The first failure of the run, if any.
    """

    run_id: str
    run_dir: Path
    mlflow_run_id: str | None
    manifest: dict[str, Any]
    error: StageFailedError | None = None

    @property
    def succeeded(self) -> bool:
        """Whether every stage of the run succeeded or was reused."""
        return self.error is None

    @property
    def executed(self) -> list[str]:
        """Names of the stages that were executed in this run (successfully or not)."""
        return [
            name
            for name, record in self.manifest["stages"].items()
            if record["status"] in ("succeeded", "failed")
        ]

    @property
    def reused(self) -> list[str]:
        """Names of the stages whose earlier outputs were reused."""
        return [n for n, r in self.manifest["stages"].items() if r["status"] == "reused"]


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
        stage selection are used again and the stages it finished are reused.
    echo : callable, optional
        Called with one line of progress at a time.

    Returns
    -------
    RunResult
        The run's id, record folder, MLflow run and manifest; ``error`` is set when a stage
        failed (the record and MLflow runs are marked failed, nothing already recorded is lost).

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
        profile, overrides = resumed["profile"], resumed["overrides"]
        only, targets, start, stop, force = resumed["selected"], None, None, None, False
    parameters = pipeline.resolve(profile, overrides)
    selected = select_stages(pipeline, only=only, start=start, stop=stop, targets=targets)
    run = _Run(
        pipeline=pipeline,
        parameters=parameters,
        selected=selected,
        forced=_forced(pipeline, force),
        jobs=jobs or default_jobs(),
        executor=executor,
        scheduler=scheduler,
        say=echo or (lambda _line: None),
        resumed=resumed,
    )
    run.prepare(profile, overrides)
    return run.execute()


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
        and _alive(owner.get("pid"))
    ):
        raise RunNotFoundError(
            f"Run {manifest['run_id']} is still running (process {owner['pid']}). "
            "Wait for it to finish or stop it before resuming it."
        )
    return manifest


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def project_lock(project_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the project across processes (two runs at once stay apart)."""
    path = project_dir / _LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class _Run:
    """The state of one pipeline run while it executes."""

    pipeline: Pipeline
    parameters: dict[str, dict[str, Any]]
    selected: list[str]
    forced: set[str]
    jobs: int
    executor: str
    scheduler: str | None
    say: Echo
    resumed: dict[str, Any] | None
    manifest: dict[str, Any] = field(default_factory=dict)
    run_dir: Path = Path()
    cache: CacheIndex | None = None
    tracker: Tracker | None = None
    parent: str | None = None
    keys: dict[str, CacheKey] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)
    hashes: dict[str, dict[str, str]] = field(default_factory=dict)
    error: StageFailedError | None = None
    started: float = 0.0
    environment: str = ""
    clocks: dict[str, float] = field(default_factory=dict)
    pool: Executor | None = None

    def prepare(self, profile: str | None, overrides: Mapping[str, Any] | None) -> None:
        """Settle the stages outside the selection and write the first manifest."""
        self.started = time.monotonic()
        self.cache = CacheIndex(self.pipeline.project_dir)
        self.environment = environment_fingerprint()
        needed = {s.name for name in self.selected for s in self.pipeline.upstream(name)}
        stages = [s for s in self.pipeline.stages if s.name in needed]
        run_id = new_run_id()
        self.run_dir = self.pipeline.runs_dir / run_id
        self.manifest = _new_manifest(self.pipeline, run_id, profile, overrides, stages)
        self.manifest.update(
            selected=list(self.selected),
            jobs=self.jobs,
            executor=self.executor,
            scheduler=self.scheduler,
            forced=sorted(self.forced),
            resumed_from=self.resumed["run_id"] if self.resumed else None,
        )
        for stage in stages:
            self.manifest["stages"][stage.name]["parameters"] = self.parameters[stage.name]
            if stage.name not in self.selected:
                self._reuse_outside(stage)
        write_manifest(self.run_dir, self.manifest)
        self.say(f"Run {run_id}: {len(self.selected)} stage(s) selected, record in {self.run_dir}")
        if self.resumed is not None and self.resumed["status"] == "running":
            self._close_killed(self.resumed)

    def _close_killed(self, killed: dict[str, Any]) -> None:
        """Mark a killed run, and its open MLflow runs, failed: it will never close them itself."""
        tracker, _ = self._tracking()
        reason = "interrupted: the run was killed before the stage finished"
        for record in killed["stages"].values():
            if record["status"] == "running":
                record.update(status="failed", error={"message": reason, "cell_index": None})
                if record.get("mlflow_run_id"):
                    tracker.finish(record["mlflow_run_id"], succeeded=False)
            elif record["status"] == "pending":
                record["status"] = "not run"
        killed.update(
            status="failed",
            error=f"The run was killed; resumed as run {self.manifest['run_id']}.",
        )
        if killed["mlflow"].get("parent_run_id"):
            tracker.finish(killed["mlflow"]["parent_run_id"], succeeded=False)
        write_manifest(self.pipeline.runs_dir / killed["run_id"], killed)
        self.say(f"Run {killed['run_id']} was killed; its record is now marked failed.")

    def execute(self) -> RunResult:
        """Run the selected stages as a graph and close the record."""
        running: dict[Future[None], str] = {}
        waiting = [s for s in self.pipeline.stages if s.name in self.selected]
        try:
            while waiting or running:
                waiting = self._dispatch(waiting, running)
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    self._finish(running.pop(future), future)
        except BaseException as exc:  # an interrupt or a crash of the runner itself
            if self.pool is not None:
                self.pool.shutdown(wait=False, cancel_futures=True)
            if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, or SIGINT from `cancel`
                self.manifest["error"] = "The run was cancelled before it finished."
            else:
                self.manifest["error"] = f"The runner stopped: {type(exc).__name__}: {exc}"
            self._close(succeeded=False, cancelled=isinstance(exc, KeyboardInterrupt))
            raise
        if self.pool is not None:
            self.pool.shutdown()
        if self.error is not None:
            self.manifest["error"] = str(self.error)
        self._close(succeeded=self.error is None)
        return RunResult(
            self.manifest["run_id"], self.run_dir, self.parent, self.manifest, self.error
        )

    def _dispatch(self, waiting: list[Stage], running: dict[Future[None], str]) -> list[Stage]:
        """Settle or start every waiting stage whose inputs are done; return those still waiting."""
        progressed = True
        while progressed:
            progressed = False
            for stage in list(waiting):
                statuses = [self.manifest["stages"][i]["status"] for i in stage.inputs]
                if any(s in ("failed", "not run") for s in statuses):
                    self._not_run(stage)
                elif all(s in DONE for s in statuses):
                    key = self._key(stage)
                    hit = None if stage.name in self.forced else self._lookup(key)
                    if hit is not None:
                        self._reuse(stage, hit, "unchanged")
                        write_manifest(self.run_dir, self.manifest)
                    elif len(running) < self.jobs:
                        running[self._submit(stage, key, more=len(waiting) > 1)] = stage.name
                    else:
                        continue
                else:
                    continue
                waiting.remove(stage)
                progressed = True
        return waiting

    def _key(self, stage: Stage) -> CacheKey:
        key = stage_key(
            stage.name,
            code=code_hash(stage.notebook),
            parameters={
                "parameters": self.parameters[stage.name],
                "seed": self.pipeline.seed,
                "model_name": self.pipeline.model_name,
            },
            input_hashes={name: self.hashes[name] for name in stage.inputs},
            environment=self.environment,
        )
        self.keys[stage.name] = key
        self.manifest["stages"][stage.name]["cache"] = {"key": key.digest, "parts": key.parts}
        return key

    def _lookup(self, key: CacheKey) -> dict[str, Any] | None:
        assert self.cache is not None
        hit = self.cache.lookup(key)
        if hit is None and self.resumed is not None:
            earlier = self.resumed["stages"].get(key.stage, {})
            if earlier.get("status") in DONE and earlier.get("cache", {}).get("key") == key.digest:
                hit = _entry(self.resumed["run_id"], earlier)
        return hit

    def _reuse_outside(self, stage: Stage) -> None:
        """Take the outputs of a stage outside the selection from the cache or the newest run."""
        hit = self._lookup(self._key(stage))
        if hit is not None:
            self._reuse(stage, hit, "unchanged, outside the selection")
            return
        for manifest in list_runs(self.pipeline.runs_dir):
            record = manifest["stages"].get(stage.name)
            if record and record["status"] in DONE:
                entry = _entry(manifest["run_id"], record, self.pipeline.runs_dir)
                if Path(entry["output_dir"]).is_dir():
                    self._reuse(stage, entry, "outside the selection; its newest outputs")
                    return
        raise PipelineSpecError(
            f"The selected stages need the outputs of stage '{stage.name}', which has no "
            "finished run. Run it first (`nbtools run --to "
            f"{stage.name}`) or widen the selection."
        )

    def _reuse(self, stage: Stage, entry: dict[str, Any], why: str) -> None:
        record = self.manifest["stages"][stage.name]
        record.update(
            status="reused",
            why=why,
            reused_from=entry["run_id"],
            output_dir=entry["output_dir"],
            duration_s=0.0,
            mlflow_run_id=entry.get("mlflow_run_id"),
            executed_notebook=entry.get("executed_notebook"),
            html=entry.get("html"),
            recorded=entry.get("recorded", {}),
            output_hashes=entry.get("output_hashes", {}),
        )
        self.outputs[stage.name] = Path(entry["output_dir"])
        self.hashes[stage.name] = record["output_hashes"]
        self.say(f"  {stage.name:<10} reused    from run {entry['run_id']} ({why})")

    def _not_run(self, stage: Stage) -> None:
        record = self.manifest["stages"][stage.name]
        failed = [
            i for i in stage.inputs if self.manifest["stages"][i]["status"] in ("failed", "not run")
        ]
        record.update(status="not run", why=f"its input {', '.join(failed)} did not finish")
        write_manifest(self.run_dir, self.manifest)
        self.say(f"  {stage.name:<10} not run   ({record['why']})")

    def _why(self, stage: Stage, key: CacheKey) -> str:
        if stage.name in self.forced:
            return "forced"
        assert self.cache is not None
        earlier = self.cache.latest_parts(stage.name)
        if earlier is None:
            return "no earlier execution"
        changed = key.changed_since(earlier)
        return f"{', '.join(changed)} changed" if changed else "its cached outputs are gone"

    def _submit(self, stage: Stage, key: CacheKey, *, more: bool) -> Future[None]:
        if self.pool is None:  # started on first need: a run that reuses everything starts none
            self.pool = stage_pool(self.jobs, self.executor, self.scheduler)
            if isinstance(self.pool, InlineExecutor):  # the first kernel starts while MLflow opens
                self.pool.spare_kernel().prepare(self.pipeline.project_dir, os.environ)
        tracker, parent = self._tracking()
        environ: dict[str, str] = {}
        if isinstance(self.pool, DaskStagePool):
            environ[SCHEDULER_VARIABLE] = self.pool.address
        record = self.manifest["stages"][stage.name]
        stage_dir = self.run_dir / record["dir"]
        stage_dir.mkdir(parents=True)
        child = tracker.start_run(
            stage.name,
            parent=parent,
            tags={"nbtools.stage": stage.name, "nbtools.run_id": self.manifest["run_id"]},
        )
        record.update(
            status="running",
            why=self._why(stage, key),
            started_at=now(),
            output_dir=str(stage_dir),
            mlflow_run_id=child,
        )
        self.clocks[stage.name] = time.monotonic()
        write_manifest(self.run_dir, self.manifest)
        self.say(f"  {stage.name:<10} running   ({record['why']})")
        injected = {
            **self.parameters[stage.name],
            "inputs": {name: str(self.outputs[name]) for name in stage.inputs},
            "output_dir": str(stage_dir),
            "mlflow_run_id": child,
            "tracking_uri": self.pipeline.tracking_uri,
        }
        executed = stage_dir / EXECUTED_NOTEBOOK
        # Locally with one job, the next stage's kernel starts while this stage runs.
        spare = self.pool.spare_kernel() if isinstance(self.pool, InlineExecutor) else None
        return self.pool.submit(
            run_stage_notebook,
            stage.name,
            stage.notebook,
            executed,
            injected,
            self.pipeline.project_dir,
            stage.timeout,
            environ,
            spare,
            more,
        )

    def _finish(self, name: str, future: Future[None]) -> None:
        record = self.manifest["stages"][name]
        stage_dir = Path(record["output_dir"])
        executed = stage_dir / EXECUTED_NOTEBOOK
        exc = future.exception()
        error = None if exc is None else stage_error(name, executed, exc)
        record["duration_s"] = round(time.monotonic() - self.clocks.pop(name), 2)
        record["status"] = "succeeded" if error is None else "failed"
        if error is not None:
            record["error"] = {
                "message": error.reason,
                "cell_index": error.cell_index,
                "notebook": error.notebook,
            }
            self.error = self.error or error
        if executed.is_file():
            record["executed_notebook"] = str(executed)
        if (stage_dir / HTML_RECORD).is_file():
            record["html"] = str(stage_dir / HTML_RECORD)
        record["recorded"] = read_recorded(stage_dir)
        record["output_hashes"] = hash_outputs(stage_dir)
        write_manifest(self.run_dir, self.manifest)
        if error is None:
            assert self.cache is not None
            self.cache.store(self.keys[name], _entry(self.manifest["run_id"], record))
            self.outputs[name] = stage_dir
            self.hashes[name] = record["output_hashes"]
        tracker, _ = self._tracking()
        tracker.log_stage(
            record["mlflow_run_id"],
            self.parameters[name],
            record["recorded"],
            [executed, stage_dir / HTML_RECORD],
        )
        tracker.finish(record["mlflow_run_id"], succeeded=error is None)
        self.say(
            f"  {name:<10} {record['status']:<9} {record['duration_s']:6.1f} s"
            + (f"  {error.reason}" if error else "")
        )

    def _tracking(self) -> tuple[Tracker, str]:
        """Open MLflow and the parent run on first need: a run that reuses everything logs nothing.

        Opening happens under the project lock, so that a new SQLite database is created and
        migrated once, before any stage process (or a second run) opens it.
        """
        if self.tracker is None or self.parent is None:
            from nbtools.core.tracking import Tracker

            pipeline = self.pipeline
            with project_lock(pipeline.project_dir):
                self.tracker = Tracker(
                    pipeline.tracking_uri, pipeline.name, pipeline.project_dir / "mlartifacts"
                )
            run_id = self.manifest["run_id"]
            self.parent = self.tracker.start_run(run_id, tags={"nbtools.run_id": run_id})
            self.tracker.log_parent(
                self.parent,
                {
                    "profile": self.manifest["profile"] or "none",
                    "seed": pipeline.seed,
                    "overrides": self.manifest["overrides"],
                },
            )
            self.manifest["mlflow"]["parent_run_id"] = self.parent
        return self.tracker, self.parent

    def _close(self, *, succeeded: bool, cancelled: bool = False) -> None:
        for record in self.manifest["stages"].values():
            if record["status"] == "running":
                record["status"] = "failed"
                record["error"] = {
                    "message": "interrupted before the stage finished",
                    "cell_index": None,
                    "notebook": record.get("executed_notebook"),
                }
                if self.tracker is not None:
                    self.tracker.finish(record["mlflow_run_id"], succeeded=False)
            elif record["status"] == "pending":
                record["status"] = "not run"
        self.manifest["status"] = (
            "succeeded" if succeeded else "cancelled" if cancelled else "failed"
        )
        self.manifest["finished_at"] = now()
        self.manifest["duration_s"] = round(time.monotonic() - self.started, 2)
        path = write_manifest(self.run_dir, self.manifest)
        if self.tracker is not None and self.parent is not None:
            self.tracker.log_file(self.parent, path)
            self.tracker.finish(self.parent, succeeded=succeeded)


def _entry(run_id: str, record: Mapping[str, Any], runs_dir: Path | None = None) -> dict[str, Any]:
    """Return what a later run needs to reuse a finished stage record."""
    output_dir = record.get("output_dir")
    if output_dir is None and runs_dir is not None:
        output_dir = str(runs_dir / run_id / record["dir"])
    return {
        "run_id": record.get("reused_from") or run_id,
        "output_dir": output_dir,
        "recorded": record.get("recorded", {}),
        "output_hashes": record.get("output_hashes", {}),
        "executed_notebook": record.get("executed_notebook"),
        "html": record.get("html"),
        "mlflow_run_id": record.get("mlflow_run_id"),
    }


def _new_manifest(
    pipeline: Pipeline,
    run_id: str,
    profile: str | None,
    overrides: Mapping[str, Any] | None,
    stages: list[Stage],
) -> dict[str, Any]:
    index = {s.name: i for i, s in enumerate(pipeline.stages, start=1)}
    return {
        "run_id": run_id,
        "pipeline": pipeline.name,
        "project_dir": str(pipeline.project_dir),
        "status": "running",
        "started_at": now(),
        "finished_at": None,
        "duration_s": None,
        "profile": profile,
        "overrides": dict(overrides or {}),
        "process": {"host": socket.gethostname(), "pid": os.getpid()},
        "mlflow": {"tracking_uri": pipeline.tracking_uri, "parent_run_id": None},
        "environment": environment.describe(pipeline.project_dir, pipeline.seed),
        "error": None,
        "stages": {
            s.name: {
                "status": "pending",
                "why": None,
                "dir": stage_dir_name(index[s.name], s.name),
                "output_dir": None,
                "reused_from": None,
                "notebook": str(s.notebook),
                "inputs": list(s.inputs),
                "parameters": {},
                "cache": None,
                "started_at": None,
                "duration_s": None,
                "mlflow_run_id": None,
                "executed_notebook": None,
                "html": None,
                "recorded": {},
                "output_hashes": {},
                "error": None,
            }
            for s in stages
        },
    }
