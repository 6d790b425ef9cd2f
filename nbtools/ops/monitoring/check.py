"""One monitoring check: drift and performance of new data, window by window, and the breach rule.

A check compares new data with the **reference** of a model: the statistics its train stage
captured (``reference.json``, logged with the model's MLflow run), its deciding metric and its
score when it was deployed. :func:`resolve_reference` finds them from a registry URI
(``models:/NAME@champion``, the default) or a pipeline run id. :func:`run_check` cuts the new
data into time windows and, per window, tests drift
(:func:`nbtools.ops.monitoring.drift.detect_drift`) and, where labels exist, measures
performance (:mod:`nbtools.ops.monitoring.decay`).

:func:`find_breach` applies the retraining rule to the windows in order, after the earlier
windows of the same reference kept in the project's monitoring history: a **breach** is dataset
drift in ``drift_windows`` consecutive windows, or a window whose deciding metric fell more than
``max_drop`` below the baseline.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from nbtools.errors import DataSourceError, ModelRegistryError
from nbtools.ops import monitoring
from nbtools.ops.deploying import DeployParams
from nbtools.ops.predictions import META_COLUMNS, PREDICTION_COLUMN, PROBA_PREFIX, ROW_COLUMN
from nbtools.params import StageParams, param, same_as
from nbtools.pipeline.spec import Pipeline
from nbtools.records.runs import load_run

#: What a retraining run learns from: the pipeline's data plus the new rows, or the new rows.
RETRAIN_DATA = ("reference+current", "current")
#: What a check can find, from the least to the most serious: a drifted column, dataset drift
#: (at least ``share_threshold`` of the columns), performance decay, a retraining-rule breach.
FINDINGS = ("column-drift", "dataset-drift", "performance", "breach")
HISTORY_FILE = Path("monitoring") / "history.jsonl"


@dataclass(frozen=True)
class MonitorInputs(StageParams):
    """The data a monitor stage checks: its parameters beside the :class:`MonitorPolicy`.

    Each field is declared once with :func:`nbtools.params.param`; the monitor template's
    parameters cell declares these, then the policy's.
    """

    current: str | None = param(
        None,
        help="new data: a CSV or Parquet file, or the prediction log folder (predictions), "
        "relative to the project; None: the test split stands in",
    )
    labels: str | None = param(
        None,
        help="late labels of logged predictions: request_id, request_row and the target column "
        "(CSV or Parquet)",
    )

    STAGE: ClassVar[str] = "monitor"


@dataclass(frozen=True)
class MonitorPolicy(StageParams):
    """The settings of a check and of the retraining rule (the monitor stage's parameters).

    Each field is declared once with :func:`nbtools.params.param`; the monitor template's
    parameters cell, the options of ``nbtools monitor`` and the ``Parameters`` list of this
    docstring are generated from the declarations. The drift settings (``alpha`` to
    ``new_category_threshold``) go to :func:`nbtools.ops.monitoring.drift.detect_drift`;
    ``margin`` is the deploy stage's, which the retraining loop's gate applies.
    """

    every: str | None = param(
        None,
        help="window length as a pandas frequency, e.g. 1D or 6h; None: all rows in one window",
    )
    alpha: float = param(0.05, help="false discovery rate of the p-value tests", range="(0, 1)")
    min_rows: int = param(
        30,
        help="fewest values a column (and labelled rows a window) needs to be tested",
        range="[2, 1000000]",
    )
    share_threshold: float = param(
        0.5,
        help="dataset drift when at least this share of the tested columns drift",
        range="(0, 1]",
    )
    large_sample: int = param(
        1000,
        help="above this many values on both sides, distances replace the p-value tests",
        range="[1, 1000000000]",
    )
    wasserstein_threshold: float = param(
        0.1,
        help="drift when the Wasserstein distance reaches this many reference standard deviations",
        range="(0, 100)",
    )
    js_threshold: float = param(
        0.1, help="drift when the Jensen-Shannon distance reaches this", range="(0, 1]"
    )
    missing_threshold: float = param(
        0.05,
        help="drift when a column's share of missing values rises by this much (beyond chance)",
        range="(0, 1]",
    )
    new_category_threshold: float = param(
        0.01,
        help="drift when values in unseen categories exceed their expected share by this much",
        range="(0, 1]",
    )
    importance_rows: int = param(
        2000,
        help="new rows on which the model's reliance on each column is measured; 0 skips it",
        range="[0, 1000000]",
    )
    max_drop: float = param(
        0.05,
        help="a window whose deciding metric falls more than this below the deployed score is "
        "a breach",
        range="[0, 1000000]",
    )
    drift_windows: int = param(
        2,
        help="dataset drift in this many consecutive windows is a breach",
        range="[1, 1000]",
    )
    retrain_data: str = param(
        "reference+current",
        help="what a retraining run learns from",
        choices=RETRAIN_DATA,
    )
    holdout: float = param(
        0.3,
        help="share of the newest labelled rows a retraining run keeps out of training, for "
        "the gate",
        range="(0, 1)",
    )
    margin: float = same_as(DeployParams, "margin")

    STAGE: ClassVar[str] = "monitor"

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> MonitorPolicy:
        """Build a policy from stage parameters, ignoring names that are not settings."""
        return cls.from_namespace(parameters)

    def updated(self, **changes: Any) -> MonitorPolicy:
        """Return a copy with the given settings changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None}).validate()

    def drift_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`detect_drift`."""
        names = (
            "alpha",
            "min_rows",
            "large_sample",
            "wasserstein_threshold",
            "js_threshold",
            "share_threshold",
            "missing_threshold",
            "new_category_threshold",
        )
        return {n: getattr(self, n) for n in names}


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


@dataclass(frozen=True)
class WindowCheck:
    """Drift and performance of one window."""

    start: str | None
    end: str | None
    rows: int
    drift: monitoring.drift.DriftReport
    performance: monitoring.decay.PerformanceWindow | None

    @property
    def label(self) -> str:
        """The window as people read it."""
        return "all rows" if self.start is None else f"{self.start} .. {self.end}"

    def entry(self, reference: Reference) -> dict[str, Any]:
        """The window's line in the monitoring history."""
        perf = self.performance
        return {
            "reference": reference.key,
            "start": self.start,
            "end": self.end,
            "rows": self.rows,
            "drift_share": self.drift.drift_share,
            "dataset_drift": self.drift.dataset_drift,
            "drifted_columns": self.drift.drifted_columns,
            "metric": None if perf is None else perf.metric,
            "score": None if perf is None else perf.score,
            "baseline": None if perf is None else perf.baseline,
            "drop": None if perf is None else perf.drop,
            "decayed": None if perf is None else perf.decayed,
        }


@dataclass(frozen=True)
class Breach:
    """Why retraining is due.

    Parameters
    ----------
    kind : {"drift", "performance"}
        Which rule fired.
    window : str
        The window where it fired.
    reason : str
        One sentence with the numbers that led to it.
    """

    kind: str
    window: str
    reason: str


@dataclass(frozen=True)
class CheckResult:
    """The outcome of :func:`run_check`."""

    reference: Reference
    windows: list[WindowCheck]
    windows_data: list[pd.DataFrame]
    breach: Breach | None
    policy: MonitorPolicy
    importance: dict[str, float] | None = None
    importance_note: str | None = None

    @property
    def drift_found(self) -> bool:
        """Whether any window drifted as a dataset."""
        return any(w.drift.dataset_drift for w in self.windows)

    @property
    def column_drift_found(self) -> bool:
        """Whether any column of any window drifted."""
        return any(w.drift.drifted_columns for w in self.windows)

    @property
    def findings(self) -> list[str]:
        """What the check found, from the least to the most serious (:data:`FINDINGS`)."""
        found = {
            "column-drift": self.column_drift_found,
            "dataset-drift": self.drift_found,
            "performance": self.decay_found,
            "breach": self.breach is not None,
        }
        return [name for name in FINDINGS if found[name]]

    @property
    def decay_found(self) -> bool:
        """Whether any window's performance dropped beyond the allowed drop."""
        return any(w.performance is not None and w.performance.decayed for w in self.windows)

    def to_dict(self) -> dict[str, Any]:
        """The check as a JSON-serialisable dict (without the reference statistics)."""
        return {
            "reference": {
                "key": self.reference.key,
                "label": self.reference.label,
                "metric": self.reference.metric,
                "baseline": self.reference.baseline,
            },
            "policy": asdict(self.policy),
            "findings": self.findings,
            "importance": self.importance,
            "importance_note": self.importance_note,
            "breach": None if self.breach is None else asdict(self.breach),
            "windows": [
                {
                    **w.entry(self.reference),
                    "drift": w.drift.to_dict(),
                    "performance": None if w.performance is None else w.performance.to_dict(),
                }
                for w in self.windows
            ],
        }


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
                "reference statistics. Retrain it, or pass --reference RUN_ID."
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
    if not path.is_file():
        raise DataSourceError(
            f"{owner} has no reference statistics ({path} is missing). Run its train stage again."
        )
    statistics: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return statistics


def run_check(
    reference: Reference,
    current: pd.DataFrame,
    policy: MonitorPolicy,
    *,
    labels: pd.DataFrame | None = None,
    history: Iterable[Mapping[str, Any]] = (),
    model: Any | None = None,
) -> CheckResult:
    """Check new data against a reference, window by window, and apply the breach rule.

    Parameters
    ----------
    reference : Reference
        From :func:`resolve_reference`.
    current : DataFrame
        New data: the prediction log (:func:`~nbtools.ops.predictions.read_predictions`), or
        rows with the model's input columns and, optionally, the target.
    policy : MonitorPolicy
        Drift settings, window length and the breach rule.
    labels : DataFrame, optional
        Late labels of logged predictions (``request_id``, ``request_row``, target).
    history : iterable of dict
        Earlier windows' history entries (:func:`read_history`).
    model : estimator, optional
        The model, to score labelled rows that have no logged predictions and to measure its
        reliance on each column; loaded from ``reference.model_uri`` when needed. When it
        cannot be loaded only for the reliance, the check goes on without it and says so
        (:attr:`CheckResult.importance_note`).

    Raises
    ------
    DataSourceError
        For an empty window, missing or extra columns, wrong types, or labels that do not match.
    """
    target, task = reference.target, reference.task
    if labels is not None:
        if not {"request_id", PREDICTION_COLUMN} <= set(current.columns):
            raise DataSourceError(
                "Labels are joined to logged predictions, but the current data is not a "
                "prediction log (no 'request_id' and 'prediction' columns). Pass the prediction "
                "log folder as the current data, or put the labels in a target column."
            )
        if target is None:
            raise DataSourceError("The model has no target column, so labels cannot be used.")
        current = monitoring.decay.join_labels(current, labels, target=target)
    if current.empty:
        monitoring.decay.split_windows(current, None)  # raises the empty-window error
    current = as_trained(current, reference)
    X = _features(current, target)
    monitoring.drift.detect_drift(
        reference.statistics, X.head(1), min_rows=2
    )  # schema errors first
    labelled = target is not None and target in current.columns and task != "clustering"
    if labelled and PREDICTION_COLUMN not in current.columns:
        if model is None:
            model = reference.load_model()
        current = monitoring.decay.add_predictions(model, current, X)
    importance, note = None, None
    if policy.importance_rows > 0:
        step = "did not load"
        try:
            model = reference.load_model() if model is None else model
            step = "could not score the new rows"
            importance = monitoring.drift.model_reliance(model, X, rows=policy.importance_rows)
        except Exception as exc:  # drift stands without the weights; the note says why
            note = f"The model's reliance on each column is unknown: {reference.model_uri} "
            note += f"{step} ({type(exc).__name__}: {str(exc)[:200]})."
    windows = monitoring.decay.split_windows(current, policy.every)
    checks: list[WindowCheck] = []
    for window in windows:
        drift = monitoring.drift.detect_drift(
            reference.statistics,
            _features(window.data, target),
            importance=importance,
            **policy.drift_options(),
        )
        perf = None
        if labelled:
            assert target is not None and task is not None
            metric, greater = _deciding_metric(reference, task, window.data[target])
            baseline = reference.baseline
            if baseline is None and checks and checks[0].performance is not None:
                baseline = checks[0].performance.baseline
            perf = monitoring.decay.performance_windows(
                [window],
                target=target,
                task=task,
                metric=metric,
                greater_is_better=greater,
                baseline=baseline,
                max_drop=policy.max_drop,
                min_rows=policy.min_rows,
            )[0]
        checks.append(WindowCheck(window.start, window.end, len(window.data), drift, perf))
    breach = find_breach([*history], [c.entry(reference) for c in checks], policy)
    return CheckResult(
        reference, checks, [w.data for w in windows], breach, policy, importance, note
    )


_TRUE, _FALSE = {"yes", "y", "true"}, {"no", "n", "false"}


def as_trained(current: pd.DataFrame, reference: Reference) -> pd.DataFrame:
    """New data with the types the model was trained with, where text stands in for them.

    Raw exports hold dates and yes/no flags as text, which the clean stage turned into dates and
    booleans before training: the same happens here (row by row, learning nothing), so that
    drift compares like with like and the model can score the rows.
    """
    changed = {}
    for name, col in reference.statistics["columns"].items():
        if name not in current.columns:
            continue
        values = current[name]
        if col["kind"] == "datetime" and not pd.api.types.is_datetime64_any_dtype(values):
            parsed = pd.to_datetime(values, errors="coerce", format="mixed")
            if parsed.notna().sum() == values.notna().sum():
                changed[name] = parsed
        elif col["dtype"] == "bool" and not pd.api.types.is_bool_dtype(values):
            text = values.astype("string").str.strip().str.lower()
            if text.dropna().isin(_TRUE | _FALSE).all():
                changed[name] = text.isin(_TRUE).where(values.notna())
    return current.assign(**changed) if changed else current


def _features(data: pd.DataFrame, target: str | None) -> pd.DataFrame:
    """The model-input part of new data: log metadata, outputs and the target set aside."""
    aside = {*META_COLUMNS, ROW_COLUMN, PREDICTION_COLUMN, target}
    keep = [c for c in data.columns if c not in aside and not str(c).startswith(PROBA_PREFIX)]
    return data[keep]


def _deciding_metric(reference: Reference, task: str, labels: pd.Series) -> tuple[str, bool]:
    if reference.metric is not None:
        return reference.metric, reference.greater_is_better
    from nbtools.ml.evaluation import primary_metric

    return primary_metric(task, binary=labels.nunique() == 2)


def find_breach(
    history: list[Mapping[str, Any]], entries: list[Mapping[str, Any]], policy: MonitorPolicy
) -> Breach | None:
    """Apply the retraining rule to new windows, in order, after the earlier history.

    Parameters
    ----------
    history : list of dict
        Earlier history lines of the same reference, oldest first; a ``retrain`` event starts
        the count of consecutive drifted windows again.
    entries : list of dict
        The new windows' entries (:meth:`WindowCheck.entry`), oldest first.
    policy : MonitorPolicy
        ``drift_windows`` and ``max_drop``.

    Returns
    -------
    Breach or None
        The first window where the rule fires.
    """
    streak: list[Mapping[str, Any]] = []
    for line in history:
        if line.get("event") == "retrain":
            streak = []
        elif line.get("dataset_drift"):
            streak.append(line)
        else:
            streak = []
    for entry in entries:
        window = "all rows" if entry["start"] is None else f"{entry['start']} .. {entry['end']}"
        if entry.get("decayed"):
            better = "higher" if entry.get("drop", 0) < 0 else "lower"
            return Breach(
                "performance",
                window,
                f"{entry['metric']} {entry['score']:.4f} is {abs(entry['drop']):.4f} {better} "
                f"than the baseline {entry['baseline']:.4f}, beyond the allowed drop "
                f"{policy.max_drop:g}.",
            )
        streak = [*streak, entry] if entry.get("dataset_drift") else []
        if len(streak) >= policy.drift_windows:
            shares = ", ".join(f"{e['drift_share']:.0%}" for e in streak[-policy.drift_windows :])
            columns = sorted(
                {c for e in streak[-policy.drift_windows :] for c in e["drifted_columns"]}
            )
            return Breach(
                "drift",
                window,
                f"Dataset drift in {policy.drift_windows} consecutive window(s) (drift shares "
                f"{shares}; columns {', '.join(columns)}).",
            )
    return None


def read_history(project_dir: Path, reference_key: str | None = None) -> list[dict[str, Any]]:
    """Read the project's monitoring history, oldest first, optionally for one reference."""
    path = project_dir / HISTORY_FILE
    if not path.is_file():
        return []
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    if reference_key is None:
        return lines
    return [line for line in lines if line.get("reference") == reference_key]


def append_history(project_dir: Path, lines: Iterable[Mapping[str, Any]]) -> Path:
    """Append lines to the project's monitoring history (``monitoring/history.jsonl``)."""
    path = project_dir / HISTORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line, default=str) + "\n")
    return path
