"""``nbtools export airflow``: the DAG file it writes, and that DAG run by Airflow 3 itself.

The first tests read the rendered DAG without Airflow. The ``airflow`` tests build Airflow 3
(with the Kubernetes provider) in a virtual environment of its own, as a team installs it, with
its home, database, logs and DAG folder in the test's temporary folder; they take about a
minute and a half: deselect them with ``-m "not airflow"`` while iterating on other things.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from nbtools.cli import cli
from nbtools.errors import PipelineSpecError
from nbtools.ops.exports.airflow import AirflowOptions, render_dag
from nbtools.ops.exports.commands import TaskCommands
from nbtools.pipeline.spec import load_pipeline

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = ("apache-airflow==3.3.2", "apache-airflow-providers-cncf-kubernetes==10.25.0")
TWO_STAGES = """
produce: {notebook: produce.ipynb, resources: {cpu: 2, memory: 4Gi, gpu: 1}}
consume: {notebook: consume.ipynb, inputs: [produce]}
"""
SECRETS = """
secrets:
  WAREHOUSE_TOKEN: {kubernetes: warehouse, key: token}
  MLFLOW_TRACKING_PASSWORD: {}
notify:
  webhook: NBTOOLS_WEBHOOK_URL
"""


def export(project: Path, *args: str) -> tuple[str, str]:
    """Run ``nbtools export airflow``; return (its output, the DAG file's source)."""
    folder = project.parent / "dags"
    result = CliRunner().invoke(
        cli,
        ["export", "airflow", str(folder), "--project", str(project), *args],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.output, (folder / "nbtools_fixture.py").read_text()


# -- the rendered DAG, without Airflow ---------------------------------------------------------


def test_bash_dag_runs_one_task_per_stage_and_names_the_variables_not_their_values(
    make_project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAREHOUSE_TOKEN", "s3cr3t-value")
    project = make_project(TWO_STAGES, SECRETS)
    output, source = export(project, "--retries", "4", "--retry-delay", "30", "-p", "rows=5")
    compile(source, "nbtools_fixture.py", "exec")
    assert "s3cr3t-value" not in source and "s3cr3t-value" not in output
    variables = "WAREHOUSE_TOKEN, MLFLOW_TRACKING_PASSWORD, NBTOOLS_WEBHOOK_URL"
    assert f"Set these environment variables on the Airflow workers: {variables}" in output
    header = source.split('"""')[1]
    assert all(f"\n  {name}\n" in header for name in variables.split(", "))
    assert "import nbtools" not in source
    stage_command = f"nbtools task stage --project {project} produce --key '{{{{ run_id }}}}'"
    assert stage_command in source
    assert source.count("BashOperator(") == 4  # start, two stages, finish
    assert "-p rows=5" in source
    assert '"retries": 4' in source and "timedelta(seconds=30)" in source
    assert 'start_run >> stages["produce"]' in source
    assert 'stages["produce"] >> stages["consume"]' in source
    assert 'stages["consume"] >> finish_run' in source
    assert 'trigger_rule="all_done"' in source
    assert "schedule=None" in source
    assert "monitor_check" not in source


def test_a_schedule_is_a_cron_expression_a_preset_or_none(make_project) -> None:
    pipeline = load_pipeline(make_project(TWO_STAGES))
    commands = TaskCommands("nbtools", "/project")
    for given, rendered in [("0 3 * * 1-5", '"0 3 * * 1-5"'), ("@daily", '"@daily"')]:
        source = render_dag(pipeline, AirflowOptions(commands, schedule=given))
        assert f"schedule={rendered}," in source
    with pytest.raises(PipelineSpecError, match="cron expression of five fields"):
        render_dag(pipeline, AirflowOptions(commands, schedule="every day"))


def test_bad_input_is_refused_before_anything_is_written(make_project) -> None:
    project = make_project(TWO_STAGES)
    folder = project.parent / "dags"
    runner = CliRunner()
    for args, message in [
        (["-p", "nope=1"], "No stage declares a parameter 'nope'"),
        (["--profile", "full"], "has no profile 'full'"),
        (["--operator", "kubernetes"], "Pass --image"),
        (["--volume", "claim"], "Kubernetes pod operator only"),
    ]:
        result = runner.invoke(
            cli, ["export", "airflow", str(folder), "--project", str(project), *args]
        )
        assert result.exit_code == 2, result.output
        assert message in result.output
    assert not folder.exists()


def test_a_stage_named_like_a_dag_task_is_refused(make_project) -> None:
    pipeline = load_pipeline(make_project("retrain: {notebook: produce.ipynb}"))
    with pytest.raises(PipelineSpecError, match="Stage 'retrain' cannot be exported"):
        render_dag(pipeline, AirflowOptions(TaskCommands("nbtools", "/project")))


# -- Airflow 3 itself ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def airflow_bin(extra_venv: Callable[..., Path]) -> Path:
    """Airflow 3 and its Kubernetes provider, in a virtual environment of their own."""
    return extra_venv("airflow", *AIRFLOW)


@pytest.fixture(scope="module")
def airflow_db(airflow_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow metadata database (SQLite) migrated once; each test runs on a copy."""
    home = tmp_path_factory.mktemp("airflow-template")
    airflow(airflow_bin, home, "db", "migrate")
    return home / "airflow.db"


def airflow(bin_dir: Path, home: Path, *args: str, **env: str) -> str:
    """Run the ``airflow`` command with its home, DAG folder and logs in ``home``."""
    environment = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "HOME": str(home),
        "PYTHONPATH": str(REPO),  # the tasks' nbtools is this checkout's, as installed
        **env,
    }
    done = subprocess.run(
        [str(bin_dir / "airflow"), *args], env=environment, capture_output=True, text=True
    )
    assert done.returncode == 0, (
        f"airflow {args} failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}"
    )
    return done.stdout


def airflow_home(tmp_path: Path, airflow_db: Path, dag: str) -> Path:
    """A fresh Airflow home holding a migrated database and the exported DAG ``dag``."""
    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    shutil.copy(airflow_db, home / "airflow.db")
    shutil.copy(tmp_path / "dags" / dag, home / "dags" / dag)
    return home


def task_states(home: Path, dag_id: str) -> dict[str, dict[str, str]]:
    """Airflow's record of each DAG run: run id to {task id: state}, oldest run first."""
    with sqlite3.connect(home / "airflow.db") as db:
        runs = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id", (dag_id,)
        ).fetchall()
        return {
            run: dict(
                db.execute(
                    "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
                    (dag_id, run),
                ).fetchall()
            )
            for (run,) in runs
        }


@pytest.mark.airflow
def test_the_kubernetes_dag_loads_in_airflow_with_resources_secrets_image_and_volume(
    make_project, airflow_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAREHOUSE_TOKEN", "s3cr3t-value")
    project = make_project(TWO_STAGES, SECRETS)
    args = ["--operator", "kubernetes", "--image", "registry.example/churn:1.2"]
    args += ["--volume", "churn-project", "--project-path", "/srv/churn"]
    output, source = export(project, *args, "--monitor-current", "new.csv")
    assert "s3cr3t-value" not in source
    assert "Pods take WAREHOUSE_TOKEN from Kubernetes secret warehouse, key token" in output
    assert "MLFLOW_TRACKING_PASSWORD, NBTOOLS_WEBHOOK_URL: the image or the cluster" in output
    # Airflow's own Python imports the DAG; without nbtools on its path, an import would fail.
    probe = textwrap.dedent(
        """
        import json, sys
        import nbtools_fixture as module
        tasks = {}
        for t in module.dag.tasks:
            entry = {"type": type(t).__name__, "upstream": sorted(t.upstream_task_ids),
                     "trigger_rule": t.trigger_rule.value}
            if type(t).__name__ == "KubernetesPodOperator":
                resources = t.container_resources
                entry.update(
                    image=t.image, cmds=t.cmds, arguments=t.arguments, retries=t.retries,
                    resources=resources and {"requests": resources.requests,
                                             "limits": resources.limits},
                    secrets=[[s.deploy_type, s.deploy_target, s.secret, s.key] for s in t.secrets],
                    claims=[v.persistent_volume_claim.claim_name for v in t.volumes],
                    mounts=[m.mount_path for m in t.volume_mounts],
                )
            tasks[t.task_id] = entry
        print(json.dumps({"nbtools": "nbtools" in sys.modules, "tasks": tasks}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(airflow_bin / "python"), "-c", probe],
        cwd=project.parent / "dags",
        env={**env, "AIRFLOW_HOME": str(project.parent / "airflow"), "HOME": str(project.parent)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["nbtools"] is False
    tasks = found["tasks"]
    assert set(tasks) == {
        "start_run", "produce", "consume", "finish_run", "monitor_check", "retrain_due", "retrain"
    }  # fmt: skip
    produce, consume = tasks["produce"], tasks["consume"]
    assert produce["upstream"] == ["start_run"] and consume["upstream"] == ["produce"]
    assert tasks["finish_run"]["upstream"] == ["consume"]
    assert tasks["finish_run"]["trigger_rule"] == "all_done"
    assert tasks["retrain"]["upstream"] == ["retrain_due"]
    assert tasks["retrain_due"]["upstream"] == ["monitor_check"]
    assert produce["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"memory": "4Gi", "nvidia.com/gpu": "1"},
    }
    assert consume["resources"] is None
    assert produce["cmds"] == ["nbtools"]
    assert produce["arguments"] == [
        "task", "stage", "--project", "/srv/churn", "produce", "--key", "{{ run_id }}"
    ]  # fmt: skip
    for task in (t for t in tasks.values() if t["type"] == "KubernetesPodOperator"):
        assert task["image"] == "registry.example/churn:1.2"
        assert task["secrets"] == [["env", "WAREHOUSE_TOKEN", "warehouse", "token"]]
        assert task["claims"] == ["churn-project"] and task["mounts"] == ["/srv/churn"]
        assert task["retries"] == 2


@pytest.mark.airflow
@pytest.mark.parametrize(("status", "retrained"), [(6, True), (0, False)])
def test_the_monitor_checks_exit_status_decides_whether_airflow_retrains(
    make_project, airflow_bin: Path, airflow_db: Path, tmp_path: Path, status: int, retrained: bool
) -> None:
    """Only the branching is under test here, so the tasks run a stand-in for ``nbtools`` that
    logs its arguments and exits as ``nbtools monitor`` does: 6 on a breach, 0 when nothing is
    due. (The real commands run in the end-to-end test below.)"""
    calls = tmp_path / "calls.log"
    stand_in = tmp_path / "nbtools"
    stand_in.write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n'
        f'case "$*" in *"--fail-on breach"*) exit {status};; esac\n'
    )
    stand_in.chmod(0o755)
    project = make_project(TWO_STAGES)
    export(project, "--nbtools", str(stand_in), "--monitor-current", "new.csv")
    home = airflow_home(tmp_path, airflow_db, "nbtools_fixture.py")
    airflow(airflow_bin, home, "dags", "test", "nbtools_fixture")
    (states,) = task_states(home, "nbtools_fixture").values()
    assert states["monitor_check"] == "success" and states["retrain_due"] == "success"
    assert states["retrain"] == ("success" if retrained else "skipped")
    commands = [line.split(" --project")[0] for line in calls.read_text().splitlines()]
    expected = ["task start", "task stage", "task stage", "task finish", "monitor"]
    assert commands == expected + (["monitor"] if retrained else [])


@pytest.mark.airflow
def test_airflow_runs_every_stage_as_its_own_task_and_a_second_run_reuses_the_cache(
    make_project, airflow_bin: Path, airflow_db: Path, tmp_path: Path
) -> None:
    project = make_project(TWO_STAGES)
    export(project, "--retries", "0")
    home = airflow_home(tmp_path, airflow_db, "nbtools_fixture.py")
    for logical_date in ("2026-01-01", "2026-01-02"):
        airflow(airflow_bin, home, "dags", "test", "nbtools_fixture", logical_date)

    dag_runs = task_states(home, "nbtools_fixture")
    assert len(dag_runs) == 2
    for states in dag_runs.values():
        assert states == {
            "start_run": "success", "produce": "success", "consume": "success",
            "finish_run": "success",
        }  # fmt: skip
    manifests = sorted(
        (json.loads(p.read_text()) for p in (project / "runs").glob("*/manifest.json")),
        key=lambda m: m["started_at"],
    )
    assert len(manifests) == 2
    first, second = manifests
    assert first["status"] == second["status"] == "succeeded"
    assert {n: s["status"] for n, s in first["stages"].items()} == {
        "produce": "succeeded",
        "consume": "succeeded",
    }
    assert {n: s["status"] for n, s in second["stages"].items()} == {
        "produce": "reused",
        "consume": "reused",
    }
    # One MLflow parent run per pipeline run that executed anything, with one child per
    # executed stage, and no other runs (a retried or repeated task would leave more).
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fixture")
    runs = client.search_runs([experiment.experiment_id])
    assert all(r.info.status == "FINISHED" for r in runs)
    parents = {r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags}
    assert first["mlflow"]["parent_run_id"] in parents
    assert parents <= {m["mlflow"].get("parent_run_id") for m in manifests}
    for manifest in manifests:
        parent = manifest["mlflow"].get("parent_run_id")
        executed = [n for n, s in manifest["stages"].items() if s["status"] == "succeeded"]
        if parent is None:
            assert executed == []
            continue
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]
        assert sorted(r.info.run_name for r in children) == sorted(executed)
    assert len(runs) == len(parents) + 2
