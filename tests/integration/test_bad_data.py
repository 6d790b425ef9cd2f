"""Bad data stops the ingest stage with a clear message, through a real kernel."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from nbtools import run_pipeline
from nbtools.cli import cli
from nbtools.pipeline.project import create_project

pytestmark = pytest.mark.integration

CASES = {
    "missing_target": ("a,b\n1,2\n3,4\n", "Target column 'churned'"),
    "single_class": ("a,churned\n1,yes\n2,yes\n3,yes\n", "single class"),
    "empty_column": ("a,empty,churned\n1,,yes\n2,,no\n3,,yes\n", "Column 'empty' is empty"),
    "malformed": ('a,churned\n1,yes\n2,"no\n', "malformed"),
    "no_rows": ("a,churned\n", "no rows"),
}


@pytest.fixture
def project(tmp_path: Path, migrated_db: Path) -> Path:
    data = tmp_path / "good.csv"
    data.write_text("a,churned\n1,yes\n2,no\n")
    root = create_project(tmp_path / "p", data=str(data), target="churned")
    shutil.copy(migrated_db, root / "mlflow.db")
    return root


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_stops_the_run_in_ingest_with_a_clear_message(project: Path, case: str) -> None:
    content, fragment = CASES[case]
    bad = project / f"{case}.csv"
    bad.write_text(content)
    result = run_pipeline(project, overrides={"ingest.source": str(bad)}, targets=["ingest"])
    assert not result.succeeded
    assert result.error is not None and result.error.stage == "ingest"
    assert fragment.lower() in str(result.error).lower()
    assert result.manifest["stages"]["ingest"]["status"] == "failed"


def test_the_command_line_names_the_stage_the_cell_and_the_notebook(project: Path) -> None:
    (project / "no_rows.csv").write_text(CASES["no_rows"][0])
    result = CliRunner().invoke(
        cli,
        ["run", "--project", str(project), "-p", "ingest.source=no_rows.csv"],
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    assert "Stage 'ingest' failed in cell" in result.output
    assert "no rows" in result.output.lower()
    assert "01_ingest/output.ipynb" in result.output
