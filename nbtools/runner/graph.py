"""One run of the stage graph: dispatch the stages, reuse cached ones, record each outcome.

:func:`nbtools.runner.run.run_pipeline` validates everything and hands a :class:`GraphRun` the
selected stages. A stage starts once its inputs are done, up to ``jobs`` at a time; a cached
stage is reused, a failed one stops its dependants. The manifest is rewritten atomically after
every change, and the MLflow runs are opened and closed here, with their true status.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtools.errors import (
    ModelRegistryError,
    PipelineSpecError,
    StageFailedError,
)
from nbtools.pipeline.sources import Fingerprint, champion_state, fingerprint_stages
from nbtools.pipeline.spec import Pipeline, Stage
from nbtools.records import environment
from nbtools.records.runs import (
    EXECUTED_NOTEBOOK,
    HTML_RECORD,
    RunResult,
    hash_outputs,
    list_runs,
    new_run_id,
    now,
    project_lock,
    read_recorded,
    stage_dir_name,
    stage_warnings,
    write_manifest,
)
from nbtools.runner.cache import CacheIndex, CacheKey, code_hash, environment_fingerprint, stage_key
from nbtools.runner.dask_executor import SCHEDULER_VARIABLE, DaskStagePool
from nbtools.runner.scheduler import (
    LocalStagePool,
    run_local_stage,
    run_stage_notebook,
    stage_error,
    stage_pool,
)

if TYPE_CHECKING:
    from nbtools.records.tracking import Tracker

Echo = Callable[[str], None]
#: Stage statuses whose outputs downstream stages can read.
DONE = ("succeeded", "reused")
#: Stage executions in progress in this process, by project and cache key (see ``_claim``).
_CLAIMS: dict[tuple[str, str], Future[None]] = {}
_CLAIMS_LOCK = threading.Lock()


@dataclass
class GraphRun:
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
    #: False when the pool is shared with other runs (a sweep's variants) and shut down by them.
    owns_pool: bool = True
    #: Stages this run executes, claimed so that runs in this process at the same time wait
    #: for them instead of executing them again: stage name to (cache key, released when done).
    claims: dict[str, tuple[str, Future[None]]] = field(default_factory=dict)
    #: Claims of other runs this run waits for, and the cache keys they settle.
    borrowed: set[Future[None]] = field(default_factory=set)
    shared: set[str] = field(default_factory=set)
    #: The data sources each stage reads, fingerprinted once per run: stage to parameter to it.
    sources: dict[str, dict[str, Fingerprint]] = field(default_factory=dict)
    #: The registry state each registry-reading stage's key holds.
    registry: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The stored record of each stage's newest earlier execution, for "was N rows".
    earlier: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def prepare(self, profile: str | None, overrides: Mapping[str, Any] | None) -> None:
        """Settle the stages outside the selection and write the first manifest."""
        self.started = time.monotonic()
        self.cache = CacheIndex(self.pipeline.project_dir)
        self.environment = environment_fingerprint()
        needed = {s.name for name in self.selected for s in self.pipeline.upstream(name)}
        stages = [s for s in self.pipeline.stages if s.name in needed]
        self.sources = fingerprint_stages(
            stages, self.parameters, self.pipeline.project_dir, required=set(self.selected)
        )
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
                if not running and not self.borrowed:
                    break
                done, _ = wait([*running, *self.borrowed], return_when=FIRST_COMPLETED)
                for future in done:
                    if future in running:
                        self._finish(running.pop(future), future)
                    else:  # another run finished a stage this one waits for: dispatch again
                        self.borrowed.discard(future)
        except BaseException as exc:  # an interrupt or a crash of the runner itself
            if self.pool is not None and self.owns_pool:
                self.pool.shutdown(wait=False, cancel_futures=True)
            cancelled = isinstance(exc, KeyboardInterrupt)  # Ctrl-C, or SIGINT from a cancel
            if cancelled:
                self.manifest["error"] = "The run was cancelled before it finished."
            else:
                self.manifest["error"] = f"The runner stopped: {type(exc).__name__}: {exc}"
            self._close(succeeded=False, cancelled=cancelled)
            raise
        finally:
            for name in list(self.claims):
                self._release(name)
        if self.pool is not None and self.owns_pool:
            self.pool.shutdown()
        self._own_registry_changes()
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
                if self._settle(stage, running, len(waiting)):
                    waiting.remove(stage)
                    progressed = True
        return waiting

    def _settle(self, stage: Stage, running: dict[Future[None], str], waiting: int) -> bool:
        """Skip, reuse or start ``stage`` if its inputs allow it now; return whether it was."""
        statuses = [self.manifest["stages"][i]["status"] for i in stage.inputs]
        if any(s in ("failed", "not run") for s in statuses):
            self._not_run(stage)
            return True
        if not all(s in DONE for s in statuses):
            return False
        key = self._key(stage)
        # A forced stage executes anyway, unless another run executed it at the same time.
        if stage.name not in self.forced or key.digest in self.shared:
            hit = self._lookup(key)
            if hit is not None:
                self._reuse(stage, hit, self._unchanged(stage))
                write_manifest(self.run_dir, self.manifest)
                return True
        mine, other = _claim(self.pipeline.project_dir, key.digest, len(running) < self.jobs)
        if other is not None:  # another run in this process executes it now: wait, then reuse
            self.borrowed.add(other)
            self.shared.add(key.digest)
            return False
        if mine is None:  # every job is busy
            return False
        self.claims[stage.name] = (key.digest, mine)
        running[self._submit(stage, key, waiting=waiting)] = stage.name
        return True

    def _own_registry_changes(self) -> None:
        """Key the registry-reading stages also on the champion this run itself deployed.

        A stage's key holds the champion it compared against. When this run's deploy made its
        own model the champion, the stages are stored under that new state too, so that running
        the unchanged pipeline again reuses them; a champion set anywhere else re-runs them.
        """
        if not self.registry or self.cache is None:
            return
        try:
            with project_lock(self.pipeline.project_dir):
                now = champion_state(self.pipeline.tracking_uri, self.pipeline.model_name)
        except ModelRegistryError:
            return  # unreadable now: the next run reads it again and decides then
        own = {r.get("mlflow_run_id") for r in self.manifest["stages"].values()} - {None}
        if now["champion"] is None or now["champion"]["run_id"] not in own:
            return
        for name, seen in self.registry.items():
            record = self.manifest["stages"][name]
            if seen != now and record["status"] in DONE:
                entry = _entry(self.manifest["run_id"], record)
                self.cache.store(self.keys[name].with_registry(now), entry)

    def _release(self, name: str) -> None:
        """Let runs waiting for this run's execution of stage ``name`` look it up again."""
        digest, claim = self.claims.pop(name)
        with _CLAIMS_LOCK:
            _CLAIMS.pop((str(self.pipeline.project_dir), digest), None)
        claim.set_result(None)

    def _key(self, stage: Stage) -> CacheKey:
        if stage.reads_registry:
            with project_lock(self.pipeline.project_dir):  # a new database is not half-made
                self.registry[stage.name] = champion_state(
                    self.pipeline.tracking_uri, self.pipeline.model_name
                )
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
            sources={name: found.digest for name, found in self.sources[stage.name].items()},
            registry=self.registry.get(stage.name),
        )
        self.keys[stage.name] = key
        self.manifest["stages"][stage.name]["cache"] = {"key": key.digest, "parts": key.parts}
        if self.sources[stage.name]:
            self.manifest["stages"][stage.name]["sources"] = {
                name: {"source": found.source, "fingerprint": found.digest, "rows": found.rows}
                for name, found in self.sources[stage.name].items()
            }
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
        self._say_warnings(stage.name, record["recorded"])

    def _not_run(self, stage: Stage) -> None:
        record = self.manifest["stages"][stage.name]
        failed = [
            i for i in stage.inputs if self.manifest["stages"][i]["status"] in ("failed", "not run")
        ]
        record.update(status="not run", why=f"its input {', '.join(failed)} did not finish")
        write_manifest(self.run_dir, self.manifest)
        self.say(f"  {stage.name:<10} not run   ({record['why']})")

    def _why(self, stage: Stage, key: CacheKey) -> str:
        assert self.cache is not None
        self.earlier[stage.name] = self.cache.latest_record(stage.name)
        if stage.name in self.forced:
            return "forced"
        earlier = self.cache.latest_parts(stage.name)
        if earlier is None:
            return "no earlier execution"
        changed = key.changed_since(earlier)
        if "source" in changed:
            return f"{', '.join(changed)} changed: {self._source_names(stage)}"
        return f"{', '.join(changed)} changed" if changed else "its cached outputs are gone"

    def _unchanged(self, stage: Stage) -> str:
        if not self.sources[stage.name]:
            return "unchanged"
        return f"unchanged; source unchanged: {self._source_names(stage)}"

    def _source_names(self, stage: Stage) -> str:
        return ", ".join(found.source for found in self.sources[stage.name].values())

    def _source_outcome(self, stage: Stage, record: dict[str, Any]) -> str | None:
        """Say what a re-read source held: "source changed: x.csv, 1,000 rows, was 2,000"."""
        key, earlier = self.keys[stage.name], self.earlier.get(stage.name)
        if not self.sources[stage.name] or earlier is None:
            return None
        parts = (self.cache.latest_parts(stage.name) if self.cache else None) or {}
        changed = "changed" if parts.get("source") != key.parts["source"] else "unchanged"
        line = f"source {changed}: {self._source_names(stage)}"
        rows, was = record["recorded"].get("rows"), earlier.get("recorded", {}).get("rows")
        if isinstance(rows, int):
            line += f", {rows:,} rows" + (f", was {was:,}" if isinstance(was, int) else "")
        if record["output_hashes"] == earlier.get("output_hashes"):
            line += "; its outputs are unchanged"
        return line

    def _submit(self, stage: Stage, key: CacheKey, *, waiting: int) -> Future[None]:
        """Open the record and MLflow run of ``stage`` and hand it to the pool."""
        notebook, cwd = stage.notebook, self.pipeline.project_dir
        if self.pool is None:  # started on first need: a run that reuses everything starts none
            self.pool = stage_pool(self.jobs, self.executor, self.scheduler)
            if isinstance(self.pool, LocalStagePool):  # the first kernels start while MLflow opens
                self.pool.kernels.prepare(cwd, self.pool.env, min(self.jobs, waiting))
        tracker, parent = self._tracking()
        if isinstance(self.pool, LocalStagePool):
            # The database exists now: kernels started from here on open it ahead. A kernel
            # waits, or starts, for this stage and each stage still waiting after it.
            self.pool.kernels.open_store(self.pipeline.tracking_uri)
            self.pool.kernels.prepare(cwd, self.pool.env, waiting)
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
        if isinstance(self.pool, LocalStagePool):
            return self.pool.submit(
                run_local_stage,
                *(stage.name, notebook, executed, injected, cwd, stage.timeout),
                self.pool,
            )
        return self.pool.submit(
            run_stage_notebook,
            *(stage.name, notebook, executed, injected, cwd, stage.timeout),
            environ,
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
        outcome = None if error else self._source_outcome(self.pipeline.stage(name), record)
        write_manifest(self.run_dir, self.manifest)
        if error is None:
            assert self.cache is not None
            self.cache.store(self.keys[name], _entry(self.manifest["run_id"], record))
            self.outputs[name] = stage_dir
            self.hashes[name] = record["output_hashes"]
        self._release(name)
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
        if outcome is not None:
            self.say(f"  {'':<10} {outcome}")
        self._say_warnings(name, record["recorded"])

    def _say_warnings(self, name: str, recorded: dict[str, Any]) -> None:
        """Print what the stage warned about (rows it removed, values it changed)."""
        for message in stage_warnings(recorded):
            self.say(f"  {name:<10} warning   {message}")

    def _tracking(self) -> tuple[Tracker, str]:
        """Open MLflow and the parent run on first need: a run that reuses everything logs nothing.

        Opening happens under the project lock, so that a new SQLite database is created and
        migrated once, before any stage process (or a second run) opens it.
        """
        if self.tracker is None or self.parent is None:
            from nbtools.records.tracking import Tracker

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


def _claim(
    project_dir: Path, digest: str, can_run: bool
) -> tuple[Future[None] | None, Future[None] | None]:
    """Claim the execution of a stage by its cache key, unless another run holds the claim.

    Returns ``(mine, None)`` when this run may execute it (``can_run``) and now holds the
    claim, ``(None, other)`` when another run in this process executes it right now, and
    ``(None, None)`` when this run has no free job for it.
    """
    key = (str(project_dir), digest)
    with _CLAIMS_LOCK:
        other = _CLAIMS.get(key)
        if other is not None:
            return None, other
        if not can_run:
            return None, None
        mine: Future[None] = Future()
        _CLAIMS[key] = mine
        return mine, None


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
