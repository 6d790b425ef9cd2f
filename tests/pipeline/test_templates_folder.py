"""The templates folder is a project of its own, on the bundled demo data, and runs as is."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from nbtools.demo import make_churn
from nbtools.ml import cleaning, features, modeling, splitting
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


@pytest.mark.parametrize(
    ("stage", "params_class"),
    [
        ("clean", cleaning.CleaningParams),
        ("features", features.FeatureParams),
        ("split", splitting.SplitParams),
        ("train", modeling.TrainParams),
    ],
)
def test_a_template_declares_its_library_parameters_as_the_library_does(
    stage: str, params_class: type
) -> None:
    """The stage notebook's parameters cell is what a run uses: it must match the library."""
    declared = load_pipeline(templates_dir()).stage(stage).schema

    for name, parameter in params_class.SCHEMA.items():
        assert name in declared, f"{stage}: '{name}' is not declared in the template"
        template = declared[name]
        assert (template.default, template.kind) == (parameter.default, parameter.kind), name
        assert set(template.choices or ()) == set(parameter.choices or ()), name
        assert (template.low, template.high) == (parameter.low, parameter.high), name


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
