"""Continuous training: check new data, and on a breach retrain and let the deploy gate decide.

:func:`monitor_project` is the loop behind ``nbtools monitor``:

1. resolve the reference (by default the champion) and read the new data: a CSV or Parquet file,
   or the service's prediction log joined with late labels;
2. run the check (:func:`nbtools.ops.monitoring.check.run_check`) window by window, after the
   earlier windows kept in ``monitoring/history.jsonl``;
3. on a breach, and when asked to, :func:`retrain`: run the pipeline on the new labelled rows
   (alone or added to the pipeline's data), keeping the newest ``holdout`` share out of training;
   the deploy stage registers the model as ``challenger``, compares it with the champion on
   those held-out rows and moves ``champion`` only if the lower confidence bound of its gain
   (a paired bootstrap on those rows) is above the margin. A service that follows the alias
   switches by itself. Each retraining is gated on rows of its own check, which neither model
   was fitted on: the gate never looks at the same rows twice, so retraining again and again
   does not select on one test set.

Every decision (drift found, decay found, retraining due, retrain started, challenger promoted
or rejected) is kept with its numbers in ``monitoring/<check_id>/check.json`` beside the HTML
report, and in an MLflow run named ``monitor <check_id>`` (tags ``nbtools.decision.*``, the
report and check as artifacts); the retraining run has its own run record and MLflow runs,
tagged with the check that started it. Drift and decay are posted to the webhook of ``notify``
in ``pipeline.yaml`` (:mod:`nbtools.ops._alerts`); the deploy stage posts its gate's decision.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nbtools import tables
from nbtools.errors import DataSourceError
from nbtools.ops._alerts import notify_findings
from nbtools.ops.monitoring.check import (
    CheckResult,
    MonitorPolicy,
    Reference,
    append_history,
    as_trained,
    read_history,
    resolve_reference,
    run_check,
)
from nbtools.ops.monitoring.decay import TIME_COLUMN
from nbtools.ops.monitoring.report import report_html
from nbtools.ops.predictions import read_predictions
from nbtools.pipeline.spec import Pipeline, load_pipeline
from nbtools.records.runs import new_run_id, now, project_lock
from nbtools.runner.run import run_pipeline

MONITORING_DIR = "monitoring"
Echo = Callable[[str], None]


@dataclass(frozen=True)
class RetrainOutcome:
    """What a retraining run did.

    Parameters
    ----------
    run_id : str
        The pipeline run's id (its record is ``runs/<run_id>``).
    succeeded : bool
        Whether every stage finished.
    error : str or None
        The failure, when it did not.
    version : str or None
        The registered challenger's version.
    promoted : bool or None
        Whether the gate made it the champion.
    reason : str or None
        The gate's reason, with both scores.
    metric : str or None
        The deciding metric.
    challenger_score, champion_score : float or None
        Both models' scores on the held-out recent rows.
    gain, gain_lower : float or None
        The challenger's gain and its one-sided lower confidence bound (the gate's bootstrap).
    training_rows, gate_rows : int
        Rows the retraining learned from, and rows the gate compared on.
    """

    run_id: str
    succeeded: bool
    error: str | None
    version: str | None
    promoted: bool | None
    reason: str | None
    metric: str | None
    challenger_score: float | None
    champion_score: float | None
    training_rows: int
    gate_rows: int
    gain: float | None = None
    gain_lower: float | None = None


@dataclass
class MonitorOutcome:
    """The outcome of :func:`monitor_project`."""

    check_id: str
    folder: Path
    result: CheckResult
    decisions: list[dict[str, Any]] = field(default_factory=list)
    retrain: RetrainOutcome | None = None
    mlflow_run_id: str | None = None

    @property
    def report(self) -> Path:
        """The HTML report."""
        return self.folder / "report.html"


def load_current(source: str | Path | pd.DataFrame, base_dir: Path) -> pd.DataFrame:
    """Read new data: a DataFrame as is, a prediction log folder, or a CSV / Parquet file.

    Raises
    ------
    DataSourceError
        If the file does not exist or cannot be read.
    """
    if isinstance(source, pd.DataFrame):
        return source
    path = Path(source)
    folder = path if path.is_absolute() else base_dir / path
    if folder.is_dir():
        return read_predictions(folder)
    return tables.load_source(str(source), base_dir=base_dir)


def monitor_project(
    project_dir: str | Path = ".",
    *,
    current: str | Path | pd.DataFrame,
    reference: str | None = None,
    labels: str | Path | pd.DataFrame | None = None,
    settings: Mapping[str, Any] | None = None,
    retrain: bool = False,
    profile: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    echo: Echo | None = None,
) -> MonitorOutcome:
    """Check new data against a model and, on a breach, retrain and gate (see module docstring).

    Parameters
    ----------
    project_dir : str or Path
        The project.
    current : str, Path or DataFrame
        New data: a prediction log folder (``predictions``), a CSV or Parquet file, or a frame.
    reference : str, optional
        ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or a run id; by default the champion.
    labels : str, Path or DataFrame, optional
        Late labels of logged predictions (``request_id``, ``request_row``, target).
    settings : mapping, optional
        :class:`MonitorPolicy` settings overriding the monitor stage's parameters.
    retrain : bool, default=False
        Run the retraining loop when the check finds a breach.
    profile : str, optional
        Parameter profile for the monitor stage's settings and the retraining run.
    overrides : mapping, optional
        Parameters of the retraining run (``STAGE.NAME`` keys).
    echo : callable, optional
        Called with one line of progress at a time.

    Returns
    -------
    MonitorOutcome

    Raises
    ------
    NbtoolsError
        For bad input (data, labels, reference, settings), before anything is recorded.
    """
    say = echo or (lambda _line: None)
    pipeline = load_pipeline(project_dir)
    root = pipeline.project_dir
    policy = _policy(pipeline, profile, settings)
    if retrain:  # a mistyped parameter of the retraining run fails now, not after the check
        pipeline.resolve(profile, _retrain_overrides(overrides, root, root, policy))
    ref = resolve_reference(pipeline, reference)
    new = load_current(current, root)
    label_rows = None if labels is None else load_current(labels, root)
    result = run_check(ref, new, policy, labels=label_rows, history=read_history(root, ref.key))
    fresh, gate = _split_labelled(result) if result.breach is not None and retrain else (None, None)
    check_id = new_run_id()
    outcome = MonitorOutcome(check_id, root / MONITORING_DIR / check_id, result)
    outcome.folder.mkdir(parents=True)
    outcome.decisions = _check_decisions(result)
    for decision in outcome.decisions:
        say(f"{decision['decision']}: {decision['reason']}")
    append_history(root, [{**w.entry(ref), "check_id": check_id} for w in result.windows])
    if fresh is not None and gate is not None:
        outcome.decisions.append(
            _decision(
                "retrain started",
                f"{len(fresh)} new labelled rows to learn from ({policy.retrain_data}), the "
                f"newest {len(gate)} held out for the gate (margin {policy.margin:g})",
                new_rows=len(fresh),
                gate_rows=len(gate),
            )
        )
        say("Retraining: " + outcome.decisions[-1]["reason"])
        outcome.retrain = retrain_model(
            pipeline,
            result,
            folder=outcome.folder,
            profile=profile,
            overrides=overrides,
            echo=say,
        )
        outcome.decisions.append(_retrain_decision(outcome.retrain))
        say(f"{outcome.decisions[-1]['decision']}: {outcome.decisions[-1]['reason']}")
        event: dict[str, Any] = {"event": "retrain", "reference": ref.key, "check_id": check_id}
        event.update(at=now(), run_id=outcome.retrain.run_id, promoted=outcome.retrain.promoted)
        append_history(root, [event])
    _record(pipeline, outcome)
    notify_findings(
        pipeline,
        result,
        check_id=check_id,
        report=outcome.report,
        mlflow_run_id=outcome.mlflow_run_id,
        retrained=None
        if outcome.retrain is None
        else f"retraining run {outcome.retrain.run_id}: {outcome.decisions[-1]['decision']}",
    )
    return outcome


def _policy(
    pipeline: Pipeline, profile: str | None, settings: Mapping[str, Any] | None
) -> MonitorPolicy:
    resolved = pipeline.resolve(profile)
    parameters = dict(resolved.get("monitor", {}))
    if "margin" in resolved.get("deploy", {}):
        parameters["margin"] = resolved["deploy"]["margin"]
    return MonitorPolicy.from_parameters(parameters).updated(**dict(settings or {}))


def _decision(name: str, reason: str, **numbers: Any) -> dict[str, Any]:
    return {"decision": name, "reason": reason, "at": now(), **numbers}


def _check_decisions(result: CheckResult) -> list[dict[str, Any]]:
    decisions = []
    drifted = [w for w in result.windows if w.drift.dataset_drift]
    if drifted:
        worst = max(drifted, key=lambda w: w.drift.drift_share or 0.0)
        decisions.append(
            _decision(
                "drift found",
                f"dataset drift in {len(drifted)} of {len(result.windows)} window(s); largest "
                f"drift share {worst.drift.drift_share:.0%} in {worst.label} "
                f"({', '.join(worst.drift.drifted_columns)})",
                windows=[w.label for w in drifted],
                drift_share=worst.drift.drift_share,
            )
        )
    decayed = [w for w in result.windows if w.performance is not None and w.performance.decayed]
    if decayed:
        perf = decayed[0].performance
        assert perf is not None and perf.score is not None and perf.drop is not None
        decisions.append(
            _decision(
                "performance decay found",
                f"{perf.metric} {perf.score:.4f} in {decayed[0].label}, {perf.drop:.4f} worse "
                f"than the baseline {perf.baseline:.4f} (allowed {result.policy.max_drop:g})",
                metric=perf.metric,
                score=perf.score,
                baseline=perf.baseline,
                drop=perf.drop,
            )
        )
    if result.breach is not None:
        decisions.append(_decision("retraining due", result.breach.reason, rule=result.breach.kind))
    else:
        decisions.append(
            _decision(
                "no retraining",
                f"no breach: dataset drift must last {result.policy.drift_windows} consecutive "
                f"window(s), or the metric fall more than {result.policy.max_drop:g}",
            )
        )
    return decisions


def _labelled(result: CheckResult) -> pd.DataFrame:
    target = result.reference.target
    rows = pd.concat(result.windows_data, ignore_index=True)
    if target is None or target not in rows.columns or rows[target].notna().sum() == 0:
        raise DataSourceError(
            "Retraining needs labelled new data, and the current data has no labels"
            + (f" (no values in the target column '{target}')" if target else "")
            + ". Give the labels of the logged predictions, or data with the target column."
        )
    rows = rows[rows[target].notna()]
    if TIME_COLUMN in rows.columns:
        rows = rows.sort_values(TIME_COLUMN, kind="stable")
    return rows.reset_index(drop=True)


def _split_labelled(result: CheckResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The new labelled rows to learn from, and the newest ``holdout`` share for the gate.

    Raises
    ------
    DataSourceError
        If there are no labels, or too few rows besides the held-out ones.
    """
    policy = result.policy
    labelled = _labelled(result)
    gate_rows = max(1, round(len(labelled) * policy.holdout))
    if len(labelled) - gate_rows < policy.min_rows:
        raise DataSourceError(
            f"Retraining needs at least {policy.min_rows} labelled new rows besides the "
            f"{gate_rows} held out for the gate; the current data has {len(labelled)}. "
            "Wait for more labels, or lower the holdout share."
        )
    columns = [*result.reference.columns, result.reference.target]
    cut = len(labelled) - gate_rows
    return labelled.iloc[:cut][columns], labelled.iloc[cut:][columns]


def _retrain_overrides(
    overrides: Mapping[str, Any] | None, training: Path, gate: Path, policy: MonitorPolicy
) -> dict[str, Any]:
    return {
        **dict(overrides or {}),
        "ingest.source": str(training),
        "deploy.gate_data": str(gate),
        "deploy.margin": policy.margin,
    }


def retrain_model(
    pipeline: Pipeline,
    result: CheckResult,
    *,
    folder: Path,
    profile: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    echo: Echo | None = None,
) -> RetrainOutcome:
    """Run the pipeline on new labelled data; its deploy stage gates the new model.

    The newest ``policy.holdout`` share of the labelled rows is written to ``gate.parquet`` and
    handed to the deploy stage (``deploy.gate_data``), which scores challenger and champion on
    it; the other rows, alone or after the pipeline's own data (``policy.retrain_data``), are
    written to ``retrain.parquet`` and become the ingest stage's source. The run goes up to the
    deploy stage.

    Parameters
    ----------
    pipeline : Pipeline
        The project.
    result : CheckResult
        The check that found the breach; its windows hold the new rows.
    folder : Path
        Where the two data files are written (the check's folder).
    profile : str, optional
        Parameter profile of the retraining run.
    overrides : mapping, optional
        More parameters of the retraining run.
    echo : callable, optional
        Progress lines of the run.

    Raises
    ------
    DataSourceError
        If the new data holds no labels, or too few to train and gate.
    """
    policy, reference = result.policy, result.reference
    fresh, recent = _split_labelled(result)
    if policy.retrain_data == "reference+current":
        fresh = _after_pipeline_data(pipeline, profile, fresh, reference)
    folder.mkdir(parents=True, exist_ok=True)
    training = folder / "retrain.parquet"
    gate = folder / "gate.parquet"
    fresh.to_parquet(training, index=False)
    recent.to_parquet(gate, index=False)
    run = run_pipeline(
        pipeline.project_dir,
        profile=profile,
        stop="deploy",  # the new model and the gate; monitoring it is the next check's job
        overrides=_retrain_overrides(overrides, training, gate, policy),
        echo=echo,
    )
    deployed = _deployment(run.manifest)
    return RetrainOutcome(
        run_id=run.run_id,
        succeeded=run.succeeded,
        error=None if run.error is None else str(run.error),
        version=deployed.get("version"),
        promoted=deployed.get("promoted"),
        reason=deployed.get("reason"),
        metric=deployed.get("metric"),
        challenger_score=deployed.get("challenger_score"),
        champion_score=deployed.get("champion_score"),
        training_rows=len(fresh),
        gate_rows=len(recent),
        gain=deployed.get("gain"),
        gain_lower=deployed.get("gain_lower"),
    )


def _after_pipeline_data(
    pipeline: Pipeline, profile: str | None, fresh: pd.DataFrame, reference: Reference
) -> pd.DataFrame:
    """The pipeline's own data (its ingest source), then the new labelled rows."""
    ingest = pipeline.resolve(profile).get("ingest", {})
    old = tables.load_source(
        ingest["source"],
        base_dir=pipeline.project_dir,
        table=ingest.get("table"),
        query=ingest.get("query"),
    )
    # Both parts in the model's input types (raw exports hold dates and flags as text).
    old = as_trained(old[[c for c in fresh.columns if c in old.columns]], reference)
    return pd.concat([old, fresh], ignore_index=True)


def _deployment(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What the run's deploy stage decided (its ``deployment.json``); empty when it did not."""
    record = manifest["stages"].get("deploy", {})
    if record.get("output_dir") and (Path(record["output_dir"]) / "deployment.json").is_file():
        deployed: dict[str, Any] = json.loads(
            (Path(record["output_dir"]) / "deployment.json").read_text("utf-8")
        )
        return deployed
    return {}


def _retrain_decision(outcome: RetrainOutcome) -> dict[str, Any]:
    numbers = {k: v for k, v in asdict(outcome).items() if k != "reason"}
    if not outcome.succeeded:
        return _decision(
            "retrain failed", f"run {outcome.run_id} failed: {outcome.error}", **numbers
        )
    name = "challenger promoted" if outcome.promoted else "challenger rejected"
    return _decision(
        name, f"version {outcome.version} (run {outcome.run_id}): {outcome.reason}", **numbers
    )


def _record(pipeline: Pipeline, outcome: MonitorOutcome) -> None:
    """Write the check's report and record, and log both with the decisions to MLflow."""
    from nbtools.records.tracking import Tracker

    check = {
        "check_id": outcome.check_id,
        "checked_at": now(),
        **outcome.result.to_dict(),
        "decisions": outcome.decisions,
        "retrain": None if outcome.retrain is None else asdict(outcome.retrain),
    }
    path = outcome.folder / "check.json"
    path.write_text(json.dumps(check, indent=2, default=str), encoding="utf-8")
    outcome.report.write_text(report_html(outcome.result, outcome.decisions), encoding="utf-8")
    with project_lock(pipeline.project_dir):
        tracker = Tracker(
            pipeline.tracking_uri, pipeline.name, pipeline.project_dir / "mlartifacts"
        )
    run_id = tracker.start_run(
        f"monitor {outcome.check_id}",
        tags={
            "nbtools.monitor": outcome.check_id,
            "nbtools.reference": outcome.result.reference.key,
            **{
                f"nbtools.decision.{i:02d}": f"{d['decision']}: {d['reason']}"[:5000]
                for i, d in enumerate(outcome.decisions)
            },
        },
    )
    outcome.mlflow_run_id = run_id
    from mlflow.entities import Metric

    stamp = int(pd.Timestamp.now().timestamp() * 1000)
    metrics = []
    for step, window in enumerate(outcome.result.windows):
        if window.drift.drift_share is not None:
            metrics.append(Metric("drift_share", window.drift.drift_share, stamp, step))
        perf = window.performance
        if perf is not None and perf.score is not None:
            metrics.append(Metric(f"current_{perf.metric}", perf.score, stamp, step))
    params = {k: v for k, v in asdict(outcome.result.policy).items() if v is not None}
    tracker.client.log_batch(run_id, metrics=metrics)
    tracker.log_parent(run_id, params)
    tracker.log_file(run_id, path)
    tracker.log_file(run_id, outcome.report)
    if outcome.retrain is not None and outcome.result.breach is not None:
        retrain_run = _pipeline_mlflow_run(pipeline, outcome.retrain.run_id)
        if retrain_run is not None:
            tracker.client.set_tag(retrain_run, "nbtools.retrain.trigger", outcome.check_id)
            tracker.client.set_tag(
                retrain_run, "nbtools.retrain.reason", outcome.result.breach.reason[:5000]
            )
    tracker.finish(run_id, succeeded=True)


def _pipeline_mlflow_run(pipeline: Pipeline, run_id: str) -> str | None:
    manifest_path = pipeline.runs_dir / run_id / "manifest.json"
    if not manifest_path.is_file():
        return None
    parent: str | None = json.loads(manifest_path.read_text("utf-8"))["mlflow"]["parent_run_id"]
    return parent
