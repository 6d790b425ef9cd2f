"""The pipeline as an Airflow 3 DAG: one task per stage, each running the ``nbtools`` command line.

The DAG file is plain Python for Airflow's DAG processor; it imports Airflow only, never nbtools.
Its tasks, in order::

    start_run -> one task per stage (edges from pipeline.yaml's inputs) -> finish_run
              [-> monitor_check -> retrain_due -> retrain]

``start_run`` creates the run record named by Airflow's ``{{ run_id }}``, each stage task
executes its stage (or reuses it from the cache) inside that run, and ``finish_run`` closes the
run with ``trigger_rule="all_done"``, so a failed stage still leaves a closed, reported record.
With a monitor check, ``monitor_check`` runs ``nbtools monitor`` and hands its exit status to
``retrain_due``, which follows to ``retrain`` only on :data:`EXIT_BREACH`.

Tasks run through the Bash operator (on the Airflow workers, which must hold the project and the
secrets' environment variables) or the Kubernetes pod operator (in a container image, with the
project on a volume, the stage's resources and the secrets taken from Kubernetes secrets).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nbtools.errors import PipelineSpecError
from nbtools.ops.exports.commands import EXIT_BREACH, TaskCommands, shell
from nbtools.pipeline.deployment import Resources, Secret
from nbtools.pipeline.spec import Pipeline

#: How the tasks run: ``bash`` on the Airflow workers, ``kubernetes`` in a pod each.
OPERATORS = ("bash", "kubernetes")
#: Airflow's schedule presets that ``--schedule`` accepts besides a cron expression.
SCHEDULE_PRESETS = ("@once", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
#: The DAG's own tasks around the stages; no stage may take one of these ids.
HELPER_TASKS = ("start_run", "finish_run", "monitor_check", "retrain_due", "retrain")
#: Airflow's run identifier, rendered by Jinja in each task: the key of the nbtools run.
RUN_KEY = "{{ run_id }}"
_TASK_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")


@dataclass(frozen=True)
class AirflowOptions:
    """How the exported DAG runs its tasks.

    Parameters
    ----------
    commands : TaskCommands
        The ``nbtools`` executable and project folder as the tasks see them, and the profile
        and parameter overrides every run uses.
    operator : {"bash", "kubernetes"}
        Run each task with Airflow's Bash operator or in a Kubernetes pod.
    schedule : str or None
        A cron expression or an Airflow preset such as ``@daily``; None runs only when
        triggered.
    retries : int
        Retries of a failed task.
    retry_delay : int
        Seconds between a task's failure and its retry.
    image : str or None
        The container image of the pods (required with ``operator="kubernetes"``); it must
        hold nbtools and the project's dependencies.
    volume : str or None
        A PersistentVolumeClaim holding the project, mounted at ``commands.project`` in every
        pod; None when the image holds the project.
    monitor_current : str or None
        New data to check after each run (``nbtools monitor --current``); None adds no check.
    """

    commands: TaskCommands
    operator: Literal["bash", "kubernetes"] = "bash"
    schedule: str | None = None
    retries: int = 2
    retry_delay: int = 300
    image: str | None = None
    volume: str | None = None
    monitor_current: str | None = None


@dataclass(frozen=True)
class AirflowDag:
    """An exported DAG file and what its tasks need from where they run.

    Parameters
    ----------
    path : Path
        The DAG file written.
    dag_id : str
        The DAG's id in Airflow.
    worker_env : tuple of str
        Environment variables the Airflow workers must set (Bash operator): the secrets of
        pipeline.yaml and the notification webhook.
    pod_secrets : tuple of Secret
        The secrets each pod takes from a Kubernetes secret (Kubernetes pod operator).
    unreferenced : tuple of str
        Variables the pods need but pipeline.yaml gives no Kubernetes secret for (Kubernetes
        pod operator): the image or the cluster must provide them.
    """

    path: Path
    dag_id: str
    worker_env: tuple[str, ...] = ()
    pod_secrets: tuple[Secret, ...] = ()
    unreferenced: tuple[str, ...] = ()


def dag_id(pipeline: Pipeline) -> str:
    """Return the DAG id of ``pipeline``: ``nbtools_<name>`` with anything but letters, digits
    and ``_`` replaced by ``_``."""
    return "nbtools_" + re.sub(r"\W", "_", pipeline.name, flags=re.ASCII)


def needed_variables(pipeline: Pipeline) -> list[str]:
    """Return the environment variables the pipeline's tasks read: its secrets and the
    notification webhook, in declaration order."""
    names = list(pipeline.secrets)
    if pipeline.notify is not None and pipeline.notify.webhook not in names:
        names.append(pipeline.notify.webhook)
    return names


def export_airflow(pipeline: Pipeline, folder: Path, options: AirflowOptions) -> AirflowDag:
    """Write ``pipeline`` as an Airflow DAG file into ``folder``.

    Returns
    -------
    AirflowDag
        The file written and what its tasks need from the workers or the cluster.

    Raises
    ------
    PipelineSpecError
        When a stage's name cannot be an Airflow task id, or the options do not fit (a bad
        schedule, a negative retry count, the Kubernetes operator without an image).
    """
    source = render_dag(pipeline, options)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dag_id(pipeline)}.py"
    path.write_text(source, encoding="utf-8")
    if options.operator == "bash":
        return AirflowDag(path, dag_id(pipeline), worker_env=tuple(needed_variables(pipeline)))
    secrets = _pod_secrets(pipeline)
    given = {s.name for s in secrets}
    missing = tuple(n for n in needed_variables(pipeline) if n not in given)
    return AirflowDag(path, dag_id(pipeline), pod_secrets=tuple(secrets), unreferenced=missing)


def render_dag(pipeline: Pipeline, options: AirflowOptions) -> str:
    """Return the Python source of the DAG file for ``pipeline``.

    Raises
    ------
    PipelineSpecError
        As :func:`export_airflow`.
    """
    _check(pipeline, options)
    kubernetes = options.operator == "kubernetes"
    lines = [*_header(pipeline, options), *_imports(options), ""]
    lines += _constants(pipeline, options)
    lines += [
        "",
        "with DAG(",
        f"    dag_id={_q(dag_id(pipeline))},",
        f"    description={_q(f'nbtools pipeline {pipeline.name!r}, one task per stage')},",
        f"    schedule={_q(_schedule(options.schedule))},",
        "    catchup=False,",
        "    max_active_runs=1,",
        "    default_args={",
        f'        "retries": {options.retries},',
        f'        "retry_delay": timedelta(seconds={options.retry_delay}),',
        "    },",
        '    tags=["nbtools"],',
        ") as dag:",
    ]
    commands = options.commands
    lines += _task("start_run", commands.start(RUN_KEY), kubernetes)[1:]
    lines += ["", "    stages = {}"]
    for stage in pipeline.stages:
        lines += _task(
            stage.name,
            commands.stage(stage.name, RUN_KEY),
            kubernetes,
            target=f"stages[{_q(stage.name)}]",
            resources=stage.resources,
        )
    lines += _task("finish_run", commands.finish(RUN_KEY), kubernetes, trigger_rule="all_done")
    lines += ["", "    # Dependencies: each stage after the stages whose outputs it reads."]
    for stage in pipeline.stages:
        upstream = [f"stages[{_q(name)}]" for name in stage.inputs] or ["start_run"]
        lines.append(f"    {_list(upstream)} >> stages[{_q(stage.name)}]")
    leaves = [f"stages[{_q(name)}]" for name in _leaves(pipeline)]
    lines.append(f"    {_list(leaves)} >> finish_run")
    if options.monitor_current is not None:
        lines += _monitor(options.monitor_current, commands, kubernetes)
    return "\n".join(lines) + "\n"


def _check(pipeline: Pipeline, options: AirflowOptions) -> None:
    for stage in pipeline.stages:
        if not _TASK_ID.match(stage.name) or stage.name in HELPER_TASKS:
            raise PipelineSpecError(
                f"Stage '{stage.name}' cannot be exported as an Airflow task: a task id must be "
                f"letters, digits, '_' and '-', other than {', '.join(HELPER_TASKS)}. Rename the "
                "stage in pipeline.yaml."
            )
    if options.operator not in OPERATORS:
        raise PipelineSpecError(
            f"The Airflow operator must be one of {', '.join(OPERATORS)}. "
            f"Got {options.operator!r} instead."
        )
    if options.retries < 0 or options.retry_delay < 0:
        raise PipelineSpecError(
            "The retries and the retry delay of an Airflow export must be non-negative. "
            f"Got {options.retries} and {options.retry_delay} instead."
        )
    _schedule(options.schedule)
    if options.operator == "kubernetes" and not options.image:
        raise PipelineSpecError(
            "The Kubernetes pod operator needs the container image its pods run, holding "
            "nbtools and the project's dependencies. Pass --image."
        )
    if options.operator == "bash" and (options.image or options.volume):
        raise PipelineSpecError(
            "An image and a volume apply to the Kubernetes pod operator only; the Bash "
            "operator runs on the Airflow workers. Pass --operator kubernetes, or drop them."
        )


def _schedule(schedule: str | None) -> str | None:
    """Return the schedule as Airflow takes it, after checking it."""
    if schedule is None or schedule.strip().lower() == "none":
        return None
    text = " ".join(schedule.split())
    fields = text.split(" ")
    if text in SCHEDULE_PRESETS or (len(fields) == 5 and all(map(_CRON_FIELD.match, fields))):
        return text
    raise PipelineSpecError(
        f"The schedule must be a cron expression of five fields such as '0 3 * * *', one of "
        f"{', '.join(SCHEDULE_PRESETS)}, or none. Got {schedule!r} instead."
    )


def _header(pipeline: Pipeline, options: AirflowOptions) -> list[str]:
    commands = options.commands
    lines = [
        f'"""Airflow DAG {dag_id(pipeline)}: the nbtools pipeline {pipeline.name!r}.',
        "",
        f"Written by `nbtools export airflow` from {pipeline.project_dir / 'pipeline.yaml'};",
        "export again after changing the stages or their inputs.",
        "",
        "Each task runs the nbtools command line, so Airflow never imports nbtools:",
        f"  {'start_run':<15}{' '.join(commands.start('RUN_ID')[1:])}",
        f"  {'<stage>':<15}{' '.join(commands.stage('STAGE', 'RUN_ID')[1:])}",
        f"  {'finish_run':<15}{' '.join(commands.finish('RUN_ID')[1:])}",
    ]
    if options.monitor_current is not None:
        current = options.monitor_current
        lines += [
            f"  {'monitor_check':<15}{' '.join(commands.monitor(current, retrain=False)[1:])}",
            f"  {'retrain':<15}{' '.join(commands.monitor(current, retrain=True)[1:])}",
            f"  (retrain_due follows to retrain only when the check exits {EXIT_BREACH}, a breach)",
        ]
    lines += [
        "RUN_ID is Airflow's run id: a retried task finds the run it belongs to, every stage",
        "goes through nbtools' cache, and one run record and one MLflow parent run (a child per",
        "stage) record the DAG run. finish_run also runs after a failed stage.",
        "",
    ]
    variables = needed_variables(pipeline)
    if options.operator == "bash":
        lines += [
            "Tasks run with the Bash operator on the Airflow workers, which must see the project",
            f"folder at {commands.project} and the nbtools executable at {commands.nbtools}.",
        ]
        if variables:
            lines += [
                "The workers' environment must set these variables (their values never appear",
                "in this file):",
                *(f"  {name}" for name in variables),
            ]
        else:
            lines.append("The pipeline declares no secrets: no environment variables are needed.")
    else:
        lines += [
            f"Tasks run in Kubernetes pods of the image {options.image}, with the project at",
            f"{commands.project}"
            + (f" (volume claim {options.volume})." if options.volume else " (in the image)."),
        ]
        secrets = _pod_secrets(pipeline)
        if secrets:
            lines.append("Pods take these variables from Kubernetes secrets:")
            lines += [f"  {s.name} <- secret {s.kubernetes}, key {s.key}" for s in secrets]
        missing = [n for n in variables if n not in {s.name for s in secrets}]
        if missing:
            lines += [
                "pipeline.yaml names no Kubernetes secret for these variables, which the image",
                "or the cluster must provide:",
                *(f"  {name}" for name in missing),
            ]
    return [*lines, '"""', ""]


def _imports(options: AirflowOptions) -> list[str]:
    lines = [
        "from datetime import timedelta",
        "",
    ]
    if options.operator == "bash":
        lines.append("from airflow.providers.standard.operators.bash import BashOperator")
    else:
        lines += [
            "from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator",
            "from airflow.providers.cncf.kubernetes.secret import Secret",
        ]
    names = "DAG, task" if options.monitor_current is not None else "DAG"
    lines.append(f"from airflow.sdk import {names}")
    if options.operator == "kubernetes":
        lines.append("from kubernetes.client import models as k8s")
    return lines


def _constants(pipeline: Pipeline, options: AirflowOptions) -> list[str]:
    if options.operator == "bash":
        return []
    project = options.commands.project
    lines = [
        "# What every pod shares: the image, the project folder and the secrets by reference.",
        "POD = {",
        f'    "image": {_q(options.image)},',
    ]
    if options.volume:
        lines += [
            '    "volumes": [',
            "        k8s.V1Volume(",
            '            name="project",',
            "            persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(",
            f"                claim_name={_q(options.volume)}",
            "            ),",
            "        )",
            "    ],",
            f'    "volume_mounts": [k8s.V1VolumeMount(name="project", mount_path={_q(project)})],',
        ]
    secrets = _pod_secrets(pipeline)
    if secrets:
        lines.append('    "secrets": [')
        lines += [
            f'        Secret("env", {_q(s.name)}, {_q(s.kubernetes)}, {_q(s.key)}),'
            for s in secrets
        ]
        lines.append("    ],")
    return [*lines, '    "get_logs": True,', "}"]


def _task(
    task_id: str,
    command: list[str],
    kubernetes: bool,
    *,
    target: str | None = None,
    resources: Resources | None = None,
    trigger_rule: str | None = None,
) -> list[str]:
    lines = [""]
    if resources and not kubernetes:
        lines.append(f"    # pipeline.yaml asks for {_describe(resources)}.")
    lines += [
        f"    {target or task_id} = {_operator(kubernetes)}(",
        f"        task_id={_q(task_id)},",
    ]
    if kubernetes:
        lines += [
            f"        cmds={_q(command[:1])},",
            f"        arguments={_q(command[1:])},",
        ]
        if resources:
            lines += _container_resources(resources)
    else:
        lines.append(f"        bash_command={_q(shell(command))},")
    if trigger_rule is not None:
        lines.append(f"        trigger_rule={_q(trigger_rule)},")
    if kubernetes:
        lines.append("        **POD,")
    return [*lines, "    )"]


def _monitor(current: str, commands: TaskCommands, kubernetes: bool) -> list[str]:
    check = shell(commands.monitor(current, retrain=False))
    # The check's exit status goes to XCom (the Bash operator pushes its last line; a pod
    # writes Airflow's XCom file); any status but "nothing due" and "breach" fails the task.
    report = "echo $status > /airflow/xcom/return.json" if kubernetes else "echo $status"
    script = f"{check}; status=$?; {report}; [ $status -eq 0 ] || [ $status -eq {EXIT_BREACH} ]"
    lines = [
        "",
        "    # Monitoring after a successful run: check the new data against the champion, and",
        f"    # retrain only when the check exits {EXIT_BREACH} (a breach of the retraining rule).",
    ]
    if kubernetes:
        lines += [
            "    monitor_check = KubernetesPodOperator(",
            '        task_id="monitor_check",',
            '        cmds=["/bin/sh", "-c"],',
            f"        arguments=[{_q(script)}],",
            "        do_xcom_push=True,",
            "        **POD,",
            "    )",
        ]
    else:
        lines += [
            "    monitor_check = BashOperator(",
            '        task_id="monitor_check",',
            f"        bash_command={_q(script)},",
            "    )",
        ]
    lines += [
        "",
        '    @task.branch(task_id="retrain_due")',
        "    def retrain_due(status):",
        f'        """Follow to retrain when the check exited {EXIT_BREACH}; skip it otherwise."""',
        f'        return "retrain" if int(status) == {EXIT_BREACH} else None',
    ]
    lines += _task("retrain", commands.monitor(current, retrain=True), kubernetes)
    lines += [
        "",
        "    finish_run >> monitor_check",
        "    retrain_due(monitor_check.output) >> retrain",
    ]
    return lines


def _container_resources(resources: Resources) -> list[str]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if resources.cpu is not None:
        requests["cpu"] = f"{resources.cpu:g}"
    if resources.memory is not None:
        requests["memory"] = limits["memory"] = resources.memory
    if resources.gpu:
        limits["nvidia.com/gpu"] = str(resources.gpu)
    lines = ["        container_resources=k8s.V1ResourceRequirements("]
    if requests:
        lines.append(f"            requests={_q(requests)},")
    if limits:
        lines.append(f"            limits={_q(limits)},")
    return [*lines, "        ),"]


def _pod_secrets(pipeline: Pipeline) -> list[Secret]:
    return [s for s in pipeline.secrets.values() if s.kubernetes is not None]


def _leaves(pipeline: Pipeline) -> list[str]:
    """The stages no other stage reads from, in run order."""
    read = {name for stage in pipeline.stages for name in stage.inputs}
    return [stage.name for stage in pipeline.stages if stage.name not in read]


def _describe(resources: Resources) -> str:
    parts = [] if resources.cpu is None else [f"cpu {resources.cpu:g}"]
    parts += [] if resources.memory is None else [f"memory {resources.memory}"]
    parts += [f"gpu {resources.gpu}"] if resources.gpu else []
    return ", ".join(parts) + ": give it a worker (a queue or a pool) that has them"


def _operator(kubernetes: bool) -> str:
    return "KubernetesPodOperator" if kubernetes else "BashOperator"


def _list(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"[{', '.join(items)}]"


def _q(value: object) -> str:
    """``value`` as a Python literal, strings in double quotes where they hold none."""
    if isinstance(value, str):
        text = repr(value)
        if text.startswith("'") and '"' not in value:
            text = '"' + text[1:-1].replace("\\'", "'") + '"'
        return text
    if isinstance(value, list):
        return "[" + ", ".join(map(_q, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_q(k)}: {_q(v)}" for k, v in value.items()) + "}"
    return repr(value)
