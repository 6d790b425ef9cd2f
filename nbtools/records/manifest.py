"""The manifest of a run as typed records: one :class:`RunRecord` holding a :class:`StageRecord`
per stage, which writes itself atomically as ``manifest.json``.

The JSON keeps the shape every reader knows (``nbtools runs``, the sidebar,
:mod:`~nbtools.records.history`): the fields below, in this order, are the manifest's keys.
Readers keep reading plain dictionaries (:func:`~nbtools.records.runs.read_manifest`); the run
loop is the one writer.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nbtools.errors import StageFailedError
from nbtools.records.runs import (
    EXECUTED_NOTEBOOK,
    HTML_RECORD,
    hash_outputs,
    now,
    read_manifest,
    read_recorded,
    write_manifest,
)

#: Stage statuses whose outputs downstream stages can read.
DONE = ("succeeded", "reused")
#: Stage statuses that stop the stages downstream.
STOPPED = ("failed", "not run")


@dataclass(kw_only=True)
class StageRecord:
    """What the manifest holds about one stage of a run.

    Parameters
    ----------
    dir : str
        The stage's folder name inside the run record (``05_train``).
    notebook : str
        The source notebook's path.
    inputs : list of str
        The upstream stages it reads.
    status : str
        ``pending``, ``running``, ``succeeded``, ``reused``, ``failed`` or ``not run``.
    why : str or None
        Why it ran, was reused or did not run, as the console said it.
    sources : dict or None
        The data sources it read with their fingerprints; left out of the JSON when ``None``.
    task : dict or None
        For a stage executed by an orchestrator's task (``nbtools task stage``): the attempt
        number, host and process of the latest attempt; left out of the JSON when ``None``.

    Notes
    -----
    The other fields are what the manifest documents: the output folder, the run it was reused
    from, the resolved parameters, the cache key and its parts, the start time and duration,
    the MLflow child run, the executed notebook and its HTML render, the recorded values, the
    output hashes and the error summary of a failure.
    """

    status: str = "pending"
    why: str | None = None
    dir: str
    output_dir: str | None = None
    reused_from: str | None = None
    notebook: str
    inputs: list[str]
    parameters: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] | None = None
    started_at: str | None = None
    duration_s: float | None = None
    mlflow_run_id: str | None = None
    executed_notebook: str | None = None
    html: str | None = None
    recorded: dict[str, Any] = field(default_factory=dict)
    output_hashes: dict[str, str] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    sources: dict[str, dict[str, Any]] | None = None
    task: dict[str, Any] | None = None

    def reuse(self, entry: dict[str, Any], why: str) -> None:
        """Take the outputs and record of an earlier execution (a cache entry)."""
        self.status, self.why, self.duration_s = "reused", why, 0.0
        self.reused_from = entry["run_id"]
        self.output_dir = entry["output_dir"]
        self.mlflow_run_id = entry.get("mlflow_run_id")
        self.executed_notebook = entry.get("executed_notebook")
        self.html = entry.get("html")
        self.recorded = entry.get("recorded", {})
        self.output_hashes = entry.get("output_hashes", {})

    def start(self, stage_dir: Path, why: str, mlflow_run_id: str) -> None:
        """Mark the stage running in ``stage_dir``, logging to MLflow run ``mlflow_run_id``."""
        self.status, self.why, self.started_at = "running", why, now()
        self.output_dir, self.mlflow_run_id = str(stage_dir), mlflow_run_id

    def finish(self, error: StageFailedError | None, duration_s: float) -> None:
        """Record how an execution ended: status, error, the files and values it left."""
        stage_dir = Path(str(self.output_dir))
        executed, html = stage_dir / EXECUTED_NOTEBOOK, stage_dir / HTML_RECORD
        self.duration_s = duration_s
        self.status = "succeeded" if error is None else "failed"
        if error is not None:
            self.error = {
                "message": error.reason,
                "cell_index": error.cell_index,
                "notebook": error.notebook,
            }
        if executed.is_file():
            self.executed_notebook = str(executed)
        if html.is_file():
            self.html = str(html)
        self.recorded, self.output_hashes = read_recorded(stage_dir), hash_outputs(stage_dir)

    def fail(self, message: str, cell_index: int | None = None) -> None:
        """Mark the stage failed with an error summary naming its executed notebook."""
        self.status = "failed"
        self.error = {
            "message": message,
            "cell_index": cell_index,
            "notebook": self.executed_notebook,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the stage's entry of the manifest's ``stages``."""
        entry = {f.name: getattr(self, f.name) for f in fields(self)}
        for optional in ("sources", "task"):
            if entry[optional] is None:
                del entry[optional]
        return entry


@dataclass(kw_only=True)
class RunRecord:
    """The manifest of one pipeline run, rewritten atomically by :meth:`write`.

    Build one with :func:`new_run_record`. ``run_dir`` is where it is written and is not part
    of the JSON; every other field is a key of ``manifest.json``, in this order.
    """

    run_id: str
    pipeline: str
    project_dir: str
    status: str = "running"
    started_at: str = field(default_factory=now)
    finished_at: str | None = None
    duration_s: float | None = None
    profile: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    process: dict[str, Any] = field(
        default_factory=lambda: {"host": socket.gethostname(), "pid": os.getpid()}
    )
    mlflow: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    stages: dict[str, StageRecord] = field(default_factory=dict)
    selected: list[str] = field(default_factory=list)
    jobs: int = 1
    executor: str = "local"
    scheduler: str | None = None
    forced: list[str] = field(default_factory=list)
    resumed_from: str | None = None
    run_dir: Path = field(default=Path(), metadata={"stored": False})
    clock: float = field(default_factory=time.monotonic, metadata={"stored": False})

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest as the JSON object ``manifest.json`` holds."""
        manifest = {
            f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("stored", True)
        }
        manifest["stages"] = {name: stage.to_dict() for name, stage in self.stages.items()}
        return manifest

    def write(self) -> Path:
        """Write ``manifest.json`` atomically (a temporary file renamed over the old one).

        Returns
        -------
        Path
            The manifest's path.
        """
        return write_manifest(self.run_dir, self.to_dict())

    def inputs_status(self, stage: StageRecord) -> tuple[list[str], bool]:
        """Return the inputs of ``stage`` that stopped, and whether all of them are done."""
        statuses = {name: self.stages[name].status for name in stage.inputs}
        stopped = [name for name, status in statuses.items() if status in STOPPED]
        return stopped, all(status in DONE for status in statuses.values())

    def close(self, *, succeeded: bool, cancelled: bool = False) -> list[str]:
        """Settle every unfinished stage and the run's status, then write the record.

        A stage still running is marked failed (interrupted), a pending one ``not run``.

        Returns
        -------
        list of str
            The MLflow child runs of the interrupted stages, for the caller to mark failed.
        """
        interrupted = []
        for stage in self.stages.values():
            if stage.status == "running":
                stage.fail("interrupted before the stage finished")
                interrupted.append(stage.mlflow_run_id)
            elif stage.status == "pending":
                stage.status = "not run"
        self.status = "succeeded" if succeeded else "cancelled" if cancelled else "failed"
        self.finished_at = now()
        self.duration_s = round(time.monotonic() - self.clock, 2)
        return [run for run in interrupted if run]


def new_run_record(
    run_id: str,
    run_dir: Path,
    *,
    pipeline: str,
    project_dir: Path,
    stages: dict[str, StageRecord],
    **settings: Any,
) -> RunRecord:
    """Return the first record of a run: every stage pending.

    Parameters
    ----------
    run_id : str
        The run's id (:func:`~nbtools.records.runs.new_run_id`).
    run_dir : Path
        Its record folder, where :meth:`RunRecord.write` puts the manifest.
    pipeline : str
        The pipeline's name.
    project_dir : Path
        The project folder.
    stages : dict of str to StageRecord
        The stages the run needs, in pipeline order.
    **settings
        The other fields of :class:`RunRecord` (profile, overrides, selection, jobs, ...).
    """
    return RunRecord(
        run_id=run_id,
        pipeline=pipeline,
        project_dir=str(project_dir),
        stages=stages,
        run_dir=run_dir,
        **settings,
    )


def load_record(run_dir: Path) -> RunRecord:
    """Read the manifest in ``run_dir`` back into a :class:`RunRecord`, to change and rewrite it.

    Keys this version of nbtools does not know are dropped.
    """
    manifest = read_manifest(run_dir)
    stage_fields = {f.name for f in fields(StageRecord)}
    stages = {
        name: StageRecord(**{k: v for k, v in entry.items() if k in stage_fields})
        for name, entry in manifest["stages"].items()
    }
    stored = {f.name for f in fields(RunRecord) if f.metadata.get("stored", True)} - {"stages"}
    return RunRecord(
        **{k: v for k, v in manifest.items() if k in stored}, stages=stages, run_dir=run_dir
    )


def mark_killed(manifest: dict[str, Any], resumed_as: str) -> list[str]:
    """Mark the stored manifest of a killed run failed, as the run itself never will.

    The manifest is changed in place, whatever version of nbtools wrote it.

    Returns
    -------
    list of str
        The MLflow runs it left open (its running stages' and its parent run), to mark failed.
    """
    reason = "interrupted: the run was killed before the stage finished"
    open_runs = []
    for record in manifest["stages"].values():
        if record["status"] == "running":
            record.update(status="failed", error={"message": reason, "cell_index": None})
            open_runs.append(record.get("mlflow_run_id"))
        elif record["status"] == "pending":
            record["status"] = "not run"
    manifest.update(status="failed", error=f"The run was killed; resumed as run {resumed_as}.")
    open_runs.append(manifest["mlflow"].get("parent_run_id"))
    return [run for run in open_runs if run]
