"""What a check compares new data with: a model's reference (its training statistics, its
model and its deployed score), found from a registry URI or a pipeline run.

:mod:`nbtools.ops.monitoring.check` re-exports everything public here.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbtools.errors import DataSourceError, ModelRegistryError
from nbtools.pipeline.spec import Pipeline
from nbtools.records.runs import load_run


@dataclass(frozen=True)
class Reference:
    """What new data is compared with: a model, its training statistics and its deployed score.

    Parameters
    ----------
    statistics : dict
        The train stage's reference statistics (with ``target`` and ``task``).
    model_uri : str
        Where the model loads from with ``mlflow.sklearn.load_model``.
    key : str
        Identity in the monitoring history: ``models:/NAME/VERSION`` or ``run:RUN_ID``.
    label : str
        The model as people read it.
    metric : str or None
        The deciding metric of its deployment.
    greater_is_better : bool
        Its direction.
    baseline : float or None
        Its score on the test data when it was deployed.
    tracking_uri : str or None
        The registry that ``model_uri`` refers to, for ``models:/`` URIs.
    """

    statistics: dict[str, Any]
    model_uri: str
    key: str
    label: str
    metric: str | None = None
    greater_is_better: bool = True
    baseline: float | None = None
    tracking_uri: str | None = None

    def load_model(self) -> Any:
        """Load the model as a scikit-learn pipeline (from the registry, or a run's folder).

        The registry is addressed through :attr:`tracking_uri` without changing MLflow's
        process-wide tracking or registry URI.
        """
        import mlflow
        import mlflow.sklearn
        from mlflow.tracking import MlflowClient

        if self.tracking_uri is None or not self.model_uri.startswith("models:/"):
            return mlflow.sklearn.load_model(self.model_uri)
        name, _, version = self.model_uri[len("models:/") :].partition("/")
        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        source = client.get_model_version_download_uri(name, version)
        with tempfile.TemporaryDirectory() as folder:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=folder, tracking_uri=self.tracking_uri
            )
            return mlflow.sklearn.load_model(path)

    @property
    def columns(self) -> list[str]:
        """The model's input columns."""
        return list(self.statistics["columns"])

    @property
    def target(self) -> str | None:
        """The target column, as recorded at training time."""
        return self.statistics.get("target")

    @property
    def task(self) -> str | None:
        """The task, as recorded at training time."""
        return self.statistics.get("task")


def resolve_reference(pipeline: Pipeline, spec: str | None = None) -> Reference:
    """Find a model's reference statistics, model and deployed score.

    Parameters
    ----------
    pipeline : Pipeline
        The project (its registry and run records).
    spec : str, optional
        ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, or the id of a pipeline run (a unique
        prefix is enough); by default ``models:/<model_name>@champion``.

    Raises
    ------
    ModelRegistryError
        If the registry has no such model, alias or version.
    DataSourceError
        If the model's run holds no reference statistics.
    RunNotFoundError
        If no run has the given id.
    """
    spec = spec or f"models:/{pipeline.model_name}@champion"
    if spec.startswith("models:/"):
        return _registry_reference(pipeline, spec)
    manifest = load_run(pipeline.runs_dir, spec)
    stages = manifest.get("stages", {})
    train = stages.get("train", {})
    if train.get("status") not in ("succeeded", "reused"):
        raise DataSourceError(
            f"Run {manifest['run_id']} has no finished train stage, so no reference statistics. "
            "Pass a run whose train stage succeeded, or a models:/ URI."
        )
    train_dir = Path(train["output_dir"])
    statistics = _read_reference(train_dir / "reference.json", f"run {manifest['run_id']}")
    metric, greater, baseline = None, True, None
    evaluated = Path(stages.get("evaluate", {}).get("output_dir") or "") / "metrics.json"
    if evaluated.is_file():
        metrics = json.loads(evaluated.read_text(encoding="utf-8"))
        metric, greater = metrics["primary_metric"], bool(metrics["greater_is_better"])
        baseline = metrics["metrics"].get(metric)
    return Reference(
        statistics=statistics,
        model_uri=str(train_dir / "model"),
        key=f"run:{manifest['run_id']}",
        label=f"the model of run {manifest['run_id']}",
        metric=metric,
        greater_is_better=greater,
        baseline=baseline,
    )


def _registry_reference(pipeline: Pipeline, uri: str) -> Reference:
    """The reference of a registered model version, from the run that trained it."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from nbtools.ops.registry import TAG_PREFIX

    body = uri[len("models:/") :]
    name, _, alias = body.partition("@")
    if not alias:
        name, _, number = body.partition("/")
    client = MlflowClient(tracking_uri=pipeline.tracking_uri, registry_uri=pipeline.tracking_uri)
    try:
        if alias:
            version = client.get_model_version_by_alias(name, alias)
        else:
            version = client.get_model_version(name, number)
    except MlflowException as exc:
        raise ModelRegistryError(
            f"Cannot find {uri} in the registry at {pipeline.tracking_uri}: {exc.message}. "
            "Run the pipeline (its deploy stage registers the model) or pass another model."
        ) from exc
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=version.run_id,
                artifact_path="reference.json",
                dst_path=folder,
                tracking_uri=pipeline.tracking_uri,
            )
        except (MlflowException, OSError) as exc:
            raise DataSourceError(
                f"The run that trained {name} version {version.version} ({version.run_id}) "
                "holds no reference.json: it was trained before its train stage logged "
                "reference statistics. Retrain it, or check against the run id of a newer "
                "training run."
            ) from exc
        statistics = _read_reference(Path(path), f"{name} version {version.version}")
    tags = version.tags or {}
    score = tags.get(TAG_PREFIX + "challenger_score")
    return Reference(
        statistics=statistics,
        model_uri=f"models:/{name}/{version.version}",
        key=f"models:/{name}/{version.version}",
        label=f"{name} version {version.version}",
        metric=tags.get(TAG_PREFIX + "metric"),
        greater_is_better=tags.get(TAG_PREFIX + "greater_is_better", "true") == "true",
        baseline=None if score is None else float(score),
        tracking_uri=pipeline.tracking_uri,
    )


def _read_reference(path: Path, owner: str) -> dict[str, Any]:
    """Read a train stage's ``reference.json``, or say whose is missing."""
    if not path.is_file():
        raise DataSourceError(
            f"{owner} has no reference statistics ({path} is missing). Run its train stage again."
        )
    statistics: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return statistics
