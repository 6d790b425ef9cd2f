"""Choosing the stages of a partial run (``--only``, ``--from``, ``--to``), without a kernel."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nbtools.errors import PipelineSpecError
from nbtools.pipeline.spec import Pipeline, load_pipeline
from nbtools.pipeline.stage_selection import downstream, select_stages

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
#: a -> b -> d and a -> c: two branches below one root.
DIAMOND = """
name: demo
stages:
  a: {notebook: produce.ipynb}
  b: {notebook: consume.ipynb, inputs: [a]}
  c: {notebook: consume.ipynb, inputs: [a]}
  d: {notebook: consume.ipynb, inputs: [b]}
"""


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    for name in ("produce", "consume"):
        shutil.copy(NOTEBOOKS / f"{name}.ipynb", tmp_path / f"{name}.ipynb")
    (tmp_path / "pipeline.yaml").write_text(DIAMOND, encoding="utf-8")
    return load_pipeline(tmp_path)


def test_every_stage_by_default_in_run_order(pipeline: Pipeline) -> None:
    assert select_stages(pipeline) == ["a", "b", "c", "d"]


def test_from_takes_everything_downstream(pipeline: Pipeline) -> None:
    assert downstream(pipeline, "b") == ["b", "d"]
    assert select_stages(pipeline, start="a") == ["a", "b", "c", "d"]
    assert select_stages(pipeline, start="b") == ["b", "d"]


def test_to_takes_everything_upstream_and_with_from_the_range(pipeline: Pipeline) -> None:
    assert select_stages(pipeline, stop="d") == ["a", "b", "d"]
    assert select_stages(pipeline, start="b", stop="d") == ["b", "d"]
    assert select_stages(pipeline, targets=["c"]) == ["a", "c"]


def test_only_takes_exactly_the_named_stages(pipeline: Pipeline) -> None:
    assert select_stages(pipeline, only=["d", "b"]) == ["b", "d"]


def test_bad_selections_name_the_problem(pipeline: Pipeline) -> None:
    with pytest.raises(PipelineSpecError, match=r"has no stage 'x'\. Stages: a, b, c, d"):
        select_stages(pipeline, only=["x"])
    with pytest.raises(PipelineSpecError, match="has no stage 'x'"):
        select_stages(pipeline, start="x")
    with pytest.raises(PipelineSpecError, match="'c' does not depend on 'b'"):
        select_stages(pipeline, start="b", stop="c")
    with pytest.raises(PipelineSpecError, match="cannot be combined with a range"):
        select_stages(pipeline, only=["a"], start="a")
