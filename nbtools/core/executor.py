"""Executing one stage notebook: the only place nbtools calls Papermill.

Papermill reports a cell exception itself, but a cell timeout or a dead kernel leaves the saved
notebook with no error banner and the interrupted cell marked completed. Here every failure
becomes a :class:`~nbtools.core.errors.StageFailedError` naming the cell, and the saved notebook
gets a banner saying what happened.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import nbformat
import papermill
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbconvert import HTMLExporter
from papermill.exceptions import PapermillExecutionError
from traitlets import CaselessStrEnum, List, default

from nbtools.core.errors import StageFailedError

KERNEL_NAME = "python3"
_BANNER_TAG = "nbtools-error"
#: What a spare kernel imports before its stage: most of a stage's fixed start-up time.
_WARM_UP = "import numpy, pandas, sklearn, mlflow, nbtools.core.context"
#: The arguments nbclient gives a kernel it starts itself (no IPython history file).
_KERNEL_ARGUMENTS = ["--HistoryManager.hist_file=:memory:"]
_START_TIMEOUT = 60


class _LocalKernelManager(AsyncKernelManager):
    """Talks to stage kernels over Unix domain sockets: local only, guarded by file permissions."""

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)
    #: The clients handed out, so that their channels are closed with the kernel.
    clients: List[AsyncKernelClient] = List()

    @default("ip")
    def _unique_socket_prefix(self) -> str:
        # jupyter_client's default, ``kernel-ipc`` in the working directory, makes kernels
        # started at once by several processes race for the same socket files.
        return str(Path(tempfile.gettempdir()) / f"nbtools-kernel-{uuid.uuid4().hex}-ipc")

    def client(self, **kwargs: Any) -> AsyncKernelClient:  # type: ignore[override]
        """Return a new client of this kernel, remembered so that it is closed with the kernel."""
        client = super().client(**kwargs)
        self.clients.append(client)
        return client


class SpareKernel:
    """One stage kernel started ahead of its stage, with the heavy libraries already imported.

    While a stage runs, :meth:`prepare` starts the next stage's kernel on a background thread
    and imports pandas, scikit-learn, MLflow and nbtools in it silently (no history, so the
    stage's execution counts still start at 1). :meth:`take` hands it over when it was started
    in the same folder with the same environment as the stage's own kernel would be; otherwise
    it is stopped and the stage starts a fresh kernel. The owner must call :meth:`close`, which
    stops a kernel nobody took.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="nbtools-spare-kernel", daemon=True
        )
        self._thread.start()
        self._spare: Future[_LocalKernelManager | None] | None = None
        self._key: tuple[str, tuple[tuple[str, str], ...]] | None = None

    def prepare(self, cwd: Path, env: Mapping[str, str]) -> None:
        """Start a kernel in ``cwd`` with environment ``env`` in the background (if none waits)."""
        if self._spare is None:
            self._key = _kernel_key(cwd, env)
            self._spare = asyncio.run_coroutine_threadsafe(_start_warm(cwd, dict(env)), self._loop)

    def take(self, cwd: Path, env: Mapping[str, str]) -> _LocalKernelManager | None:
        """Return the spare kernel if it fits a stage run in ``cwd`` with ``env``, else ``None``.

        The caller owns the returned kernel and stops it with :meth:`stop`.
        """
        spare, key = self._spare, self._key
        if spare is None:
            return None
        km = spare.result()  # an interrupt here leaves it to close()
        self._spare = self._key = None
        if km is not None and (key != _kernel_key(cwd, env) or not self._run(km.is_alive())):
            self.stop(km)
            return None
        return km

    def stop(self, km: _LocalKernelManager) -> None:
        """Close the clients of ``km`` and kill its kernel at once."""
        for client in km.clients:
            client.stop_channels()
        km.clients.clear()
        self._run(_stop(km))

    def close(self) -> None:
        """Stop the kernel nobody took (waiting for it to finish starting) and the thread."""
        spare, self._spare = self._spare, None
        try:
            km = None if spare is None else spare.result()
            if km is not None:
                self.stop(km)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()


def _kernel_key(cwd: Path, env: Mapping[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return str(Path(cwd).resolve()), tuple(sorted(env.items()))


async def _start_warm(cwd: Path, env: dict[str, str]) -> _LocalKernelManager | None:
    """Start a kernel as nbclient would and import the heavy libraries; ``None`` if that fails."""
    km = _LocalKernelManager(kernel_name=KERNEL_NAME)
    try:
        await km.start_kernel(cwd=str(cwd), env=env, extra_arguments=list(_KERNEL_ARGUMENTS))
        client = km.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=_START_TIMEOUT)
            msg_id = client.execute(_WARM_UP, silent=True, store_history=False)
            while True:
                reply = await client.get_shell_msg(timeout=_START_TIMEOUT)
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
        finally:
            client.stop_channels()
            km.clients.clear()
    except Exception:  # the stage then starts a fresh kernel, which reports any real problem
        await _stop(km)
        return None
    if reply["content"]["status"] != "ok":
        await _stop(km)
        return None
    return km


async def _stop(km: _LocalKernelManager) -> None:
    if km.has_kernel:
        await km.shutdown_kernel(now=True)
    else:
        await km.cleanup_resources()


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
    km: _LocalKernelManager | None = None,
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
        Working directory of the kernel (the project folder).
    timeout : int
        Seconds one cell may run.
    km : kernel manager, optional
        A started kernel (from :class:`SpareKernel`) to run the cells in instead of a fresh
        one; the caller stops it.

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
            cwd=str(cwd),
            kernel_name=KERNEL_NAME,
            language="python",
            progress_bar=False,
            execution_timeout=timeout,
            kernel_manager_class=_LocalKernelManager,
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
