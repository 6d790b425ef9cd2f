"""Where stages execute: the checks made before a stage task touches a kernel, and the
environment a stage's kernel gets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from nbtools import StageFailedError
from nbtools.runner.scheduler import LocalStagePool, run_local_stage, run_stage_notebook

SEEN = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")


def _kernel_environment(folder: Path, jobs: int) -> dict[str, str | None]:
    """Run a one-cell stage notebook in a kernel of a real pool; return what it saw."""
    notebook = folder / "environment.ipynb"
    parameters = nbformat.v4.new_code_cell("output_dir = None")
    parameters.metadata["tags"] = ["parameters"]
    report = nbformat.v4.new_code_cell(
        "import json, os, pathlib\n"
        f"seen = {{name: os.environ.get(name) for name in {SEEN!r}}}\n"
        "pathlib.Path(output_dir, 'seen.json').write_text(json.dumps(seen))"
    )
    nbformat.write(nbformat.v4.new_notebook(cells=[parameters, report]), notebook)
    out = folder / "out"
    out.mkdir()
    pool = LocalStagePool(jobs)
    try:
        run_local_stage(
            "environment",
            notebook,
            out / "output.ipynb",
            {"output_dir": str(out)},
            folder,
            120,
            pool,
        )
    finally:
        pool.shutdown()
    return json.loads((out / "seen.json").read_text())


def test_stage_kernels_let_waiting_openmp_threads_sleep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SEEN:
        monkeypatch.delenv(name, raising=False)
    seen = _kernel_environment(tmp_path, jobs=2)
    assert seen == {
        "OMP_WAIT_POLICY": "PASSIVE",
        "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // 2)),
    }


def test_a_users_openmp_settings_reach_stage_kernels_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _kernel_environment(tmp_path, jobs=2) == {
        "OMP_WAIT_POLICY": "ACTIVE",
        "OMP_NUM_THREADS": "3",
    }


def test_a_worker_that_cannot_reach_the_project_folder_says_so(tmp_path: Path) -> None:
    elsewhere = tmp_path / "not-mounted-here"
    with pytest.raises(StageFailedError, match="cannot reach the project folder") as caught:
        run_stage_notebook(
            "train",
            elsewhere / "05_train.ipynb",
            elsewhere / "runs" / "r1" / "05_train" / "output.ipynb",
            {},
            elsewhere,
            60,
        )
    assert caught.value.stage == "train"
    assert "shared file system mounted at the same path" in str(caught.value)
    assert not elsewhere.exists()
