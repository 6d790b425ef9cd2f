"""The torch_mlp family through the whole lifecycle of the demo project: trained by the real
pipeline with its TensorBoard curves, registered, served by ``nbtools serve`` and by ``mlflow
models serve``, reproduced by a rerun, and retrained by ``nbtools monitor``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from loopback import free_port, stop_group, wait_for_http
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nbtools import run_pipeline
from nbtools.cli import cli
from nbtools.ml.modeling import model_input
from nbtools.ml.training_curves import EVENTS_FOLDER
from nbtools.ops.simulation import drifted_churn
from nbtools.pipeline.project import create_project

pytestmark = [pytest.mark.integration, pytest.mark.serving]

MODEL = "churn-model"
TRAIN = """  train:
    notebook: 05_train.ipynb
    inputs: [ingest, clean, features, split]
"""

#: The environment without PyTorch that the extra's tests are started from
#: (``test_torch_extra.py``): a served network must predict there too.
BASE_BIN = Path(os.environ.get("NBTOOLS_BASE_BIN", Path(sys.executable).parent))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Path:
    """The demo project with ``train.family: torch_mlp`` in its spec, run up to deploy."""
    root = create_project(tmp_path_factory.mktemp("torch") / "churn")
    shutil.copy(migrated_db, root / "mlflow.db")
    spec = root / "pipeline.yaml"
    text = spec.read_text(encoding="utf-8")
    assert TRAIN in text
    spec.write_text(text.replace(TRAIN, TRAIN + "    parameters:\n      family: torch_mlp\n"))
    return root


@pytest.fixture(scope="module")
def first(project: Path) -> dict[str, Any]:
    result = run_pipeline(project, profile="smoke", stop="deploy")
    assert result.succeeded, result.error
    return result.manifest


def rows(first: dict[str, Any]) -> pd.DataFrame:
    """Forty test rows of the first run, as the model takes them."""
    test = pd.read_parquet(Path(first["stages"]["split"]["output_dir"]) / "test.parquet")
    return test.drop(columns=["churned"]).head(40)


def test_the_train_stage_trains_the_network_and_keeps_its_curves(
    project: Path, first: dict[str, Any]
) -> None:
    train = first["stages"]["train"]
    assert train["recorded"]["family"] == "torch_mlp"
    assert train["recorded"]["device"] == "cpu"
    events = Path(train["output_dir"]) / EVENTS_FOLDER
    curves = EventAccumulator(str(events))
    curves.Reload()
    assert {"loss/train", "loss/validation", "validation/accuracy"} <= set(curves.Tags()["scalars"])
    losses = [event.value for event in curves.Scalars("loss/train")]
    assert losses[-1] < losses[0] * 0.9
    assert len(losses) >= train["recorded"]["epochs_kept"]
    # the same files in the stage's MLflow run, and the plot in the executed notebook
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    logged = [a.path for a in client.list_artifacts(train["mlflow_run_id"], EVENTS_FOLDER)]
    assert logged and all(Path(path).name.startswith("events.out.tfevents") for path in logged)
    notebook = json.loads(Path(train["executed_notebook"]).read_text(encoding="utf-8"))
    outputs = [o for cell in notebook["cells"] for o in cell.get("outputs", [])]
    curves_cell = [o for o in outputs if "TensorBoard event files" in "".join(o.get("text", ""))]
    assert curves_cell
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_the_network_is_registered_through_the_gate(project: Path, first: dict[str, Any]) -> None:
    assert first["stages"]["deploy"]["status"] == "succeeded"
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert version.run_id == first["stages"]["train"]["mlflow_run_id"]


def request(frame: pd.DataFrame) -> dict[str, Any]:
    """The rows as a scoring request, dates in ISO format."""
    split = frame.to_json(orient="split", index=False, date_format="iso")
    return {"dataframe_split": json.loads(split)}


def champion_predictions(project: Path, frame: pd.DataFrame) -> np.ndarray:
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    return np.asarray(model.predict(model_input(frame)))


def start(command: list[str], project: Path, log: Path, url: str) -> subprocess.Popen:
    """Start a model service from the environment without PyTorch; return once /ping answers."""
    process = subprocess.Popen(
        command,
        cwd=project,
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
            "PATH": f"{BASE_BIN}{os.pathsep}{os.environ['PATH']}",  # mlflow runs uvicorn by name
        },
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_http(process, url + "/ping", log=log)
    return process


@pytest.fixture
def served(project: Path, first: dict[str, Any]) -> Iterator[str]:
    """``nbtools serve`` of the champion, from the environment without PyTorch."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(BASE_BIN / "nbtools"), "serve", "--model", f"models:/{MODEL}@champion",
        "--tracking-uri", f"sqlite:///{project / 'mlflow.db'}", "--port", str(port),
    ]  # fmt: skip
    process = start(command, project, project / "serve.log", url)
    yield url
    stop_group(process, grace_seconds=30)


def test_nbtools_serve_predicts_as_the_registered_model_compiled(
    project: Path, first: dict[str, Any], served: str
) -> None:
    frame = rows(first)
    expected = champion_predictions(project, frame)
    body = request(frame)
    with httpx.Client(base_url=served, timeout=30) as client:
        answer = client.post("/invocations", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected.tolist()
        metadata = client.get("/metadata").json()
    assert metadata["runtime"]["engine"] == "compiled", metadata["runtime"]


def test_mlflow_models_serve_predicts_as_the_registered_model(
    project: Path, first: dict[str, Any]
) -> None:
    frame = rows(first)
    expected = champion_predictions(project, frame)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(BASE_BIN / "mlflow"), "models", "serve",
        "-m", f"models:/{MODEL}@champion", "--env-manager", "local",
        "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    process = start(command, project, project / "mlflow-serve.log", url)
    try:
        body = request(frame)
        answer = httpx.post(url + "/invocations", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected.tolist()
    finally:
        stop_group(process, grace_seconds=30)


def test_a_rerun_with_the_same_seed_trains_the_same_network(
    project: Path, first: dict[str, Any]
) -> None:
    again = run_pipeline(project, profile="smoke", stop="train", force=["train"])
    assert again.succeeded, again.error
    train = again.manifest["stages"]["train"]
    assert (
        train["status"] == "succeeded"
        and train["output_dir"] != first["stages"]["train"]["output_dir"]
    )
    frame = model_input(rows(first))
    models = [
        mlflow.pyfunc.load_model(str(Path(run["stages"]["train"]["output_dir"]) / "model"))
        for run in (first, again.manifest)
    ]
    np.testing.assert_array_equal(models[0].predict(frame), models[1].predict(frame))


def test_monitoring_retrains_the_network_like_any_family(
    project: Path, first: dict[str, Any]
) -> None:
    days = []
    for day in range(2):  # pricier plans: drift in the inputs
        batch = drifted_churn(600, covariate=1.0, seed=30 + day)
        begin = pd.Timestamp("2026-03-01", tz="UTC") + pd.Timedelta(days=day)
        days.append(batch.assign(timestamp=begin + pd.to_timedelta(range(600), unit="min")))
    pd.concat(days).to_parquet(project / "prices.parquet")
    arguments = [
        "monitor", "--project", str(project), "--current", "prices.parquet", "--every", "1D",
        "--max-drop", "0.5", "--retrain", "--profile", "smoke",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 6, result.output  # the drift rule's breach
    report = next(line for line in result.output.splitlines() if line.startswith("Report: "))
    check = json.loads((Path(report.removeprefix("Report: ")).parent / "check.json").read_text())
    retrain = check["retrain"]
    assert retrain["succeeded"], retrain
    manifest = json.loads((project / "runs" / retrain["run_id"] / "manifest.json").read_text())
    assert manifest["stages"]["train"]["recorded"]["family"] == "torch_mlp"
    assert retrain["version"] == "2"
