"""The Binder environment, built from ``binder/requirements.txt`` in a fresh virtual environment,
enables the JupyterLab extension and runs every notebook in ``notebooks/`` top to bottom.

This is the test suite's one run of the tutorials (``pytest --nbmake notebooks`` inside the
Binder environment). It needs the prebuilt extension (``make labextension``) and takes a few
minutes: deselect it with ``-m "not binder"`` while iterating on other things.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.binder
REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_TIMEOUT = 600


# Packages are installed without compiling them ahead; Python compiles what the notebooks import,
# once, as it would on Binder (where writing bytecode is allowed).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run(*command: str | Path, cwd: Path = REPO) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=ENV, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def _plain(text: str) -> str:
    """``text`` without terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_binder_environment_enables_the_extension_and_runs_every_notebook(
    tmp_path: Path,
) -> None:
    assert (REPO / "nbtools" / "labextension" / "package.json").is_file(), (
        "The JupyterLab extension is not built; run `make labextension` first."
    )
    venv = tmp_path / "binder-venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "--no-compile", "-r", "binder/requirements.txt")
    _run(python, "-m", "pip", "install", "--quiet", "--no-compile", "pytest", "nbmake")

    labextensions = _plain(_run(venv / "bin" / "jupyter", "labextension", "list"))
    server_extensions = _plain(_run(venv / "bin" / "jupyter", "server", "extension", "list"))
    assert "nbtools v0.1.0 enabled OK" in labextensions, labextensions
    assert "nbtools.jupyter enabled" in server_extensions, server_extensions

    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert {"index.ipynb", "quickstart.ipynb", "pipeline_and_records.ipynb"} <= {
        n.name for n in notebooks
    }
    report = _run(
        python,
        "-m",
        "pytest",
        "--nbmake",
        f"--nbmake-timeout={NOTEBOOK_TIMEOUT}",
        "-p",
        "no:cacheprovider",
        "-q",
        *notebooks,
        cwd=tmp_path,
    )
    assert f"{len(notebooks)} passed" in report, report
