"""The schedule as a Kubernetes ``batch/v1`` CronJob.

Each scheduled run is one pod running the same command as a crontab entry (``nbtools run``, or
``nbtools monitor``) in a container whose image has nbtools and the project's stack installed.
The project folder, with its run records, stage cache and MLflow store, lives on a
PersistentVolumeClaim mounted at the project path, so one run continues where the last one
left off; ``concurrencyPolicy: Forbid`` keeps two runs from writing it at once. Every secret of
``pipeline.yaml`` reaches the container as an environment variable taken from the Kubernetes
secret it names (``valueFrom.secretKeyRef``): the manifest never holds a value. The pod asks
for the largest ``resources`` any stage declares, as requests and limits.
"""

from __future__ import annotations

import io
import re
from pathlib import PurePosixPath
from typing import Any

from ruamel.yaml import YAML

from nbtools.errors import InvalidParameterError, PipelineSpecError
from nbtools.ops.scheduling.schedule import Schedule
from nbtools.pipeline.deployment import Resources
from nbtools.pipeline.spec import Pipeline

#: Kubernetes' longest CronJob name (its Jobs add an 11-character suffix within 63).
MAX_NAME = 52
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def job_name(pipeline: str, command: str) -> str:
    """Return the name ``nbtools-<pipeline>-<command>`` in Kubernetes' spelling and length."""
    base = re.sub(r"[^a-z0-9]+", "-", pipeline.lower()).strip("-") or "pipeline"
    suffix = f"-{command}"
    return f"nbtools-{base}"[: MAX_NAME - len(suffix)].rstrip("-") + suffix


def largest_resources(pipeline: Pipeline) -> Resources:
    """Return the largest CPU, memory and GPU count that any stage declares (each on its own)."""
    declared = [s.resources for s in pipeline.stages]
    cpus = [r.cpu for r in declared if r.cpu is not None]
    memories = [r for r in declared if r.memory is not None]
    return Resources(
        cpu=max(cpus) if cpus else None,
        memory=max(memories, key=lambda r: r.memory_bytes or 0).memory if memories else None,
        gpu=max((r.gpu for r in declared), default=0),
    )


def secret_env(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Return the container's ``env``: each secret by reference to its Kubernetes secret.

    Raises
    ------
    PipelineSpecError
        When a secret does not say which Kubernetes secret holds it: the pod would run without
        the variable and fail (or, for MLflow's credentials, be refused) at every run.
    """
    unplaced = [s.name for s in pipeline.secrets.values() if s.kubernetes is None]
    if unplaced:
        raise PipelineSpecError(
            f"A Kubernetes CronJob takes every secret from a Kubernetes secret, but "
            f"{', '.join(unplaced)} in the 'secrets' section of pipeline.yaml "
            f"{'names' if len(unplaced) == 1 else 'name'} none. Add it, such as "
            f"'{unplaced[0]}: {{kubernetes: SECRET, key: KEY}}' (key defaults to the "
            "variable's name), and create that secret in the namespace of the CronJob."
        )
    return [
        {
            "name": secret.name,
            "valueFrom": {"secretKeyRef": {"name": secret.kubernetes, "key": secret.key}},
        }
        for secret in pipeline.secrets.values()
    ]


def webhook_warning(pipeline: Pipeline) -> str | None:
    """Return what the CronJob will lack though it runs (the notification webhook's variable,
    when ``secrets`` does not declare it), or None."""
    notify = pipeline.notify
    if notify is None or notify.webhook in pipeline.secrets:
        return None
    return (
        f"The notification webhook's variable {notify.webhook} is not among the 'secrets' of "
        "pipeline.yaml, so the CronJob cannot set it and posts no notification. Declare it "
        f"as '{notify.webhook}: {{kubernetes: SECRET}}' under 'secrets'."
    )


def cronjob_manifest(
    pipeline: Pipeline,
    schedule: Schedule,
    *,
    image: str,
    volume: str,
    project_path: str = "/project",
) -> dict[str, Any]:
    """Return the CronJob manifest that runs ``schedule`` in a container.

    Parameters
    ----------
    pipeline : Pipeline
        The project's pipeline: its name, secrets and stage resources.
    schedule : Schedule
        A checked schedule (:meth:`Schedule.check`).
    image : str
        The container image, with nbtools and the stages' packages installed.
    volume : str
        The PersistentVolumeClaim that holds the project folder.
    project_path : str
        Where the claim is mounted in the container, an absolute path.

    Raises
    ------
    InvalidParameterError
        For an empty image, a claim name Kubernetes refuses or a relative project path.
    PipelineSpecError
        For a secret without a Kubernetes reference (:func:`secret_env`).
    """
    if not image.strip():
        raise InvalidParameterError("The CronJob needs a container image. Got '' instead.")
    if not _DNS_NAME.match(volume) or len(volume) > 253:
        raise InvalidParameterError(
            "The PersistentVolumeClaim name must be lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit. Got {volume!r} instead."
        )
    if not PurePosixPath(project_path).is_absolute():
        raise InvalidParameterError(
            f"The project path in the container must be absolute, such as /project. "
            f"Got {project_path!r} instead."
        )
    name = job_name(pipeline.name, schedule.command)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "nbtools"}
    container: dict[str, Any] = {
        "name": schedule.command,
        "image": image,
        "command": schedule.argv("nbtools", project_path),
        "workingDir": project_path,
        "volumeMounts": [{"name": "project", "mountPath": project_path}],
    }
    env = secret_env(pipeline)
    if env:
        container["env"] = env
    resources = _resources(largest_resources(pipeline))
    if resources:
        container["resources"] = {"requests": resources, "limits": dict(resources)}
    pod = {
        "metadata": {"labels": dict(labels)},
        "spec": {
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": [{"name": "project", "persistentVolumeClaim": {"claimName": volume}}],
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "schedule": schedule.expression,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            # a failed run is not retried on its own: it is recorded, and the next one follows
            "jobTemplate": {"spec": {"backoffLimit": 0, "template": pod}},
        },
    }


def render(manifest: dict[str, Any]) -> str:
    """Return ``manifest`` as YAML."""
    yaml = YAML()
    yaml.default_flow_style = False
    buffer = io.StringIO()
    yaml.dump(manifest, buffer)
    return buffer.getvalue()


def _resources(resources: Resources) -> dict[str, Any]:
    quantities: dict[str, Any] = {}
    if resources.cpu is not None:
        cpu = resources.cpu
        quantities["cpu"] = str(int(cpu)) if float(cpu).is_integer() else f"{round(cpu * 1000)}m"
    if resources.memory is not None:
        quantities["memory"] = resources.memory
    if resources.gpu:
        quantities["nvidia.com/gpu"] = resources.gpu
    return quantities
