"""A real Jupyter server on 127.0.0.1, with a token, serving a folder that holds a project.

The server runs in its own process group and is stopped with it. It loads the nbtools server
extension the way an installed nbtools enables it (``etc/jupyter/jupyter_server_config.d``).
"""

from __future__ import annotations

import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest
from loopback import free_port, start_group, stop_group, wait_for_http

FIXTURES = Path(__file__).parent.parent / "notebooks"
STARTUP_SECONDS = 60
MLFLOW_UI = "http://127.0.0.1:5000"
PIPELINE = """\
name: lab-fixture
tracking_uri: sqlite:///mlflow.db
stages:
  produce: {notebook: produce.ipynb}
  consume: {notebook: consume.ipynb, inputs: [produce]}
  sleeps: {notebook: sleeps.ipynb, parameters: {seconds: 0}}
"""


@pytest.fixture(scope="session")
def jupyter_root(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Path:
    """The Jupyter root: a folder holding the project ``proj`` and a file outside it."""
    root = tmp_path_factory.mktemp("jupyter-root")
    project = root / "proj"
    project.mkdir()
    for name in ("produce", "consume", "sleeps"):
        shutil.copy(FIXTURES / f"{name}.ipynb", project / f"{name}.ipynb")
    shutil.copy(migrated_db, project / "mlflow.db")
    (project / "pipeline.yaml").write_text(PIPELINE, encoding="utf-8")
    (root / "secret.txt").write_text("outside the project\n", encoding="utf-8")
    return root


@contextmanager
def _jupyter_server(root: Path, settings: Path) -> Iterator[httpx.Client]:
    """Run a Jupyter server on ``root``; yield a client of its ``/nbtools/api/`` with its token."""
    port, token = free_port(), secrets.token_hex(16)
    settings.mkdir(parents=True, exist_ok=True)
    log = settings / "server.log"
    server = start_group(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            "--allow-root",
            f"--IdentityProvider.token={token}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--ServerApp.root_dir={root}",
        ],
        log=log,
        cwd=root,
        env={
            "JUPYTER_CONFIG_DIR": str(settings / "config"),
            "NBTOOLS_MLFLOW_UI": MLFLOW_UI,  # only turned into links; nothing listens there
        },
    )
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(
        base_url=f"{base}/nbtools/api", headers={"Authorization": f"token {token}"}, timeout=90
    )
    try:
        wait_for_http(server, f"{base}/api/status?token={token}", log=log, seconds=STARTUP_SECONDS)
        yield client
    finally:
        client.close()
        stop_group(server)


@pytest.fixture(scope="session")
def api(jupyter_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A client of the session's Jupyter server on ``jupyter_root``."""
    with _jupyter_server(jupyter_root, tmp_path_factory.mktemp("jupyter-settings")) as client:
        yield client


@pytest.fixture
def jupyter_server() -> Callable[[Path, Path], AbstractContextManager[httpx.Client]]:
    """Start a Jupyter server of one's own: ``with jupyter_server(root, settings) as client``."""
    return _jupyter_server
