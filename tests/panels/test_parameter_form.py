"""The parameter form generated from a stage's parameters cell."""

from __future__ import annotations

from pathlib import Path

import ipywidgets as widgets

from nbtools.panels import parameter_form
from nbtools.pipeline.spec import load_pipeline


def test_the_form_has_a_widget_per_parameter_chosen_by_its_type(project: Path) -> None:
    form = parameter_form("split", project)
    schema = load_pipeline(project).stage("split").schema
    assert list(form.inputs) == list(schema)
    for name, parameter in schema.items():
        widget = form.inputs[name]
        if parameter.choices is not None:
            assert isinstance(widget, widgets.Dropdown)
        elif parameter.kind == "float" and not parameter.optional:
            assert isinstance(widget, widgets.FloatText)
    assert form.export() == load_pipeline(project).resolve()["split"]


def test_the_form_saves_a_changed_value(project: Path) -> None:
    form = parameter_form("split", project)
    form.inputs["test_size"].value = 0.3
    form.save_button.click()
    assert load_pipeline(project).resolve()["split"]["test_size"] == 0.3


def test_a_value_out_of_its_range_is_shown_and_not_saved(project: Path) -> None:
    before = (project / "pipeline.yaml").read_text(encoding="utf-8")
    form = parameter_form("split", project)
    form.inputs["test_size"].value = 1.5
    form.save_button.click()
    assert "must be a float in the range (0, 1). Got 1.5 instead." in form.message_text
    assert (project / "pipeline.yaml").read_text(encoding="utf-8") == before


def test_unparsable_yaml_in_a_list_parameter_is_shown(project: Path) -> None:
    form = parameter_form("clean", project)
    form.inputs["drop_columns"].value = "[region"
    form.save_button.click()
    assert "must be written as YAML" in form.message_text
