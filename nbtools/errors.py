"""The nbtools error family.

Every error a user can meet derives from :class:`NbtoolsError` and from the builtin it refines,
so ``except ValueError`` keeps working for code that does not know nbtools. Its ``exit_status``
is the command line's exit status for that kind of error: 2 for bad input (a parameter, a
pipeline file, a data source, a run id or a project the user named), 1 for work that failed (a
stage, the cluster, the registry, a run that did not start). Messages name parameters, files and
columns, never command-line options: the same errors reach notebooks, panels and the sidebar.
"""

from __future__ import annotations


class NbtoolsError(Exception):
    """Base class of every error raised by nbtools."""

    #: The command line's exit status for this kind of error: the work failed.
    exit_status = 1


class _BadInput(NbtoolsError):
    """Errors about what the user gave, found before or without doing the work: exit status 2."""

    exit_status = 2


class PipelineSpecError(_BadInput, ValueError):
    """``pipeline.yaml`` or the stage notebooks it names do not describe a valid pipeline."""


class InvalidParameterError(_BadInput, ValueError):
    """A parameter has an unknown name, a wrong type or a value out of its range."""


class DataSourceError(_BadInput, ValueError):
    """A data source cannot be read, or its content is unusable (empty, malformed, wrong schema)."""


class RunNotFoundError(_BadInput, LookupError):
    """No run record has the requested run id."""


class CurvesNotFoundError(_BadInput, LookupError):
    """No run record asked for holds training curves (TensorBoard event files)."""


class ProjectNotFoundError(_BadInput, FileNotFoundError):
    """No ``pipeline.yaml`` was found in the given directory or its parents."""


class ProjectExistsError(_BadInput, FileExistsError):
    """A new project was asked for in a folder that already holds files."""


class ModelRegistryError(NbtoolsError, RuntimeError):
    """The model registry cannot do what was asked: a champion that cannot be loaded or scored."""


class ModelNotFoundError(_BadInput, ModelRegistryError):
    """The registry has no model, version or alias by the name given."""


class ClusterError(NbtoolsError, ConnectionError):
    """The Dask cluster a run should execute on cannot be reached or started."""


class ExportError(NbtoolsError, RuntimeError):
    """An export for an orchestrator cannot be written: its SDK is missing or refused it."""


class TensorBoardError(NbtoolsError, RuntimeError):
    """TensorBoard cannot be started to show training curves: it is not installed."""


class SchedulerError(NbtoolsError, RuntimeError):
    """The system's scheduler cannot take a schedule: ``crontab`` is missing or refused it."""


class StageFailedError(NbtoolsError, RuntimeError):
    """A stage notebook failed: an exception in a cell, a cell timeout or a dead kernel.

    Parameters
    ----------
    stage : str
        Name of the stage that failed.
    reason : str
        One line saying what went wrong (exception type and message, timeout or dead kernel).
    cell_index : int or None
        Index of the failing cell in the executed notebook, when known.
    notebook : str
        Path of the executed notebook, saved with every output produced before the failure.
    """

    def __init__(self, stage: str, reason: str, cell_index: int | None, notebook: str) -> None:
        self.stage = stage
        self.reason = reason
        self.cell_index = cell_index
        self.notebook = notebook
        where = f"cell {cell_index}" if cell_index is not None else "an unknown cell"
        super().__init__(
            f"Stage '{stage}' failed in {where}: {reason.rstrip('.')}. "
            f"The executed notebook is saved at {notebook}."
        )

    def __reduce__(self) -> tuple[type, tuple[str, str, int | None, str]]:
        # Rebuilt from its four fields when it crosses from a stage process to the runner.
        return (type(self), (self.stage, self.reason, self.cell_index, self.notebook))


class RunStartError(NbtoolsError, RuntimeError):
    """A run process stopped before writing its record; the message holds its last output."""


class RunCancelledError(NbtoolsError, RuntimeError):
    """A run was stopped on request before a stage it had scheduled could start."""


class SearchCancelledError(NbtoolsError, RuntimeError):
    """A hyperparameter search was stopped on request before it tried every candidate."""


class InvalidInputError(_BadInput, ValueError):
    """Model input does not fit the model: a missing, extra or unconvertible column, no rows.

    Parameters
    ----------
    message : str
        What is wrong, naming the column or field, the expectation and what was found.
    status : int, default=400
        The HTTP status a service answers with (400 bad input, 413 too large, 415 unsupported
        content type).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
