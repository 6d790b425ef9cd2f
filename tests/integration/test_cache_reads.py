"""Cache keys beyond a stage's inputs: the registry state it read, and forced runs resumed.

Driven through ``nbtools run`` on fixture notebooks with real kernels and a real MLflow registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from nbtools.cli import cli

pytestmark = pytest.mark.integration


def run(root: Path, *args: str, status: int = 0) -> tuple[dict[str, Any], str]:
    """``nbtools run`` in ``root``; return the new run's manifest and what it printed."""
    result = CliRunner().invoke(cli, ["run", "--project", str(root), "-j", "1", *args])
    assert result.exit_code == status, result.output
    run_id = next(
        line.split()[-1] for line in result.output.splitlines() if line.startswith("Run id:")
    )
    manifest = json.loads((root / "runs" / run_id / "manifest.json").read_text())
    return manifest, result.output


def statuses(manifest: dict[str, Any]) -> dict[str, str]:
    return {name: stage["status"] for name, stage in manifest["stages"].items()}


def test_a_new_champion_from_elsewhere_runs_the_registry_stages_again(make_project) -> None:
    root = make_project(
        """
        produce: {notebook: produce.ipynb}
        promote: {notebook: promotes.ipynb, inputs: [produce], reads: [registry]}
        consume: {notebook: consume.ipynb, inputs: [produce]}
        """,
        extra="model_name: fixture-model",
    )
    first, _ = run(root)
    assert first["stages"]["promote"]["recorded"] == {"champion_before": "None", "version": 1}

    # The champion is now the model this pipeline deployed itself: nothing to run again.
    again, _ = run(root)
    assert set(statuses(again).values()) == {"reused"}

    # Someone else makes another model the champion: the stage that compares against it runs.
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    elsewhere = client.create_run(client.get_experiment_by_name("fixture").experiment_id)
    version = client.create_model_version(
        "fixture-model", elsewhere.info.artifact_uri + "/model", run_id=elsewhere.info.run_id
    )
    client.set_registered_model_alias("fixture-model", "champion", version.version)
    changed, output = run(root)
    assert statuses(changed) == {"produce": "reused", "promote": "succeeded", "consume": "reused"}
    assert changed["stages"]["promote"]["why"] == "registry changed"
    assert "promote    running   (registry changed)" in output
    assert changed["stages"]["promote"]["recorded"] == {"champion_before": "2", "version": 3}

    settled, _ = run(root)
    assert set(statuses(settled).values()) == {"reused"}


def _hurdle_notebook(root: Path) -> None:
    """A stage that fails while the file ``blocked`` exists in the project folder."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        "inputs = None\noutput_dir = None\nmlflow_run_id = None\ntracking_uri = None"
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell(
            'import nbtools\nstage = nbtools.stage_context("hurdle", globals())'
        ),
        nbformat.v4.new_code_cell(
            'if (stage.project_dir / "blocked").exists():\n'
            '    raise RuntimeError("blocked")\n'
            'stage.record("passed", True)'
        ),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "hurdle.ipynb")


def test_resuming_a_forced_run_forces_the_stages_it_had_not_finished(make_project) -> None:
    root = make_project(
        """
        produce: {notebook: produce.ipynb}
        hurdle: {notebook: hurdle.ipynb, inputs: [produce]}
        consume: {notebook: consume.ipynb, inputs: [produce, hurdle]}
        """
    )
    _hurdle_notebook(root)
    run(root)
    (root / "blocked").touch()
    forced, _ = run(root, "--force", status=1)
    assert statuses(forced) == {"produce": "succeeded", "hurdle": "failed", "consume": "not run"}

    (root / "blocked").unlink()
    resumed, _ = run(root, "--resume", forced["run_id"])
    assert statuses(resumed) == {"produce": "reused", "hurdle": "succeeded", "consume": "succeeded"}
    assert resumed["stages"]["produce"]["reused_from"] == forced["run_id"]
    assert resumed["stages"]["hurdle"]["why"] == resumed["stages"]["consume"]["why"] == "forced"
    assert resumed["forced"] == ["consume", "hurdle"]
