"""nbtools: turn parametrized Jupyter notebooks into a reproducible, tracked ML pipeline.

This module exports what a user of pipelines needs: loading and running a pipeline, its run
records, the stage context a notebook records through, and every error nbtools raises. The
machine-learning library the stage notebooks call (:mod:`nbtools.ml`) is public API too, for
people who edit templates; the other packages are the engine's inside (see ``CONTRIBUTING.md``).
Names are imported on first use, so ``import nbtools`` (and the command line) starts fast even
though running a pipeline needs MLflow, Papermill and nbconvert.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbtools.errors import (
        ClusterError,
        CurvesNotFoundError,
        DataSourceError,
        ExportError,
        InvalidInputError,
        InvalidParameterError,
        ModelNotFoundError,
        ModelRegistryError,
        NbtoolsError,
        PipelineSpecError,
        ProjectExistsError,
        ProjectNotFoundError,
        RunCancelledError,
        RunNotFoundError,
        RunStartError,
        SchedulerError,
        SearchCancelledError,
        StageFailedError,
        TensorBoardError,
    )
    from nbtools.pipeline.spec import Pipeline, Stage, load_pipeline
    from nbtools.records.runs import RunResult, list_runs, load_run
    from nbtools.runner.context import StageContext, stage_context
    from nbtools.runner.run import run_pipeline
    from nbtools.runner.sweep import run_sweep

_ERRORS = (
    "ClusterError",
    "CurvesNotFoundError",
    "DataSourceError",
    "ExportError",
    "InvalidInputError",
    "InvalidParameterError",
    "ModelNotFoundError",
    "ModelRegistryError",
    "NbtoolsError",
    "PipelineSpecError",
    "ProjectExistsError",
    "ProjectNotFoundError",
    "RunCancelledError",
    "RunNotFoundError",
    "RunStartError",
    "SchedulerError",
    "SearchCancelledError",
    "StageFailedError",
    "TensorBoardError",
)
_EXPORTS = {
    **dict.fromkeys(_ERRORS, "nbtools.errors"),
    "Pipeline": "nbtools.pipeline.spec",
    "RunResult": "nbtools.records.runs",
    "Stage": "nbtools.pipeline.spec",
    "StageContext": "nbtools.runner.context",
    "list_runs": "nbtools.records.runs",
    "load_pipeline": "nbtools.pipeline.spec",
    "load_run": "nbtools.records.runs",
    "run_pipeline": "nbtools.runner.run",
    "run_sweep": "nbtools.runner.sweep",
    "stage_context": "nbtools.runner.context",
}

__all__ = [
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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nbtools' has no attribute '{name}'")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


def load_ipython_extension(ipython: Any) -> None:
    """Register the ``%nbtools`` magics: ``%load_ext nbtools`` in a notebook or IPython."""
    from nbtools.jupyter.magics import register

    register(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # The prebuilt JupyterLab extension (`jupyter labextension develop .` links it).
    return [{"src": "labextension", "dest": "nbtools"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbtools.jupyter"}]
