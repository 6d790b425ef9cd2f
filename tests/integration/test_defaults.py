"""The defaults keep information: tables that punish dropping rows or clipping, via the real CLI.

Each table is generated small, goes through ``nbtools new --data FILE --target COL`` and
``nbtools run --profile smoke`` with no edits, and its test metric must beat a baseline computed
here on the same rows: always guessing the majority class for the passenger table (few columns,
most rows repeated), and a plain ``HistGradientBoostingRegressor()`` for the delay table (a
heavy-tailed feature carrying the signal). The warnings for dropped rows and clipped values are
read from the command's output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import r2_score

pytestmark = pytest.mark.integration

NBTOOLS = str(Path(sys.executable).parent / "nbtools")
#: The smoke run stops after evaluate: deploy and monitor do not change the test metric.
RUN = ("run", "--profile", "smoke", "--to", "evaluate")


def passengers(n_rows: int = 1300, seed: int = 0) -> pd.DataFrame:
    """Outcome, sex, age and class of ship passengers: few columns, so most rows repeat."""
    rng = np.random.default_rng(seed)
    pclass = rng.choice([1, 2, 3], n_rows, p=[0.25, 0.2, 0.55])
    female = rng.random(n_rows) < 0.36
    age = np.clip(np.round(rng.normal(29, 13, n_rows)), 1, 75)
    logit = -0.9 + 2.4 * female - 0.9 * (pclass - 2) + 1.2 * (age < 10)
    survived = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)
    sex = np.where(female, "female", "male")
    age[rng.random(n_rows) < 0.2] = np.nan  # as in real passenger lists, many ages are unknown
    return pd.DataFrame({"survived": survived, "sex": sex, "age": age, "pclass": pclass})


def delays(n_rows: int = 2500, seed: int = 0) -> pd.DataFrame:
    """Flights whose arrival delay follows a heavy-tailed departure delay (minutes)."""
    rng = np.random.default_rng(seed)
    departure = np.round(rng.lognormal(2.5, 1.1, n_rows) - 8, 0)  # most near 0, some for hours
    distance = np.round(rng.uniform(150, 2500, n_rows), 0)
    carrier = rng.choice(["AA", "DL", "UA", "WN"], n_rows)
    hour = rng.integers(5, 23, n_rows)
    arrival = (
        0.95 * departure
        + 0.6 * (hour - 14)
        + np.where(carrier == "WN", -3.0, 2.0)
        + rng.normal(0, 6, n_rows)
    )
    return pd.DataFrame(
        {
            "dep_delay": departure,
            "distance": distance,
            "carrier": carrier,
            "hour": hour,
            "arr_delay": np.round(arrival, 1),
        }
    )


def nbtools(*args: str, cwd: Path) -> str:
    """Run the nbtools command line; return its output, failing the test on a non-zero exit."""
    done = subprocess.run(
        [NBTOOLS, *args], cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def new_project(tmp_path: Path, migrated_db: Path, frame: pd.DataFrame, target: str) -> Path:
    data = tmp_path / "table.csv"
    frame.to_csv(data, index=False)
    nbtools("new", "project", "--data", str(data), "--target", target, cwd=tmp_path)
    root = tmp_path / "project"
    shutil.copy(migrated_db, root / "mlflow.db")
    return root


def latest_manifest(root: Path) -> dict[str, Any]:
    newest = max((root / "runs").glob("*/manifest.json"), key=lambda p: p.parent.name)
    manifest: dict[str, Any] = json.loads(newest.read_text(encoding="utf-8"))
    return manifest


def split_rows(manifest: dict[str, Any], name: str) -> pd.DataFrame:
    return pd.read_parquet(Path(manifest["stages"]["split"]["output_dir"]) / f"{name}.parquet")


def warnings_of(output: str, stage: str) -> list[str]:
    prefix = f"{stage:<10} warning   "
    return [line.strip()[len(prefix) :] for line in output.splitlines() if prefix in line]


def test_a_table_of_repeated_rows_keeps_them_and_beats_the_majority_class(
    tmp_path: Path, migrated_db: Path
) -> None:
    frame = passengers()
    duplicates = int(frame.duplicated().sum())
    assert duplicates > 0.5 * len(frame)  # the hard case: most rows repeat an earlier one
    root = new_project(tmp_path, migrated_db, frame, "survived")

    output = nbtools(*RUN, cwd=root)

    manifest = latest_manifest(root)
    assert manifest["status"] == "succeeded"
    clean = manifest["stages"]["clean"]["recorded"]
    assert clean["rows_out"] == clean["rows_in"] == len(frame)  # nothing dropped by default
    assert clean["duplicates"] == duplicates
    [kept] = warnings_of(output, "clean")
    assert kept.startswith(f"{duplicates:,} of {len(frame):,} rows") and "they are kept" in kept
    test = split_rows(manifest, "test")
    majority = float((test["survived"] == test["survived"].mode()[0]).mean())
    accuracy = manifest["stages"]["evaluate"]["recorded"]["test_accuracy"]
    assert accuracy > majority + 0.05, (accuracy, majority)  # floor: always the majority class

    # Dropping the duplicates is one parameter away, and the run says what it cost.
    output = nbtools("run", "--to", "clean", "-p", "clean.drop_duplicates=true", cwd=root)
    share = duplicates / len(frame)
    expected = (
        f"removed {duplicates:,} of {len(frame):,} rows ({share:.1%}): {duplicates:,} exact "
        "duplicates. Set clean.drop_duplicates=false to keep the duplicates."
    )
    assert warnings_of(output, "clean") == [expected]
    record = latest_manifest(root)["stages"]["clean"]
    assert record["recorded"]["warnings"] == [expected]
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    tags = client.get_run(record["mlflow_run_id"]).data.tags
    assert json.loads(tags["nbtools.recorded.warnings"]) == [expected]

    # A reused stage still says what it removed.
    output = nbtools("run", "--to", "clean", "-p", "clean.drop_duplicates=true", cwd=root)
    assert "clean      reused" in output
    assert warnings_of(output, "clean") == [expected]


def test_a_heavy_tailed_feature_is_not_clipped_and_matches_plain_gradient_boosting(
    tmp_path: Path, migrated_db: Path
) -> None:
    frame = delays()
    root = new_project(tmp_path, migrated_db, frame, "arr_delay")

    output = nbtools(*RUN, cwd=root)

    manifest = latest_manifest(root)
    assert manifest["status"] == "succeeded"
    assert not [m for m in warnings_of(output, "train") if "clipped" in m]  # nothing clipped
    assert "values_clipped" not in manifest["stages"]["train"]["recorded"]
    train, test = split_rows(manifest, "train"), split_rows(manifest, "test")
    features = ["dep_delay", "distance", "hour"]  # the numeric columns, as a quick baseline takes
    plain = HistGradientBoostingRegressor(random_state=0).fit(train[features], train["arr_delay"])
    floor = r2_score(test["arr_delay"], plain.predict(test[features])) - 0.02
    r2 = manifest["stages"]["evaluate"]["recorded"]["test_r2"]
    assert r2 >= floor, (r2, floor)

    # Clipping is one parameter away; the train stage says how many values each column lost.
    output = nbtools(*RUN[:4], "train", "-p", "clean.outliers=clip", cwd=root)
    record = latest_manifest(root)["stages"]["train"]
    clipped = record["recorded"]["values_clipped"]
    rows = len(train) + len(split_rows(manifest, "validation"))  # the final fit's rows
    assert clipped["dep_delay"] > 0.01 * rows
    [message] = [m for m in warnings_of(output, "train") if "'dep_delay'" in m]
    assert message.startswith(f"changed {clipped['dep_delay']:,} of {rows:,} values")
    assert "clipped to the IQR fences" in message
    assert message in record["recorded"]["warnings"]
