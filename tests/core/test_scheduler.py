"""Where stages execute: the checks made before a stage task touches a kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbtools import StageFailedError
from nbtools.core.scheduler import run_stage_notebook


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
