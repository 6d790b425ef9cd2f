"""nbtools: turn parametrized Jupyter notebooks into a reproducible, tracked ML pipeline.

The public API is what this module exports; everything under ``nbtools.core`` is internal.
Names are imported on first use, so ``import nbtools`` (and the command line) starts fast even
though running a pipeline needs MLflow, Papermill and nbconvert.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ClusterError": "nbtools.core.errors",
    "DataSourceError": "nbtools.core.errors",
    "InvalidParameterError": "nbtools.core.errors",
    "NbtoolsError": "nbtools.core.errors",
    "Pipeline": "nbtools.core.spec",
    "PipelineSpecError": "nbtools.core.errors",
    "ProjectNotFoundError": "nbtools.core.errors",
    "RunNotFoundError": "nbtools.core.errors",
    "RunResult": "nbtools.core.runner",
    "Stage": "nbtools.core.spec",
    "StageContext": "nbtools.core.context",
    "StageFailedError": "nbtools.core.errors",
    "list_runs": "nbtools.core.records",
    "load_pipeline": "nbtools.core.spec",
    "load_run": "nbtools.core.records",
    "run_pipeline": "nbtools.core.runner",
    "run_sweep": "nbtools.core.sweep",
    "stage_context": "nbtools.core.context",
}

__all__ = sorted(_EXPORTS)


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
