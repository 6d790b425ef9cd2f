"""The templates folder is a project of its own, on the bundled demo data, and runs as is."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbtools.core import cleaning, features, modeling, splitting
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
