"""``nbtools run``: run the project's pipeline with Papermill and keep its run record."""

from __future__ import annotations

from pathlib import Path

import click

from nbtools.cli._errors import reports_errors
from nbtools.core.params import parse_assignment
from nbtools.core.runner import run_pipeline

#: Exit status when a stage failed.
EXIT_STAGE_FAILED = 1


@click.command()
@click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Project folder (holding pipeline.yaml).",
)
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="[STAGE.]NAME=VALUE",
    help="Override a parameter: NAME for every stage that declares it, "
    "STAGE.NAME for one stage. Repeatable.",
)
@click.option("--profile", default=None, help="A named parameter set from pipeline.yaml.")
@reports_errors
def run(project_dir: Path, params: tuple[str, ...], profile: str | None) -> None:
    """Run every stage of the pipeline, one kernel per stage, and record the run."""
    overrides = dict(parse_assignment(p) for p in params)
    result = run_pipeline(project_dir, profile=profile, overrides=overrides, echo=click.echo)
    click.echo(f"Run id:        {result.run_id}")
    click.echo(f"Run record:    {result.run_dir}")
    click.echo(f"MLflow run id: {result.mlflow_run_id}")
    if result.error is not None:
        click.echo(f"Error: {result.error}", err=True)
        raise SystemExit(EXIT_STAGE_FAILED)
    click.echo("All stages succeeded.")
