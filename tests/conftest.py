"""Shared fixtures: fixture-notebook projects, a pre-migrated MLflow database, a webhook.

The whole session keeps Jupyter's runtime and data folders, IPython's profile and matplotlib's
configuration in a temporary folder, so no test (nor a kernel or server it starts) writes to
the user's home.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: OpenMP threads that wait sleep rather than spin in the test processes and in everything they
#: start, as in stage kernels (``nbtools.runner.scheduler.QUIET_WAITING``): a gradient-boosting
#: fit in a test otherwise holds both cores spinning while a kernel or a server started by a
#: test (or by the other test process) needs one. Set before scikit-learn loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TESTS = Path(__file__).parent
FIXTURE_NOTEBOOKS = TESTS / "notebooks"

#: The longest test files (minutes each: they build a virtual environment and run notebooks or a
#: test suite in it). They come first, so that with two processes (``make test``) both start at
#: once instead of one of them running alone at the end.
LONGEST_FIRST = ("binder/test_binder_notebooks.py", "test_torch_extra.py")

#: Set in the environment that has ``nbtools[torch]``, where ``tests/with_torch`` runs
#: (``test_torch_extra.py`` builds that environment and runs them there).
TORCH_TESTS = "NBTOOLS_TORCH_TESTS"

#: ``tests/with_torch`` needs PyTorch and TensorBoard, which the main test environment has not.
collect_ignore = [] if os.environ.get(TORCH_TESTS) else ["with_torch"]

#: Environment variables pointing each tool's per-user folder into the session's temporary home.
HOME_FOLDERS = {
    "JUPYTER_RUNTIME_DIR": "jupyter-runtime",
    "JUPYTER_DATA_DIR": "jupyter-data",
    "IPYTHONDIR": "ipython",
    "MPLCONFIGDIR": "matplotlib",
}


def pytest_configure(config: pytest.Config) -> None:
    """Point per-user folders at a temporary one before any kernel or server starts."""
    home = Path(tempfile.mkdtemp(prefix="nbtools-tests-home-"))
    for name, folder in HOME_FOLDERS.items():
        os.environ[name] = str(home / folder)
    # at exit, after the in-process IPython shells (registered later, so run earlier) close
    atexit.register(shutil.rmtree, home, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests of :data:`LONGEST_FIRST` first; every file keeps its tests' order."""

    def rank(item: pytest.Item) -> int:
        path = item.path.relative_to(TESTS).as_posix()
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


#: MLflow's URI variables as the session found them; every test ends with them restored.
MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_SESSION_MLFLOW_URIS = {name: os.environ.get(name) for name in MLFLOW_URI_VARIABLES}


@pytest.fixture(autouse=True)
def _mlflow_uris_restored() -> Iterator[None]:
    """End every test with MLflow's tracking and registry URIs as the session started.

    ``mlflow.set_tracking_uri`` and ``mlflow.set_registry_uri`` (an in-process model service
    calls both, also from a fixture set up for several tests) set process-wide state and the
    ``MLFLOW_*_URI`` variables, which every later kernel, server and MLflow call would inherit.
    """
    yield
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    registry_utils._registry_uri = None
    tracking_utils._tracking_uri = None
    for name, value in _SESSION_MLFLOW_URIS.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite database with its schema migrations done once per test session."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def make_project(tmp_path: Path, migrated_db: Path):
    """Build a project from fixture notebooks and a ``stages:`` YAML body.

    Usage: ``make_project("produce: {notebook: produce.ipynb}")`` returns the project folder.
    """

    def build(stages_yaml: str, extra: str = "") -> Path:
        root = tmp_path / "project"
        root.mkdir()
        for notebook in FIXTURE_NOTEBOOKS.glob("*.ipynb"):
            shutil.copy(notebook, root / notebook.name)
        shutil.copy(migrated_db, root / "mlflow.db")
        body = textwrap.indent(textwrap.dedent(stages_yaml).strip(), "  ")
        (root / "pipeline.yaml").write_text(
            f"name: fixture\ntracking_uri: sqlite:///mlflow.db\n{extra}\nstages:\n{body}\n",
            encoding="utf-8",
        )
        return root

    return build


@pytest.fixture
def child_kernels() -> Callable[[], list[str]]:
    """A function listing this process's child kernels, and children left as zombies."""

    def found() -> list[str]:
        kernels = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and (
                "ipykernel_launcher" in command or fields[0] == "Z"
            ):
                kernels.append(command or f"zombie {stat.parent.name}")
        return kernels

    return found


@pytest.fixture(scope="session")
def pip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One pip cache for every virtual environment the tests build (Binder, Airflow, KFP).

    A wheel that two of them need is downloaded once, and nothing lands in the user's
    ``~/.cache/pip``.
    """
    return tmp_path_factory.mktemp("pip-cache")


@pytest.fixture(scope="session")
def extra_venv(tmp_path_factory: pytest.TempPathFactory, pip_cache: Path) -> Callable[..., Path]:
    """Build a virtual environment of its own with ``pip install ARGS``; return its ``bin``.

    For tools that must not share nbtools' environment (Airflow, the KFP SDK), as a user
    installs them. The same name and arguments give the same environment once per session.
    """
    import subprocess
    import sys

    built: dict[tuple[str, ...], Path] = {}

    def build(name: str, *pip_args: str) -> Path:
        key = (name, *pip_args)
        if key not in built:
            venv = tmp_path_factory.mktemp(name) / "venv"
            env = {**os.environ, "PIP_CACHE_DIR": str(pip_cache)}
            for command in (
                [sys.executable, "-m", "venv", str(venv)],
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *pip_args],
            ):
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                assert done.returncode == 0, f"{command} failed:\n{done.stderr[-3000:]}"
            built[key] = venv / "bin"
        return built[key]

    return build


#: The PyTorch release the extra's tests install: a CPU build of it lies on this machine's disk
#: (1 GB in the environment, against 5.5 GB for the CUDA build of a newer release).
TORCH_RELEASE = "torch==2.13.0"


@dataclass(frozen=True)
class TorchVenv:
    """A virtual environment with ``nbtools[torch]``: its ``bin``, and the environment
    variables its tests run with (``tests/with_torch`` collected, and this environment's
    ``bin``, which has no PyTorch, as ``NBTOOLS_BASE_BIN``)."""

    bin: Path
    env: dict[str, str]


@pytest.fixture(scope="session")
def torch_venv(tmp_path_factory: pytest.TempPathFactory, pip_cache: Path) -> TorchVenv:
    """A virtual environment with ``nbtools[torch]`` installed.

    It sees this environment's packages (a ``.pth`` file adds its site-packages), so only what
    the extra adds is installed: PyTorch (:data:`TORCH_RELEASE`), TensorBoard and nbtools
    itself, editable, with the ``torch`` extra.
    """
    import subprocess
    import sys
    import sysconfig

    venv = tmp_path_factory.mktemp("torch") / "venv"
    env = {**os.environ, "PIP_CACHE_DIR": str(pip_cache)}
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    root = Path(__file__).parents[1]

    def run(command: list[str]) -> str:
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command} failed:\n{done.stderr[-3000:]}"
        return done.stdout

    run([sys.executable, "-m", "venv", str(venv)])
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    own = Path(run([str(python), "-c", purelib]).strip())
    base = sysconfig.get_paths()["purelib"]
    (own / "nbtools-base.pth").write_text(f"import site; site.addsitedir({base!r})\n")
    run([*pip, TORCH_RELEASE])
    run([*pip, "--editable", f"{root}[torch]"])
    tests = {TORCH_TESTS: "1", "NBTOOLS_BASE_BIN": str(Path(sys.executable).parent)}
    return TorchVenv(venv / "bin", {**os.environ, **tests})


#: The environment variable the ``webhook`` fixture sets; projects name it in ``notify.webhook``.
WEBHOOK_VARIABLE = "NBTOOLS_TEST_WEBHOOK"


@dataclass
class Webhook:
    """A webhook listening on 127.0.0.1: what it received, and how it answers.

    ``url`` carries a token-like path, as a real incoming-webhook URL does, so tests can check
    that no message shows it. ``answer`` is the status and body it answers with; with ``hang``
    it keeps every request waiting until the test ends.
    """

    url: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    answer: tuple[int, str] = (200, "ok")
    hang: bool = False
    released: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    """A real HTTP server collecting JSON posts; its URL is in ``$NBTOOLS_TEST_WEBHOOK``."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hook: Webhook

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.messages.append(json.loads(body))
            hook.headers.append(dict(self.headers))
            if hook.hang:
                hook.released.wait()
            status, text = hook.answer
            self.send_response(status)
            self.end_headers()
            self.wfile.write(text.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test asserts on what arrived; no request log on stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook = Webhook(f"http://127.0.0.1:{server.server_port}/services/T0/B0/s3cr3t-t0ken")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv(WEBHOOK_VARIABLE, hook.url)
    try:
        yield hook
    finally:
        hook.released.set()
        server.shutdown()
        server.server_close()
        thread.join()
