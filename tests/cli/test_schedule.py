"""``nbtools schedule``: entries in the real crontab, run as cron runs them, and CronJobs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from nbtools.cli import cli

#: A schedule that cron would fire on 29 February only, should a daemon run during the tests.
RARELY = "0 4 29 2 *"
USERS_OWN = "MAILTO=''\n# the user's own comment\n17 4 * * * /bin/true\n\n"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def crontab_text() -> str:
    listed = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return listed.stdout if listed.returncode == 0 else ""


def set_crontab(text: str) -> None:
    subprocess.run(["crontab", "-"], input=text, text=True, check=True)


@pytest.fixture
def user_crontab() -> Iterator[None]:
    """The current user's crontab, saved before the test and restored exactly after it."""
    if shutil.which("crontab") is None:
        pytest.fail("The schedule tests need the crontab command: run 'apt-get install -y cron'.")
    listed = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    saved = listed.stdout if listed.returncode == 0 else None
    yield
    if saved is None:
        subprocess.run(["crontab", "-r"], capture_output=True)
        assert subprocess.run(["crontab", "-l"], capture_output=True).returncode != 0
    else:
        set_crontab(saved)
        assert crontab_text() == saved


def ours(text: str) -> list[str]:
    return [line for line in text.splitlines() if " # nbtools: " in line]


def test_cron_replaces_its_entry_keeps_other_lines_and_removes_it(
    make_project, user_crontab: None
) -> None:
    project = make_project("produce: {notebook: produce.ipynb}")
    set_crontab(USERS_OWN)

    first = invoke("schedule", "cron", RARELY, "--project", str(project))
    again = invoke("schedule", "cron", "30 5 29 2 *", "--project", str(project), "-p", "rows=3")
    monitor = invoke(
        "schedule", "cron", RARELY, "--command", "monitor", "--current", "new.csv",
        "--project", str(project),
    )  # fmt: skip

    assert first.exit_code == again.exit_code == monitor.exit_code == 0, monitor.output
    assert "Installed an entry" in first.output and "Replaced the entry" in again.output
    text = crontab_text()
    assert text.startswith(USERS_OWN)
    run_line, monitor_line = ours(text)
    assert run_line.startswith("30 5 29 2 * ") and run_line.endswith(f"# nbtools: {project} run")
    assert "-p rows=3" in run_line and run_line.count("nbtools run") == 1
    assert "monitor --project" in monitor_line and "--current new.csv" in monitor_line
    listed = invoke("schedule", "list").output
    assert f"30 5 29 2 *  run      {project}" in listed
    assert f"0 4 29 2 *   monitor  {project}" in listed

    removed = invoke("schedule", "remove", "--command", "run", "--project", str(project))
    assert removed.output == f"Removed: {run_line}\n"
    assert ours(crontab_text()) == [monitor_line]
    invoke("schedule", "remove", "--project", str(project))
    assert crontab_text() == USERS_OWN
    assert "No nbtools entry" in invoke("schedule", "remove", "--project", str(project)).output


def test_print_shows_the_entry_without_installing_it(make_project, user_crontab: None) -> None:
    project = make_project("produce: {notebook: produce.ipynb}")
    set_crontab(USERS_OWN)
    shown = invoke("schedule", "cron", RARELY, "--project", str(project), "--print")
    assert shown.exit_code == 0
    assert shown.output.startswith(f"{RARELY} cd {project} && ")
    assert crontab_text() == USERS_OWN


@pytest.mark.integration
def test_the_installed_entry_runs_the_pipeline_in_crons_bare_environment(
    make_project, user_crontab: None, tmp_path: Path
) -> None:
    secrets = "secrets:\n  FIXTURE_TOKEN: {}\nnotify: {webhook: FIXTURE_HOOK}\n"
    project = make_project("produce: {notebook: produce.ipynb}", extra=secrets)
    env_file = tmp_path / "cron.env"
    env_file.write_text("FIXTURE_TOKEN=value-of-the-token\n", encoding="utf-8")
    env_file.chmod(0o600)

    installed = invoke(
        "schedule", "cron", RARELY, "-p", "rows=3", "--env-file", str(env_file),
        "--project", str(project),
    )  # fmt: skip

    assert installed.exit_code == 0, installed.output
    assert f"Read from {env_file} at each run: FIXTURE_TOKEN." in installed.output
    assert f"{env_file} does not set FIXTURE_HOOK" in installed.output
    (line,) = ours(crontab_text())
    assert "value-of-the-token" not in crontab_text()
    command = line.split(None, 5)[5]  # what cron hands to the shell: all after the 5 fields
    assert "%" not in command  # cron would cut the command at an unescaped %
    home = tmp_path / "home"
    home.mkdir()
    bare = {"SHELL": "/bin/sh", "PATH": "/usr/bin:/bin", "HOME": str(home)}
    if "PYTHONPATH" in os.environ:  # this checkout's nbtools, not the installed one
        bare["PYTHONPATH"] = os.environ["PYTHONPATH"]
    done = subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in bare.items()), "/bin/sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    (manifest_file,) = (project / "runs").glob("*/manifest.json")
    manifest = json.loads(manifest_file.read_text())
    assert manifest["status"] == "succeeded"
    assert manifest["stages"]["produce"]["recorded"]["rows"] == 3
    log = (project / ".nbtools" / "schedule" / "run.log").read_text()
    assert f"Run id:        {manifest['run_id']}" in log
    assert "All stages succeeded: 1 executed, 0 reused." in log


def test_a_missing_crontab_command_names_the_package(make_project, monkeypatch, tmp_path) -> None:
    project = make_project("produce: {notebook: produce.ipynb}")
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without cron
    result = invoke("schedule", "cron", RARELY, "--project", str(project))
    assert result.exit_code == 1
    assert "apt-get install -y cron" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["* * * *"], "five fields"),
        (["61 * * * *"], "The minute field"),
        (["0 3 * * *", "--command", "monitor"], "needs the new data"),
        (["0 3 * * *", "--current", "new.csv"], "belong to a scheduled monitor check"),
        (["0 3 * * *", "-p", "unknown=1"], "'unknown'"),
        (["0 3 * * *", "--profile", "nope"], "no profile 'nope'"),
    ],
)
def test_cron_refuses_bad_input_before_touching_the_crontab(
    make_project, arguments: list[str], message: str
) -> None:
    project = make_project("produce: {notebook: produce.ipynb}")
    result = invoke("schedule", "cron", *arguments, "--project", str(project))
    assert result.exit_code == 2
    assert message in result.output


KUBERNETES_PROJECT = (
    "secrets:\n"
    "  WAREHOUSE_TOKEN: {kubernetes: warehouse}\n"
    "  MLFLOW_TRACKING_PASSWORD: {kubernetes: mlflow, key: password}\n"
    "  TEAM_HOOK: {kubernetes: alerts, key: url}\n"
    "notify: {webhook: TEAM_HOOK}\n"
    "profiles:\n  smoke: {produce.rows: 2}\n"
)
KUBERNETES_STAGES = """
produce: {notebook: produce.ipynb, resources: {cpu: 2, memory: 512Mi}}
consume: {notebook: consume.ipynb, inputs: [produce], resources: {cpu: 0.5, memory: 4Gi, gpu: 1}}
"""


def test_kubernetes_writes_a_cronjob_with_secret_references_and_the_largest_resources(
    make_project, monkeypatch
) -> None:
    project = make_project(KUBERNETES_STAGES, extra=KUBERNETES_PROJECT)
    values = {"WAREHOUSE_TOKEN": "wh-s3cret", "MLFLOW_TRACKING_PASSWORD": "ml-s3cret"}
    for name, value in {**values, "TEAM_HOOK": "https://hooks.example/t0ken"}.items():
        monkeypatch.setenv(name, value)

    result = invoke(
        "schedule", "kubernetes", "*/30 * * * *", "--image", "registry.example/churn:1.2",
        "--volume", "churn-project", "--project-path", "/work/churn", "--retrain",
        "--command", "monitor", "--current", "predictions", "--profile", "smoke",
        "--project", str(project),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    written = project / "deployment" / "k8s" / "cronjob-monitor.yaml"
    text = written.read_text()
    assert not any(v in text for v in [*values.values(), "t0ken"])
    job = YAML(typ="safe").load(text)
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "CronJob")
    assert job["spec"]["schedule"] == "*/30 * * * *"
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/churn:1.2"
    assert container["command"] == [
        "nbtools", "monitor", "--project", "/work/churn", "--current", "predictions",
        "--retrain", "--fail-on", "none", "--profile", "smoke",
    ]  # fmt: skip
    assert pod["volumes"] == [
        {"name": "project", "persistentVolumeClaim": {"claimName": "churn-project"}}
    ]
    assert container["volumeMounts"] == [{"name": "project", "mountPath": "/work/churn"}]
    assert container["env"] == [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for name, secret, key in [
            ("WAREHOUSE_TOKEN", "warehouse", "WAREHOUSE_TOKEN"),
            ("MLFLOW_TRACKING_PASSWORD", "mlflow", "password"),
            ("TEAM_HOOK", "alerts", "url"),
        ]
    ]
    largest = {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": 1}
    assert container["resources"] == {"requests": largest, "limits": largest}


def test_kubernetes_refuses_a_secret_without_a_kubernetes_reference(make_project) -> None:
    project = make_project(
        "produce: {notebook: produce.ipynb}", extra="secrets:\n  LOCAL_ONLY: {}\n"
    )
    result = invoke("schedule", "kubernetes", "@daily", "--image", "x:1", "--project", str(project))
    assert result.exit_code == 2
    assert "LOCAL_ONLY in the 'secrets' section of pipeline.yaml names none" in result.output
    assert not (project / "deployment").exists()


def test_kubernetes_warns_when_the_webhook_variable_cannot_reach_the_pod(make_project) -> None:
    project = make_project("produce: {notebook: produce.ipynb}", extra="notify: {webhook: HOOK}\n")
    result = invoke(
        "schedule", "kubernetes", "@daily", "--image", "x:1", "--output", "-",
        "--project", str(project),
    )  # fmt: skip
    assert result.exit_code == 0
    job = YAML(typ="safe").load(result.stdout)
    assert job["metadata"]["name"] == "nbtools-fixture-run"
    assert "env" not in job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert "HOOK is not among the 'secrets'" in result.stderr
