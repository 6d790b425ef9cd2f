"""The pipeline on a real Dask cluster (a scheduler and two workers) with a real MLflow server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from loopback import free_port, start_group
from mlflow.tracking import MlflowClient

from nbtools import ClusterError, run_pipeline

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
FIXTURES = Path(__file__).parents[1] / "notebooks"
DEADLINE = 90
FLAKY = """\
import os, signal
from pathlib import Path
from joblib.parallel import get_active_backend
marker = Path('worker-killed')
if not marker.exists():
    marker.touch()
    os.kill(os.getppid(), signal.SIGKILL)  # the Dask worker executing this stage
stage.record('joblib_backend', type(get_active_backend()[0]).__name__)
"""


def _wait_until(ready, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start within {DEADLINE} s")
        time.sleep(0.3)


def _mlflow_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, migrated_db: Path
) -> Iterator[dict[str, str]]:
    """A scheduler, two single-threaded workers and an MLflow server, as separate processes.

    The workers run under nannies, which restart a worker process that dies.
    """
    from distributed import Client

    logs = tmp_path_factory.mktemp("cluster")
    shutil.copy(migrated_db, logs / "server.db")
    scheduler = f"tcp://127.0.0.1:{free_port()}"
    tracking = f"http://127.0.0.1:{free_port()}"
    worker = [str(BIN / "dask"), "worker", scheduler, "--nthreads", "1", "--no-dashboard"]
    processes = [
        start_group(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                scheduler.rsplit(":", 1)[1],
                "--no-dashboard",
            ],
            log=logs / "scheduler.log",
            # A task whose worker dies is retried once elsewhere, then fails (KilledWorker).
            env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"},
        ),
        start_group(
            [*worker, "--name", "w1", "--resources", "CPU=2,MEMORY=4e9"], log=logs / "w1.log"
        ),
        start_group([*worker, "--name", "w2"], log=logs / "w2.log"),
        start_group(
            [
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{logs / 'server.db'}",
                "--artifacts-destination",
                str(logs / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                tracking.rsplit(":", 1)[1],
                "--workers",
                "1",
            ],
            log=logs / "mlflow.log",
        ),
    ]
    try:
        _wait_until(lambda: _mlflow_up(tracking), "the MLflow server")
        with Client(scheduler, timeout=DEADLINE) as client:
            client.wait_for_workers(2, timeout=DEADLINE)
        yield {"scheduler": scheduler, "tracking_uri": tracking}
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _project(root: Path, tracking_uri: str) -> Path:
    root.mkdir()
    for name in ("produce", "consume"):
        shutil.copy(FIXTURES / f"{name}.ipynb", root / f"{name}.ipynb")
    nb = nbformat.read(FIXTURES / "produce.ipynb", as_version=4)
    nb.cells[2].source = nb.cells[2].source.replace('"produce"', '"flaky"')
    nb.cells[3].source = FLAKY
    nbformat.write(nb, root / "flaky.ipynb")
    (root / "pipeline.yaml").write_text(
        f"name: on-dask\ntracking_uri: {tracking_uri}\nstages:\n"
        "  produce: {notebook: produce.ipynb}\n"
        "  flaky: {notebook: flaky.ipynb}\n"
        "  consume: {notebook: consume.ipynb, inputs: [produce]}\n",
        encoding="utf-8",
    )
    return root


def test_stages_run_on_the_cluster_and_log_to_the_tracking_server(
    cluster: dict[str, str], tmp_path: Path
) -> None:
    root = _project(tmp_path / "project", cluster["tracking_uri"])
    result = run_pipeline(root, executor="dask", scheduler=cluster["scheduler"], jobs=2)

    assert result.succeeded, result.error
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["executor"] == "dask" and manifest["scheduler"] == cluster["scheduler"]
    stages = manifest["stages"]
    assert {n: s["status"] for n, s in stages.items()} == dict.fromkeys(
        ("produce", "flaky", "consume"), "succeeded"
    )
    assert stages["consume"]["recorded"] == {"total": 90.0}
    # The first worker died mid-stage; the stage ran again on the other worker, where
    # scikit-learn's joblib searches would use the cluster too.
    assert (root / "worker-killed").is_file()
    assert stages["flaky"]["recorded"]["joblib_backend"] == "DaskDistributedBackend"

    client = MlflowClient(tracking_uri=cluster["tracking_uri"])
    assert client.get_run(result.mlflow_run_id or "").info.status == "FINISHED"
    child = client.get_run(stages["consume"]["mlflow_run_id"])
    assert child.info.status == "FINISHED" and child.data.metrics == {"total": 90.0}

    again = run_pipeline(root, executor="dask", scheduler=cluster["scheduler"])
    assert again.executed == [] and again.mlflow_run_id is None


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path: Path, migrated_db: Path) -> None:
    root = _project(tmp_path / "project", "sqlite:///mlflow.db")
    shutil.copy(migrated_db, root / "mlflow.db")
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(ClusterError, match=f"Cannot reach the Dask scheduler at '{address}'"):
        run_pipeline(root, executor="dask", scheduler=address, only=["produce"])
    (record,) = (root / "runs").glob("*/manifest.json")
    manifest = json.loads(record.read_text())
    assert manifest["status"] == "failed" and "ClusterError" in manifest["error"]
    assert manifest["stages"]["produce"]["status"] == "not run"


DOOMED = """\
import os, signal
os.kill(os.getppid(), signal.SIGKILL)  # the Dask worker executing this stage, every time
"""


def test_a_stage_whose_workers_keep_dying_fails_cleanly_and_the_other_branch_finishes(
    cluster: dict[str, str], tmp_path: Path
) -> None:
    root = _project(tmp_path / "project", cluster["tracking_uri"])
    nb = nbformat.read(root / "flaky.ipynb", as_version=4)
    nb.cells[2].source = nb.cells[2].source.replace('"flaky"', '"doomed"')
    nb.cells[3].source = DOOMED
    nbformat.write(nb, root / "doomed.ipynb")
    (root / "pipeline.yaml").write_text(
        f"name: on-dask\ntracking_uri: {cluster['tracking_uri']}\nstages:\n"
        "  doomed: {notebook: doomed.ipynb}\n"
        "  consume: {notebook: consume.ipynb, inputs: [doomed]}\n"
        "  produce: {notebook: produce.ipynb}\n",
        encoding="utf-8",
    )
    result = run_pipeline(root, executor="dask", scheduler=cluster["scheduler"], jobs=2)

    assert not result.succeeded
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    stages = manifest["stages"]
    assert manifest["status"] == "failed"
    assert {n: s["status"] for n, s in stages.items()} == {
        "doomed": "failed",
        "consume": "not run",
        "produce": "succeeded",
    }
    message = stages["doomed"]["error"]["message"]
    assert "Dask worker running it died" in message and "every retry" in message
    assert manifest["error"].startswith("Stage 'doomed' failed")
    client = MlflowClient(tracking_uri=cluster["tracking_uri"])
    assert client.get_run(stages["doomed"]["mlflow_run_id"]).info.status == "FAILED"
    assert client.get_run(result.mlflow_run_id or "").info.status == "FAILED"


def test_sweep_variants_run_as_parallel_tasks_on_the_cluster(
    cluster: dict[str, str], tmp_path: Path
) -> None:
    from nbtools.runner.sweep import run_sweep

    root = _project(tmp_path / "project", cluster["tracking_uri"])
    shutil.copy(FIXTURES / "meets.ipynb", root / "meets.ipynb")
    (root / "pipeline.yaml").write_text(
        f"name: on-dask\ntracking_uri: {cluster['tracking_uri']}\nstages:\n"
        "  produce: {notebook: produce.ipynb}\n"
        "  meets: {notebook: meets.ipynb, inputs: [produce]}\n",
        encoding="utf-8",
    )
    variants = run_sweep(
        root, {"meets.name": ["a", "b"]}, executor="dask", scheduler=cluster["scheduler"], jobs=2
    )

    assert [v.result.succeeded for v in variants] == [True, True]
    for variant in variants:  # each met the other: they ran at once, on the two workers
        manifest = variant.result.manifest
        assert manifest["executor"] == "dask"
        assert manifest["stages"]["meets"]["recorded"]["met"] == ["a", "b"]
    produce = [v.result.manifest["stages"]["produce"]["status"] for v in variants]
    assert sorted(produce) == ["reused", "succeeded"]


WHERE = """\
import os
stage.record('worker_pid', os.getppid())  # the Dask worker executing this stage
"""


def test_a_stage_runs_on_a_worker_with_the_resources_it_declares_or_fails_saying_so(
    cluster: dict[str, str], tmp_path: Path
) -> None:
    from distributed import Client

    root = _project(tmp_path / "project", cluster["tracking_uri"])
    for name in ("big", "gpu"):
        nb = nbformat.read(root / "flaky.ipynb", as_version=4)
        nb.cells[2].source = nb.cells[2].source.replace('"flaky"', f'"{name}"')
        nb.cells[3].source = WHERE
        nbformat.write(nb, root / f"{name}.ipynb")
    (root / "pipeline.yaml").write_text(
        f"name: on-dask\ntracking_uri: {cluster['tracking_uri']}\nstages:\n"
        "  big: {notebook: big.ipynb, resources: {cpu: 2, memory: 1Gi}}\n"
        "  gpu: {notebook: gpu.ipynb, resources: {gpu: 1}}\n"
        "  produce: {notebook: produce.ipynb}\n",
        encoding="utf-8",
    )
    result = run_pipeline(root, executor="dask", scheduler=cluster["scheduler"], jobs=2)

    stages = result.manifest["stages"]
    assert stages["produce"]["status"] == stages["big"]["status"] == "succeeded"
    with Client(cluster["scheduler"], timeout=DEADLINE) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        pids = {workers[address]["name"]: pid for address, pid in client.run(os.getpid).items()}
    assert stages["big"]["recorded"]["worker_pid"] == pids["w1"]  # the one with 2 cores
    assert stages["gpu"]["status"] == "failed"
    message = stages["gpu"]["error"]["message"]
    assert "declares resources GPU=1" in message and "no worker" in message
    assert '--resources "GPU=1"' in message
