"""A data set the templates were not written for runs through with no notebook edits.

scikit-learn's diabetes data (regression) with a categorical column and missing values added,
served from a SQLite database, goes through every stage with the smoke profile.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import mlflow
import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from nbtools import load_pipeline, run_pipeline
from nbtools.ml.modeling import model_input
from nbtools.pipeline.project import create_project

pytestmark = pytest.mark.integration


def test_a_regression_table_from_sqlite_runs_end_to_end(tmp_path: Path, migrated_db: Path) -> None:
    frame = load_diabetes(as_frame=True).frame
    rng = np.random.default_rng(0)
    frame["clinic"] = rng.choice(["north", "south", "east"], size=len(frame))
    frame.loc[rng.choice(len(frame), 20, replace=False), "bmi"] = np.nan
    database = tmp_path / "patients.db"
    with sqlite3.connect(database) as connection:
        frame.to_sql("patients", connection, index=False)

    root = create_project(
        tmp_path / "diabetes", data=f"sqlite:///{database}", table="patients", target="target"
    )
    shutil.copy(migrated_db, root / "mlflow.db")
    result = run_pipeline(root, profile="smoke")

    assert result.succeeded, result.error
    stages = result.manifest["stages"]
    assert stages["ingest"]["recorded"]["task"] == "regression"
    assert stages["ingest"]["recorded"]["rows"] == len(frame)
    assert stages["evaluate"]["recorded"]["test_r2"] > 0.2
    assert stages["evaluate"]["recorded"]["test_rmse"] < frame["target"].std()
    pipeline = load_pipeline(root)
    mlflow.set_tracking_uri(pipeline.tracking_uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{pipeline.model_name}@champion")
        predictions = model.predict(model_input(frame.drop(columns=["target"]).head(5)))
    finally:
        mlflow.set_tracking_uri(None)
    assert np.all(np.isfinite(predictions))
