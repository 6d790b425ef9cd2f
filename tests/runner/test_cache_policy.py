"""The cache policy: when a stage is reused, and the reason it gives, without a kernel."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from nbtools.errors import PipelineSpecError
from nbtools.pipeline.sources import Fingerprint
from nbtools.pipeline.spec import Pipeline, load_pipeline
from nbtools.records.manifest import StageRecord
from nbtools.records.runs import write_manifest
from nbtools.runner.cache_policy import CachePolicy

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    for name in ("produce", "consume"):
        shutil.copy(NOTEBOOKS / f"{name}.ipynb", tmp_path / f"{name}.ipynb")
    (tmp_path / "pipeline.yaml").write_text(
        "name: fixture\nstages:\n"
        "  produce: {notebook: produce.ipynb}\n"
        "  consume: {notebook: consume.ipynb, inputs: [produce]}\n",
        encoding="utf-8",
    )
    return load_pipeline(tmp_path)


def _policy(
    pipeline: Pipeline,
    rows: int = 10,
    forced: set[str] | None = None,
    resumed: dict[str, Any] | None = None,
) -> CachePolicy:
    parameters = {"produce": {"rows": rows, "label": "x"}, "consume": {"factor": 2.0}}
    sources: dict[str, dict[str, Fingerprint]] = {"produce": {}, "consume": {}}
    return CachePolicy(pipeline, parameters, sources, forced or set(), resumed)


def _executed(policy: CachePolicy, folder: Path, recorded: dict[str, object]) -> StageRecord:
    """Store an execution of ``produce`` under the policy's key, with outputs in ``folder``."""
    folder.mkdir(parents=True)
    record = StageRecord(
        dir="01_produce", notebook="produce.ipynb", inputs=[], output_dir=str(folder)
    )
    record.status, record.recorded = "succeeded", recorded
    policy.store("produce", "run-1", record)
    return record


def test_a_stage_that_never_ran_runs_and_says_so(pipeline: Pipeline) -> None:
    policy = _policy(pipeline)
    key = policy.key(pipeline.stage("produce"), {})
    assert policy.lookup(key) is None
    assert policy.why_run("produce", key) == "no earlier execution"


def test_an_unchanged_stage_is_reused_from_the_run_that_made_it(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    policy = _policy(pipeline)
    key = policy.key(pipeline.stage("produce"), {})
    _executed(policy, tmp_path / "out", {"rows": 10})
    hit = policy.lookup(policy.key(pipeline.stage("produce"), {}))
    assert hit is not None and hit["run_id"] == "run-1"
    assert hit["output_dir"] == str(tmp_path / "out") and hit["recorded"] == {"rows": 10}
    assert policy.why_reused("produce") == "unchanged"
    assert key.digest == policy.keys["produce"].digest


def test_a_changed_parameter_is_named_as_the_reason(pipeline: Pipeline, tmp_path: Path) -> None:
    first = _policy(pipeline)
    first.key(pipeline.stage("produce"), {})
    _executed(first, tmp_path / "out", {})
    changed = _policy(pipeline, rows=20)
    key = changed.key(pipeline.stage("produce"), {})
    assert changed.lookup(key) is None
    assert changed.why_run("produce", key) == "parameters changed"
    consume = changed.key(pipeline.stage("consume"), {"produce": {"values.json": "sha256:2"}})
    assert changed.why_run("consume", consume) == "no earlier execution"


def test_outputs_that_are_gone_make_the_stage_run_again(pipeline: Pipeline, tmp_path: Path) -> None:
    policy = _policy(pipeline)
    key = policy.key(pipeline.stage("produce"), {})
    _executed(policy, tmp_path / "out", {})
    shutil.rmtree(tmp_path / "out")
    assert policy.lookup(key) is None
    assert policy.why_run("produce", key) == "its cached outputs are gone"


def test_a_forced_stage_runs_unless_another_run_just_executed_it(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    policy = _policy(pipeline, forced={"produce"})
    key = policy.key(pipeline.stage("produce"), {})
    _executed(policy, tmp_path / "out", {})
    assert policy.lookup(key) is None
    assert policy.why_run("produce", key) == "forced"
    assert policy.lookup(key, shared={key.digest}) is not None


def test_a_resumed_run_reuses_what_it_finished_under_the_same_key(pipeline: Pipeline) -> None:
    key = _policy(pipeline).key(pipeline.stage("produce"), {})
    finished = {
        "status": "succeeded",
        "cache": {"key": key.digest},
        "output_dir": "/nowhere",
        "recorded": {"rows": 10},
    }
    resumed = {"run_id": "killed", "stages": {"produce": finished}}
    hit = _policy(pipeline, resumed=resumed).lookup(key)
    assert hit is not None and hit["run_id"] == "killed" and hit["recorded"] == {"rows": 10}
    other = {"run_id": "killed", "stages": {"produce": {**finished, "status": "failed"}}}
    assert _policy(pipeline, resumed=other).lookup(key) is None


def test_a_re_read_source_says_what_it_held_and_what_it_was(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    def policy_reading(digest: str) -> CachePolicy:
        policy = _policy(pipeline)
        policy.sources["produce"] = {"path": Fingerprint("data.csv", digest, None)}
        return policy

    first = policy_reading("a")
    first.key(pipeline.stage("produce"), {})
    earlier = _executed(first, tmp_path / "first", {"rows": 2000})
    second = policy_reading("b")
    key = second.key(pipeline.stage("produce"), {})
    assert second.why_run("produce", key) == "source changed: data.csv"
    assert second.source_record("produce") == {
        "path": {"source": "data.csv", "fingerprint": "b", "rows": None}
    }
    now = StageRecord(dir="01_produce", notebook="produce.ipynb", inputs=[])
    now.recorded, now.output_hashes = {"rows": 1000}, earlier.output_hashes
    assert second.source_outcome(now, "produce") == (
        "source changed: data.csv, 1,000 rows, was 2,000; its outputs are unchanged"
    )
    assert policy_reading("a").why_reused("produce") == "unchanged; source unchanged: data.csv"


def test_a_stage_outside_the_selection_comes_from_the_newest_run_that_has_it(
    pipeline: Pipeline,
) -> None:
    policy = _policy(pipeline)
    key = policy.key(pipeline.stage("produce"), {})
    with pytest.raises(PipelineSpecError, match="and the stages it needs first"):
        policy.outside_selection(pipeline.stage("produce"), key)
    run_dir = pipeline.runs_dir / "20260101-000000-aaaaaa"
    (run_dir / "01_produce").mkdir(parents=True)
    stage = {"status": "succeeded", "dir": "01_produce", "recorded": {"rows": 3}}
    write_manifest(run_dir, {"run_id": run_dir.name, "stages": {"produce": stage}})
    entry, why = policy.outside_selection(pipeline.stage("produce"), key)
    assert why == "outside the selection; its newest outputs"
    assert entry["output_dir"] == str(run_dir / "01_produce") and entry["recorded"] == {"rows": 3}
