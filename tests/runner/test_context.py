"""The stage context's own behaviour, without a kernel: inputs, outputs and recorded values."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from nbtools.errors import NbtoolsError
from nbtools.pipeline.project import create_project
from nbtools.records.runs import read_recorded, stage_warnings
from nbtools.runner.context import StageContext, stage_context


@pytest.fixture
def stage(tmp_path: Path) -> StageContext:
    (tmp_path / "out").mkdir()
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "info.json").write_text('{"rows": 3}')
    return StageContext(
        name="train",
        project_dir=tmp_path,
        output_dir=tmp_path / "out",
        inputs={"split": tmp_path / "up"},
    )


def test_recorded_values_accumulate_as_plain_json(stage: StageContext) -> None:
    stage.record("rows", np.int64(3))
    stage.record("score", np.float32(0.5))
    stage.record("model", Path("/m/model"))
    stage.record("rows", 4)
    values = json.loads(stage.output("recorded.json").read_text())
    assert values == {"rows": 4, "score": 0.5, "model": "/m/model"}


def test_a_value_json_cannot_hold_fails_in_the_notebook(stage: StageContext) -> None:
    with pytest.raises(TypeError):
        stage.record("model", object())
    assert not stage.output("recorded.json").exists()


def test_only_declared_inputs_can_be_read(stage: StageContext) -> None:
    assert stage.read_json("split", "info.json") == {"rows": 3}
    with pytest.raises(NbtoolsError, match="Stage 'train' does not read from 'ingest'"):
        stage.input("ingest")


def test_json_outputs_land_in_the_output_folder(stage: StageContext) -> None:
    path = stage.write_json("model.json", {"uri": "models:/m-1"})
    assert path == stage.output_dir / "model.json"
    assert json.loads(path.read_text()) == {"uri": "models:/m-1"}


def test_warnings_are_printed_and_recorded_once(stage: StageContext, capsys) -> None:
    stage.record("rows", 3)
    stage.warn("many rows repeat")
    stage.warn("many rows repeat")  # a cell run again says it once
    stage.warn("a column lost values")
    values = json.loads(stage.output("recorded.json").read_text())
    assert values == {"rows": 3, "warnings": ["many rows repeat", "a column lost values"]}
    assert "Warning: many rows repeat" in capsys.readouterr().out


def test_rows_removed_warn_above_five_percent(stage: StageContext) -> None:
    assert stage.report_rows_removed(5, 100, reason="5 duplicates") is None
    message = stage.report_rows_removed(
        875, 1309, reason="875 exact duplicates", hint="Set clean.drop_duplicates=false."
    )
    assert message == (
        "removed 875 of 1,309 rows (66.8%): 875 exact duplicates. Set clean.drop_duplicates=false."
    )
    assert stage_warnings(read_recorded(stage.output_dir)) == [message]


def test_changed_values_warn_above_one_percent(stage: StageContext) -> None:
    assert stage.report_values_changed("delay", 10, 1000, reason="clipped") is None
    assert stage.report_values_changed("delay", 0, 0, reason="clipped") is None
    message = stage.report_values_changed("delay", 11, 1000, reason="clipped to the fences")
    assert message == "changed 11 of 1,000 values (1.1%) of column 'delay': clipped to the fences."
    assert stage_warnings(read_recorded(stage.output_dir)) == [message]


def test_a_stage_uses_the_projects_registry_whatever_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = create_project(tmp_path / "churn")
    monkeypatch.chdir(project)
    # as a parent process that called mlflow.set_registry_uri leaves it to its kernels
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    uri = f"sqlite:///{project / 'mlflow.db'}"
    namespace = {"output_dir": str(tmp_path / "out"), "inputs": {}, "tracking_uri": uri}

    stage_context("deploy", namespace)

    assert mlflow.get_registry_uri() == uri
    assert mlflow.MlflowClient()._registry_uri == uri


def test_a_stage_notifies_naming_its_run_and_record_and_warns_when_it_cannot(
    tmp_path: Path, webhook
) -> None:
    from nbtools.pipeline.deployment import Notify
    from nbtools.pipeline.spec import Pipeline

    run_dir = tmp_path / "runs" / "20260301-000000-abcdef"
    (run_dir / "07_deploy").mkdir(parents=True)
    (run_dir / "manifest.json").write_text("{}")
    pipeline = Pipeline(
        "churn", tmp_path, (), "churn-model", "sqlite:///mlflow.db",
        notify=Notify("NBTOOLS_TEST_WEBHOOK", ("promoted",)),
    )  # fmt: skip
    stage = StageContext(
        name="deploy", project_dir=tmp_path, output_dir=run_dir / "07_deploy", pipeline=pipeline
    )

    assert stage.notify("promoted", "Version 2 is the champion now.", version="2")
    assert not stage.notify("rejected", "Not listed in notify.on: not posted.")
    [message] = webhook.messages
    assert message["nbtools"]["run_id"] == "20260301-000000-abcdef"
    assert message["nbtools"]["stage"] == "deploy"
    assert message["nbtools"]["record"] == str(run_dir / "manifest.json")
    assert message["nbtools"]["details"] == {"version": "2"}

    webhook.answer = (500, "")
    assert not stage.notify("promoted", "Version 3 is the champion now.")
    [warning] = stage_warnings(read_recorded(stage.output_dir))  # printed by `nbtools run`
    assert "answered HTTP 500" in warning and "s3cr3t" not in warning
