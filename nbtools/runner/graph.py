"""One run of the stage graph: dispatch the stages, reuse cached ones, record each outcome.

:func:`nbtools.runner.run.run_pipeline` validates everything and hands :func:`start_run` the
selected stages. A stage starts once its inputs are done, up to ``jobs`` at a time; a cached
stage is reused, a failed one stops its dependants. The loop leans on four parts, each readable
on its own: the run record (:mod:`nbtools.records.manifest`, rewritten atomically after every
change), the cache policy (:mod:`~nbtools.runner.cache_policy`), the stage pool
(:mod:`~nbtools.runner.pool`) and the MLflow runs (:mod:`~nbtools.runner.mlflow_runs`);
:mod:`~nbtools.runner.claims` keeps runs of one process from executing a stage twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from nbtools.errors import StageFailedError
from nbtools.pipeline.sources import fingerprint_stages
from nbtools.pipeline.spec import Pipeline, Stage
from nbtools.records import environment
from nbtools.records.manifest import RunRecord, StageRecord, mark_killed, new_run_record
from nbtools.records.runs import (
    EXECUTED_NOTEBOOK,
    HTML_RECORD,
    RunResult,
    new_run_id,
    stage_dir_name,
    stage_warnings,
    write_manifest,
)
from nbtools.runner.cache import CacheKey
from nbtools.runner.cache_policy import CachePolicy
from nbtools.runner.claims import Claims
from nbtools.runner.mlflow_runs import MlflowRuns
from nbtools.runner.pool import StagePool
from nbtools.runner.scheduler import stage_error, stage_pool

Echo = Callable[[str], None]


@dataclass
class GraphRun:
    """The loop of one pipeline run over its stage graph; build it with :func:`start_run`.

    Parameters
    ----------
    pipeline : Pipeline
        The pipeline that runs.
    parameters : dict
        Each stage's resolved parameters.
    selected : list of str
        The stages to run, in pipeline order.
    record : RunRecord
        The run's manifest, rewritten after every change.
    policy : CachePolicy
        Keys, reuse and the reasons the console and the record show.
    mlflow : MlflowRuns
        The parent and child MLflow runs.
    say : callable
        Called with each line of progress.
    jobs : int
        Stages executing at once.
    make_pool : callable
        Makes the stage pool when the first stage executes (a run reusing everything starts none).
    pool : StagePool, optional
        A pool shared with other runs (a sweep's variants), which this run then does not shut down.
    """

    pipeline: Pipeline
    parameters: dict[str, dict[str, Any]]
    selected: list[str]
    record: RunRecord
    policy: CachePolicy
    mlflow: MlflowRuns
    say: Echo
    jobs: int
    make_pool: Callable[[], StagePool]
    pool: StagePool | None = None
    owns_pool: bool = field(init=False)
    claims: Claims = field(init=False)
    #: Each done stage's output folder and output hashes, which its dependants read.
    outputs: dict[str, Path] = field(default_factory=dict)
    hashes: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The first failure of the run.
    error: StageFailedError | None = None
    clocks: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.owns_pool = self.pool is None
        self.claims = Claims(self.pipeline.project_dir)

    def execute(self) -> RunResult:
        """Run the selected stages as a graph and close the record."""
        running: dict[Future[None], str] = {}
        waiting = [s for s in self.pipeline.stages if s.name in self.selected]
        try:
            while waiting or running:
                waiting = self._dispatch(waiting, running)
                if not running and not self.claims.borrowed:
                    break
                done, _ = wait([*running, *self.claims.borrowed], return_when=FIRST_COMPLETED)
                for future in done:
                    if future in running:
                        self._finish(running.pop(future), future)
                    else:  # another run finished a stage this one waits for: dispatch again
                        self.claims.borrowed.discard(future)
        except BaseException as exc:  # an interrupt or a crash of the runner itself
            if self.pool is not None and self.owns_pool:
                self.pool.shutdown(wait=False, cancel_futures=True)
            cancelled = isinstance(exc, KeyboardInterrupt)  # Ctrl-C, or SIGTERM (see nbtools run)
            self.record.error = (
                "The run was cancelled before it finished."
                if cancelled
                else f"The runner stopped: {type(exc).__name__}: {exc}"
            )
            self._close(succeeded=False, cancelled=cancelled)
            raise
        finally:
            self.claims.release_all()
        if self.pool is not None and self.owns_pool:
            self.pool.shutdown()
        self.policy.own_registry_changes(self.record.run_id, self.record.stages)
        if self.error is not None:
            self.record.error = str(self.error)
        self._close(succeeded=self.error is None)
        manifest = self.record.to_dict()
        return RunResult(
            self.record.run_id, self.record.run_dir, self.mlflow.parent, manifest, self.error
        )

    def _dispatch(self, waiting: list[Stage], running: dict[Future[None], str]) -> list[Stage]:
        """Settle or start every waiting stage whose inputs are done; return those still waiting."""
        progressed = True
        while progressed:
            progressed = False
            for stage in list(waiting):
                if self._settle(stage, running, len(waiting)):
                    waiting.remove(stage)
                    progressed = True
        return waiting

    def _settle(self, stage: Stage, running: dict[Future[None], str], waiting: int) -> bool:
        """Skip, reuse or start ``stage`` if its inputs allow it now; return whether it was."""
        record = self.record.stages[stage.name]
        stopped, ready = self.record.inputs_status(record)
        if stopped:
            record.status, record.why = "not run", f"its input {', '.join(stopped)} did not finish"
            self.record.write()
            self.say(f"  {stage.name:<10} not run   ({record.why})")
            return True
        if not ready:
            return False
        key = self.key(stage)
        # A forced stage executes anyway, unless another run executed it at the same time.
        hit = self.policy.lookup(key, shared=self.claims.shared)
        if hit is not None:
            self.reuse(stage.name, hit, self.policy.why_reused(stage.name))
            self.record.write()
            return True
        if not self.claims.claim(stage.name, key.digest, can_run=len(running) < self.jobs):
            return False  # every job is busy, or another run executes it now: wait, then reuse
        running[self._submit(stage, key, waiting=waiting)] = stage.name
        return True

    def key(self, stage: Stage) -> CacheKey:
        """Compute the cache key of ``stage`` (its inputs done) and note it in the record."""
        key = self.policy.key(stage, {name: self.hashes[name] for name in stage.inputs})
        record = self.record.stages[stage.name]
        record.cache = {"key": key.digest, "parts": key.parts}
        record.sources = self.policy.source_record(stage.name) or record.sources
        return key

    def reuse(self, name: str, entry: dict[str, Any], why: str) -> None:
        """Take a stage's outputs from a cache entry instead of executing it."""
        record = self.record.stages[name]
        record.reuse(entry, why)
        self.outputs[name] = Path(entry["output_dir"])
        self.hashes[name] = record.output_hashes
        self.say(f"  {name:<10} reused    from run {entry['run_id']} ({why})")
        self._say_warnings(name, record.recorded)

    def _submit(self, stage: Stage, key: CacheKey, *, waiting: int) -> Future[None]:
        """Open the record and MLflow run of ``stage`` and hand it to the pool."""
        cwd = self.pipeline.project_dir
        if self.pool is None:  # the first kernels start while MLflow opens
            self.pool = self.make_pool()
            self.pool.prepare(cwd, min(self.jobs, waiting))
        self.mlflow.open()
        # The database exists now: kernels started from here on open it ahead. A kernel
        # waits, or starts, for this stage and each stage still waiting after it.
        self.pool.open_store(self.pipeline.tracking_uri)
        self.pool.prepare(cwd, waiting)
        record = self.record.stages[stage.name]
        stage_dir = self.record.run_dir / record.dir
        stage_dir.mkdir(parents=True)
        child = self.mlflow.start_stage(stage.name)
        record.start(stage_dir, self.policy.why_run(stage.name, key), child)
        self.clocks[stage.name] = time.monotonic()
        self.record.write()
        self.say(f"  {stage.name:<10} running   ({record.why})")
        injected = {
            **self.parameters[stage.name],
            "inputs": {name: str(self.outputs[name]) for name in stage.inputs},
            "output_dir": str(stage_dir),
            "mlflow_run_id": child,
            "tracking_uri": self.pipeline.tracking_uri,
        }
        executed = stage_dir / EXECUTED_NOTEBOOK
        return self.pool.run_stage(
            stage.name,
            stage.notebook,
            executed,
            injected,
            cwd,
            stage.timeout,
            resources=stage.resources,
        )

    def _finish(self, name: str, future: Future[None]) -> None:
        """Record how an executed stage ended, store it in the cache, and close its MLflow run."""
        record = self.record.stages[name]
        stage_dir = Path(str(record.output_dir))
        exc = future.exception()
        error = None if exc is None else stage_error(name, stage_dir / EXECUTED_NOTEBOOK, exc)
        self.error = self.error or error
        record.finish(error, round(time.monotonic() - self.clocks.pop(name), 2))
        outcome = None if error else self.policy.source_outcome(record, name)
        self.record.write()
        if error is None:
            self.policy.store(name, self.record.run_id, record)
            self.outputs[name], self.hashes[name] = stage_dir, record.output_hashes
        self.claims.release(name)
        files = [stage_dir / EXECUTED_NOTEBOOK, stage_dir / HTML_RECORD]
        self.mlflow.finish_stage(record, self.parameters[name], files)
        self.say(
            f"  {name:<10} {record.status:<9} {record.duration_s:6.1f} s"
            + (f"  {error.reason}" if error else "")
        )
        if outcome is not None:
            self.say(f"  {'':<10} {outcome}")
        self._say_warnings(name, record.recorded)

    def _say_warnings(self, name: str, recorded: dict[str, Any]) -> None:
        """Print what the stage warned about (rows it removed, values it changed)."""
        for message in stage_warnings(recorded):
            self.say(f"  {name:<10} warning   {message}")

    def _close(self, *, succeeded: bool, cancelled: bool = False) -> None:
        """Settle the unfinished stages and the run's status; close the MLflow runs."""
        self.mlflow.fail(self.record.close(succeeded=succeeded, cancelled=cancelled))
        self.mlflow.close(self.record.write(), succeeded=succeeded)


def start_run(
    pipeline: Pipeline,
    parameters: dict[str, dict[str, Any]],
    selected: list[str],
    *,
    forced: set[str],
    resumed: dict[str, Any] | None,
    settings: Mapping[str, Any],
    say: Echo,
    pool: StagePool | None = None,
) -> GraphRun:
    """Settle the stages outside the selection, write the first record and return the loop.

    Parameters
    ----------
    pipeline : Pipeline
        The pipeline to run.
    parameters : dict
        Each stage's resolved parameters.
    selected : list of str
        The stages to run.
    forced : set of str
        Stages executed even when their cache key matches.
    resumed : dict or None
        The manifest of the failed or killed run this one continues.
    settings : mapping
        ``profile``, ``overrides``, ``jobs``, ``executor`` and ``scheduler``, kept in the record.
    say : callable
        Called with each line of progress.
    pool : StagePool, optional
        A stage pool shared with other runs; by default the run makes its own.

    Raises
    ------
    PipelineSpecError
        When a stage outside the selection has no outputs to reuse.
    """
    clock = time.monotonic()
    needed = {s.name for name in selected for s in pipeline.upstream(name)}
    stages = [s for s in pipeline.stages if s.name in needed]
    policy = CachePolicy(
        pipeline,
        parameters,
        fingerprint_stages(stages, parameters, pipeline.project_dir, required=set(selected)),
        forced,
        resumed,
    )
    record = _first_record(pipeline, stages, parameters, settings, clock=clock)
    record.selected, record.forced = list(selected), sorted(forced)
    record.resumed_from = resumed["run_id"] if resumed else None
    jobs, executor, scheduler = settings["jobs"], settings["executor"], settings["scheduler"]
    run = GraphRun(
        pipeline,
        parameters,
        selected,
        record,
        policy,
        MlflowRuns(pipeline, record),
        say,
        jobs,
        partial(stage_pool, jobs, executor, scheduler),
        pool,
    )
    for stage in stages:
        if stage.name not in selected:
            run.reuse(stage.name, *policy.outside_selection(stage, run.key(stage)))
    record.write()
    say(f"Run {record.run_id}: {len(selected)} stage(s) selected, record in {record.run_dir}")
    if resumed is not None and resumed["status"] == "running":
        _close_killed(run, resumed)
    return run


def _first_record(
    pipeline: Pipeline,
    stages: list[Stage],
    parameters: dict[str, dict[str, Any]],
    settings: Mapping[str, Any],
    *,
    clock: float,
) -> RunRecord:
    """Return the record of a new run with every needed stage pending."""
    index = {s.name: i for i, s in enumerate(pipeline.stages, start=1)}
    run_id = new_run_id()
    return new_run_record(
        run_id,
        pipeline.runs_dir / run_id,
        pipeline=pipeline.name,
        project_dir=pipeline.project_dir,
        stages={
            s.name: StageRecord(
                dir=stage_dir_name(index[s.name], s.name),
                notebook=str(s.notebook),
                inputs=list(s.inputs),
                parameters=parameters[s.name],
            )
            for s in stages
        },
        profile=settings["profile"],
        overrides=dict(settings["overrides"] or {}),
        mlflow={"tracking_uri": pipeline.tracking_uri, "parent_run_id": None},
        environment=environment.describe(pipeline.project_dir, pipeline.seed),
        jobs=settings["jobs"],
        executor=settings["executor"],
        scheduler=settings["scheduler"],
        clock=clock,
    )


def _close_killed(run: GraphRun, killed: dict[str, Any]) -> None:
    """Mark a killed run, and its open MLflow runs, failed: it will never close them itself."""
    tracker, _ = run.mlflow.open()
    for mlflow_run in mark_killed(killed, run.record.run_id):
        tracker.finish(mlflow_run, succeeded=False)
    write_manifest(run.pipeline.runs_dir / killed["run_id"], killed)
    run.say(f"Run {killed['run_id']} was killed; its record is now marked failed.")
