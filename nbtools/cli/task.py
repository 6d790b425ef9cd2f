"""``nbtools task``: the steps of one run when an orchestrator runs each stage as its own task.

Airflow's and Kubeflow's exports (``nbtools export``) call these: ``start`` once, ``stage`` once
per stage in the order of the stages' inputs, ``finish`` last, even after a failed stage. Every
step names the run by the orchestrator's run identifier (``--key``).
"""

from __future__ import annotations

from pathlib import Path

import click

from nbtools.cli._errors import reports_errors
from nbtools.cli._options import param_option, project_option
from nbtools.cli._signals import cancel_on_sigterm
from nbtools.params import parse_assignment
from nbtools.runner.tasks import finish_task_run, run_task_stage, start_task_run

#: Exit status when the stage (``stage``) or a stage of the run (``finish``) failed.
EXIT_FAILED = 1

key_option = click.option(
    "--key",
    required=True,
    help="The orchestrator's identifier of this run (Airflow's run_id, a KFP job name).",
)


@click.group()
def task() -> None:
    """Run one pipeline run as separate tasks: start, one stage per task, finish."""


@task.command()
@key_option
@project_option()
@click.option("--profile", default=None, help="A named parameter set from pipeline.yaml.")
@param_option("Override a parameter: NAME or STAGE.NAME. Repeatable.")
@reports_errors
def start(key: str, project_dir: Path, profile: str | None, params: tuple[str, ...]) -> None:
    """Create the run's record and MLflow parent run; a retried start finds the same run."""
    overrides = dict(parse_assignment(text) for text in params)
    start_task_run(project_dir, key, profile=profile, overrides=overrides, echo=click.echo)


@task.command()
@click.argument("stage")
@key_option
@project_option()
@reports_errors
def stage(stage: str, key: str, project_dir: Path) -> None:
    """Execute STAGE in the run (or reuse it from the cache) once its inputs are done.

    \b
    Exit status: 0 the stage succeeded, was reused or was already done; 1 it failed (its
    record and MLflow run say why); 2 bad input (no run has the key, an input is not done).
    """
    cancel_on_sigterm()
    record = run_task_stage(project_dir, key, stage, echo=click.echo)
    if record.status == "failed":
        error = record.error or {}
        click.echo(f"Error: stage '{stage}' failed: {error.get('message')}", err=True)
        click.echo(f"Executed notebook: {error.get('notebook')}", err=True)
        raise SystemExit(EXIT_FAILED)


@task.command()
@key_option
@project_option()
@reports_errors
def finish(key: str, project_dir: Path) -> None:
    """Close the run: stages that never ran are marked so; exit 1 when a stage failed."""
    result = finish_task_run(project_dir, key, echo=click.echo)
    click.echo(f"Run record:    {result.run_dir}")
    click.echo(f"MLflow run id: {result.mlflow_run_id or '-'}")
    if result.manifest["status"] != "succeeded":
        raise SystemExit(EXIT_FAILED)
