"""``nbtools runs``: list past runs, show one in detail, and compare two."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from nbtools.cli._errors import reports_errors
from nbtools.cli._options import project_option
from nbtools.pipeline.spec import find_project
from nbtools.records.run_diff import default_report_path, diff_runs, summary_text, write_report
from nbtools.records.runs import WARNINGS, list_runs, load_run, stage_warnings

_PROJECT = project_option()
#: Recorded values whose names start with this prefix are the held-out metrics shown in lists.
METRIC_PREFIX = "test_"


@click.group()
def runs() -> None:
    """Look at the records of past pipeline runs."""


@runs.command("list")
@_PROJECT
@reports_errors
def list_command(project_dir: Path) -> None:
    """List past runs, newest first, with status, duration and held-out metrics."""
    manifests = list_runs(find_project(project_dir) / "runs")
    if not manifests:
        click.echo("No runs yet. Start one with `nbtools run`.")
        return
    click.echo(
        f"{'RUN ID':<24} {'STATUS':<10} {'STARTED':<26} {'SECONDS':>8}  {'STAGES':<14} METRICS"
    )
    for manifest in manifests:
        stages = manifest["stages"].values()
        done = sum(1 for s in stages if s["status"] in ("succeeded", "reused"))
        metrics = "  ".join(f"{k}={_short(v)}" for k, v in _metrics(manifest).items())
        click.echo(
            f"{manifest['run_id']:<24} {manifest['status']:<10} "
            f"{manifest['started_at']:<26} {_short(manifest['duration_s']):>8}  "
            f"{f'{done}/{len(stages)} ok':<14} {metrics}"
        )


@runs.command("show")
@click.argument("run_id")
@_PROJECT
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
@reports_errors
def show_command(run_id: str, project_dir: Path, as_json: bool) -> None:
    """Show one run: each stage's status, duration, recorded values and executed notebook."""
    manifest = load_run(find_project(project_dir) / "runs", run_id)
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
        return
    click.echo(
        f"Run {manifest['run_id']} of pipeline '{manifest['pipeline']}': "
        f"{manifest['status']} in {_short(manifest['duration_s'])} s"
    )
    click.echo(
        f"Started {manifest['started_at']}, profile {manifest['profile'] or '-'}, "
        f"MLflow parent run {manifest['mlflow']['parent_run_id'] or '-'}"
    )
    if manifest.get("error"):
        click.echo(f"Error: {manifest['error']}")
    for name, stage in manifest["stages"].items():
        why = f", {stage['why']}" if stage.get("why") else ""
        click.echo(f"\n{name}: {stage['status']} ({_short(stage['duration_s'])} s{why})")
        if stage.get("reused_from"):
            click.echo(f"  reused from run {stage['reused_from']}: {stage['output_dir']}")
        click.echo(f"  notebook: {stage['executed_notebook'] or '-'}")
        click.echo(f"  html:     {stage['html'] or '-'}")
        for key, value in stage["recorded"].items():
            if key != WARNINGS:
                click.echo(f"  {key} = {_short(value)}")
        for message in stage_warnings(stage["recorded"]):
            click.echo(f"  warning: {message}")
        if stage.get("error"):
            click.echo(
                f"  error in cell {stage['error']['cell_index']}: {stage['error']['message']}"
            )


@runs.command("diff")
@click.argument("first")
@click.argument("second")
@_PROJECT
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the HTML report. Default: diffs/FIRST_SECOND.html in the project.",
)
@reports_errors
def diff_command(first: str, second: str, project_dir: Path, output: Path | None) -> None:
    """Compare two runs: parameters, metrics, which stages re-ran and why, notebooks cell by cell.

    Writes a self-contained HTML report (unchanged cells folded, text outputs as a diff, images
    side by side) and prints a summary. Run ids may be shortened to a unique prefix.
    """
    project = find_project(project_dir)
    diff = diff_runs(project / "runs", first, second)
    path = write_report(diff, output or default_report_path(project, diff))
    click.echo(summary_text(diff, report=path))


def _metrics(manifest: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for stage in manifest["stages"].values():
        found.update({k: v for k, v in stage["recorded"].items() if k.startswith(METRIC_PREFIX)})
    return found


def _short(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
