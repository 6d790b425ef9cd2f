"""The exported names are the public API: this test fails when they drift."""

from __future__ import annotations

import nbtools

EXPECTED = [
    "ClusterError",
    "DataSourceError",
    "InvalidParameterError",
    "NbtoolsError",
    "Pipeline",
    "PipelineSpecError",
    "ProjectNotFoundError",
    "RunNotFoundError",
    "RunResult",
    "Stage",
    "StageContext",
    "StageFailedError",
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
