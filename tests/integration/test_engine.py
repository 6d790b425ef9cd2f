"""The engine on fixture notebooks: cache reuse, partial runs, parallel branches, resume."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from mlflow.tracking import MlflowClient

from nbtools import PipelineSpecError, RunNotFoundError, run_pipeline

pytestmark = pytest.mark.integration

NBTOOLS = str(Path(sys.executable).parent / "nbtools")
TWO_STAGES = """
produce: {notebook: produce.ipynb}
consume: {notebook: consume.ipynb, inputs: [produce]}
"""


def _manifest(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    return data


def test_an_unchanged_rerun_reuses_every_stage_and_starts_no_kernel(make_project) -> None:
    root = make_project(TWO_STAGES)
    first = run_pipeline(root, jobs=1)
    second = run_pipeline(root, jobs=1)

    assert first.executed == ["produce", "consume"]
    assert second.succeeded and second.executed == [] and second.mlflow_run_id is None
    assert sorted(p.name for p in second.run_dir.iterdir()) == ["manifest.json"]
    manifest = _manifest(second.run_dir)
    for name in ("produce", "consume"):
        reused, original = manifest["stages"][name], _manifest(first.run_dir)["stages"][name]
        assert reused["status"] == "reused"
        assert reused["reused_from"] == first.run_id
        assert reused["output_dir"] == str(first.run_dir / original["dir"])
        assert reused["recorded"] == original["recorded"]
        assert reused["cache"]["key"] == original["cache"]["key"]
    assert manifest["stages"]["consume"]["recorded"] == {"total": 90.0}


def test_a_changed_parameter_reruns_its_stage_and_says_why(make_project) -> None:
    root = make_project(TWO_STAGES)
    first = run_pipeline(root, jobs=1)
    lines: list[str] = []
    changed = run_pipeline(root, overrides={"factor": 3}, jobs=1, echo=lines.append)

    assert changed.reused == ["produce"] and changed.executed == ["consume"]
    consume = changed.manifest["stages"]["consume"]
    assert consume["why"] == "parameters changed"
    assert consume["recorded"] == {"total": 135.0}
    assert any("consume" in line and "parameters changed" in line for line in lines)
    # The consumer read its input from the reused folder of the first run.
    executed = nbformat.read(consume["executed_notebook"], as_version=4)
    injected = next(
        c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])
    )
    assert str(first.run_dir / "01_produce") in injected.source

    upstream = run_pipeline(root, overrides={"factor": 3, "rows": 3}, jobs=1)
    assert upstream.executed == ["produce", "consume"]
    assert upstream.manifest["stages"]["consume"]["why"] == "inputs changed"

    forced = run_pipeline(root, overrides={"factor": 3, "rows": 3}, force=["consume"], jobs=1)
    assert forced.reused == ["produce"] and forced.executed == ["consume"]
    assert forced.manifest["stages"]["consume"]["why"] == "forced"


def test_only_runs_one_stage_on_the_outputs_already_there(make_project) -> None:
    root = make_project(TWO_STAGES)
    with pytest.raises(PipelineSpecError, match="stage 'produce', which has no finished run"):
        run_pipeline(root, only=["consume"])
    assert not (root / "runs").exists()
    run_pipeline(root, stop="produce", jobs=1)
    only = run_pipeline(root, only=["consume"], overrides={"factor": 4}, jobs=1)

    assert only.executed == ["consume"]
    assert only.manifest["selected"] == ["consume"]
    assert only.manifest["stages"]["produce"]["status"] == "reused"
    assert only.manifest["stages"]["consume"]["recorded"] == {"total": 180.0}


def test_a_failed_branch_stops_its_dependants_and_lets_the_other_branch_finish(
    make_project, child_kernels
) -> None:
    root = make_project(
        """
        raises: {notebook: raises.ipynb}
        after: {notebook: consume.ipynb, inputs: [raises]}
        produce: {notebook: produce.ipynb}
        consume: {notebook: consume.ipynb, inputs: [produce]}
        """
    )
    result = run_pipeline(root, jobs=2)

    stages = _manifest(result.run_dir)["stages"]
    assert not result.succeeded and "ValueError: boom" in str(result.error)
    assert {name: record["status"] for name, record in stages.items()} == {
        "raises": "failed",
        "after": "not run",
        "produce": "succeeded",
        "consume": "succeeded",
    }
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    assert client.get_run(stages["raises"]["mlflow_run_id"]).info.status == "FAILED"
    assert client.get_run(stages["consume"]["mlflow_run_id"]).info.status == "FINISHED"
    assert client.get_run(result.mlflow_run_id or "").info.status == "FAILED"
    assert child_kernels() == []


GATE = """\
import time
from pathlib import Path
deadline = time.monotonic() + 120
while not Path('release').exists() and time.monotonic() < deadline:
    time.sleep(0.2)
stage.record('released', Path('release').exists())
"""


def _gate_notebook(root: Path) -> None:
    """A stage that waits until the file ``release`` exists in the project folder."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        "inputs = None\noutput_dir = None\nmlflow_run_id = None\ntracking_uri = None"
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell(
            'import nbtools\nstage = nbtools.stage_context("gate", globals())'
        ),
        nbformat.v4.new_code_cell(GATE),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "gate.ipynb")


def _wait_for(predicate: Any, what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_run_killed_with_sigkill_leaves_a_readable_record_and_resumes(make_project) -> None:
    root = make_project(
        """
        produce: {notebook: produce.ipynb}
        gate: {notebook: gate.ipynb, inputs: [produce]}
        consume: {notebook: consume.ipynb, inputs: [produce, gate]}
        """
    )
    _gate_notebook(root)
    runner = subprocess.Popen(
        [NBTOOLS, "run", "--project", str(root), "-j", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        runs = root / "runs"

        def gate_running() -> bool:
            found = list(runs.glob("*/manifest.json")) if runs.is_dir() else []
            return bool(found) and _manifest(found[0].parent)["stages"]["gate"]["status"] == (
                "running"
            )

        _wait_for(gate_running, "the gate stage to start")
    finally:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()

    (killed_dir,) = runs.iterdir()
    killed = _manifest(killed_dir)
    assert killed["status"] == "running"
    assert killed["stages"]["produce"]["status"] == "succeeded"
    assert killed["stages"]["gate"]["status"] == "running"

    (root / "release").touch()
    resumed = run_pipeline(root, resume=killed["run_id"][:12], jobs=1)

    assert resumed.succeeded
    assert resumed.manifest["resumed_from"] == killed["run_id"]
    assert resumed.reused == ["produce"] and resumed.executed == ["gate", "consume"]
    assert resumed.manifest["stages"]["gate"]["recorded"] == {"released": True}
    closed = _manifest(killed_dir)
    assert closed["status"] == "failed" and resumed.run_id in closed["error"]
    assert closed["stages"]["gate"]["status"] == "failed"
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    assert client.get_run(killed["mlflow"]["parent_run_id"]).info.status == "FAILED"
    assert client.get_run(killed["stages"]["gate"]["mlflow_run_id"]).info.status == "FAILED"

    with pytest.raises(RunNotFoundError, match=r"No run .* match the id 'nope'"):
        run_pipeline(root, resume="nope")


def test_two_runs_at_once_on_a_fresh_project_both_succeed(make_project) -> None:
    root = make_project(TWO_STAGES)
    (root / "mlflow.db").unlink()  # both runs meet a database that does not exist yet
    command = [NBTOOLS, "run", "--project", str(root), "-j", "1"]
    runners = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [runner.communicate(timeout=180)[0] for runner in runners]

    assert [runner.returncode for runner in runners] == [0, 0], outputs
    manifests = [_manifest(p.parent) for p in (root / "runs").glob("*/manifest.json")]
    assert len(manifests) == 2 and all(m["status"] == "succeeded" for m in manifests)
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    parents = [m["mlflow"]["parent_run_id"] for m in manifests if m["mlflow"]["parent_run_id"]]
    assert parents and all(client.get_run(p).info.status == "FINISHED" for p in parents)


def test_a_sweep_shares_upstream_stages_and_compares_the_variants(make_project) -> None:
    from click.testing import CliRunner

    from nbtools.cli import cli

    root = make_project(TWO_STAGES)
    args = ["run", "--project", str(root), "-p", "consume.factor=2,3", "-j", "1"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)

    assert result.exit_code == 0, result.output
    manifests = sorted(
        (_manifest(p.parent) for p in (root / "runs").glob("*/manifest.json")),
        key=lambda m: m["started_at"] + m["run_id"],
    )
    assert [m["stages"]["consume"]["recorded"]["total"] for m in manifests] == [90.0, 135.0]
    assert [m["stages"]["produce"]["status"] for m in manifests] == ["succeeded", "reused"]
    table = result.output.split("Sweep comparison:")[1].splitlines()
    assert table[1].split()[:2] == ["consume.factor", "status"]
    assert table[2].split()[:2] == ["2", "succeeded"] and table[3].split()[:2] == ["3", "succeeded"]


def test_sweep_variants_run_at_the_same_time_and_share_the_upstream_stage(
    make_project, child_kernels
) -> None:
    from nbtools.runner.sweep import run_sweep

    root = make_project(
        "produce: {notebook: produce.ipynb}\nmeets: {notebook: meets.ipynb, inputs: [produce]}"
    )
    variants = run_sweep(root, {"meets.name": ["a", "b"]}, jobs=2)

    assert [v.result.succeeded for v in variants] == [True, True]
    assert [v.result.manifest["stages"]["meets"]["recorded"]["met"] for v in variants] == [
        ["a", "b"],
        ["a", "b"],
    ]
    produce = [v.result.manifest["stages"]["produce"] for v in variants]
    assert sorted(p["status"] for p in produce) == ["reused", "succeeded"]
    assert produce[0]["output_dir"] == produce[1]["output_dir"]
    assert child_kernels() == []


NOTIFY = "notify: {webhook: NBTOOLS_TEST_WEBHOOK, on: [run-failed]}"


def test_a_failed_run_posts_run_failed_naming_the_run_stage_and_record(
    make_project, webhook
) -> None:
    root = make_project("raises: {notebook: raises.ipynb}", extra=NOTIFY)
    result = run_pipeline(root, jobs=1)

    assert not result.succeeded
    [message] = webhook.messages
    stage = result.manifest["stages"]["raises"]
    assert message["nbtools"]["event"] == "run-failed"
    assert message["nbtools"]["run_id"] == result.run_id
    assert message["nbtools"]["stage"] == "raises"
    assert message["nbtools"]["record"] == str(result.run_dir / "manifest.json")
    assert f"Run {result.run_id} failed in stage 'raises': " in message["text"]
    assert "ValueError: boom" in message["text"]
    assert f"Executed notebook: {stage['executed_notebook']}" in message["text"]


def test_nbtools_run_warns_when_the_webhook_cannot_be_reached_and_never_shows_it(
    make_project,
) -> None:
    root = make_project("raises: {notebook: raises.ipynb}", extra=NOTIFY)
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/services/T0/B0/s3cr3t-t0ken"
    done = subprocess.run(
        [NBTOOLS, "run", "--project", str(root)],
        env={**os.environ, "NBTOOLS_TEST_WEBHOOK": url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and "ValueError: boom" in done.stdout + done.stderr
    assert "The 'run-failed' notification was not posted to the webhook in" in done.stderr
    assert "$NBTOOLS_TEST_WEBHOOK: cannot reach the webhook" in done.stderr
    assert "s3cr3t" not in done.stdout + done.stderr
