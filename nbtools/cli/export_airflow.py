"""``nbtools export airflow``: write the pipeline as an Airflow 3 DAG file."""

from __future__ import annotations

from pathlib import Path

import click

from nbtools.cli._errors import reports_errors
from nbtools.cli._options import param_option, project_option
from nbtools.ops.exports.airflow import OPERATORS, AirflowOptions, export_airflow
from nbtools.ops.exports.commands import TaskCommands, default_nbtools, parameters_as_typed
from nbtools.pipeline.spec import load_pipeline

#: Where the project sits inside a pod when --project-path does not say.
POD_PROJECT = "/project"


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), required=False)
@project_option()
@click.option(
    "--schedule",
    default="none",
    show_default=True,
    metavar="CRON|@daily|none",
    help="When Airflow starts a run: a cron expression, a preset such as @daily, or none "
    "(only when triggered).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Retries of a failed task.",
)
@click.option(
    "--retry-delay",
    type=click.IntRange(min=0),
    default=300,
    show_default=True,
    metavar="SECONDS",
    help="Wait before a failed task is retried.",
)
@click.option(
    "--operator",
    type=click.Choice(OPERATORS),
    default="bash",
    show_default=True,
    help="Run tasks on the Airflow workers (Bash operator) or in Kubernetes pods.",
)
@click.option("--image", default=None, help="Kubernetes: the pods' image (nbtools installed).")
@click.option(
    "--volume", default=None, metavar="PVC", help="Kubernetes: the claim holding the project."
)
@click.option(
    "--project-path",
    default=None,
    help="The project folder as the tasks see it [default: this project's absolute path; "
    f"{POD_PROJECT} in a pod].",
)
@click.option(
    "--nbtools",
    "executable",
    default=None,
    metavar="PATH",
    help="The nbtools executable the tasks run [default: this environment's, by absolute "
    "path; nbtools in a pod].",
)
@click.option("--profile", default=None, help="A named parameter set every run uses.")
@param_option("A parameter override every run uses: NAME or STAGE.NAME. Repeatable.")
@click.option(
    "--monitor-current",
    default=None,
    metavar="SOURCE",
    help="After each run, check this data (a path relative to the project) with "
    "`nbtools monitor` and retrain on a breach.",
)
@reports_errors
def airflow(
    folder: Path | None,
    project_dir: Path,
    schedule: str,
    retries: int,
    retry_delay: int,
    operator: str,
    image: str | None,
    volume: str | None,
    project_path: str | None,
    executable: str | None,
    profile: str | None,
    params: tuple[str, ...],
    monitor_current: str | None,
) -> None:
    """Write an Airflow 3 DAG: one task per stage, each running `nbtools task`.

    FOLDER defaults to <project>/export/airflow; copy the file into Airflow's dags folder.
    """
    pipeline = load_pipeline(project_dir)
    raw = parameters_as_typed(params, pipeline=pipeline, profile=profile)
    pod = operator == "kubernetes"
    commands = TaskCommands(
        nbtools=executable or ("nbtools" if pod else default_nbtools()),
        project=project_path or (POD_PROJECT if pod else str(pipeline.project_dir)),
        profile=profile,
        params=raw,
    )
    options = AirflowOptions(
        commands=commands,
        operator="kubernetes" if pod else "bash",
        schedule=schedule,
        retries=retries,
        retry_delay=retry_delay,
        image=image,
        volume=volume,
        monitor_current=monitor_current,
    )
    dag = export_airflow(pipeline, folder or pipeline.project_dir / "export" / "airflow", options)
    click.echo(f"Wrote {dag.path}")
    click.echo(f"DAG id: {dag.dag_id} ({len(pipeline.stages)} stage tasks, {operator} operator)")
    click.echo("Put the file in Airflow's dags folder.")
    if not pod:
        if dag.worker_env:
            click.echo(
                "Set these environment variables on the Airflow workers: "
                + ", ".join(dag.worker_env)
            )
        return
    for secret in dag.pod_secrets:
        click.echo(
            f"Pods take {secret.name} from Kubernetes secret {secret.kubernetes}, key {secret.key}"
        )
    if dag.unreferenced:
        click.echo(
            "No Kubernetes secret is named for "
            + ", ".join(dag.unreferenced)
            + ": the image or the cluster must set them (or add `kubernetes:` under "
            "pipeline.yaml's secrets)."
        )
