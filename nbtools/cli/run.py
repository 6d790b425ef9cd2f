"""``nbtools run``: run the project's pipeline with Papermill and keep its run record."""

from __future__ import annotations

from pathlib import Path

import click

from nbtools.cli._errors import reports_errors
from nbtools.core.params import parse_assignment
from nbtools.core.runner import run_pipeline
from nbtools.core.scheduler import EXECUTORS

#: Exit status when a stage failed.
EXIT_STAGE_FAILED = 1
_ALL = "*"


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
@click.option("--only", multiple=True, metavar="STAGE", help="Run only this stage. Repeatable.")
@click.option("--from", "start", metavar="STAGE", help="Run this stage and everything after it.")
@click.option("--to", "stop", metavar="STAGE", help="Run this stage and everything it needs.")
@click.option(
    "--force",
    multiple=True,
    is_flag=False,
    flag_value=_ALL,
    metavar="[STAGE]",
    help="Execute even when the cache has the result: every stage, or the named one. Repeatable.",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Stages run at once, one process each  [default: the number of cores].",
)
@click.option(
    "--executor",
    type=click.Choice(EXECUTORS),
    default="local",
    show_default=True,
    help="Run stages as processes here, or as tasks on a Dask cluster.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Dask scheduler address (tcp://host:port); without it, --executor dask starts a "
    "local cluster.",
)
@click.option("--resume", metavar="RUN_ID", help="Continue a failed or killed run.")
@reports_errors
def run(
    project_dir: Path,
    params: tuple[str, ...],
    profile: str | None,
    only: tuple[str, ...],
    start: str | None,
    stop: str | None,
    force: tuple[str, ...],
    jobs: int | None,
    executor: str,
    scheduler: str | None,
    resume: str | None,
) -> None:
    """Run the pipeline, one kernel per stage, reusing every stage whose inputs are unchanged."""
    if resume is not None and (params or profile or only or start or stop or force):
        raise click.UsageError(
            "--resume continues a run with its own parameters and stages; "
            "drop -p, --profile, --only, --from, --to and --force."
        )
    overrides = dict(parse_assignment(p) for p in params)
    result = run_pipeline(
        project_dir,
        profile=profile,
        overrides=overrides,
        only=only or None,
        start=start,
        stop=stop,
        force=True if _ALL in force else force,
        jobs=jobs,
        executor=executor,
        scheduler=scheduler,
        resume=resume,
        echo=click.echo,
    )
    click.echo(f"Run id:        {result.run_id}")
    click.echo(f"Run record:    {result.run_dir}")
    click.echo(f"MLflow run id: {result.mlflow_run_id or '- (nothing executed)'}")
    if result.error is not None:
        click.echo(f"Error: {result.error}", err=True)
        raise SystemExit(EXIT_STAGE_FAILED)
    click.echo(
        f"All stages succeeded: {len(result.executed)} executed, {len(result.reused)} reused."
    )
