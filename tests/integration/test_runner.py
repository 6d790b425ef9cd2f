"""The runner on tiny fixture notebooks: records, MLflow runs, and each failure mode."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest
from mlflow.tracking import MlflowClient

from nbtools import InvalidParameterError, run_pipeline

pytestmark = pytest.mark.integration

TWO_STAGES = """
produce: {notebook: produce.ipynb}
consume: {notebook: consume.ipynb, inputs: [produce]}
"""


def _mlflow(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def test_a_run_records_every_stage_and_its_mlflow_runs(make_project) -> None:
    root = make_project(TWO_STAGES)
    result = run_pipeline(root, overrides={"produce.rows": 4, "factor": 3})

    assert result.succeeded
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"
    produce, consume = manifest["stages"]["produce"], manifest["stages"]["consume"]
    assert produce["parameters"] == {"rows": 4, "label": "x"}
    assert consume["recorded"] == {"total": 18.0}
    assert (result.run_dir / "01_produce" / "values.json").read_text() == "[0, 1, 2, 3]"
    assert produce["output_hashes"]["values.json"].startswith("sha256:")
    for stage in (produce, consume):
        assert Path(stage["executed_notebook"]).is_file()
        assert Path(stage["html"]).read_text().lstrip().startswith("<!DOCTYPE html>")
    assert manifest["environment"]["packages"]["papermill"]

    client = _mlflow(root)
    parent = client.get_run(result.mlflow_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params == {
        "profile": "none",
        "seed": "42",
        "overrides": '{"produce.rows": 4, "factor": 3}',
    }
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["manifest.json"]
    child = client.get_run(consume["mlflow_run_id"])
    assert child.info.status == "FINISHED"
    assert child.data.tags["mlflow.parentRunId"] == result.mlflow_run_id
    assert child.data.params == {"factor": "3.0"}
    assert child.data.metrics == {"total": 18.0}
    logged = {a.path for a in client.list_artifacts(child.info.run_id, "notebook")}
    assert logged == {"notebook/output.ipynb", "notebook/output.html"}


def test_source_notebooks_are_never_modified(make_project) -> None:
    root = make_project(TWO_STAGES)
    before = (root / "produce.ipynb").read_bytes()
    run_pipeline(root)
    assert (root / "produce.ipynb").read_bytes() == before


def test_bad_parameters_fail_before_any_run_is_recorded(make_project) -> None:
    root = make_project(TWO_STAGES)
    with pytest.raises(InvalidParameterError, match="'rows' parameter of stage 'produce'"):
        run_pipeline(root, overrides={"rows": 5000})
    with pytest.raises(InvalidParameterError, match="No stage declares a parameter 'nope'"):
        run_pipeline(root, overrides={"nope": 1})
    assert not (root / "runs").exists()


@pytest.mark.parametrize(
    ("notebook", "extra", "reason", "recorded"),
    [
        ("raises", "", "ValueError: boom", "before_failure"),
        ("sleeps", "cell_timeout: 15", "cell timeout", "before_timeout"),
        ("dies", "", "kernel died", "before_death"),
    ],
)
def test_a_failed_stage_is_recorded_as_failed_everywhere(
    make_project, notebook: str, extra: str, reason: str, recorded: str
) -> None:
    root = make_project(
        f"{notebook}: {{notebook: {notebook}.ipynb}}\n"
        "produce: {notebook: produce.ipynb, inputs: [" + notebook + "]}",
        extra=extra,
    )
    result = run_pipeline(root)

    assert not result.succeeded
    assert reason in str(result.error)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    failed = manifest["stages"][notebook]
    assert manifest["status"] == "failed"
    assert failed["status"] == "failed"
    assert reason in failed["error"]["message"]
    assert manifest["stages"]["produce"]["status"] == "not run"
    assert failed["recorded"] == {recorded: 1}

    saved = nbformat.read(failed["executed_notebook"], as_version=4)
    failing_cell = saved.cells[failed["error"]["cell_index"]]
    assert "stage.record('after" not in failing_cell.source
    assert failing_cell.source.strip() and failing_cell.cell_type == "code"
    assert f"cell {failed['error']['cell_index']}" in str(result.error)

    client = _mlflow(root)
    assert client.get_run(failed["mlflow_run_id"]).info.status == "FAILED"
    assert client.get_run(result.mlflow_run_id).info.status == "FAILED"


def _execution_counts(notebook: str) -> list[int]:
    saved = nbformat.read(notebook, as_version=4)
    return [c.execution_count for c in saved.cells if c.cell_type == "code"]


def test_one_job_runs_the_next_stage_in_a_kernel_started_ahead_and_leaves_none(
    make_project, child_kernels
) -> None:
    root = make_project(TWO_STAGES)
    result = run_pipeline(root, jobs=1, overrides={"produce.rows": 4, "factor": 3})

    assert result.succeeded
    assert result.manifest["stages"]["consume"]["recorded"] == {"total": 18.0}
    assert child_kernels() == []
    for record in result.manifest["stages"].values():
        counts = _execution_counts(record["executed_notebook"])
        assert counts == list(range(1, len(counts) + 1))


@pytest.mark.parametrize("notebook", ["raises", "dies"])
def test_a_kernel_started_for_a_stage_that_never_runs_is_stopped(
    make_project, child_kernels, notebook: str
) -> None:
    root = make_project(
        f"{notebook}: {{notebook: {notebook}.ipynb}}\n"
        f"produce: {{notebook: produce.ipynb, inputs: [{notebook}]}}"
    )
    result = run_pipeline(root, jobs=1)

    assert not result.succeeded
    assert result.manifest["stages"]["produce"]["status"] == "not run"
    assert child_kernels() == []


def test_a_spare_kernel_matches_a_fresh_one_and_has_the_libraries_imported(
    tmp_path: Path, child_kernels
) -> None:
    from nbtools.runner.executor import execute_stage
    from nbtools.runner.kernels import KernelPool

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "import json, os, sys\n"
            "seen = {'cwd': os.getcwd(), 'x': os.environ.get('NBTOOLS_TEST_X'),\n"
            "        'imported': 'mlflow' in sys.modules and 'pandas' in sys.modules}"
        ),
        nbformat.v4.new_code_cell("json.dump(seen, open('seen.json', 'w'))"),
    ]
    nbformat.write(notebook, tmp_path / "probe.ipynb")
    env = {**os.environ, "NBTOOLS_TEST_X": "1"}
    spare = KernelPool()
    try:
        spare.prepare(tmp_path, os.environ)
        assert spare.take(tmp_path, env) is None  # another environment: not handed over
        spare.prepare(tmp_path, env)
        km = spare.take(tmp_path, env)
        assert km is not None
        try:
            execute_stage(
                "probe",
                tmp_path / "probe.ipynb",
                tmp_path / "out.ipynb",
                {},
                cwd=tmp_path,
                timeout=60,
                km=km,
            )
        finally:
            spare.stop(km)
        spare.prepare(tmp_path, env)  # never taken: closing stops it
    finally:
        spare.close()

    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen == {"cwd": str(tmp_path), "x": "1", "imported": True}
    assert _execution_counts(str(tmp_path / "out.ipynb")) == [1, 2]
    assert child_kernels() == []


def test_closing_the_pool_stops_a_kernel_still_warming_up(tmp_path: Path, child_kernels) -> None:
    """A cancelled run ends at once: a spare kernel still warming up is stopped, not awaited."""
    from nbtools.runner.kernels import KernelPool

    warmed = tmp_path / "warmed"
    pool = KernelPool()
    # A warm-up longer than any run's wait for it: the old close waited, and the file appeared.
    pool._warm_up = f"import pathlib, time\ntime.sleep(60)\npathlib.Path({str(warmed)!r}).touch()"
    try:
        pool.prepare(tmp_path, os.environ)
        deadline = time.monotonic() + 60
        while not child_kernels():  # the spare's kernel process has started
            assert time.monotonic() < deadline, "the spare kernel never started"
            time.sleep(0.2)
    finally:
        pool.close()

    assert not warmed.exists()
    assert child_kernels() == []
