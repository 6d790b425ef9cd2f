"""``nbtools new``: create a project from the stage-notebook templates."""

from __future__ import annotations

from pathlib import Path

import click

from nbtools.cli._errors import reports_errors
from nbtools.pipeline.project import TASKS, create_project


@click.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--data",
    default=None,
    metavar="SOURCE",
    help="CSV or Parquet path, SQLAlchemy URL, or http(s) URL of JSON records. "
    "Default: the bundled churn demo data.",
)
@click.option("--target", default=None, metavar="COLUMN", help="The column to predict.")
@click.option(
    "--task",
    type=click.Choice(TASKS),
    default="auto",
    show_default=True,
    help="What to learn; auto decides from the target column.",
)
@click.option("--table", default=None, help="For a SQL source: the table to read.")
@click.option("--query", default=None, help="For a SQL source: the query to run.")
@reports_errors
def new(
    directory: Path,
    data: str | None,
    target: str | None,
    task: str,
    table: str | None,
    query: str | None,
) -> None:
    """Create a project in DIRECTORY: pipeline.yaml plus one notebook per stage."""
    root = create_project(directory, data=data, target=target, task=task, table=table, query=query)
    click.echo(f"Created project {root}")
    click.echo(f"Run its pipeline with: nbtools run --project {root}")
