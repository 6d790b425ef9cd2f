"""The exported names are the public API: this test fails when they drift."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
from pathlib import Path

import nbtools
from nbtools import errors

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = [
    "ClusterError",
    "CurvesNotFoundError",
    "DataSourceError",
    "ExportError",
    "InvalidInputError",
    "InvalidParameterError",
    "ModelNotFoundError",
    "ModelRegistryError",
    "NbtoolsError",
    "Pipeline",
    "PipelineSpecError",
    "ProjectExistsError",
    "ProjectNotFoundError",
    "RunCancelledError",
    "RunNotFoundError",
    "RunResult",
    "RunStartError",
    "SchedulerError",
    "SearchCancelledError",
    "Stage",
    "StageContext",
    "StageFailedError",
    "TensorBoardError",
    "list_runs",
    "load_pipeline",
    "load_run",
    "run_pipeline",
    "run_sweep",
    "stage_context",
]


def test_exported_names_are_exactly_the_public_api() -> None:
    assert nbtools.__all__ == EXPECTED


def test_every_exported_name_resolves_and_is_documented() -> None:
    for name in nbtools.__all__:
        assert getattr(nbtools, name).__doc__, name


def test_errors_also_inherit_the_builtin_they_refine() -> None:
    assert issubclass(nbtools.InvalidParameterError, ValueError)
    assert issubclass(nbtools.RunNotFoundError, LookupError)
    assert issubclass(nbtools.StageFailedError, RuntimeError)
    assert all(
        issubclass(getattr(nbtools, n), nbtools.NbtoolsError)
        for n in nbtools.__all__
        if n.endswith("Error")
    )


def test_every_error_class_a_user_can_meet_is_exported() -> None:
    classes = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, errors.NbtoolsError)
        and not name.startswith("_")
    }
    assert classes <= set(nbtools.__all__)


def _ml_names_used(source: str) -> set[tuple[str, str]]:
    """(module, name) pairs of the ML library a piece of code uses."""
    tree = ast.parse(source)
    modules: dict[str, str] = {}  # local name -> ML module
    used: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "nbtools.ml":
            modules.update({alias.asname or alias.name: alias.name for alias in node.names})
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nbtools.ml."):
            module = (node.module or "").removeprefix("nbtools.ml.")
            used.update((module, alias.name) for alias in node.names)
    for node in ast.walk(tree):
        named = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        if named and node.value.id in modules:
            used.add((modules[node.value.id], node.attr))
    return used


def test_what_the_stage_templates_call_of_the_ml_library_is_in_its_all() -> None:
    used: set[tuple[str, str]] = set()
    for path in sorted((ROOT / "templates").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
        python = [line for line in code.splitlines() if line[:1] not in "%!"]
        used |= _ml_names_used("\n".join(python))
    assert len(used) > 40  # the templates do lean on the library
    missing = sorted(
        f"nbtools.ml.{module}.{name}"
        for module, name in used
        if name not in importlib.import_module(f"nbtools.ml.{module}").__all__
    )
    assert not missing


def test_the_exit_status_follows_the_kind_of_error() -> None:
    bad_input = {
        "CurvesNotFoundError",
        "DataSourceError",
        "InvalidInputError",
        "InvalidParameterError",
        "ModelNotFoundError",
        "PipelineSpecError",
        "ProjectExistsError",
        "ProjectNotFoundError",
        "RunNotFoundError",
    }
    for name in nbtools.__all__:
        if name.endswith("Error"):
            assert getattr(nbtools, name).exit_status == (2 if name in bad_input else 1), name
