"""The stage context's own behaviour, without a kernel: inputs, outputs and recorded values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nbtools.core.context import StageContext
from nbtools.core.errors import NbtoolsError


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
