"""A JupyterLab server on 127.0.0.1 and a headless Debian Chromium driven by Playwright.

The server runs in its own process group and is stopped with it; the tests skip when
``/usr/bin/chromium`` is missing (``apt-get install -y chromium``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from loopback import free_port, start_group, stop_group, wait_for_http

from nbtools.pipeline.project import create_project

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STARTUP_SECONDS = 60

# Each cell shows one panel over the demo table, as the stage notebooks do.
CELLS = [
    """import pandas as pd
from nbtools import panels
from nbtools import demo
from nbtools.ml import cleaning, features, modeling
from nbtools.pipeline.spec import load_pipeline

resolved = load_pipeline(".").resolve()
df = demo.make_churn(500, seed=0)
panels.cleaning_panel(
    df, cleaning.CleaningParams.from_dict(resolved["clean"]), target="churned", project_dir="."
)""",
    """cleaned, _ = cleaning.apply(df, cleaning.CleaningParams(), target="churned")
panels.feature_selection_panel(
    cleaned, features.FeatureParams(), target="churned", task="classification", project_dir="."
)""",
    """numeric, categorical = cleaning.column_types(cleaned, "churned")


def make_pipeline(family):
    return modeling.build_pipeline(
        cleaning.build_preprocessor(cleaning.CleaningParams(), numeric, categorical),
        features.build_selector(features.FeatureParams(selection="none"), "classification"),
        modeling.make_estimator(family, "classification", seed=0),
    )


start = modeling.TrainParams(family="logistic_regression", n_iter=3, cv_folds=2)
panels.tuning_panel(
    cleaned[numeric + categorical], cleaned["churned"], start, make_pipeline=make_pipeline,
    task="classification", project_dir=".",
)""",
    """panels.parameter_form("split", ".")""",
]


@pytest.fixture(scope="session")
def lab_project(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Path:
    """A demo project holding ``panels.ipynb``, one panel per cell."""
    root = create_project(tmp_path_factory.mktemp("lab") / "churn")
    (root / "mlflow.db").write_bytes(migrated_db.read_bytes())
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, root / "panels.ipynb")
    return root


@pytest.fixture(scope="session")
def lab_url(lab_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start JupyterLab on 127.0.0.1 without token; stop its process group at the end."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed: apt-get install -y chromium")
    port = free_port()
    settings = tmp_path_factory.mktemp("lab-settings")
    log = settings / "lab.log"
    server = start_group(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.token=",
            "--ServerApp.password=",
            "--allow-root",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            f"--ServerApp.root_dir={lab_project}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        log=log,
        cwd=lab_project,
        env={
            "JUPYTER_CONFIG_DIR": str(settings / "config"),
            "JUPYTERLAB_WORKSPACES_DIR": str(settings / "workspaces"),
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(server, f"{url}/api/status", log=log, seconds=STARTUP_SECONDS)
        yield url
    finally:
        stop_group(server)


@pytest.fixture(scope="session")
def browser(lab_url: str, tmp_path_factory: pytest.TempPathFactory):
    """Headless Debian Chromium through Playwright, with a home of its own (Chromium keeps its
    crash-report settings under ``~/.config`` whatever its profile folder)."""
    from playwright.sync_api import sync_playwright

    home = tmp_path_factory.mktemp("chromium-home")
    env: dict[str, str | float | bool] = {**os.environ, "HOME": str(home)}
    env |= {"XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache")}
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, env=env
        )
        yield chromium
        chromium.close()
