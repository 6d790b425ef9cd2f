"""Helpers of the serving tests: a registry of real models, and services started for real."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
from loopback import free_port, stop_group, wait_for_http

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
    wait_for_http(process, service.url + "/ping", log=log)
    return service


def stop_service(service: Service) -> None:
    """Stop the service's process group (SIGTERM, then SIGKILL)."""
    stop_group(service.process, grace_seconds=30)
