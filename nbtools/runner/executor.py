"""Executing one stage notebook: the only place nbtools calls Papermill.

Papermill reports a cell exception itself, but a cell timeout or a dead kernel leaves the saved
notebook with no error banner and the interrupted cell marked completed. Here every failure
becomes a :class:`~nbtools.errors.StageFailedError` naming the cell, and the saved notebook
gets a banner saying what happened.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nbformat
import papermill
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbconvert import HTMLExporter
from papermill.exceptions import PapermillExecutionError

from nbtools.errors import StageFailedError
from nbtools.runner.kernels import KERNEL_NAME, LocalKernelManager

_BANNER_TAG = "nbtools-error"


class _KnownParametersOnly(logging.Filter):
    """Drops Papermill's unknown-parameter warning: nbtools validated every name already.

    Papermill's own parser of the parameters cell misses annotated names such as
    ``metric: str | None = None`` and would warn about them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passed unknown parameter")


logging.getLogger("papermill").addFilter(_KnownParametersOnly())


def execute_stage(
    stage: str,
    notebook: Path,
    output: Path,
    parameters: dict[str, Any],
    *,
    cwd: Path,
    timeout: int,
    km: LocalKernelManager | None = None,
) -> None:
    """Run a stage notebook with its parameters injected, saving the executed copy at ``output``.

    Parameters
    ----------
    stage : str
        Stage name, for error messages.
    notebook : Path
        The source notebook; it is never modified.
    output : Path
        Where the executed notebook is saved, after every cell and on failure.
    parameters : dict
        Values injected after the ``parameters`` cell.
    cwd : Path
        Working directory of the kernel (the project folder), for a kernel started here.
    timeout : int
        Seconds one cell may run.
    km : LocalKernelManager, optional
        A kernel already running in ``cwd`` (from :class:`~nbtools.runner.kernels.KernelPool`)
        to run the cells in instead of a fresh one; the caller stops it. Stages can then
        execute on several threads at once: Papermill does not change the process's working
        directory for them.

    Raises
    ------
    StageFailedError
        When a cell raises, a cell runs past ``timeout``, or the kernel dies.
    """
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            # Papermill's chdir is process-wide; a kernel handed over already runs in cwd.
            cwd=str(cwd) if km is None else None,
            kernel_name=KERNEL_NAME,
            language="python",
            progress_bar=False,
            execution_timeout=timeout,
            kernel_manager_class=LocalKernelManager,
            # Every cell has run and its outputs arrived before the kernel is stopped, and the
            # cells write the stage's files synchronously: the graceful shutdown only waits.
            shutdown_kernel="immediate",
            km=km,
        )
    except PapermillExecutionError as exc:
        # Papermill saved the notebook with a banner cell at the top and an anchor cell before
        # the failing cell, so the failing cell sits two places further down.
        raise StageFailedError(
            stage, f"{exc.ename}: {exc.evalue}".rstrip(": "), exc.cell_index + 2, str(output)
        ) from exc
    except CellTimeoutError as exc:
        reason = f"a cell ran longer than the {timeout} s cell timeout"
        raise StageFailedError(
            stage, reason, _mark_interrupted(output, reason), str(output)
        ) from exc
    except DeadKernelError as exc:
        reason = "the kernel died (out of memory, a crash in native code, or killed)"
        raise StageFailedError(
            stage, reason, _mark_interrupted(output, reason), str(output)
        ) from exc


def _mark_interrupted(output: Path, reason: str) -> int | None:
    """Mark the cell that was running when execution stopped, and add a banner; return its index.

    Papermill marks the interrupted cell completed; the cells after it never got a start time.
    """
    if not output.is_file():
        return None
    nb = nbformat.read(output, as_version=4)
    started = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        and cell.get("metadata", {}).get("papermill", {}).get("start_time")
    ]
    if not started:
        return None
    index = started[-1]
    meta = nb.cells[index].metadata.setdefault("papermill", {})
    meta["status"] = "failed"
    meta["exception"] = True
    banner = nbformat.v4.new_markdown_cell(
        f'<span style="color:red; font-size:2em">Execution stopped: {reason}.</span>\n\n'
        f"The cell that was running is cell {index + 1} below; the cells after it never ran."
    )
    banner.metadata["tags"] = [_BANNER_TAG]
    nb.cells.insert(0, banner)
    nbformat.write(nb, output)
    return index + 1


def render_html(executed: Path, target: Path) -> Path:
    """Render an executed notebook to a standalone HTML page (MLflow's UI shows HTML, not ipynb)."""
    body, _ = HTMLExporter(template_name="lab").from_filename(str(executed))
    target.write_text(body, encoding="utf-8")
    return target
