"""Stopping ``nbtools run`` (Ctrl-C, or SIGTERM from a scheduler, ``kill`` or the JupyterLab
panel's cancel): the record says ``cancelled``, keeps what finished, closes its MLflow runs as
failed, and can be resumed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from nbtools import run_pipeline

pytestmark = pytest.mark.integration

STAGES = """
produce: {notebook: produce.ipynb}
sleeps: {notebook: sleeps.ipynb, inputs: [produce], parameters: {seconds: 120}}
"""


def _manifest(root: Path) -> dict:
    folders = sorted((root / "runs").glob("*/manifest.json")) if (root / "runs").is_dir() else []
    return json.loads(folders[-1].read_text()) if folders else {}


#: ``nbtools run`` as a terminal starts it, where Ctrl-C (SIGINT) reaches it even when this
#: test process was started in the background of a script, which ignores SIGINT and would pass
#: that on.
IN_A_TERMINAL = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from nbtools.cli import main; sys.argv[0] = 'nbtools'; main()"
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stopped_run_is_recorded_cancelled_and_resumes(make_project, signum: int) -> None:
    root = make_project(STAGES)
    process = subprocess.Popen(
        [sys.executable, "-c", IN_A_TERMINAL, "run", "--project", str(root), "-j", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while _manifest(root).get("stages", {}).get("sleeps", {}).get("status") != "running":
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.2)  # polling interval while waiting on the deadline

    process.send_signal(signum)
    process.wait(timeout=60)
    manifest = _manifest(root)

    assert process.returncode != 0
    assert manifest["status"] == "cancelled"
    assert manifest["error"] == "The run was cancelled before it finished."
    assert manifest["stages"]["produce"]["status"] == "succeeded"
    assert manifest["stages"]["sleeps"]["status"] == "failed"
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    parent = client.get_run(manifest["mlflow"]["parent_run_id"])
    assert parent.info.status == "FAILED"

    pipeline_file = root / "pipeline.yaml"  # the cause fixed: the stage no longer sleeps
    pipeline_file.write_text(pipeline_file.read_text().replace("seconds: 120", "seconds: 0"))
    resumed = run_pipeline(root, resume=manifest["run_id"], jobs=1)

    assert resumed.succeeded
    assert resumed.manifest["resumed_from"] == manifest["run_id"]
    assert resumed.reused == ["produce"]
    assert resumed.executed == ["sleeps"]
