"""What ``nbtools monitor`` tells the pipeline's webhook: drift and performance decay.

A check that found column or dataset drift posts ``drift``; one whose model scored worse than
its baseline by more than the allowed drop posts ``decay`` (see ``notify`` in
:mod:`nbtools.records.notify`). Each message names the check, its report and its MLflow run.
The gate's decisions are posted by the deploy stage that makes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nbtools.ops.monitoring.check import CheckResult
from nbtools.pipeline.spec import Pipeline
from nbtools.records.notify import post_event


def notify_findings(
    pipeline: Pipeline,
    result: CheckResult,
    *,
    check_id: str,
    report: Path,
    mlflow_run_id: str | None,
    retrained: str | None = None,
) -> None:
    """Post ``drift`` and ``decay`` for what the check ``check_id`` found.

    Parameters
    ----------
    pipeline : Pipeline
        The project; its ``notify`` section says whether and where to post.
    result : CheckResult
        The check.
    check_id : str
        The check's id (its folder ``monitoring/<check_id>``).
    report : Path
        The check's HTML report.
    mlflow_run_id : str or None
        The MLflow run the check was logged to.
    retrained : str, optional
        What the retraining it started came to, such as ``"retraining run R: challenger
        rejected"``; its deploy stage has posted the gate's decision already.
    """
    where = f"check {check_id} against {result.reference.label} (MLflow run {mlflow_run_id})"
    facts: dict[str, Any] = {
        "check_id": check_id,
        "mlflow_run_id": mlflow_run_id,
        "reference": result.reference.key,
        "findings": result.findings,
        "breach": None if result.breach is None else result.breach.reason,
    }
    if result.column_drift_found:
        drifted = [w for w in result.windows if w.drift.drifted_columns]
        worst = max(drifted, key=lambda w: w.drift.drift_share or 0.0)
        share = worst.drift.drift_share
        kind = "Dataset drift" if result.drift_found else "Column drift"
        post_event(
            pipeline,
            "drift",
            f"{kind} in {where}: {len(drifted)} of {len(result.windows)} window(s); in "
            f"{worst.label} {', '.join(worst.drift.drifted_columns)} drifted"
            + ("" if share is None else f" (share {share:.0%})")
            + _retraining(result, retrained),
            record=report,
            drifted_columns=worst.drift.drifted_columns,
            drift_share=share,
            **facts,
        )
    if result.decay_found:
        window = next(w for w in result.windows if w.performance and w.performance.decayed)
        perf = window.performance
        assert perf is not None and perf.score is not None and perf.drop is not None
        post_event(
            pipeline,
            "decay",
            f"Performance decay in {where}: {perf.metric} {perf.score:.4f} in {window.label}, "
            f"{perf.drop:.4f} worse than the baseline {perf.baseline:.4f} (allowed "
            f"{result.policy.max_drop:g})" + _retraining(result, retrained),
            record=report,
            metric=perf.metric,
            score=perf.score,
            baseline=perf.baseline,
            **facts,
        )


def _retraining(result: CheckResult, retrained: str | None) -> str:
    if result.breach is None:
        return "."
    return ". Retraining is due" + (f"; {retrained}." if retrained else ".")
