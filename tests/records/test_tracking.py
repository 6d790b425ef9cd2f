"""The runner's MLflow tracking: a first open of a new database keeps stderr quiet."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbtools.records.tracking import Tracker


def test_creating_the_database_writes_no_info_lines_to_stderr(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "quiet", tmp_path / "artifacts")

    assert tracker.client.get_experiment(tracker.experiment_id).name == "quiet"
    assert "INFO" not in capfd.readouterr().err
    assert (tmp_path / "mlflow.db").is_file()
