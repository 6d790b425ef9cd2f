"""The monitoring loop on a real project: no drift, a rejected and a promoted challenger.

One demo project is run once with the smoke profile (champion version 1). The tests then run in
order, as the loop would over time: new data like the training data (nothing happens), two days
of drifted prices with the old concept and a deliberately weak retrained model (rejected), and
a served champion whose customers changed behaviour, with labels joined to the service's own
prediction log (the retrained model is promoted and the running service switches to it).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from click.testing import CliRunner
from loopback import free_port, start_group, stop_group, wait_for_http
from mlflow.tracking import MlflowClient

from nbtools import run_pipeline
from nbtools.cli import cli
from nbtools.ops.predictions import read_predictions
from nbtools.ops.retraining import monitor_project
from nbtools.ops.simulation import drifted_churn
from nbtools.pipeline.project import create_project

pytestmark = [pytest.mark.integration, pytest.mark.serving]

MODEL = "churn-model"
NBTOOLS = str(Path(sys.executable).parent / "nbtools")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Path:
    root = create_project(tmp_path_factory.mktemp("loop") / "churn")
    shutil.copy(migrated_db, root / "mlflow.db")
    with (root / "pipeline.yaml").open("a", encoding="utf-8") as spec:  # see the rejected one
        spec.write("\nnotify: {webhook: NBTOOLS_TEST_WEBHOOK, on: [drift, decay, rejected]}\n")
    first = run_pipeline(root, profile="smoke", stop="deploy")  # a champion is all it needs
    assert first.succeeded, first.error
    return root


def champion(project: Path) -> str:
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


def monitor(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["monitor", "--project", str(project), *args])
    return result.exit_code, result.output


def check_record(output: str) -> dict:
    report = next(line for line in output.splitlines() if line.startswith("Report: "))
    return json.loads((Path(report[len("Report: ") :]).parent / "check.json").read_text())


def test_no_drift_no_retrain(project: Path) -> None:
    drifted_churn(600, seed=5).to_csv(project / "same.csv", index=False)
    runs = len(list((project / "runs").iterdir()))
    code, output = monitor(project, "--current", "same.csv", "--retrain", "--profile", "smoke")
    assert code == 0, output
    record = check_record(output)
    assert record["breach"] is None and record["retrain"] is None
    assert [d["decision"] for d in record["decisions"]] == ["no retraining"]
    assert record["windows"][0]["drift_share"] == 0.0 and record["windows"][0]["decayed"] is False
    assert len(list((project / "runs").iterdir())) == runs  # nothing was retrained
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("churn").experiment_id
    runs = client.search_runs(
        [experiment], filter_string=f"tags.`nbtools.monitor` = '{record['check_id']}'"
    )
    assert runs and runs[0].data.tags["nbtools.decision.00"].startswith("no retraining")
    assert runs[0].data.metrics["drift_share"] == 0.0


def test_bad_input_is_a_clear_error_with_status_2(project: Path) -> None:
    drifted_churn(100, seed=5).drop(columns="age").to_csv(project / "short.csv", index=False)
    code, output = monitor(project, "--current", "short.csv")
    assert code == 2 and "missing columns ['age']" in output
    code, output = monitor(project, "--current", "same.csv", "--labels", "same.csv")
    assert code == 2 and "not a prediction log" in output
    code, output = monitor(project, "--current", "same.csv", "--every", "fortnightly")
    assert code == 2 and "pandas frequency" in output
    unlabelled = drifted_churn(600, covariate=1.0, seed=6).drop(columns="churned")
    unlabelled.to_csv(project / "unlabelled.csv", index=False)
    checks = len(list((project / "monitoring").iterdir()))
    code, output = monitor(
        project, "--current", "unlabelled.csv", "--drift-windows", "1", "--retrain"
    )
    assert code == 2 and "Retraining needs labelled new data" in output
    assert len(list((project / "monitoring").iterdir())) == checks  # nothing half-recorded
    code, output = monitor(project, "--current", "same.csv", "--retrain", "-p", "train.nope=1")
    assert code == 2 and "nope" in output


def test_a_worse_challenger_is_rejected_and_the_champion_stays(project: Path, webhook) -> None:
    days = []
    for day in range(2):  # other customers (pricier plans), who behave as before
        batch = drifted_churn(600, covariate=1.0, seed=20 + day)
        start = pd.Timestamp("2026-02-01", tz="UTC") + pd.Timedelta(days=day)
        days.append(batch.assign(timestamp=start + pd.to_timedelta(range(600), unit="min")))
    pd.concat(days).to_parquet(project / "prices.parquet")
    code, output = monitor(
        project,
        "--current", "prices.parquet",
        "--every", "1D",
        "--max-drop", "0.5",  # the drift rule alone: two drifted days in a row
        "--retrain",
        "--profile", "smoke",
        "-p", "features.selection=kbest",  # a deliberately weak challenger: one feature
        "-p", "features.k=1",
    )  # fmt: skip
    assert code == 6, output  # a breach of the retraining rule
    record = check_record(output)
    assert record["breach"]["kind"] == "drift" and record["breach"]["window"].startswith(
        "2026-02-02"
    )
    assert [d["decision"] for d in record["decisions"]] == [
        "drift found",
        "retraining due",
        "retrain started",
        "challenger rejected",
    ]
    retrain = record["retrain"]
    assert retrain["succeeded"] and retrain["promoted"] is False and retrain["version"] == "2"
    assert retrain["challenger_score"] < retrain["champion_score"]
    assert retrain["gain_lower"] < retrain["gain"] < 0  # the gate's bootstrap, recorded
    assert champion(project) == "1"
    aliases = MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_registered_model(MODEL)
    assert aliases.aliases == {"champion": 1, "challenger": 2}
    # The team heard of the rejection (from the deploy stage), then of the check's drift.
    rejected, drift = webhook.messages
    assert (
        drift["nbtools"]["event"] == "drift"
        and drift["nbtools"]["details"]["check_id"] == (record["check_id"])
    )
    assert f"Dataset drift in check {record['check_id']}" in drift["text"]
    assert f"retraining run {retrain['run_id']}: challenger rejected." in drift["text"]
    assert drift["nbtools"]["record"].endswith(f"monitoring/{record['check_id']}/report.html")
    assert rejected["nbtools"]["event"] == "rejected"
    assert rejected["nbtools"]["run_id"] == retrain["run_id"]
    assert rejected["nbtools"]["stage"] == "deploy"
    assert rejected["nbtools"]["record"] == str(
        project / "runs" / retrain["run_id"] / "manifest.json"
    )
    assert "Model 'churn-model' version 2 was not promoted" in rejected["text"]


@pytest.fixture
def service(project: Path) -> Iterator[str]:
    port = free_port()
    log = project / "serve.log"
    process = start_group(
        [NBTOOLS, "serve", "--project", project, "--port", str(port), "--poll-seconds", "0.3"],
        log=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(process, url + "/ping", log=log)
        yield url
    finally:
        stop_group(process, grace_seconds=30)


def test_a_better_challenger_is_promoted_and_the_running_service_switches(
    project: Path, service: str
) -> None:
    with httpx.Client(base_url=service, timeout=30) as client:
        assert client.get("/metadata").json()["model_version"] == "1"
        # Customers changed: long-standing ones now leave. The service predicts as before.
        new = drifted_churn(1200, covariate=0.5, concept=1.0, seed=40)
        rows = new.drop(columns="churned").astype({"signup_date": str})
        labels = []
        for start in range(0, len(rows), 50):
            batch = rows.iloc[start : start + 50]
            records = json.loads(batch.to_json(orient="records"))
            answer = client.post(  # probabilities too: ROC AUC, the deciding metric, needs them
                "/invocations",
                json={"dataframe_records": records, "params": {"predict_proba": True}},
            )
            assert answer.status_code == 200, answer.text
            labels.append(
                pd.DataFrame(
                    {
                        "request_id": answer.headers["X-Request-ID"],
                        "request_row": range(len(batch)),
                        "churned": new["churned"].iloc[start : start + 50].to_numpy(),
                    }
                )
            )
        deadline = time.monotonic() + 30
        while len(read_predictions(project / "predictions")) < len(rows):
            assert time.monotonic() < deadline, "the prediction log was not written"
            time.sleep(0.2)
        outcome = monitor_project(
            project,
            current="predictions",
            labels=pd.concat(labels, ignore_index=True),
            retrain=True,
            profile="smoke",
        )
        assert outcome.result.breach is not None and outcome.result.breach.kind == "performance"
        assert outcome.retrain is not None and outcome.retrain.promoted, outcome.decisions
        assert outcome.retrain.version == "3" and champion(project) == "3"
        assert outcome.retrain.challenger_score > outcome.retrain.champion_score
        assert outcome.retrain.gain_lower is not None and outcome.retrain.gain_lower > 0
        shown = None
        deadline = time.monotonic() + 30
        while shown != "3" and time.monotonic() < deadline:
            shown = client.get("/metadata").json()["model_version"]
            time.sleep(0.1)
        assert shown == "3"
    tags = (
        MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
        .get_run(
            json.loads((project / "runs" / outcome.retrain.run_id / "manifest.json").read_text())[
                "mlflow"
            ]["parent_run_id"]
        )
        .data.tags
    )
    assert tags["nbtools.retrain.trigger"] == outcome.check_id
    assert outcome.report.is_file() and "challenger promoted" in outcome.report.read_text()
