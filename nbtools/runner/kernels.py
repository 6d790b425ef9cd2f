"""Stage kernels owned by the runner's process, started ahead of their stages.

Starting a kernel and importing pandas, scikit-learn and MLflow in it takes about 2 s, most of a
small stage's fixed cost. A :class:`KernelPool` starts kernels ahead while other stages run,
imports the heavy libraries in them silently (no history, so a stage's execution counts still
start at 1) and opens the MLflow tracking store once. Every kernel it starts, spare or handed
out, stays owned by the pool: :meth:`KernelPool.close` stops all of them, which also ends a
stage still running when the run is interrupted. Nothing depends on worker processes exiting
cleanly, so no kernel outlives its run.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from traitlets import CaselessStrEnum, List, default

from nbtools.errors import RunCancelledError

KERNEL_NAME = "python3"
#: What a kernel started ahead imports before its stage: most of a stage's fixed start-up time
#: (pyplot alone costs about 1 s in a kernel, where it also sets up inline figures). Imported
#: inside a function, so the notebook's namespace stays as a fresh kernel's.
_WARM_UP = (
    "def _nbtools_warm_up():\n"
    "    import numpy, pandas, sklearn, mlflow, matplotlib.pyplot, nbtools.runner.context\n"
    "    import nbtools.ml.cleaning, nbtools.ml.features, nbtools.ml.model_choice\n"
    "{store}"
    "_nbtools_warm_up()\n"
    "del _nbtools_warm_up"
)
#: Opening MLflow's SQLite store (an engine and a schema check) costs about 0.5 s a process.
_WARM_STORE = "    mlflow.MlflowClient(tracking_uri={uri!r}).search_experiments(max_results=1)\n"
#: The arguments nbclient gives a kernel it starts itself (no IPython history file).
_KERNEL_ARGUMENTS = ["--HistoryManager.hist_file=:memory:"]
_START_TIMEOUT = 60

KernelKey = tuple[str, tuple[tuple[str, str], ...]]


class LocalKernelManager(AsyncKernelManager):
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


class KernelPool:
    """Stage kernels started ahead of their stages, each handed to one stage.

    :meth:`prepare` starts kernels in the background (up to ``ahead`` wait at a time);
    :meth:`take` hands one over when it was started in the same folder with the same
    environment as the stage's kernel would be (a spare that does not fit is stopped), and
    :meth:`start` starts one on the spot when none fits. Safe to use from several threads.

    Parameters
    ----------
    ahead : int
        How many kernels may wait for a stage at a time.
    """

    def __init__(self, *, ahead: int = 1) -> None:
        self.ahead = ahead
        self._warm_up = _WARM_UP.format(store="")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="nbtools-kernels", daemon=True
        )
        self._thread.start()
        self._lock = threading.Lock()
        self._spares: list[tuple[KernelKey, Future[LocalKernelManager | None]]] = []
        self._taken: list[LocalKernelManager] = []
        self._closed = False

    def open_store(self, tracking_uri: str) -> None:
        """Make kernels started from now on open the MLflow store at ``tracking_uri`` ahead.

        Call it once the store exists: kernels opening a new SQLite database at once would
        race in its schema migrations. Only SQLite stores are opened ahead (a server may be
        slow to answer, and its client costs little to open).
        """
        if tracking_uri.startswith("sqlite:"):
            self._warm_up = _WARM_UP.format(store=_WARM_STORE.format(uri=tracking_uri))

    def prepare(self, cwd: Path, env: Mapping[str, str], wanted: int = 1) -> None:
        """Start kernels in ``cwd`` with environment ``env`` in the background.

        As many start as it takes for ``wanted`` kernels (at most ``ahead``) to wait for
        stages; none when the pool is closed.
        """
        with self._lock:
            while not self._closed and len(self._spares) < min(wanted, self.ahead):
                started = asyncio.run_coroutine_threadsafe(
                    _start_warm(cwd, dict(env), self._warm_up), self._loop
                )
                self._spares.append((_kernel_key(cwd, env), started))

    def take(self, cwd: Path, env: Mapping[str, str]) -> LocalKernelManager | None:
        """Return a waiting kernel that fits a stage run in ``cwd`` with ``env``, else ``None``.

        The kernel then belongs to the caller until it calls :meth:`stop`.
        """
        key = _kernel_key(cwd, env)
        with self._lock:
            fits = [spare for spare in self._spares if spare[0] == key]
            if not fits and not self._spares:
                return None
            spare = fits[0] if fits else self._spares[0]
            self._spares.remove(spare)
        km = spare[1].result()  # an interrupt here leaves it to close()
        if km is None:
            return None
        if not fits or not self._run(km.is_alive()):
            self._run(_stop(km))
            return None
        with self._lock:
            self._taken.append(km)
        return km

    def start(self, cwd: Path, env: Mapping[str, str]) -> LocalKernelManager:
        """Start a kernel for a stage now, without the warm-up, and hand it to the caller.

        Raises
        ------
        Exception
            Whatever stopped the kernel from starting or answering within 60 s.
        """
        if self._closed:
            raise RunCancelledError("The run stopped before the stage's kernel started.")
        km: LocalKernelManager = self._run(_launch(cwd, dict(env)))
        with self._lock:
            self._taken.append(km)
        return km

    def stop(self, km: LocalKernelManager) -> None:
        """Close the clients of ``km`` and kill its kernel at once."""
        with self._lock:
            if km not in self._taken:  # close() stopped it already
                return
            self._taken.remove(km)
        for client in km.clients:
            client.stop_channels()
        km.clients.clear()
        self._run(_stop(km))

    def close(self) -> None:
        """Stop every kernel: spares (once started) and kernels still running a stage."""
        with self._lock:
            self._closed = True
            spares, self._spares = self._spares, []
            taken, self._taken = self._taken, []
        try:
            # A spare still starting or warming up is stopped where it is, not waited for: on a
            # busy machine its warm-up can take most of a minute, and a cancelled run must end
            # (and say so in its record) at once.
            self._run(_cancel_starting())
            for _, started in spares:
                km = None if started.cancelled() else started.result()
                if km is not None:
                    self._run(_stop(km))
            for km in taken:
                self._run(_stop(km))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()


def _kernel_key(cwd: Path, env: Mapping[str, str]) -> KernelKey:
    return str(Path(cwd).resolve()), tuple(sorted(env.items()))


async def _launch(cwd: Path, env: dict[str, str]) -> LocalKernelManager:
    """Start a kernel as nbclient would and wait until it answers."""
    km = LocalKernelManager(kernel_name=KERNEL_NAME)
    try:
        await km.start_kernel(cwd=str(cwd), env=env, extra_arguments=list(_KERNEL_ARGUMENTS))
        client = km.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=_START_TIMEOUT)
        finally:
            client.stop_channels()
            km.clients.clear()
    except BaseException:
        await _stop(km)
        raise
    return km


async def _start_warm(cwd: Path, env: dict[str, str], code: str) -> LocalKernelManager | None:
    """Start a kernel and run ``code`` in it silently; ``None`` if either fails.

    Cancelled (the pool is closing), it stops the kernel it started before it ends.
    """
    try:
        km = await _launch(cwd, env)
    except Exception:  # the stage then starts a kernel itself, which reports any real problem
        return None
    try:
        warm = await _run_silently(km, code)
    except BaseException:
        await _stop(km)
        raise
    if not warm:
        await _stop(km)
        return None
    return km


async def _run_silently(km: LocalKernelManager, code: str) -> bool:
    """Run ``code`` in the kernel of ``km`` without output or history; ``True`` if it ran."""
    client = km.client()
    client.start_channels()
    try:
        msg_id = client.execute(code, silent=True, store_history=False)
        while True:
            reply = await client.get_shell_msg(timeout=_START_TIMEOUT)
            if reply["parent_header"].get("msg_id") == msg_id:
                return bool(reply["content"]["status"] == "ok")
    except Exception:
        return False
    finally:
        client.stop_channels()
        km.clients.clear()


async def _cancel_starting() -> None:
    """Cancel every kernel start and warm-up under way on this loop, and wait until each has
    stopped the kernel it started."""
    starting = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in starting:
        task.cancel()
    await asyncio.gather(*starting, return_exceptions=True)


async def _stop(km: LocalKernelManager) -> None:
    if km.has_kernel:
        await km.shutdown_kernel(now=True)
    else:
        await km.cleanup_resources()
