"""``nbtools monitor``: check new data for drift and performance decay; retrain on a breach.

Exit status: 0 nothing found, 3 drift or performance decay found (so a scheduler can act on
it), 1 a retraining run failed, 2 bad input (as every command).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from nbtools.cli._errors import reports_errors
from nbtools.cli._options import param_option, project_option
from nbtools.core.params import parse_assignment

#: Exit status when drift or performance decay is found.
EXIT_DRIFT_OR_DECAY = 3
#: Exit status when the retraining run started on a breach failed.
EXIT_RETRAIN_FAILED = 1


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
@click.option("--every", default=None, help="Window length, e.g. 1D or 6h [default: one window].")
@click.option("--alpha", type=float, default=None, help="False discovery rate of p-value tests.")
@click.option("--min-rows", type=int, default=None, help="Fewest values to test a column.")
@click.option("--share-threshold", type=float, default=None, help="Drift share of dataset drift.")
@click.option("--wasserstein-threshold", type=float, default=None, help="Normed distance.")
@click.option("--js-threshold", type=float, default=None, help="Jensen-Shannon distance.")
@click.option("--max-drop", type=float, default=None, help="Allowed drop of the deciding metric.")
@click.option("--drift-windows", type=int, default=None, help="Consecutive drifted windows.")
@click.option(
    "--retrain/--no-retrain", default=False, show_default=True, help="Retrain on a breach."
)
@click.option(
    "--retrain-data",
    type=click.Choice(["reference+current", "current"]),
    default=None,
    help="What a retraining run learns from [default: the monitor stage's retrain_data].",
)
@click.option("--holdout", type=float, default=None, help="Newest share held out for the gate.")
@click.option("--margin", type=float, default=None, help="Improvement the challenger needs.")
@click.option("--profile", default=None, help="Parameter profile of pipeline.yaml.")
@param_option("A parameter of the retraining run (repeatable).")
@project_option("Project folder: its registry, runs, monitor settings and pipeline.")
@reports_errors
def monitor(
    current: str,
    reference: str | None,
    labels: str | None,
    retrain: bool,
    profile: str | None,
    params: tuple[str, ...],
    project_dir: Path,
    **settings: Any,
) -> None:
    """Check new data against a model's training data and deployed score; retrain on a breach.

    Writes monitoring/<check_id>/report.html and check.json, logs both to MLflow, and exits
    with status 3 when drift or performance decay is found.
    """
    from nbtools.core.retraining import monitor_project

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
        if perf is not None and perf.score is not None:
            line += f"  {perf.metric} {perf.score:.4f}"
        click.echo(line)
    click.echo(f"Report: {outcome.report}")
    click.echo(f"MLflow run: {outcome.mlflow_run_id}")
    if outcome.retrain is not None and not outcome.retrain.succeeded:
        raise SystemExit(EXIT_RETRAIN_FAILED)
    if result.drift_found or result.decay_found:
        raise SystemExit(EXIT_DRIFT_OR_DECAY)
