"""Run summaries and side-by-side comparisons, from manifests alone."""

from __future__ import annotations

import os
import socket

from nbtools.records.history import compare_runs, summarize


def _manifest(run_id: str, rows: int, pid: int, status: str = "succeeded") -> dict:
    return {
        "run_id": run_id,
        "status": status,
        "started_at": "2026-11-26T09:00:00+00:00",
        "process": {"host": socket.gethostname(), "pid": pid},
        "stages": {
            "produce": {"status": "succeeded", "parameters": {"rows": rows}, "recorded": {}},
            "evaluate": {
                "status": "reused",
                "reused_from": "r0",
                "parameters": {},
                "recorded": {"test_f1": 0.8, "n": 3},
            },
        },
    }


def test_summary_keeps_the_held_out_metrics_and_how_each_stage_ran() -> None:
    summary = summarize(_manifest("r1", 10, os.getpid()))

    assert summary["metrics"] == {"test_f1": 0.8}
    assert summary["stages"]["evaluate"]["reused_from"] == "r0"
    assert summary["status"] == "succeeded"


def test_a_running_record_whose_process_is_gone_reads_interrupted() -> None:
    alive = summarize(_manifest("r1", 10, os.getpid(), status="running"))
    gone = summarize(_manifest("r2", 10, 2**22 + 12345, status="running"))

    assert alive["status"] == "running"
    assert gone["status"] == "interrupted"


def test_comparison_marks_what_differs() -> None:
    table = compare_runs(_manifest("r1", 10, 1), _manifest("r2", 20, 1))

    assert table["runs"] == ["r1", "r2"]
    assert table["parameters"] == [{"name": "produce.rows", "values": [10, 20], "differs": True}]
    assert {"name": "evaluate.test_f1", "values": [0.8, 0.8], "differs": False} in table["values"]
