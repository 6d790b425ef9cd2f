"""The templates folder is a project of its own, on the bundled demo data, and runs as is."""

from __future__ import annotations

from pathlib import Path

from nbtools.core.data import load_source, make_churn
from nbtools.core.project import DEMO_DATA, create_project, templates_dir
from nbtools.core.spec import load_pipeline


def test_the_templates_folder_reads_the_bundled_data_it_does_not_hold() -> None:
    pipeline = load_pipeline(templates_dir())

    source = pipeline.resolve()["ingest"]["source"]

    assert source == "demo"
    assert not (templates_dir() / DEMO_DATA).exists()
    assert load_source(source).equals(make_churn())


def test_a_demo_project_reads_its_own_copy_of_the_data(tmp_path: Path) -> None:
    project = create_project(tmp_path / "churn")

    source = load_pipeline(project).resolve()["ingest"]["source"]

    assert source == DEMO_DATA.as_posix()
    assert load_source(source, base_dir=project).shape == make_churn().shape
    text = (project / "pipeline.yaml").read_text(encoding="utf-8")
    assert "source: data/churn.csv" in text and "# CSV or Parquet path" in text  # comment kept
