"""Typed parameters read from a parameters cell, layered and validated without a kernel."""

from __future__ import annotations

import pytest

from nbtools.errors import InvalidParameterError, PipelineSpecError
from nbtools.params import parse_assignment, parse_parameters_cell, resolve_parameters

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
