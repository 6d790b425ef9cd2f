"""A stage notebook opened on its own (as in JupyterLab) runs top to bottom with its defaults."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from nbtools.pipeline.project import create_project
from nbtools.records.runs import list_runs

pytestmark = pytest.mark.integration


def test_a_stage_alone_runs_its_upstream_stages_first(tmp_path: Path, migrated_db: Path) -> None:
    root = create_project(tmp_path / "churn")
    shutil.copy(migrated_db, root / "mlflow.db")
    (root / "pipeline.yaml").write_text(
        (root / "pipeline.yaml")
        .read_text()
        .replace("target: churned", "target: churned\n      ignore_columns: [region]")
    )
    notebook = nbformat.read(root / "03_split.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(root)}}
    ).execute()

    printed = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "running them first" in printed
    runs = list_runs(root / "runs")
    assert len(runs) == 1 and runs[0]["status"] == "succeeded"
    assert list(runs[0]["stages"]) == ["ingest", "clean"]
    # the upstream run used pipeline.yaml's parameters, exactly as a batch run would
    assert runs[0]["stages"]["ingest"]["parameters"]["ignore_columns"] == ["region"]
    scratch = root / ".nbtools" / "interactive" / "split"
    assert {"train.parquet", "validation.parquet", "test.parquet"} <= {
        p.name for p in scratch.iterdir()
    }
    assert json.loads((scratch / "recorded.json").read_text())["rows_train"] > 0
    assert (root / "03_split.ipynb").read_bytes() == (
        Path(__file__).parents[2] / "templates" / "03_split.ipynb"
    ).read_bytes()
