"""MLflow tracking owned by the runner: one parent run per pipeline run, one child run per stage.

Stage notebooks only log into the run they are handed; the runner creates the runs, logs each
stage's parameters, recorded values and executed notebook, and closes every run with its true
status (a notebook process that dies would otherwise leave its run closed as FINISHED).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

PARENT_TAG = "mlflow.parentRunId"
_MAX_PARAM_LENGTH = 6000


class Tracker:
    """The runner's handle on an MLflow tracking store for one pipeline run.

    Parameters
    ----------
    tracking_uri : str
        Where to track; ``sqlite:///...`` (the embedded default) or an ``http://`` server.
    experiment : str
        Experiment name, the pipeline's name.
    artifact_root : Path
        Where a new experiment keeps its artifacts when the store is local.
    """

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path) -> None:
        self.tracking_uri = tracking_uri
        # Opening the client here, in the parent process, creates and migrates a new SQLite
        # database once, before any stage process can race on the schema migrations.
        with quiet_database_setup():
            self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            location = artifact_root.resolve().as_uri() if _is_local(tracking_uri) else None
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=location
            )

    def start_run(
        self, name: str, *, parent: str | None = None, tags: Mapping[str, str] | None = None
    ) -> str:
        """Create a run (a child of ``parent`` when given) and return its id."""
        all_tags = dict(tags or {})
        if parent is not None:
            all_tags[PARENT_TAG] = parent
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return str(run.info.run_id)

    def log_stage(
        self,
        run_id: str,
        parameters: Mapping[str, Any],
        recorded: Mapping[str, Any],
        files: list[Path],
    ) -> None:
        """Log a stage's parameters, its recorded numbers as metrics, and its record files."""
        params = [Param(k, _param_text(v)) for k, v in parameters.items()]
        metrics = [
            Metric(k, float(v), _now_ms(), 0) for k, v in recorded.items() if is_metric_value(v)
        ]
        others = {k: v for k, v in recorded.items() if not is_metric_value(v)}
        tags = [RunTag(f"nbtools.recorded.{k}", _param_text(v)) for k, v in others.items()]
        self.client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        for path in files:
            if path.is_file():
                self.client.log_artifact(run_id, str(path), artifact_path="notebook")

    def log_parent(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log the pipeline-level settings of a run on its parent run."""
        self.client.log_batch(run_id, params=[Param(k, _param_text(v)) for k, v in params.items()])

    def log_file(self, run_id: str, path: Path) -> None:
        """Log one file as an artifact of a run, at the top of its artifacts."""
        self.client.log_artifact(run_id, str(path))

    def reopen(self, run_id: str) -> None:
        """Mark a run RUNNING again, for a retried attempt that logs into the same run."""
        self.client.update_run(run_id, status="RUNNING")

    def finish(self, run_id: str, succeeded: bool) -> None:
        """Close a run as FINISHED or FAILED."""
        self.client.set_terminated(run_id, "FINISHED" if succeeded else "FAILED")


@contextmanager
def quiet_database_setup() -> Iterator[None]:
    """Keep MLflow's routine INFO lines about creating and migrating its database off stderr.

    Warnings and errors still show; only the INFO progress lines of a first open are dropped
    (in a notebook, every stderr line is shown in red, as if something went wrong).
    """
    loggers = [logging.getLogger(name) for name in ("mlflow.store.db.utils", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def is_metric_value(value: Any) -> bool:
    """Return whether ``value`` is a finite int or float (not a bool), loggable as a metric."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/"))


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:_MAX_PARAM_LENGTH]


def _now_ms() -> int:
    return int(time.time() * 1000)
