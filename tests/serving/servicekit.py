"""Helpers of the serving tests: a registry of real models, and services started for real."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd

MODEL = "churn-model"
NBTOOLS = str(Path(sys.executable).parent / "nbtools")


@dataclass(frozen=True)
class Registry:
    """A registry folder with two versions of MODEL; version 1 holds ``champion``."""

    folder: Path
    X: pd.DataFrame

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.folder / 'mlflow.db'}"


@dataclass
class Service:
    """A running ``nbtools serve`` process."""

    url: str
    process: subprocess.Popen
    predictions: Path
    log: Path

    def client(self, **options: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **options)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(
    registry: Registry, folder: Path, *args: str, env: dict[str, str] | None = None
) -> Service:
    """Start ``nbtools serve`` in its own process group; return once /ping answers."""
    port = free_port()
    predictions = folder / "predictions"
    log = folder / f"serve-{port}.log"
    command = [
        NBTOOLS,
        "serve",
        "--model",
        f"models:/{MODEL}@champion",
        "--tracking-uri",
        registry.uri,
        "--port",
        str(port),
        "--predictions",
        str(predictions),
        *args,
    ]
    environment = {k: v for k, v in os.environ.items() if k != "NBTOOLS_SERVE_TOKEN"}
    process = subprocess.Popen(
        command,
        cwd=folder,
        env={**environment, **(env or {})},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    service = Service(f"http://127.0.0.1:{port}", process, predictions, log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nbtools serve exited:\n{log.read_text()}")
        try:
            if httpx.get(service.url + "/ping", timeout=2).status_code == 200:
                return service
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop_service(service)
    raise AssertionError(f"nbtools serve did not start within 90 s:\n{log.read_text()}")


def stop_service(service: Service) -> None:
    """Stop the service's process group (SIGTERM, then SIGKILL)."""
    try:
        os.killpg(service.process.pid, signal.SIGTERM)
        service.process.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(service.process.pid, signal.SIGKILL)
        service.process.wait()
