"""The typed run record: the JSON it writes, its atomic rewrite, and how it closes a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbtools.errors import StageFailedError
from nbtools.records.history import summarize
from nbtools.records.manifest import RunRecord, StageRecord, mark_killed, new_run_record
from nbtools.records.runs import RunResult, latest_outputs, read_manifest

#: The keys of ``manifest.json`` and of a stage entry, in the order every reader has known them.
RUN_KEYS = [
    "run_id", "pipeline", "project_dir", "status", "started_at", "finished_at", "duration_s",
    "profile", "overrides", "process", "mlflow", "environment", "error", "stages", "selected",
    "jobs", "executor", "scheduler", "forced", "resumed_from",
]  # fmt: skip
STAGE_KEYS = [
    "status", "why", "dir", "output_dir", "reused_from", "notebook", "inputs", "parameters",
    "cache", "started_at", "duration_s", "mlflow_run_id", "executed_notebook", "html",
    "recorded", "output_hashes", "error",
]  # fmt: skip


def _record(run_dir: Path) -> RunRecord:
    stages = {
        "produce": StageRecord(dir="01_produce", notebook="produce.ipynb", inputs=[]),
        "consume": StageRecord(
            dir="02_consume", notebook="consume.ipynb", inputs=["produce"], parameters={"f": 3}
        ),
    }
    return new_run_record(
        "20260101-000000-aaaaaa",
        run_dir,
        pipeline="fixture",
        project_dir=run_dir.parent,
        stages=stages,
        profile="smoke",
        mlflow={"tracking_uri": "sqlite:///mlflow.db", "parent_run_id": None},
        selected=["produce", "consume"],
    )


def test_the_manifest_keeps_its_keys_in_their_order(tmp_path: Path) -> None:
    record = _record(tmp_path / "run")
    record.write()
    manifest = read_manifest(tmp_path / "run")
    assert list(manifest) == RUN_KEYS
    assert list(manifest["stages"]) == ["produce", "consume"]
    assert list(manifest["stages"]["consume"]) == STAGE_KEYS
    assert manifest["stages"]["consume"]["parameters"] == {"f": 3}
    assert manifest["status"] == "running" and manifest["profile"] == "smoke"
    assert set(manifest["process"]) == {"host", "pid"}


def test_sources_appear_last_and_only_when_the_stage_reads_some(tmp_path: Path) -> None:
    record = _record(tmp_path / "run")
    record.stages["produce"].sources = {"path": {"source": "x.csv", "fingerprint": "f", "rows": 3}}
    manifest = json.loads(record.write().read_text())
    assert list(manifest["stages"]["produce"]) == [*STAGE_KEYS, "sources"]
    assert "sources" not in manifest["stages"]["consume"]


def test_the_record_reads_back_with_the_plain_readers(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    record = _record(runs / "20260101-000000-aaaaaa")
    (record.run_dir / "01_produce").mkdir(parents=True)
    record.stages["produce"].status = "succeeded"
    record.stages["consume"].reuse(
        {"run_id": "earlier", "output_dir": str(record.run_dir / "01_produce"), "recorded": {}},
        "unchanged",
    )
    record.close(succeeded=True)
    record.write()
    assert latest_outputs(runs, ("produce",)) == {"produce": record.run_dir / "01_produce"}
    result = RunResult(record.run_id, record.run_dir, None, read_manifest(record.run_dir))
    assert result.executed == ["produce"] and result.reused == ["consume"]
    assert summarize(read_manifest(record.run_dir))["status"] == "succeeded"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("cannot be written")


def test_a_failed_rewrite_keeps_the_previous_manifest_whole(tmp_path: Path) -> None:
    record = _record(tmp_path / "run")
    record.write()
    before = (tmp_path / "run" / "manifest.json").read_text()
    record.stages["produce"].status = "succeeded"
    record.stages["produce"].recorded = {"bad": Unprintable()}
    with pytest.raises(RuntimeError, match="cannot be written"):
        record.write()
    assert (tmp_path / "run" / "manifest.json").read_text() == before
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["manifest.json"]


def test_closing_marks_running_stages_failed_and_pending_ones_not_run(tmp_path: Path) -> None:
    record = _record(tmp_path / "run")
    produce = record.stages["produce"]
    produce.status, produce.mlflow_run_id = "running", "child-1"
    produce.executed_notebook = "out.ipynb"
    assert record.close(succeeded=False, cancelled=True) == ["child-1"]
    assert produce.status == "failed"
    assert produce.error == {
        "message": "interrupted before the stage finished",
        "cell_index": None,
        "notebook": "out.ipynb",
    }
    assert record.stages["consume"].status == "not run"
    assert record.status == "cancelled" and record.finished_at is not None
    assert isinstance(record.duration_s, float)


def test_a_stage_waits_for_its_inputs_and_stops_after_a_failed_one(tmp_path: Path) -> None:
    record = _record(tmp_path / "run")
    consume = record.stages["consume"]
    assert record.inputs_status(consume) == ([], False)
    record.stages["produce"].status = "reused"
    assert record.inputs_status(consume) == ([], True)
    record.stages["produce"].status = "failed"
    assert record.inputs_status(consume) == (["produce"], False)


def test_a_killed_run_is_marked_failed_with_its_open_mlflow_runs() -> None:
    killed = {
        "run_id": "old",
        "status": "running",
        "error": None,
        "mlflow": {"parent_run_id": "parent"},
        "stages": {
            "a": {"status": "succeeded", "mlflow_run_id": "a-run"},
            "b": {"status": "running", "mlflow_run_id": "b-run", "error": None},
            "c": {"status": "pending"},
        },
    }
    assert mark_killed(killed, "new") == ["b-run", "parent"]
    assert killed["status"] == "failed"
    assert killed["error"] == "The run was killed; resumed as run new."
    assert killed["stages"]["b"]["status"] == "failed"
    assert killed["stages"]["c"]["status"] == "not run"


def test_a_finished_stage_takes_its_files_values_and_error_from_its_folder(tmp_path: Path) -> None:
    stage_dir = tmp_path / "01_produce"
    stage_dir.mkdir()
    for name in ("output.ipynb", "output.html", "values.json"):
        (stage_dir / name).write_text("{}")
    (stage_dir / "recorded.json").write_text('{"rows": 4}')
    record = StageRecord(dir="01_produce", notebook="produce.ipynb", inputs=[])
    record.start(stage_dir, "no earlier execution", "child-1")
    assert (record.status, record.mlflow_run_id) == ("running", "child-1")
    record.finish(StageFailedError("produce", "ValueError: boom", 3, "nb.ipynb"), 1.5)
    assert record.status == "failed" and record.duration_s == 1.5
    assert record.error == {"message": "ValueError: boom", "cell_index": 3, "notebook": "nb.ipynb"}
    assert record.executed_notebook == str(stage_dir / "output.ipynb")
    assert record.html == str(stage_dir / "output.html")
    assert record.recorded == {"rows": 4}
    assert set(record.output_hashes) == {"values.json", "recorded.json"}
