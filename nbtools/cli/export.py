"""``nbtools export``: write the pipeline as an orchestrator's pipeline (Airflow, Kubeflow)."""

from __future__ import annotations

import click

from nbtools.cli.export_airflow import airflow
from nbtools.cli.export_kubeflow import kubeflow


@click.group()
def export() -> None:
    """Write the pipeline for an orchestrator; each task runs one stage with `nbtools task`."""


export.add_command(airflow)
export.add_command(kubeflow)
