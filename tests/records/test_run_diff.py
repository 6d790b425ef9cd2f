"""Run comparisons from records written by hand: what counts as volatile, how cells pair, what
the report escapes. (``tests/integration/test_diff_two_runs.py`` compares two real runs.)"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from nbtools.errors import RunNotFoundError
from nbtools.records.run_diff import diff_runs, report_html, summary_text

FIRST, SECOND = "20261130-090000-aaaaaa", "20261130-100000-bbbbbb"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"first").decode()
OTHER_PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"second").decode()


def _cell(
    cell_id: str, source: str, outputs: list[dict[str, Any]] | None = None, **metadata: Any
) -> dict[str, Any]:
    return {
        "id": cell_id,
        "cell_type": "code",
        "source": source,
        "metadata": metadata,
        "execution_count": None,
        "outputs": outputs or [],
    }


def _stream(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": text}


def _record(runs: Path, run_id: str, started: str, cells: list[dict[str, Any]]) -> None:
    """Write a run record whose stage ``report`` executed the notebook ``cells``."""
    stage_dir = runs / run_id / "01_report"
    stage_dir.mkdir(parents=True)
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (stage_dir / "output.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    manifest = {
        "run_id": run_id,
        "status": "succeeded",
        "started_at": started,
        "finished_at": started.replace(":00:00", ":05:00"),
        "mlflow": {"parent_run_id": f"parent{run_id[-6:]}"},
        "stages": {
            "report": {
                "status": "succeeded",
                "why": "no earlier execution",
                "dir": "01_report",
                "output_dir": str(stage_dir),
                "parameters": {},
                "recorded": {},
                "mlflow_run_id": f"child{run_id[-6:]}",
                "executed_notebook": str(stage_dir / "output.ipynb"),
            }
        },
    }
    (runs / run_id / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def _both(tmp_path: Path, first: list[dict[str, Any]], second: list[dict[str, Any]]):
    runs = tmp_path / "runs"
    _record(runs, FIRST, "2026-11-30T09:00:00+00:00", first)
    _record(runs, SECOND, "2026-11-30T10:00:00+00:00", second)
    return diff_runs(runs, FIRST, SECOND).stage("report")


def test_each_runs_own_marks_are_volatile_but_other_dates_are_not(tmp_path: Path) -> None:
    def cells(run_id: str, hour: str, data_date: str) -> list[dict[str, Any]]:
        folder = tmp_path / "runs" / run_id / "01_report"
        return [
            _cell("a", "print(now)", [_stream(f"at 2026-11-30T{hour}:02:13.5+00:00\n")]),
            _cell("b", "print(where)", [_stream(f"{folder} child{run_id[-6:]} {run_id}\n")]),
            _cell("c", "print(last)", [_stream(f"last sale 2026-11-30 {data_date}\n")]),
        ]

    stage = _both(tmp_path, cells(FIRST, "09", "08:00:00"), cells(SECOND, "10", "08:30:00"))

    assert stage.cells is not None
    assert [c.status for c in stage.cells] == ["unchanged", "unchanged", "changed"]
    assert stage.cells[1].outputs[0].text == ["<stage folder> <mlflow run> <run id>"]
    # a time outside either run's own span is data, and its change shows
    assert "-last sale 2026-11-30 08:00:00" in stage.cells[2].outputs[0].text


def test_execution_counts_metadata_and_widget_ids_are_ignored(tmp_path: Path) -> None:
    def cells(count: int, model: str, seconds: float) -> list[dict[str, Any]]:
        widget = {
            "output_type": "display_data",
            "metadata": {},
            "data": {
                "application/vnd.jupyter.widget-view+json": {
                    "model_id": model,
                    "version_major": 2,
                    "version_minor": 0,
                },
                "text/plain": "IntSlider(value=3)",
            },
        }
        result = {
            "output_type": "execute_result",
            "execution_count": count,
            "metadata": {"papermill": {"duration": seconds}},
            "data": {"text/plain": "42", "image/png": PNG},
        }
        papermill = {"papermill": {"duration": seconds, "status": "completed"}}
        return [_cell("w", "slider", [widget], **papermill), _cell("r", "x", [result])]

    stage = _both(tmp_path, cells(3, "abc123", 1.5), cells(7, "def456", 0.2))

    assert stage.cells is not None and stage.changed_cells == []


def test_cells_pair_by_id_and_the_injected_parameters_by_tag(tmp_path: Path) -> None:
    injected = {"tags": ["injected-parameters"]}
    first = [
        _cell("p1", "rows = 10\n", **injected),
        _cell("keep", "x = 1"),
        _cell("gone", "y = 2"),
    ]
    second = [
        _cell("p2", "rows = 20\n", **injected),
        _cell("keep", "x = 1"),
        _cell("new", "z = 3", [_stream("3\n")]),
    ]

    stage = _both(tmp_path, first, second)

    assert stage.cells is not None
    assert [(c.status, c.positions) for c in stage.cells] == [
        ("changed", (0, 0)),
        ("unchanged", (1, 1)),
        ("removed", (2, None)),
        ("added", (None, 2)),
    ]
    assert "-rows = 10" in stage.cells[0].source_diff
    assert stage.cells[3].outputs[0].status == "added"


def test_changed_images_show_both_sides_and_outputs_are_escaped(tmp_path: Path) -> None:
    def cells(png: str, text: str) -> list[dict[str, Any]]:
        figure = {"output_type": "display_data", "metadata": {}, "data": {"image/png": png}}
        html = {
            "output_type": "display_data",
            "metadata": {},
            "data": {"text/html": text, "text/plain": text},
        }
        return [_cell("fig", "plot()", [figure]), _cell("t", "table()", [html])]

    stage = _both(tmp_path, cells(PNG, "<b>ok</b>"), cells(OTHER_PNG, "<script>alert(1)</script>"))
    runs = tmp_path / "runs"
    page = report_html(diff_runs(runs, FIRST[:15], SECOND[:15]))

    assert stage.cells is not None
    assert stage.cells[0].outputs[0].images == (PNG, OTHER_PNG)
    assert f"data:image/png;base64,{PNG}" in page
    assert f"data:image/png;base64,{OTHER_PNG}" in page
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'class="nbd-cell nbd-changed" open' in page


def test_a_stage_without_its_notebook_says_so(tmp_path: Path) -> None:
    stage_cells = [_cell("a", "x = 1")]
    runs = tmp_path / "runs"
    _record(runs, FIRST, "2026-11-30T09:00:00+00:00", stage_cells)
    _record(runs, SECOND, "2026-11-30T10:00:00+00:00", stage_cells)
    (runs / SECOND / "01_report" / "output.ipynb").unlink()

    diff = diff_runs(runs, FIRST, SECOND)

    assert diff.stage("report").cells is None
    assert f"no executed notebook in run {SECOND}" in summary_text(diff)


def test_an_unknown_run_is_refused_with_the_latest_runs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _record(runs, FIRST, "2026-11-30T09:00:00+00:00", [])

    with pytest.raises(RunNotFoundError, match=f"match the id 'nope'. Latest runs: {FIRST}"):
        diff_runs(runs, FIRST, "nope")
