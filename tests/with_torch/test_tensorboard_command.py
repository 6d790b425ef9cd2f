"""``nbtools tensorboard`` over real run records, with TensorBoard started for real on 127.0.0.1.

Needs PyTorch and TensorBoard (``nbtools[torch]``). A fixture stage writes curves with
``torch.utils.tensorboard``; the project is run twice, the second run reusing the stage, and
TensorBoard's HTTP API must show the curves under ``<run_id>/<stage>`` for each run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from loopback import free_port, start_group, stop_group, wait_for_http

from nbtools import run_pipeline

pytestmark = pytest.mark.integration

STEPS = 5
#: What the fixture notebook writes: 1 / (step + 1) at each step.
LOSSES = [(step, pytest.approx(1 / (step + 1))) for step in range(STEPS)]


def _start(root: Path, tmp: Path, *run_id: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start ``nbtools tensorboard [RUN_ID]``; return it once TensorBoard answers, its URL, log."""
    port, log = free_port(), tmp / f"tensorboard-{len(run_id)}.log"
    command = [sys.executable, "-m", "nbtools", "tensorboard", *run_id, "--project", root]
    process = start_group(
        [*command, "--port", str(port)],
        log=log,
        env={"TMPDIR": str(tmp)},  # its folder of links, and TensorBoard's own files
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(process, f"{url}/data/runs", log=log)
    return process, url, log


def _stop(process: subprocess.Popen[bytes], url: str) -> None:
    """SIGTERM to nbtools alone, as ``kill`` sends it: TensorBoard must stop with it."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # nothing of its process group is left


def _losses(url: str, run: str) -> list[tuple[int, float]]:
    answer = httpx.get(
        f"{url}/data/plugin/scalars/scalars", params={"run": run, "tag": "loss/train"}
    )
    assert answer.status_code == 200, answer.text
    return [(step, value) for _, step, value in answer.json()]


def test_each_run_shows_its_curves_also_when_it_reused_the_stage(
    make_project, tmp_path: Path
) -> None:
    root = make_project(f"curves: {{notebook: curves.ipynb, parameters: {{steps: {STEPS}}}}}")
    first, second = run_pipeline(root), run_pipeline(root)
    assert first.executed == ["curves"] and second.reused == ["curves"], second.error
    tmp = tmp_path / "tmp"
    tmp.mkdir()

    process, url, log = _start(root, tmp, second.run_id[:-2])  # a unique prefix of the id
    try:
        assert httpx.get(f"{url}/data/runs").json() == [f"{second.run_id}/curves"]
        assert _losses(url, f"{second.run_id}/curves") == LOSSES
        assert f"{second.run_id}/curves (reused from run {first.run_id})" in log.read_text()
        assert f"TensorBoard: {url}/" in log.read_text()
        _stop(process, url)
    finally:
        stop_group(process)

    process, url, _ = _start(root, tmp)
    try:
        names = [f"{first.run_id}/curves", f"{second.run_id}/curves"]
        assert sorted(httpx.get(f"{url}/data/runs").json()) == names
        assert [_losses(url, name) for name in names] == [LOSSES, LOSSES]
        _stop(process, url)
    finally:
        stop_group(process)
    assert not list(tmp.glob("nbtools-tensorboard-*"))  # the folders of links are gone
