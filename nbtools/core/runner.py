"""Running a pipeline: validate everything, then execute each stage and record what happened.

All parameters are resolved and validated before any kernel starts. Each stage then runs in its
own kernel with its inputs, output folder and MLflow run injected; after each stage the manifest
is rewritten atomically and the stage's MLflow run is closed with its true status.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbtools.core import environment
from nbtools.core.errors import StageFailedError
from nbtools.core.executor import execute_stage, render_html
from nbtools.core.records import (
    EXECUTED_NOTEBOOK,
    HTML_RECORD,
    hash_outputs,
    new_run_id,
    now,
    read_recorded,
    stage_dir_name,
    write_manifest,
)
from nbtools.core.spec import Pipeline, Stage, load_pipeline
from nbtools.core.tracking import Tracker

Echo = Callable[[str], None]


@dataclass(frozen=True)
class RunResult:
    """The outcome of a pipeline run.

    Parameters
    ----------
    run_id : str
        The run's id, also the name of its record folder.
    run_dir : Path
        The run record folder.
    mlflow_run_id : str
        Id of the parent MLflow run.
    manifest : dict
        The final manifest.
    error : StageFailedError or None
        The failure that stopped the run, if any.
    """

    run_id: str
    run_dir: Path
    mlflow_run_id: str
    manifest: dict[str, Any]
    error: StageFailedError | None = None

    @property
    def succeeded(self) -> bool:
        """Whether every stage of the run succeeded."""
        return self.error is None


def run_pipeline(
    project_dir: str | Path = ".",
    *,
    profile: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    targets: Iterable[str] | None = None,
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
        Run only these stages and the stages they depend on; all stages when omitted.
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
        Before anything runs, when the pipeline or a parameter is invalid.
    """
    say = echo or (lambda _line: None)
    pipeline = load_pipeline(project_dir)
    parameters = pipeline.resolve(profile, overrides)
    stages = _selected(pipeline, targets)
    run_id = new_run_id()
    run_dir = pipeline.runs_dir / run_id
    tracker = Tracker(pipeline.tracking_uri, pipeline.name, pipeline.project_dir / "mlartifacts")
    parent = tracker.start_run(run_id, tags={"nbtools.run_id": run_id})
    tracker.log_parent(
        parent,
        {"profile": profile or "none", "seed": pipeline.seed, "overrides": dict(overrides or {})},
    )
    manifest = _new_manifest(pipeline, run_id, parent, profile, overrides, stages, parameters)
    write_manifest(run_dir, manifest)
    say(f"Run {run_id}: {len(stages)} stage(s), record in {run_dir}")
    started = time.monotonic()
    error: StageFailedError | None = None
    try:
        for position, stage in enumerate(stages, start=1):
            say(f"[{position}/{len(stages)}] {stage.name} ...")
            error = _run_stage(
                pipeline, stage, parameters[stage.name], manifest, run_dir, tracker, parent
            )
            record = manifest["stages"][stage.name]
            say(
                f"[{position}/{len(stages)}] {stage.name:<10} {record['status']:<9} "
                f"{record['duration_s']:6.1f} s"
            )
            if error is not None:
                break
    except BaseException as exc:  # an interrupt or a crash of the runner itself
        manifest["error"] = f"The runner stopped: {type(exc).__name__}: {exc}"
        _close(manifest, run_dir, tracker, parent, started, succeeded=False)
        raise
    if error is not None:
        manifest["error"] = str(error)
    _close(manifest, run_dir, tracker, parent, started, succeeded=error is None)
    return RunResult(run_id, run_dir, parent, manifest, error)


def _selected(pipeline: Pipeline, targets: Iterable[str] | None) -> list[Stage]:
    if targets is None:
        return list(pipeline.stages)
    names = {s.name for target in targets for s in pipeline.upstream(pipeline.stage(target).name)}
    return [s for s in pipeline.stages if s.name in names]


def _new_manifest(
    pipeline: Pipeline,
    run_id: str,
    parent: str,
    profile: str | None,
    overrides: Mapping[str, Any] | None,
    stages: list[Stage],
    parameters: dict[str, dict[str, Any]],
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
        "mlflow": {"tracking_uri": pipeline.tracking_uri, "parent_run_id": parent},
        "environment": environment.describe(pipeline.project_dir, pipeline.seed),
        "error": None,
        "stages": {
            s.name: {
                "status": "pending",
                "dir": stage_dir_name(index[s.name], s.name),
                "notebook": str(s.notebook),
                "inputs": list(s.inputs),
                "parameters": parameters[s.name],
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


def _run_stage(
    pipeline: Pipeline,
    stage: Stage,
    parameters: dict[str, Any],
    manifest: dict[str, Any],
    run_dir: Path,
    tracker: Tracker,
    parent: str,
) -> StageFailedError | None:
    record = manifest["stages"][stage.name]
    stage_dir = run_dir / record["dir"]
    stage_dir.mkdir(parents=True)
    executed = stage_dir / EXECUTED_NOTEBOOK
    child = tracker.start_run(
        stage.name,
        parent=parent,
        tags={"nbtools.stage": stage.name, "nbtools.run_id": manifest["run_id"]},
    )
    record.update(status="running", started_at=now(), mlflow_run_id=child)
    write_manifest(run_dir, manifest)
    injected = {
        **parameters,
        "inputs": {name: str(run_dir / manifest["stages"][name]["dir"]) for name in stage.inputs},
        "output_dir": str(stage_dir),
        "mlflow_run_id": child,
        "tracking_uri": pipeline.tracking_uri,
    }
    started = time.monotonic()
    error: StageFailedError | None = None
    succeeded = False
    try:
        execute_stage(
            stage.name,
            stage.notebook,
            executed,
            injected,
            cwd=pipeline.project_dir,
            timeout=stage.timeout,
        )
        succeeded = True
    except StageFailedError as exc:
        error = exc
        record["error"] = {
            "message": exc.reason,
            "cell_index": exc.cell_index,
            "notebook": exc.notebook,
        }
    finally:
        # Also reached when the runner itself is interrupted mid-stage: the record then says
        # failed, never succeeded.
        record["duration_s"] = round(time.monotonic() - started, 2)
        record["status"] = "succeeded" if succeeded else "failed"
        if not succeeded and record["error"] is None:
            record["error"] = {
                "message": "interrupted before the stage finished",
                "cell_index": None,
                "notebook": str(executed),
            }
        if executed.is_file():
            record["executed_notebook"] = str(executed)
            record["html"] = str(_render(executed, stage_dir / HTML_RECORD))
        record["recorded"] = read_recorded(stage_dir)
        record["output_hashes"] = hash_outputs(stage_dir)
        write_manifest(run_dir, manifest)
        tracker.log_stage(
            child, parameters, record["recorded"], [executed, stage_dir / HTML_RECORD]
        )
        tracker.finish(child, succeeded=succeeded)
    return error


def _render(executed: Path, target: Path) -> Path:
    try:
        return render_html(executed, target)
    except Exception:  # a broken render must not hide the stage's own result
        target.write_text("<pre>" + traceback.format_exc() + "</pre>", encoding="utf-8")
        return target


def _close(
    manifest: dict[str, Any],
    run_dir: Path,
    tracker: Tracker,
    parent: str,
    started: float,
    *,
    succeeded: bool,
) -> None:
    for record in manifest["stages"].values():
        if record["status"] == "running":
            record["status"] = "failed"
        elif record["status"] == "pending":
            record["status"] = "not run"
    manifest["status"] = "succeeded" if succeeded else "failed"
    manifest["finished_at"] = now()
    manifest["duration_s"] = round(time.monotonic() - started, 2)
    tracker.log_file(parent, write_manifest(run_dir, manifest))
    tracker.finish(parent, succeeded=succeeded)
