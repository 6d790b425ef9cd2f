"""``nbtools export kubeflow``: the compiled KFP v2 IR YAML, as the KFP SDK writes it.

No Kubeflow cluster is available here: the export is compiled with the real KFP SDK (in an
environment of its own, as its pins of protobuf and requests ask) and the compiled spec is
inspected; it is not run on Kubeflow.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from nbtools.cli import cli

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TOKEN = "s3cr3t-warehouse-token-4711"
STAGES = """
produce: {notebook: produce.ipynb}
left:
  notebook: consume.ipynb
  inputs: [produce]
  resources: {cpu: 0.5, memory: 1.5Gi}
right:
  notebook: consume.ipynb
  inputs: [produce]
  resources: {cpu: 2, memory: 4Gi, gpu: 1}
report: {notebook: consume.ipynb, inputs: [left, right]}
"""
SECRETS = """
secrets:
  WAREHOUSE_TOKEN: {kubernetes: warehouse, key: token}
  NBTOOLS_WEBHOOK_URL: {kubernetes: alerts}
notify: {webhook: NBTOOLS_WEBHOOK_URL}
profiles:
  smoke: {produce.rows: 3}
"""


@pytest.fixture(scope="module")
def kfp_python(extra_venv) -> str:
    """A Python with the KFP SDK, installed as the ``kubeflow`` extra asks."""
    return str(extra_venv("kfp", "kfp>=2.17", "kfp-kubernetes>=2.17") / "python")


def export(project: Path, *args: str) -> Any:
    return CliRunner().invoke(
        cli,
        ["export", "kubeflow", "--project", str(project), "--image", "reg.example/nbtools:1",
         "--volume", "fixture-pvc", *args],
    )  # fmt: skip


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, kfp_python) -> tuple[Path, dict, dict, str]:
    """Export the fixture project once, with the secret's value in the environment; return its
    folder, the IR, its platform spec and the command's output."""
    project = tmp_path_factory.mktemp("kubeflow") / "project"
    project.mkdir()
    for name in ("produce.ipynb", "consume.ipynb"):
        shutil.copy(NOTEBOOKS / name, project / name)
    stages = textwrap.indent(STAGES.strip(), "  ")
    (project / "pipeline.yaml").write_text(f"name: fixture\n{SECRETS}\nstages:\n{stages}\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WAREHOUSE_TOKEN", TOKEN)
        result = export(
            project, "--profile", "smoke", "-p", "left.factor=3", "--kfp-python", kfp_python
        )
    assert result.exit_code == 0, result.output
    spec, platform = yaml.safe_load_all((project / "export/kubeflow/pipeline.yaml").read_text())
    return project, spec, platform["platforms"]["kubernetes"], result.output


def test_one_task_per_stage_between_start_and_a_finish_that_always_runs(compiled) -> None:
    project, spec, _, output = compiled
    assert f"Wrote {project / 'export/kubeflow/pipeline.yaml'}" in output
    run = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    names = {task: body["taskInfo"]["name"] for task, body in run.items()}
    assert names == {
        "start": "start",
        "stage-produce": "produce",
        "stage-left": "left",
        "stage-right": "right",
        "stage-report": "report",
    }
    depends = {
        names[t]: sorted(names[d] for d in b.get("dependentTasks", [])) for t, b in run.items()
    }
    assert depends == {
        "start": [],
        "produce": ["start"],
        "left": ["produce"],
        "right": ["produce"],
        "report": ["left", "right"],
    }
    # finish waits for the whole run and runs whatever its tasks ended with
    finish = spec["root"]["dag"]["tasks"]["finish"]
    assert finish["dependentTasks"] == ["exit-handler-1"]
    assert finish["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert spec["pipelineInfo"]["name"] == "fixture"


def test_each_task_runs_nbtools_task_in_the_image_keyed_by_the_job_name(compiled) -> None:
    _, spec, _, _ = compiled
    executors = spec["deploymentSpec"]["executors"]
    key = "{{$.inputs.parameters['key']}}"
    head = ["nbtools", "task"]
    commands = {name: e["container"]["command"] for name, e in executors.items()}
    assert commands["exec-start"] == [
        *head, "start", "--project", "/project", "--key", key,
        "--profile", "smoke", "-p", "left.factor=3",
    ]  # fmt: skip
    assert commands["exec-stage-report"] == [
        *head, "stage", "--project", "/project", "report", "--key", key
    ]  # fmt: skip
    assert commands["exec-finish"] == [*head, "finish", "--project", "/project", "--key", key]
    assert {e["container"]["image"] for e in executors.values()} == {"reg.example/nbtools:1"}
    tasks = [*spec["components"]["comp-exit-handler-1"]["dag"]["tasks"].values()]
    tasks.append(spec["root"]["dag"]["tasks"]["finish"])
    job_name = {t["inputs"]["parameters"]["key"]["runtimeValue"]["constant"] for t in tasks}
    assert job_name == {"{{$.pipeline_job_name}}"}


def test_resources_reach_their_stage_only(compiled) -> None:
    _, spec, _, _ = compiled
    executors = spec["deploymentSpec"]["executors"]
    resources = {n: e["container"].get("resources") for n, e in executors.items()}
    left, right = resources["exec-stage-left"], resources["exec-stage-right"]
    assert (left["resourceCpuLimit"], left["resourceCpuRequest"]) == ("500m", "500m")
    assert left["resourceMemoryLimit"] == str(int(1.5 * 2**30))
    assert "accelerator" not in left
    assert (right["resourceCpuLimit"], right["resourceMemoryRequest"]) == ("2", "4Gi")
    assert right["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert right["accelerator"]["resourceCount"] == "1"
    without = {n for n, r in resources.items() if r is None}
    assert without == {"exec-start", "exec-stage-produce", "exec-stage-report", "exec-finish"}


def test_every_task_mounts_the_project_and_takes_secrets_by_reference(compiled) -> None:
    project, _, platform, _ = compiled
    executors = platform["deploymentSpec"]["executors"]
    assert len(executors) == 6  # start, four stages, finish
    for name, executor in executors.items():
        assert [(m["constant"], m["mountPath"]) for m in executor["pvcMount"]] == [
            ("fixture-pvc", "/project")
        ], name
        references = {
            (s["secretName"], k["secretKey"], k["envVar"])
            for s in executor["secretAsEnv"]
            for k in s["keyToEnv"]
        }
        assert references == {
            ("warehouse", "token", "WAREHOUSE_TOKEN"),
            ("alerts", "NBTOOLS_WEBHOOK_URL", "NBTOOLS_WEBHOOK_URL"),
        }, name
    written = sorted(p.name for p in (project / "export/kubeflow").iterdir())
    assert written == ["pipeline.py", "pipeline.yaml"]
    for path in (project / "export/kubeflow").iterdir():
        assert TOKEN not in path.read_text(), path


def test_a_secret_without_a_kubernetes_reference_is_refused(make_project, tmp_path) -> None:
    project = make_project(STAGES, "secrets:\n  WAREHOUSE_TOKEN: {}\n")
    result = export(project, "--kfp-python", sys.executable)
    assert result.exit_code == 2
    assert "Secret 'WAREHOUSE_TOKEN'" in result.output
    assert "{kubernetes: SECRET, key: KEY}" in result.output
    assert not (project / "export").exists()


def test_a_webhook_that_secrets_do_not_declare_is_refused(make_project) -> None:
    project = make_project(STAGES, "notify: {webhook: NBTOOLS_WEBHOOK_URL}\n")
    result = export(project, "--kfp-python", sys.executable)
    assert result.exit_code == 2
    assert "'NBTOOLS_WEBHOOK_URL: {kubernetes: SECRET}' under 'secrets'" in result.output


def test_a_python_without_the_sdk_names_the_extra(make_project, tmp_path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    project = make_project(STAGES)
    result = export(project, "--kfp-python", str(bare / "bin" / "python"))
    assert result.exit_code == 1
    assert "pip install 'nbtools[kubeflow]'" in result.output
    assert not (project / "export").exists()
