"""The templates folder is a project of its own, on the bundled demo data, and runs as is."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from nbtools.cli._declared import DECLARATIONS, declared_cells
from nbtools.demo import make_churn
from nbtools.pipeline.checks import check_notebook
from nbtools.pipeline.project import DEMO_DATA, create_project, templates_dir
from nbtools.pipeline.spec import load_pipeline
from nbtools.tables import load_source

REPO = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize("name", sorted(DECLARATIONS))
def test_a_declared_template_holds_the_parameters_cell_its_declaration_renders(name: str) -> None:
    """The stage notebook's parameters cell is what a run uses: it must be the declaration's."""
    path = templates_dir().resolve() / name
    declaration, expected = declared_cells()[path]

    assert check_notebook(path, declared=(declaration, expected)) == []
    declared = load_pipeline(templates_dir()).stage(name[3:].removesuffix(".ipynb")).schema
    wanted = {n: p for c in DECLARATIONS[name] for n, p in c.SCHEMA.items() if n in declared}
    assert declared == wanted


def test_the_wheel_carries_the_stage_templates_and_nothing_the_folder_gathers() -> None:
    """The wheel lists the templates file by file: the pipeline file and each stage's notebook,
    no more (not the run records or MLflow store of the folder opened as a project)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    folder = templates_dir()
    stages = load_pipeline(folder).stages
    wanted = {"templates/pipeline.yaml"} | {
        f"templates/{stage.notebook.relative_to(folder).as_posix()}" for stage in stages
    }
    assert set(shipped) == wanted
    assert all(target == "nbtools/" + source for source, target in shipped.items())
