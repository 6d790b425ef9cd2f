"""The Kubeflow Pipelines v2 export: the pipeline as KFP's compiled IR YAML.

Each stage becomes a container component running ``nbtools task stage STAGE`` in the project's
image; ``nbtools task start`` runs first, and ``nbtools task finish`` runs last under a
``dsl.ExitHandler``, so it closes the run even when a stage failed. Every task names the run by
the KFP pipeline job's name, mounts the PersistentVolumeClaim holding the project (its runs,
cache and MLflow store are shared by all the pods) and takes the pipeline's secrets from
Kubernetes secrets, by reference only. A stage's ``resources`` become its pod's requests and
limits, and its GPUs a ``nvidia.com/gpu`` accelerator.

The KFP SDK pins versions of protobuf and requests that need not agree with nbtools' own
environment, so the export writes the pipeline as a KFP program (``pipeline.py``) and compiles it
with a Python that has ``kfp`` and ``kfp-kubernetes``: this one, or another one named.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nbtools.errors import ExportError, PipelineSpecError
from nbtools.ops.exports.commands import TaskCommands, parameters_as_typed
from nbtools.pipeline.deployment import Resources
from nbtools.pipeline.spec import Pipeline, load_pipeline

#: What the export writes into its folder: the KFP program and the IR YAML compiled from it.
PROGRAM_FILE = "pipeline.py"
COMPILED_FILE = "pipeline.yaml"
#: The extra that installs the KFP SDK.
EXTRA = "pip install 'nbtools[kubeflow]'"
_GPU = "nvidia.com/gpu"
# Stands for the run key in TaskCommands' argument lists; the program passes the job's name.
_KEY = "\0key"
_PROBE = "import kfp.compiler, kfp.kubernetes; print(kfp.__version__)"


@dataclass(frozen=True)
class KubeflowTarget:
    """Where the exported pipeline runs on Kubeflow.

    Parameters
    ----------
    image : str
        The container image holding nbtools and the project's dependencies.
    volume : str
        The PersistentVolumeClaim holding the project folder, shared by every task's pod.
    project_path : str
        Where the claim is mounted in the pods, and so the project's folder there.
    """

    image: str
    volume: str
    project_path: str = "/project"


def export_kubeflow(
    project_dir: str | Path,
    out_dir: str | Path | None,
    target: KubeflowTarget,
    *,
    profile: str | None = None,
    params: Iterable[str] = (),
    python: str | None = None,
) -> list[Path]:
    """Write the project's pipeline as a Kubeflow Pipelines v2 program and its compiled IR YAML.

    Parameters
    ----------
    project_dir : str or Path
        The project folder (or a folder inside it).
    out_dir : str or Path or None
        The folder to write into; None: ``export/kubeflow`` in the project.
    target : KubeflowTarget
        The image, the volume and the mount path of the project.
    profile : str or None
        The parameter profile every run of the exported pipeline uses.
    params : iterable of str
        ``NAME=VALUE`` or ``STAGE.NAME=VALUE`` overrides every run uses.
    python : str or None
        The Python that compiles the program: it must have ``kfp`` and ``kfp-kubernetes``.
        None: this one.

    Returns
    -------
    list of Path
        The files written: the program, then the compiled IR YAML.

    Raises
    ------
    PipelineSpecError
        When a secret has no Kubernetes reference to take it from.
    InvalidParameterError
        For an unknown profile or a parameter override the pipeline refuses.
    ExportError
        When ``python`` lacks the KFP SDK or the SDK refuses the pipeline.
    """
    pipeline = load_pipeline(project_dir)
    as_given = parameters_as_typed(params, pipeline=pipeline, profile=profile)
    commands = TaskCommands("nbtools", target.project_path, profile=profile, params=as_given)
    program_text = kfp_program(pipeline, target, commands)
    compiler = python or sys.executable
    _check_sdk(compiler)
    out = Path(out_dir) if out_dir is not None else pipeline.project_dir / "export" / "kubeflow"
    out.mkdir(parents=True, exist_ok=True)
    program, compiled = out / PROGRAM_FILE, out / COMPILED_FILE
    program.write_text(program_text, encoding="utf-8")
    done = subprocess.run(
        [compiler, str(program), str(compiled)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ExportError(
            f"The KFP SDK refused the pipeline written to {program}:\n{done.stderr.strip()[-2000:]}"
        )
    return [program, compiled]


def kfp_program(pipeline: Pipeline, target: KubeflowTarget, commands: TaskCommands) -> str:
    """Return the KFP v2 program (Python source) of ``pipeline``.

    Run as ``python pipeline.py OUTPUT.yaml``, it compiles itself to KFP's IR YAML.

    Raises
    ------
    PipelineSpecError
        When a secret has no Kubernetes reference.
    """
    secrets = kubernetes_secrets(pipeline)
    components = [_component("start", commands.start(_KEY))]
    components += [_component(_name(s.name), commands.stage(s.name, _KEY)) for s in pipeline.stages]
    components.append(_component("finish", commands.finish(_KEY)))
    body = []
    for stage in pipeline.stages:
        name = _name(stage.name)
        after = ", ".join(f"{_name(i)}_task" for i in stage.inputs) or "start_task"
        body.append(
            f"        {name}_task = _task({name}(key=key), {stage.name!r}"
            f"{_resources(stage.resources)}).after({after})"
        )
    return _PROGRAM.format(
        header=f"Kubeflow Pipelines v2 program of the nbtools pipeline {pipeline.name!r}.",
        image=target.image,
        volume=target.volume,
        mount=target.project_path,
        secrets=secrets,
        components="\n\n".join(components),
        name=kfp_name(pipeline.name),
        stages="\n".join(body),
        gpu_type=_GPU,
    )


def kubernetes_secrets(pipeline: Pipeline) -> list[tuple[str, str, str]]:
    """List the secrets every task takes, as (Kubernetes secret, key in it, variable).

    Raises
    ------
    PipelineSpecError
        When a secret (or the notification webhook) has no Kubernetes reference, so a pod
        could not get it.
    """
    found = []
    for secret in pipeline.secrets.values():
        if secret.kubernetes is None:
            raise PipelineSpecError(
                f"Secret '{secret.name}' in {pipeline.project_dir / 'pipeline.yaml'} has no "
                "Kubernetes reference, so the Kubeflow pods cannot get it. Name the Kubernetes "
                f"secret that holds it: '{secret.name}: {{kubernetes: SECRET, key: KEY}}' "
                f"(key defaults to {secret.name})."
            )
        found.append((secret.kubernetes, secret.key, secret.name))
    webhook = pipeline.notify.webhook if pipeline.notify is not None else None
    if webhook is not None and webhook not in pipeline.secrets:
        raise PipelineSpecError(
            f"'notify.webhook' names {webhook}, which the 'secrets' section of pipeline.yaml "
            "does not declare, so the Kubeflow pods cannot get it. Add "
            f"'{webhook}: {{kubernetes: SECRET}}' under 'secrets'."
        )
    return found


def kfp_name(name: str) -> str:
    """Return ``name`` as a KFP pipeline name: lowercase letters, digits and hyphens."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return (cleaned or "pipeline")[:128]


def _check_sdk(python: str) -> None:
    try:
        probe = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ExportError(f"Cannot run the Python {python!r} that should compile: {exc}.") from exc
    if probe.returncode != 0:
        raise ExportError(
            f"The Kubeflow export compiles with the KFP SDK (kfp and kfp-kubernetes), which "
            f"the Python {python} does not have. Install it with `{EXTRA}`, or (the SDK pins "
            "protobuf and requests) into an environment of its own and name that environment's "
            "Python: `nbtools export kubeflow --kfp-python PYTHON` or NBTOOLS_KFP_PYTHON."
        )


def _name(stage: str) -> str:
    return "stage_" + re.sub(r"\W", "_", stage)


def _component(name: str, command: list[str]) -> str:
    words = ", ".join("key" if w == _KEY else repr(w) for w in command)
    return (
        "@dsl.container_component\n"
        f"def {name}(key: str):\n"
        f"    return dsl.ContainerSpec(image=IMAGE, command=[{words}])"
    )


def _resources(resources: Resources) -> str:
    """The keyword arguments of ``_task`` that set the stage's resources."""
    cpu, whole = None, resources.cpu
    if whole is not None:  # whole cores, or millicores
        cpu = str(int(whole)) if float(whole).is_integer() else f"{round(whole * 1000)}m"
    memory = resources.memory
    if memory is not None and "." in memory:  # KFP takes whole numbers only
        memory = str(resources.memory_bytes)
    chosen = {"cpu": cpu, "memory": memory, "gpu": resources.gpu or None}
    return "".join(f", {k}={v!r}" for k, v in chosen.items() if v is not None)


_PROGRAM = '''"""{header}

Written by `nbtools export kubeflow`; compile it with `python pipeline.py pipeline.yaml` in a
Python that has kfp and kfp-kubernetes.
"""

import sys

from kfp import compiler, dsl, kubernetes

IMAGE = {image!r}
VOLUME = {volume!r}
MOUNT = {mount!r}
#: (Kubernetes secret, key in it, environment variable): references, never values.
SECRETS = {secrets!r}


{components}


def _task(task, name, cpu=None, memory=None, gpu=0):
    """Name the task, mount the project, pass the secrets, set the pod's resources."""
    task.set_display_name(name)
    task.set_caching_options(False)  # nbtools' own cache decides what to reuse
    kubernetes.mount_pvc(task, pvc_name=VOLUME, mount_path=MOUNT)
    for secret, key, variable in SECRETS:
        kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env={{key: variable}})
    if cpu is not None:
        task.set_cpu_request(cpu).set_cpu_limit(cpu)
    if memory is not None:
        task.set_memory_request(memory).set_memory_limit(memory)
    if gpu:
        task.set_accelerator_type({gpu_type!r}).set_accelerator_limit(gpu)
    return task


@dsl.pipeline(name={name!r})
def pipeline():
    key = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
    finish_task = _task(finish(key=key), "finish")
    with dsl.ExitHandler(finish_task, name="run"):
        start_task = _task(start(key=key), "start")
{stages}


if __name__ == "__main__":
    compiler.Compiler().compile(pipeline, package_path=sys.argv[1])
'''
