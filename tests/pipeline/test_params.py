"""Typed parameters read from a parameters cell, layered and validated without a kernel."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import nbformat
import pytest

from nbtools.cli._declared import declared_cells, write_declared_cells
from nbtools.errors import InvalidParameterError, PipelineSpecError
from nbtools.ops.deploying import DeployParams
from nbtools.ops.monitoring.check import MonitorPolicy
from nbtools.params import (
    RESERVED_NAMES,
    StageParams,
    param,
    parse_assignment,
    parse_parameters_cell,
    render_parameters_cell,
    resolve_parameters,
)
from nbtools.pipeline.checks import check_paths
from nbtools.pipeline.project import templates_dir

CELL = """
test_size = 0.2          # share of rows held out; range: (0, 1)
folds = 5                # range: [2, 20]
strategy = "stratified"  # one of: random, stratified, group, time
shuffle = True
columns = ["a", "b"]
time_column: str | None = None
anything = None
# Filled in by the nbtools runner
inputs = None
output_dir = None
"""


def schema():
    return {"split": parse_parameters_cell(CELL, "split")}


def test_types_ranges_and_choices_come_from_the_cell() -> None:
    params = parse_parameters_cell(CELL, "split")
    assert list(params) == [
        "test_size",
        "folds",
        "strategy",
        "shuffle",
        "columns",
        "time_column",
        "anything",
    ]
    assert params["test_size"].kind == "float"
    assert params["test_size"].help == "share of rows held out"
    assert params["folds"].describe() == "an int in the range [2, 20]"
    assert params["strategy"].choices == ("random", "stratified", "group", "time")
    assert params["time_column"].kind == "str" and params["time_column"].optional
    assert params["anything"].kind == "any"


def test_the_error_names_stage_parameter_expectation_and_value() -> None:
    with pytest.raises(InvalidParameterError) as caught:
        resolve_parameters(schema(), [{"test_size": 1.5}])
    assert str(caught.value) == (
        "The 'test_size' parameter of stage 'split' must be a float in the range (0, 1). "
        "Got 1.5 instead."
    )


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"folds": 2.5}, "must be an int in the range [2, 20]. Got 2.5"),
        ({"folds": True}, "must be an int"),
        ({"strategy": "magic"}, "must be one of 'random', 'stratified'"),
        ({"shuffle": "yes"}, "must be a bool. Got 'yes'"),
        ({"time_column": 3}, "must be a str or None. Got 3"),
        ({"nope": 1}, "No stage declares a parameter 'nope'"),
        ({"split.nope": 1}, "Stage 'split' has no parameter 'nope'. Its parameters are:"),
        ({"train.folds": 3}, "There is no stage 'train'"),
        ({"output_dir": "x"}, "is set by the nbtools runner"),
    ],
)
def test_bad_overrides_are_refused(override: dict, fragment: str) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        resolve_parameters(schema(), [override])
    assert fragment in str(caught.value)


def test_layers_merge_in_order() -> None:
    resolved = resolve_parameters(
        schema(), [{"split.folds": 3}, {"folds": 4}, {"time_column": "when", "test_size": 0.3}]
    )
    assert resolved["split"]["folds"] == 4
    assert resolved["split"]["time_column"] == "when"
    assert resolved["split"]["test_size"] == pytest.approx(0.3)
    assert resolved["split"]["strategy"] == "stratified"


def test_command_line_values_are_read_as_yaml() -> None:
    assert parse_assignment("train.C=0.5") == ("train.C", 0.5)
    assert parse_assignment("shuffle=false") == ("shuffle", False)
    assert parse_assignment("columns=[a, b]") == ("columns", ["a", "b"])
    assert parse_assignment("source=data/x.csv") == ("source", "data/x.csv")
    with pytest.raises(InvalidParameterError, match="NAME=VALUE"):
        parse_assignment("oops")


@pytest.mark.parametrize(
    ("cell", "fragment"),
    [
        ("x = 1 + y", "must assign literals"),
        ("print(1)", "may only hold assignments"),
        ("x = 5  # range: [0, 1]", "does not satisfy its own hint"),
        ("x: set = None", "annotated 'set'"),
        ("x = (", "not valid Python"),
    ],
)
def test_a_malformed_parameters_cell_is_a_spec_error(cell: str, fragment: str) -> None:
    with pytest.raises(PipelineSpecError) as caught:
        parse_parameters_cell(cell, "s")
    assert fragment in str(caught.value)


@dataclass
class ToyParams(StageParams):
    """The parameters of a toy stage."""

    test_size: float = param(0.2, help="share of rows held out", range="(0, 1)")
    folds: int = param(5, help="cross-validation folds", range="[2, 20]")
    strategy: str = param("random", help="how rows are split", choices=("random", "group"))
    columns: list[str] = param([], help='columns to keep, e.g. ["a"]')
    group_column: str | None = param(None, help="rows sharing its value stay together")
    margin: float = param(0.0, help="taken from another stage", range="[0, 1]", in_cell=False)

    STAGE: ClassVar[str] = "toy"


def test_a_declaration_derives_the_schema_the_cell_and_the_docstring() -> None:
    cell = render_parameters_cell(ToyParams)

    assert cell.splitlines()[:5] == [
        "test_size = 0.2  # share of rows held out; range: (0, 1)",
        "folds = 5  # cross-validation folds; range: [2, 20]",
        'strategy = "random"  # how rows are split; one of: random, group',
        'columns = []  # columns to keep, e.g. ["a"]',
        "group_column: str | None = None  # rows sharing its value stay together",
    ]
    assert "margin" not in cell and "margin" in ToyParams.SCHEMA
    assert cell.splitlines()[-4:] == [f"{name} = None" for name in RESERVED_NAMES]
    parsed = parse_parameters_cell(cell, "toy")
    assert parsed == {n: p for n, p in ToyParams.SCHEMA.items() if n != "margin"}
    assert ToyParams.SCHEMA["folds"].describe() == "an int in the range [2, 20]"
    assert "folds : an int in the range [2, 20], default=5" in (ToyParams.__doc__ or "")


def test_declared_parameters_validate_and_come_from_a_namespace() -> None:
    params = ToyParams.from_namespace({"folds": 3, "strategy": "group", "other": object()})

    assert (params.folds, params.strategy, params.test_size) == (3, "group", 0.2)
    assert ToyParams().columns is not ToyParams().columns  # a fresh list for every instance
    with pytest.raises(InvalidParameterError) as caught:
        ToyParams.from_namespace({"folds": 50})
    assert str(caught.value) == (
        "The 'folds' parameter of stage 'toy' must be an int in the range [2, 20]. Got 50 instead."
    )


def test_a_declaration_with_an_unusable_type_or_range_fails_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="annotated 'set\\[str\\]'"):

        @dataclass
        class BadType(StageParams):
            names: set[str] = param(None, help="names")

    with pytest.raises(TypeError, match="must read like"):

        @dataclass
        class BadRange(StageParams):
            size: float = param(0.5, help="size", range="0 to 1")


def test_check_names_the_declaration_and_the_line_where_a_template_cell_drifted(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "templates"
    shutil.copytree(templates_dir(), folder)
    notebook = folder / "03_split.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = cell.source.replace("range: (0, 1)", "range: (0, 0.5)", 1)
    nbformat.write(nb, notebook)

    problems = check_paths([folder], declared_cells(folder))

    assert problems == [
        f"{notebook}: the parameters cell differs from its declaration in "
        "nbtools.ml.splitting.SplitParams: line 2 is 'test_size = 0.2  # share of rows held out "
        "for the final test; range: (0, 0.5)' but the declaration gives 'test_size = 0.2  # share "
        "of rows held out for the final test; range: (0, 1)'. Change the declaration, not the "
        "cell, then regenerate the cell from it."
    ]
    assert write_declared_cells(folder) == [notebook.resolve()]
    assert check_paths([folder], declared_cells(folder)) == []
    # A user's copy of a template declares its parameters in its cell alone.
    assert check_paths([notebook]) == []


def test_a_setting_taken_from_another_stage_is_that_stages_declaration() -> None:
    """The monitoring policy's margin is the deploy stage's: same range, same help, one cell."""
    margin = MonitorPolicy.SCHEMA["margin"]

    assert margin == DeployParams.SCHEMA["margin"]
    assert margin.describe() == "a float in the range [0, 1]"
    assert "margin" not in MonitorPolicy.CELL_PARAMETERS
    assert "margin" in DeployParams.CELL_PARAMETERS
