"""The MLflow runs of one pipeline run: a parent run, and a child run per executed stage.

The runner, not the notebook, owns them, so that each closes with its true status (a stage
that timed out or lost its kernel is FAILED). The parent opens on the first stage that
executes: a run that reuses everything logs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtools.pipeline.spec import Pipeline
from nbtools.records.manifest import RunRecord, StageRecord
from nbtools.records.runs import project_lock

if TYPE_CHECKING:
    from nbtools.records.tracking import Tracker


@dataclass
class MlflowRuns:
    """The parent and child MLflow runs of ``record``'s run.

    Parameters
    ----------
    pipeline : Pipeline
        The pipeline that runs (tracking URI, experiment name, seed).
    record : RunRecord
        The run's record, which keeps the parent run's id.
    """

    pipeline: Pipeline
    record: RunRecord
    tracker: Tracker | None = None
    parent: str | None = None

    def open(self) -> tuple[Tracker, str]:
        """Open MLflow and the parent run on first need; return the tracker and the parent.

        Opening happens under the project lock, so that a new SQLite database is created and
        migrated once, before any stage process (or a second run) opens it.
        """
        if self.tracker is None or self.parent is None:
            from nbtools.records.tracking import Tracker

            pipeline, run_id = self.pipeline, self.record.run_id
            with project_lock(pipeline.project_dir):
                self.tracker = Tracker(
                    pipeline.tracking_uri, pipeline.name, pipeline.project_dir / "mlartifacts"
                )
            self.parent = self.record.mlflow.get("parent_run_id")
            if self.parent is not None:  # a task of an orchestrated run: the parent exists
                return self.tracker, self.parent
            self.parent = self.tracker.start_run(run_id, tags={"nbtools.run_id": run_id})
            self.tracker.log_parent(
                self.parent,
                {
                    "profile": self.record.profile or "none",
                    "seed": pipeline.seed,
                    "overrides": self.record.overrides,
                },
            )
            self.record.mlflow["parent_run_id"] = self.parent
        return self.tracker, self.parent

    def start_stage(self, stage: str) -> str:
        """Open the child run of ``stage`` under the parent; return its id."""
        tracker, parent = self.open()
        tags = {"nbtools.stage": stage, "nbtools.run_id": self.record.run_id}
        return tracker.start_run(stage, parent=parent, tags=tags)

    def finish_stage(
        self, record: StageRecord, parameters: Mapping[str, Any], files: Iterable[Path]
    ) -> None:
        """Log a finished stage's parameters, recorded values and files; close its child run."""
        tracker, _ = self.open()
        assert record.mlflow_run_id is not None
        tracker.log_stage(record.mlflow_run_id, dict(parameters), record.recorded, list(files))
        tracker.finish(record.mlflow_run_id, succeeded=record.status == "succeeded")

    def fail(self, runs: Iterable[str]) -> None:
        """Mark ``runs`` failed (those of interrupted stages), if MLflow was opened."""
        if self.tracker is not None:
            for run in runs:
                self.tracker.finish(run, succeeded=False)

    def close(self, manifest: Path, *, succeeded: bool) -> None:
        """Log the final manifest to the parent run and close it, if it was opened."""
        if self.tracker is not None and self.parent is not None:
            self.tracker.log_file(self.parent, manifest)
            self.tracker.finish(self.parent, succeeded=succeeded)
