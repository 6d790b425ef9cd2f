"""Services the tests start for real on 127.0.0.1: free ports, and process groups started,
waited for and stopped.

Every service runs in a process group of its own, so stopping the group also stops whatever the
service started (kernels, workers, uvicorn processes).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_group(
    command: Sequence[str | Path],
    *,
    log: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new process group, its output going to the file ``log``.

    ``env`` is added to this process's environment.
    """
    with log.open("wb") as handle:
        return subprocess.Popen(
            [str(part) for part in command],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_http(
    process: subprocess.Popen[bytes], url: str, *, log: Path, seconds: float = 90
) -> None:
    """Return once ``url`` answers 200 (a service answers 503 until it is ready).

    Fail with the service's log when the process exits first or ``url`` does not answer 200
    within ``seconds``.
    """
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited before {url} answered:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_group(process)
            raise RuntimeError(f"{url} did not answer within {seconds} s:\n{log.read_text()}")
        time.sleep(0.1)  # polling interval while waiting on the deadline


def stop_group(process: subprocess.Popen[bytes], *, grace_seconds: float = 15) -> None:
    """Stop the process group of ``process``: SIGTERM, then SIGKILL after ``grace_seconds``."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_seconds)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
