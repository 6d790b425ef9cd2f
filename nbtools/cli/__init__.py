"""The ``nbtools`` command line: create a project, run its pipeline, look at past runs."""

from __future__ import annotations

import sys

import click

from nbtools.cli.check import check
from nbtools.cli.deploy import deploy
from nbtools.cli.export import export
from nbtools.cli.monitor import monitor
from nbtools.cli.project import new
from nbtools.cli.run import run
from nbtools.cli.runs import runs
from nbtools.cli.schedule import schedule
from nbtools.cli.serve import serve
from nbtools.cli.task import task
from nbtools.cli.tensorboard import tensorboard


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nbtools")
def cli() -> None:
    """Reproducible, tracked ML pipelines from parametrized Jupyter notebooks."""


cli.add_command(check)
cli.add_command(deploy)
cli.add_command(export)
cli.add_command(monitor)
cli.add_command(new)
cli.add_command(run)
cli.add_command(runs)
cli.add_command(schedule)
cli.add_command(serve)
cli.add_command(task)
cli.add_command(tensorboard)


def main() -> None:
    """Entry point of the ``nbtools`` console script."""
    sys.exit(cli.main(prog_name="nbtools", standalone_mode=True))
