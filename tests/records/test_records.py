"""Run records: atomic manifests, lookup by id prefix, latest outputs of a stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbtools.errors import RunNotFoundError
from nbtools.records.runs import (
    hash_outputs,
    latest_outputs,
    list_runs,
    load_run,
    write_manifest,
)


def record(runs: Path, run_id: str, status: str) -> None:
    (runs / run_id / "01_a").mkdir(parents=True)
    write_manifest(
        runs / run_id, {"run_id": run_id, "stages": {"a": {"status": status, "dir": "01_a"}}}
    )


def test_manifest_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    write_manifest(tmp_path, {"run_id": "r", "n": 1})
    write_manifest(tmp_path, {"run_id": "r", "n": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    assert json.loads((tmp_path / "manifest.json").read_text())["n"] == 2


def test_runs_are_listed_newest_first_and_found_by_prefix(tmp_path: Path) -> None:
    record(tmp_path, "20260101-000000-aaaaaa", "succeeded")
    record(tmp_path, "20260102-000000-bbbbbb", "failed")
    assert [m["run_id"] for m in list_runs(tmp_path)] == [
        "20260102-000000-bbbbbb",
        "20260101-000000-aaaaaa",
    ]
    assert load_run(tmp_path, "20260101")["run_id"] == "20260101-000000-aaaaaa"
    with pytest.raises(RunNotFoundError, match=r"2 runs in .* match the id '2026'"):
        load_run(tmp_path, "2026")
    with pytest.raises(RunNotFoundError, match=r"No run in .* match the id 'zzz'"):
        load_run(tmp_path, "zzz")
    assert list_runs(tmp_path / "nothing") == []


def test_latest_outputs_come_from_one_run_where_all_succeeded(tmp_path: Path) -> None:
    record(tmp_path, "20260101-000000-aaaaaa", "succeeded")
    record(tmp_path, "20260102-000000-bbbbbb", "failed")
    assert latest_outputs(tmp_path, ("a",)) == {"a": tmp_path / "20260101-000000-aaaaaa" / "01_a"}
    assert latest_outputs(tmp_path, ("a", "b")) is None


def test_output_hashes_leave_out_the_executed_notebook(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "m.pkl").write_bytes(b"x")
    (tmp_path / "output.ipynb").write_text("{}")
    hashes = hash_outputs(tmp_path)
    assert list(hashes) == ["model/m.pkl"]
    assert hashes["model/m.pkl"] == (
        "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    )
