"""``nbtools monitor``: check new data for drift and performance decay; retrain on a breach.

Exit status, so that a scheduler can act on what was found: 0 nothing that ``--fail-on`` lists,
3 a drifted column, 4 dataset drift, 5 performance decay, 6 a breach of the retraining rule (the
most serious finding wins), 1 an error (a retraining run failed), 2 bad input (as every command).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from nbtools.cli._errors import reports_errors
from nbtools.cli._options import declared_options, param_option, project_option
from nbtools.cli._signals import cancel_on_sigterm
from nbtools.ops.monitoring.check import MonitorPolicy
from nbtools.params import parse_assignment

#: Exit status per finding (:data:`nbtools.ops.monitoring.check.FINDINGS`), least serious first.
EXIT_FINDINGS = {"column-drift": 3, "dataset-drift": 4, "performance": 5, "breach": 6}
#: Exit status when the retraining run started on a breach failed (an error, as elsewhere).
EXIT_RETRAIN_FAILED = 1
FAIL_ON_HELP = (
    "Findings that fail the check, comma-separated: column-drift (exit 3), dataset-drift (4), "
    "performance (5), breach (6), or none; the most serious one found sets the exit status."
)


def _fail_on(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if names == ("none",):
        return ()
    unknown = [n for n in names if n not in EXIT_FINDINGS]
    if unknown or not names:
        raise click.BadParameter(
            f"expected a comma-separated list of {', '.join(EXIT_FINDINGS)}, or none. "
            f"Got {value!r} instead."
        )
    return names


@click.command()
@click.option(
    "--current",
    required=True,
    help="New data: a CSV or Parquet file, or the prediction log folder (e.g. predictions).",
)
@click.option(
    "--reference",
    default=None,
    help="models:/NAME@ALIAS, models:/NAME/VERSION or a run id [default: the champion].",
)
@click.option(
    "--labels",
    default=None,
    help="Late labels of logged predictions: request_id, request_row and the target column.",
)
@declared_options(MonitorPolicy.SCHEMA, "monitor")
@click.option(
    "--retrain/--no-retrain", default=False, show_default=True, help="Retrain on a breach."
)
@click.option(
    "--fail-on",
    default=",".join(EXIT_FINDINGS),
    show_default=True,
    callback=_fail_on,
    help=FAIL_ON_HELP,
)
@click.option("--profile", default=None, help="Parameter profile of pipeline.yaml.")
@param_option("A parameter of the retraining run (repeatable).")
@project_option("Project folder: its registry, runs, monitor settings and pipeline.")
@reports_errors
def monitor(
    current: str,
    reference: str | None,
    labels: str | None,
    retrain: bool,
    fail_on: tuple[str, ...],
    profile: str | None,
    params: tuple[str, ...],
    project_dir: Path,
    **settings: Any,
) -> None:
    """Check new data against a model's training data and deployed score; retrain on a breach.

    Writes monitoring/<check_id>/report.html and check.json and logs both to MLflow.

    \b
    Exit status (the most serious finding that --fail-on lists):
      0  nothing found that --fail-on lists
      3  column drift: a column's distribution, missing share or categories changed
      4  dataset drift: at least share_threshold of the columns drifted
      5  performance decay: the deciding metric fell more than max_drop
      6  breach: retraining is due (drift in drift_windows windows in a row, or decay)
      1  error: the retraining run failed
      2  bad input: missing or extra columns, a changed type, an empty window, a bad option
    """
    from nbtools.ops.retraining import monitor_project

    if retrain:
        cancel_on_sigterm()
    outcome = monitor_project(
        project_dir,
        current=current,
        reference=reference,
        labels=labels,
        settings=settings,
        retrain=retrain,
        profile=profile,
        overrides=dict(parse_assignment(text) for text in params),
        echo=click.echo,
    )
    result = outcome.result
    click.echo(f"Reference: {result.reference.label}")
    for window in result.windows:
        perf = window.performance
        share = window.drift.drift_share
        line = f"  {window.label:<52} {window.rows:>8,} rows  drift share " + (
            "n/a" if share is None else f"{share:.0%}"
        )
        weighted = window.drift.weighted_drift_share
        if weighted is not None:
            line += f" (model reliance {weighted:.0%})"
        if perf is not None and perf.score is not None:
            line += f"  {perf.metric} {perf.score:.4f}"
        click.echo(line)
        for column in window.drift.columns:
            if column.drift:
                reliance = (
                    "" if column.importance is None else f", reliance {column.importance:.0%}"
                )
                click.echo(f"    {column.column}: {'; '.join(column.reasons)}{reliance}")
    if result.importance_note:
        click.echo(result.importance_note)
    click.echo(f"Report: {outcome.report}")
    click.echo(f"MLflow run: {outcome.mlflow_run_id}")
    click.echo("Found: " + (", ".join(result.findings) or "nothing"))
    if outcome.retrain is not None and not outcome.retrain.succeeded:
        raise SystemExit(EXIT_RETRAIN_FAILED)
    failing = [name for name in result.findings if name in fail_on]
    if failing:
        raise SystemExit(EXIT_FINDINGS[failing[-1]])
