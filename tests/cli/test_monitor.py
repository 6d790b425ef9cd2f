"""``nbtools monitor`` exit statuses, through the real command line, on a real model.

The project is made by ``nbtools new`` on a table of twelve numeric columns and a plan column;
its train and evaluate stages' outputs are written as those stages write them (a fitted
scikit-learn pipeline saved as an MLflow model, its reference statistics, the held-out metrics)
under a run record, so that checks run against ``--reference RUN_ID`` in seconds.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from nbtools.cli import cli
from nbtools.ops import monitoring
from nbtools.pipeline.project import create_project
from nbtools.records.runs import write_manifest

COLUMNS = [f"x{i:02d}" for i in range(12)]
RUN_ID = "20260301-000000-monitr"
NBTOOLS = str(Path(sys.executable).parent / "nbtools")
CHECKS = itertools.count()


def table(n: int, *, shifted: int = 0, seed: int = 0) -> pd.DataFrame:
    """Twelve standard normal columns (the first ``shifted`` moved by 1 sd) and a label."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(rng.standard_normal((n, 12)), columns=COLUMNS)
    data[COLUMNS[:shifted]] += 1.0
    data["plan"] = rng.choice(["basic", "pro"], n)
    signal = data["x11"] + data["x10"] - 0.5 * (data["plan"] == "pro")
    data["churned"] = (signal + rng.normal(0, 0.5, n) > 0).astype(int)
    return data


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Path:
    folder = tmp_path_factory.mktemp("monitor")
    train = table(3000)
    train.to_csv(folder / "train.csv", index=False)
    root = create_project(folder / "shop", data=str(folder / "train.csv"), target="churned")
    shutil.copy(migrated_db, root / "mlflow.db")
    X, y = train.drop(columns="churned"), train["churned"]
    model = _pipeline().fit(X, y)
    run = root / "runs" / RUN_ID
    (run / "05_train").mkdir(parents=True)
    (run / "06_evaluate").mkdir()
    mlflow.sklearn.save_model(model, run / "05_train" / "model", serialization_format="cloudpickle")
    reference = monitoring.drift.reference_statistics(X, target="churned", task="classification")
    (run / "05_train" / "reference.json").write_text(json.dumps(reference), encoding="utf-8")
    test = table(1000, seed=1)
    score = roc_auc_score(test["churned"], model.predict_proba(test[X.columns])[:, 1])
    metrics = {
        "primary_metric": "roc_auc",
        "greater_is_better": True,
        "metrics": {"roc_auc": score},
    }
    (run / "06_evaluate" / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    stage = {"status": "succeeded", "recorded": {}, "error": None}
    write_manifest(
        run,
        {
            "run_id": RUN_ID,
            "pipeline": "shop",
            "status": "succeeded",
            "started_at": "2026-03-01T00:00:00+00:00",
            "stages": {
                "train": {**stage, "output_dir": str(run / "05_train")},
                "evaluate": {**stage, "output_dir": str(run / "06_evaluate")},
            },
        },
    )
    return root


def _pipeline():
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        (SimpleImputer(), COLUMNS),  # as the train stage's pipeline, it takes missing values
    )
    return make_pipeline(encode, LogisticRegression(max_iter=500))


def monitor(project: Path, current: pd.DataFrame, *args: str) -> tuple[int, str]:
    path = project / f"current-{next(CHECKS)}.csv"
    current.to_csv(path, index=False)
    result = CliRunner().invoke(
        cli,
        [
            "monitor",
            "--project",
            str(project),
            "--reference",
            RUN_ID,
            "--current",
            path.name,
            *args,
        ],
    )
    return result.exit_code, result.output


def found(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("Found: "))


def test_no_drift_exits_0(project: Path) -> None:
    code, output = monitor(project, table(2000, seed=2).drop(columns="churned"))
    assert code == 0, output
    assert found(output) == "Found: nothing"


def test_three_of_twelve_columns_drifting_exits_3_although_the_dataset_does_not(
    project: Path,
) -> None:
    code, output = monitor(project, table(2000, shifted=3, seed=3).drop(columns="churned"))
    assert code == 3, output
    assert found(output) == "Found: column-drift"
    assert "drift share 23%" in output  # 3 of 13 columns: below the dataset's half
    for column in ("x00", "x01", "x02"):
        assert f"    {column}: distribution (Wasserstein (normed) " in output
    only_dataset = monitor(
        project,
        table(2000, shifted=3, seed=3).drop(columns="churned"),
        "--fail-on",
        "dataset-drift",
    )
    assert only_dataset[0] == 0, only_dataset[1]


def test_a_surge_of_missing_values_exits_3_and_says_so(project: Path) -> None:
    current = table(2000, seed=4).drop(columns="churned")
    current.loc[current.index % 10 == 0, "x05"] = np.nan
    code, output = monitor(project, current)
    assert code == 3, output
    assert "    x05: missing 0.0% -> 10.0%" in output


def test_dataset_drift_exits_4_then_a_second_drifted_check_breaches_with_6(
    project: Path,
) -> None:
    code, output = monitor(project, table(2000, shifted=8, seed=5).drop(columns="churned"))
    assert code == 4, output
    assert found(output) == "Found: column-drift, dataset-drift"
    # The drift rule needs two drifted windows in a row; the history spans checks.
    code, output = monitor(project, table(2000, shifted=8, seed=6).drop(columns="churned"))
    assert code == 6, output
    assert found(output) == "Found: column-drift, dataset-drift, breach"
    code, output = monitor(
        project, table(2000, shifted=8, seed=7).drop(columns="churned"), "--fail-on", "none"
    )
    assert code == 0, output


def test_performance_decay_exits_5_when_the_breach_does_not_fail_the_check(
    project: Path,
) -> None:
    current = table(2000, seed=8)
    current["churned"] = 1 - current["churned"]  # the concept turned around
    code, output = monitor(project, current, "--fail-on", "column-drift,performance")
    assert code == 5, output
    assert found(output) == "Found: performance, breach"
    code, output = monitor(project, current)  # by default the breach is the most serious
    assert code == 6, output


def test_model_reliance_is_shown_beside_the_drifted_columns(project: Path) -> None:
    current = table(2000, seed=9).drop(columns="churned")
    current["x11"] += 1.0  # a column the model relies on
    current["x00"] += 1.0  # one it ignores
    code, output = monitor(project, current)
    assert code == 3, output
    reliance = {
        line.split(":")[0].strip(): int(line.rsplit("reliance ", 1)[1].rstrip("%"))
        for line in output.splitlines()
        if line.startswith("    x")
    }
    assert set(reliance) == {"x00", "x11"} and reliance["x11"] > 30 > 5 > reliance["x00"]


def test_a_bad_fail_on_is_bad_input_with_status_2(project: Path) -> None:
    code, output = monitor(project, table(100, seed=10), "--fail-on", "drift")
    assert code == 2
    assert "Invalid value for '--fail-on'" in output and "column-drift" in output


def test_the_installed_command_exits_with_the_status(project: Path) -> None:
    table(2000, shifted=3, seed=11).drop(columns="churned").to_csv(project / "now.csv", index=False)
    command = [NBTOOLS, "monitor", "--project", str(project), "--reference", RUN_ID]
    command += ["--current", "now.csv", "--importance-rows", "0"]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 3, completed.stdout + completed.stderr
    help_text = subprocess.run(
        [NBTOOLS, "monitor", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "3  column drift" in help_text and "6  breach" in help_text


def test_drift_and_decay_are_posted_to_the_webhook(project: Path, tmp_path: Path, webhook) -> None:
    copy = shutil.copytree(project, tmp_path / "shop")
    with (copy / "pipeline.yaml").open("a", encoding="utf-8") as spec:
        spec.write("\nnotify: {webhook: NBTOOLS_TEST_WEBHOOK, on: [drift, decay]}\n")
    current = table(2000, shifted=8, seed=12)
    current["churned"] = 1 - current["churned"]  # and the concept turned around
    code, output = monitor(copy, current, "--fail-on", "none")
    assert code == 0, output

    report = next(line for line in output.splitlines() if line.startswith("Report: "))[8:]
    mlflow_run = next(line for line in output.splitlines() if line.startswith("MLflow run: "))[12:]
    check_id = Path(report).parent.name
    drift, decay = webhook.messages
    assert drift["nbtools"]["event"] == "drift" and decay["nbtools"]["event"] == "decay"
    assert f"Dataset drift in check {check_id} against the model of run {RUN_ID}" in drift["text"]
    assert f"(MLflow run {mlflow_run})" in drift["text"]
    assert "x00" in drift["nbtools"]["details"]["drifted_columns"]
    assert f"Performance decay in check {check_id}" in decay["text"]
    assert "roc_auc" in decay["text"] and "Retraining is due." in decay["text"]
    for message in (drift, decay):
        assert message["nbtools"]["record"] == report
        assert message["nbtools"]["details"]["mlflow_run_id"] == mlflow_run
