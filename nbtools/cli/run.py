"""``nbtools run``: run the project's pipeline with Papermill and keep its run record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from nbtools.cli._errors import reports_errors
from nbtools.cli._options import param_option, project_option
from nbtools.cli._signals import cancel_on_sigterm
from nbtools.pipeline.spec import load_pipeline
from nbtools.runner.run import run_pipeline
from nbtools.runner.scheduler import EXECUTORS
from nbtools.runner.sweep import Variant, parse_overrides, run_sweep

#: Exit status when a stage failed.
EXIT_STAGE_FAILED = 1
_ALL = "*"


@click.command()
@project_option()
@param_option(
    "Override a parameter: NAME for every stage that declares it, STAGE.NAME for one stage. "
    "Repeatable."
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
    help="Stages (and sweep variants' stages) run at once, one kernel each  "
    "[default: the number of cores, fewer when memory is short].",
)
@click.option(
    "--executor",
    type=click.Choice(EXECUTORS),
    default="local",
    show_default=True,
    help="Run stages in kernels here, or as tasks on a Dask cluster.",
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
    """Run the pipeline, one kernel per stage, reusing every stage whose inputs are unchanged.

    A value list such as ``-p train.C=0.1,1,10`` (or a ``sweep`` section in pipeline.yaml)
    runs one variant per value and prints a comparison of their held-out metrics.
    """
    if resume is not None and (params or profile or only or start or stop or force):
        raise click.UsageError(
            "--resume continues a run with its own parameters and stages; "
            "drop -p, --profile, --only, --from, --to and --force."
        )
    cancel_on_sigterm()
    pipeline = load_pipeline(project_dir)
    overrides, swept = parse_overrides(pipeline, params)
    options: dict[str, Any] = {
        "profile": profile,
        "only": only or None,
        "start": start,
        "stop": stop,
        "force": True if _ALL in force else force,
        "jobs": jobs,
        "executor": executor,
        "scheduler": scheduler,
        "echo": click.echo,
    }
    if resume is None and (swept or pipeline.sweep):
        sweep = run_sweep(project_dir, swept or None, overrides=overrides, **options)
        _comparison(sweep)
        if any(not v.result.succeeded for v in sweep):
            raise SystemExit(EXIT_STAGE_FAILED)
        return
    result = run_pipeline(project_dir, overrides=overrides, resume=resume, **options)
    click.echo(f"Run id:        {result.run_id}")
    click.echo(f"Run record:    {result.run_dir}")
    click.echo(f"MLflow run id: {result.mlflow_run_id or '- (nothing executed)'}")
    if result.error is not None:
        click.echo(f"Error: {result.error}", err=True)
        raise SystemExit(EXIT_STAGE_FAILED)
    click.echo(
        f"All stages succeeded: {len(result.executed)} executed, {len(result.reused)} reused."
    )


def _comparison(sweep: list[Variant]) -> None:
    """Print one line per variant: its swept values, status, run id and held-out metrics."""
    keys = list(sweep[0].values)
    metrics = sorted({name for variant in sweep for name in variant.metrics})
    header = [*keys, "status", "run id", *metrics]
    rows = [
        [
            *(variant.values[k] for k in keys),
            "succeeded" if variant.result.succeeded else "failed",
            variant.result.run_id,
            *(variant.metrics.get(m, "-") for m in metrics),
        ]
        for variant in sweep
    ]
    table = [header, *([_cell(c) for c in row] for row in rows)]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    click.echo("\nSweep comparison:")
    for line in table:
        click.echo("  ".join(f"{c!s:<{w}}" for c, w in zip(line, widths, strict=True)))


def _cell(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
