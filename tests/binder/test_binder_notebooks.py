"""The Binder environment, built from ``binder/requirements.txt`` in a fresh virtual environment,
enables the JupyterLab extension, runs every notebook in ``notebooks/`` top to bottom, and opens
``templates/05_train.ipynb`` as a student would; the sidebar's API then finds every project the
notebooks made inside the Jupyter root.

This is the test suite's one run of the tutorials (``pytest --nbmake`` inside the Binder
environment). It needs the prebuilt extension (``make labextension``) and takes several minutes:
deselect it with ``-m "not binder"`` while iterating on other things. The notebooks and the
templates folder are copied into a temporary Jupyter root, laid out as in the repository, so the
projects they create (``notebooks/work/<tutorial>/``, the templates folder's runs) land there.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from loopback import free_port, start_group, stop_group, wait_for_http

pytestmark = pytest.mark.binder
REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_TIMEOUT = 600
TEMPLATE_NOTEBOOK = "templates/05_train.ipynb"  # opened directly, as the landing page invites
DURATIONS = REPO / "test-output" / "tutorial-durations.txt"

# Packages are installed without compiling them ahead; Python compiles what the notebooks import,
# once, as it would on Binder (where writing bytecode is allowed).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run(*command: str | Path, cwd: Path = REPO, env: dict[str, str] = ENV) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def _plain(text: str) -> str:
    """``text`` without terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _jupyter_home(folder: Path) -> dict[str, str]:
    """Jupyter's, IPython's and matplotlib's folders in ``folder``, not the user's home."""
    names = ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR")
    folders = {name: str(folder / name.lower()) for name in names}
    return {**folders, "MPLCONFIGDIR": str(folder / "matplotlib")}


def _sidebar_projects(python: Path, root: Path, paths: list[str], home: dict[str, str]) -> dict:
    """Ask a Jupyter server of the Binder environment, on ``root``, what the sidebar shows for
    each folder of ``paths``: ``{path: (project reply, runs reply)}``."""
    port, token = free_port(), secrets.token_hex(16)
    log = root.parent / "jupyter-server.log"
    server = start_group(
        [
            python,
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
        env=home,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(server, f"{base}/api/status?token={token}", log=log, seconds=60)
        with httpx.Client(
            base_url=f"{base}/nbtools/api", headers={"Authorization": f"token {token}"}, timeout=60
        ) as api:
            return {
                path: (
                    api.get("/project", params={"path": path}),
                    api.get("/runs", params={"path": path}),
                )
                for path in paths
            }
    finally:
        stop_group(server)


def test_binder_environment_enables_the_extension_and_runs_every_notebook(
    tmp_path: Path, pip_cache: Path
) -> None:
    assert (REPO / "nbtools" / "labextension" / "package.json").is_file(), (
        "The JupyterLab extension is not built; run `make labextension` first."
    )
    venv = tmp_path / "binder-venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    pip = (python, "-m", "pip", "install", "--quiet", "--no-compile")
    cached = {**ENV, "PIP_CACHE_DIR": str(pip_cache)}
    _run(*pip, "-r", "binder/requirements.txt", env=cached)
    _run(*pip, "pytest", "nbmake", env=cached)

    labextensions = _plain(_run(venv / "bin" / "jupyter", "labextension", "list"))
    server_extensions = _plain(_run(venv / "bin" / "jupyter", "server", "extension", "list"))
    assert "nbtools v0.1.0 enabled OK" in labextensions, labextensions
    assert "nbtools.jupyter enabled" in server_extensions, server_extensions

    root = tmp_path / "root"  # the Jupyter root, laid out as the repository Binder opens
    for folder, pattern in (("notebooks", "*.ipynb"), ("templates", "*.ipynb")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for path in (REPO / folder).glob(pattern):
            shutil.copy(path, root / folder / path.name)
    shutil.copy(REPO / "templates" / "pipeline.yaml", root / "templates" / "pipeline.yaml")
    notebooks = sorted((root / "notebooks").glob("*.ipynb"))
    tutorials = [n.stem for n in notebooks if n.stem != "index"]
    assert {"quickstart", "pipeline_and_records", "exercises"} <= set(tutorials)

    home = {**ENV, **_jupyter_home(tmp_path / "home")}
    report = _run(
        python,
        "-m",
        "pytest",
        "--nbmake",
        f"--nbmake-timeout={NOTEBOOK_TIMEOUT}",
        "-p",
        "no:cacheprovider",
        "-q",
        "--durations=0",
        *notebooks,
        root / TEMPLATE_NOTEBOOK,
        cwd=root,
        env=home,
    )
    assert f"{len(notebooks) + 1} passed" in report, report
    # the time each notebook took, for the course overview's minutes (pytest -s shows it too);
    # under `make test` the other test process shares the machine, so these are upper bounds
    DURATIONS.parent.mkdir(parents=True, exist_ok=True)
    DURATIONS.write_text(report, encoding="utf-8")
    print(report)

    # Every tutorial made its project in notebooks/work/<tutorial>/, and the template folder is
    # a project of its own: the sidebar finds each one, with the runs the notebook made.
    work = root / "notebooks" / "work"
    assert sorted(p.name for p in work.iterdir()) == sorted(tutorials)
    paths = [f"notebooks/work/{name}" for name in tutorials] + ["templates"]
    replies = _sidebar_projects(python, root, paths, home)
    for path, (project, runs) in replies.items():
        assert project.status_code == 200, f"{path}: {project.status_code} {project.text}"
        assert project.json()["path"] == path
        assert [s["name"] for s in project.json()["stages"]][:2] == ["ingest", "clean"]
        assert runs.status_code == 200, f"{path}: {runs.status_code} {runs.text}"
        history = runs.json()["runs"]
        assert any(run["status"] == "succeeded" for run in history), f"{path}: {history}"
