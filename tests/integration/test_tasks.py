"""One run executed as separate processes, as an orchestrator's tasks run it (``nbtools task``):
one record and one MLflow parent run with a child per stage, the cache shared with
``nbtools run``, and a task killed mid-stage then retried leaving one honest record."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from nbtools import run_pipeline

pytestmark = pytest.mark.integration

NBTOOLS = str(Path(sys.executable).parent / "nbtools")
KEY = "manual__2026-12-01T03:00:00+00:00"  # an Airflow run id
THREE_STAGES = """
produce: {notebook: produce.ipynb}
consume: {notebook: consume.ipynb, inputs: [produce]}
sleeps: {notebook: sleeps.ipynb, inputs: [produce], parameters: {seconds: 6}}
"""


def _task(root: Path, *args: str, key: str = KEY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NBTOOLS, "task", *args, "--key", key, "--project", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )


def _manifests(root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((root / "runs").glob("*/manifest.json"))]


def _mlflow_runs(root: Path, run_id: str) -> list[Any]:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fixture")
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`nbtools.run_id` = '{run_id}'"
    )


def test_tasks_make_one_run_with_one_mlflow_run_per_stage_and_share_the_cache(
    make_project,
) -> None:
    root = make_project(THREE_STAGES)
    started = _task(root, "start")
    again = _task(root, "start")  # a retried first task
    too_early = _task(root, "stage", "consume")
    stages = [_task(root, "stage", name) for name in ("produce", "consume", "sleeps")]
    finished = _task(root, "finish")

    assert started.returncode == again.returncode == 0, started.stderr + again.stderr
    assert too_early.returncode == 2
    assert "reads produce (pending), which is not done" in too_early.stderr
    assert [s.returncode for s in stages] == [0, 0, 0], [s.stderr for s in stages]
    assert finished.returncode == 0, finished.stderr
    [manifest] = _manifests(root)
    assert manifest["status"] == "succeeded" and manifest["executor"] == "tasks"
    assert {n: s["status"] for n, s in manifest["stages"].items()} == dict.fromkeys(
        ("produce", "consume", "sleeps"), "succeeded"
    )
    assert manifest["stages"]["consume"]["recorded"] == {"total": 90.0}
    runs = _mlflow_runs(root, manifest["run_id"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert [p.info.run_id for p in parents] == [manifest["mlflow"]["parent_run_id"]]
    assert sorted(c.data.tags["nbtools.stage"] for c in children) == [
        "consume",
        "produce",
        "sleeps",
    ]
    assert {r.info.status for r in runs} == {"FINISHED"}

    # The next orchestrator run, and a plain `nbtools run`, reuse every stage.
    second = "manual__2026-12-02T03:00:00+00:00"
    assert _task(root, "start", key=second).returncode == 0
    reused = [_task(root, "stage", name, key=second) for name in ("produce", "consume")]
    assert all("reused    from run" in r.stdout for r in reused), [r.stdout for r in reused]
    assert _task(root, "stage", "sleeps", key=second).returncode == 0
    assert _task(root, "finish", key=second).returncode == 0
    local = run_pipeline(root, jobs=1)
    assert local.succeeded and local.executed == []


def test_a_killed_stage_task_retried_leaves_one_record_and_one_mlflow_run(
    make_project,
) -> None:
    root = make_project(THREE_STAGES)
    assert _task(root, "start").returncode == 0
    assert _task(root, "stage", "produce").returncode == 0
    attempt = subprocess.Popen(
        [NBTOOLS, "task", "stage", "sleeps", "--key", KEY, "--project", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the task and its kernel, killed together as a worker would be
    )
    deadline = time.monotonic() + 90
    recorded = None
    while recorded is None:
        stage = _manifests(root)[0]["stages"]["sleeps"]
        values = Path(str(stage.get("output_dir"))) / "recorded.json"
        if stage["status"] == "running" and values.is_file():
            with contextlib.suppress(ValueError):  # the stage may be writing it right now
                recorded = json.loads(values.read_text())
        assert attempt.poll() is None and time.monotonic() < deadline, attempt.stdout
        time.sleep(0.2)  # polling interval while waiting on the deadline
    os.killpg(attempt.pid, signal.SIGKILL)
    attempt.wait(timeout=30)

    retried = _task(root, "stage", "sleeps")
    consumed = _task(root, "stage", "consume")
    finished = _task(root, "finish")

    assert recorded == {"before_timeout": 1}
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert consumed.returncode == 0 and finished.returncode == 0, finished.stdout
    [manifest] = _manifests(root)  # one record
    sleeps = manifest["stages"]["sleeps"]
    assert sleeps["status"] == "succeeded"
    assert sleeps["task"]["attempt"] == 2 and sleeps["why"].endswith("attempt 2")
    assert sleeps["recorded"] == {"before_timeout": 1, "after_timeout": 1}
    children = [
        r
        for r in _mlflow_runs(root, manifest["run_id"])
        if r.data.tags.get("nbtools.stage") == "sleeps"
    ]
    assert [c.info.run_id for c in children] == [sleeps["mlflow_run_id"]]  # one MLflow run
    assert children[0].info.status == "FINISHED"


def test_a_failed_stage_fails_its_task_and_the_run_and_says_so(make_project, webhook) -> None:
    root = make_project(
        """
        produce: {notebook: produce.ipynb}
        raises: {notebook: raises.ipynb, inputs: [produce]}
        consume: {notebook: consume.ipynb, inputs: [raises, produce]}
        """,
        "notify: {webhook: NBTOOLS_TEST_WEBHOOK, on: [run-failed]}",  # the webhook fixture's
    )
    assert _task(root, "start").returncode == 0
    assert _task(root, "stage", "produce").returncode == 0
    failed = _task(root, "stage", "raises")
    finished = _task(root, "finish")  # the orchestrator skips consume: its input failed

    assert failed.returncode == 1
    assert "stage 'raises' failed: ValueError: boom" in failed.stderr
    assert finished.returncode == 1
    [manifest] = _manifests(root)
    assert manifest["status"] == "failed"
    assert "ValueError: boom" in manifest["error"]
    assert manifest["stages"]["consume"]["status"] == "not run"
    statuses = {
        r.data.tags.get("nbtools.stage", "parent"): r.info.status
        for r in _mlflow_runs(root, manifest["run_id"])
    }
    assert statuses == {"parent": "FAILED", "produce": "FINISHED", "raises": "FAILED"}
    assert _task(root, "finish").returncode == 1  # a retried finish changes nothing...
    [message] = webhook.messages  # ... and posts nothing more
    assert message["nbtools"]["event"] == "run-failed"
    assert message["nbtools"]["run_id"] == manifest["run_id"]
    assert message["nbtools"]["stage"] == "raises"
    assert "ValueError: boom" in message["text"]
    assert message["nbtools"]["record"].endswith(f"{manifest['run_id']}/manifest.json")


def test_a_key_names_one_run_and_its_parameters(make_project) -> None:
    root = make_project(THREE_STAGES)
    assert _task(root, "start", "-p", "rows=5").returncode == 0
    other = _task(root, "start", "-p", "rows=6")
    unknown = _task(root, "stage", "produce", key="never-started")

    assert other.returncode == 2 and "Give every task of one run the same parameters" in (
        other.stderr
    )
    assert unknown.returncode == 2 and "nbtools task start --key never-started" in unknown.stderr
    assert len(_manifests(root)) == 1
