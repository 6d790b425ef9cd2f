"""The default template end to end through real kernels, with the smoke profile.

One project is run twice (the second run meets the first run's champion in the deploy gate);
the tests then check what a user would: the run records, MLflow and the registered model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from nbtools import load_pipeline, run_pipeline
from nbtools.ml import modeling
from nbtools.pipeline.project import create_project

pytestmark = pytest.mark.integration

STAGES = ["ingest", "clean", "split", "features", "train", "evaluate", "deploy", "monitor"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path):
    """A demo project run twice with the smoke profile: (project, first run, second run)."""
    root = create_project(tmp_path_factory.mktemp("demo") / "churn")
    shutil.copy(migrated_db, root / "mlflow.db")
    first = run_pipeline(root, profile="smoke")
    second = run_pipeline(root, profile="smoke", overrides={"train.family": "logistic_regression"})
    return root, first, second


def test_every_stage_runs_and_leaves_its_record(demo) -> None:
    _, first, _ = demo
    assert first.succeeded, first.error
    manifest = json.loads((first.run_dir / "manifest.json").read_text())
    assert list(manifest["stages"]) == STAGES
    for index, name in enumerate(STAGES, start=1):
        stage = manifest["stages"][name]
        folder = first.run_dir / f"{index:02d}_{name}"
        assert stage["status"] == "succeeded"
        assert stage["dir"] == folder.name
        assert (folder / "output.ipynb").is_file() and (folder / "output.html").is_file()
    assert manifest["stages"]["train"]["parameters"]["n_iter"] == 2  # the smoke profile
    assert manifest["environment"]["git"].keys() == {"commit", "dirty"}


def test_the_snapshot_hash_matches_the_data_handed_over(demo) -> None:
    _, first, _ = demo
    from nbtools.tables import content_hash

    ingest = first.run_dir / "01_ingest"
    dataset = json.loads((ingest / "dataset.json").read_text())
    assert dataset["content_hash"] == content_hash(pd.read_parquet(ingest / "data.parquet"))
    assert dataset["task"] == "classification" and dataset["target"] == "churned"


def test_held_out_metrics_are_sensible(demo) -> None:
    _, first, _ = demo
    recorded = first.manifest["stages"]["evaluate"]["recorded"]
    assert 0.6 < recorded["test_roc_auc"] <= 1.0
    assert 0.6 < recorded["test_accuracy"] <= 1.0


def test_no_leakage_the_model_never_saw_the_test_rows(demo) -> None:
    _, first, _ = demo
    split = first.run_dir / "03_split"
    train = pd.read_parquet(split / "train.parquet")
    test = pd.read_parquet(split / "test.parquet")
    assert len(train.merge(test, how="inner")) == 0
    validation = pd.read_parquet(split / "validation.parquet")
    assert len(validation.merge(test, how="inner")) == 0
    # the chosen model is refitted on training and validation rows (final_fit), never on test
    assert first.manifest["stages"]["train"]["recorded"]["final_rows"] == len(train) + len(
        validation
    )
    second_model = mlflow.sklearn.load_model(str(demo[2].run_dir / "05_train" / "model"))
    numeric = second_model.named_steps["preprocess"].named_transformers_["numeric"]
    assert numeric.named_steps["scale"].n_samples_seen_ == len(train) + len(validation)


def test_mlflow_holds_a_parent_run_and_one_child_per_stage(demo) -> None:
    root, first, _ = demo
    pipeline = load_pipeline(root)
    client = MlflowClient(tracking_uri=pipeline.tracking_uri)
    assert client.get_run(first.mlflow_run_id).info.status == "FINISHED"
    children = client.search_runs(
        [client.get_run(first.mlflow_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{first.mlflow_run_id}'",
    )
    assert sorted(r.info.run_name for r in children) == sorted(STAGES)
    assert all(r.info.status == "FINISHED" for r in children)
    evaluate = next(r for r in children if r.info.run_name == "evaluate")
    assert evaluate.data.metrics["test_accuracy"] > 0.6
    artifacts = {a.path for a in client.list_artifacts(evaluate.info.run_id, "notebook")}
    assert artifacts == {"notebook/output.ipynb", "notebook/output.html"}


def test_the_champion_loads_by_alias_and_predicts_raw_rows(demo) -> None:
    root, first, second = demo
    pipeline = load_pipeline(root)
    mlflow.set_tracking_uri(pipeline.tracking_uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{pipeline.model_name}@champion")
        test = pd.read_parquet(first.run_dir / "03_split" / "test.parquet")
        # the model takes the cleaned columns as they are and derives its features itself
        assert model.metadata.get_input_schema().input_names() == [
            c for c in test.columns if c != "churned"
        ]
        rows = modeling.model_input(test.drop(columns=["churned"]).head(20))
        predictions = model.predict(rows)
        assert set(predictions) <= {"yes", "no"}
        requirements = mlflow.pyfunc.get_model_dependencies(
            f"models:/{pipeline.model_name}@champion"
        )
        assert "scikit-learn==" in Path(requirements).read_text()
    finally:
        mlflow.set_tracking_uri(None)
    client = MlflowClient(tracking_uri=pipeline.tracking_uri)
    versions = client.search_model_versions(f"name = '{pipeline.model_name}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert second.succeeded, second.error
    deployment = json.loads((second.run_dir / "07_deploy" / "deployment.json").read_text())
    assert deployment["version"] == "2"
    assert deployment["champion_score"] is not None  # gated against version 1
    shipped = second.run_dir / "07_deploy" / "k8s" / "deployment.yaml"
    assert f"models:/{pipeline.model_name}@champion" in shipped.read_text()
    champion = client.get_model_version_by_alias(pipeline.model_name, "champion")
    challenger = client.get_model_version_by_alias(pipeline.model_name, "challenger")
    assert str(challenger.version) == "2"
    assert str(champion.version) == ("2" if deployment["promoted"] else "1")


def test_runs_list_shows_both_runs(demo) -> None:
    root, first, second = demo
    from click.testing import CliRunner

    from nbtools.cli import cli

    listed = CliRunner().invoke(cli, ["runs", "list", "--project", str(root)])
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert second.run_id in lines[1] and first.run_id in lines[2]
    assert "8/8 ok" in lines[1] and "test_roc_auc=" in lines[1]
    assert "hash" not in lines[1]  # only held-out metrics, no other recorded values
