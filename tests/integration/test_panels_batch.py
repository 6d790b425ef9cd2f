"""A panel's choices, saved to pipeline.yaml, make a batch run produce exactly what it previewed."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from nbtools import tables
from nbtools.ml import cleaning, data, features
from nbtools.panels import CleaningPanel, FeatureSelectionPanel
from nbtools.pipeline.project import create_project
from nbtools.pipeline.spec import load_pipeline
from nbtools.runner.run import run_pipeline

pytestmark = pytest.mark.integration


def test_a_batch_run_reproduces_what_the_panels_previewed(
    tmp_path: Path, migrated_db: Path
) -> None:
    root = create_project(tmp_path / "churn")
    shutil.copy(migrated_db, root / "mlflow.db")
    ingest = run_pipeline(root, profile="smoke", targets=["ingest"])
    assert ingest.succeeded
    raw = pd.read_parquet(ingest.run_dir / "01_ingest" / "data.parquet")
    resolved = load_pipeline(root).resolve("smoke")

    clean_panel = CleaningPanel(
        raw,
        cleaning.CleaningParams.from_dict(resolved["clean"]),
        target="churned",
        project_dir=root,
    )
    clean_panel.drop_columns.value = ("region",)
    clean_panel.inputs["drop_duplicates"].value = False
    clean_panel.inputs["outliers"].value = "clip"
    clean_panel.save_button.click()
    assert clean_panel.saved is not None, clean_panel.message_text
    previewed, _ = clean_panel.apply()

    featured, _ = features.add_features(
        previewed, features.FeatureParams.from_dict(resolved["features"]), target="churned"
    )
    selection_panel = FeatureSelectionPanel(
        featured,
        features.FeatureParams.from_dict(resolved["features"]),
        target="churned",
        task="classification",
        project_dir=root,
    )
    selection_panel.rule.value = "top_k"
    selection_panel.rule_value.value = 4
    selection_panel.apply_rule.click()
    selection_panel.save_button.click()
    assert selection_panel.saved is not None, selection_panel.message_text

    batch = run_pipeline(root, profile="smoke", targets=["features"])
    assert batch.succeeded, batch.error
    clean_record = batch.manifest["stages"]["clean"]
    assert clean_record["recorded"]["content_hash"] == tables.content_hash(previewed)
    snapshot = tmp_path / "previewed.parquet"
    data.write_snapshot(previewed, snapshot)
    file_hash = "sha256:" + hashlib.sha256(snapshot.read_bytes()).hexdigest()
    assert clean_record["output_hashes"]["data.parquet"] == file_hash

    handed_over = json.loads((batch.run_dir / "04_features" / "features.json").read_text())
    assert handed_over["exclude_columns"] == selection_panel.export()["exclude_columns"]
    kept = set(selection_panel.kept.value)
    assert set(handed_over["numeric_columns"]) | set(handed_over["categorical_columns"]) == kept

    executed = json.loads((batch.run_dir / "02_clean" / "output.ipynb").read_text())
    state = executed["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert any(model["model_name"] == "SelectMultipleModel" for model in state.values())


def _relevance_shown(run_dir: Path) -> str:
    """The relevance table the features stage displayed in its executed notebook."""
    executed = json.loads((run_dir / "04_features" / "output.ipynb").read_text())
    cell = next(c for c in executed["cells"] if "features.relevance(" in "".join(c["source"]))
    return next("".join(o["data"]["text/plain"]) for o in cell["outputs"] if "data" in o)


def test_what_the_features_stage_shows_does_not_change_when_only_test_rows_change(
    tmp_path: Path, migrated_db: Path
) -> None:
    root = create_project(tmp_path / "churn")
    shutil.copy(migrated_db, root / "mlflow.db")
    first = run_pipeline(root, profile="smoke", targets=["features"])
    assert first.succeeded, first.error

    # Change a column of every test row in the source, and nothing else.
    source = root / "data" / "churn.csv"
    table = pd.read_csv(source)
    key = ["age", "tenure_months", "monthly_charges", "total_charges"]
    test_rows = pd.read_parquet(first.run_dir / "03_split" / "test.parquet")[key]
    unique = ~table.duplicated(keep=False)
    in_test = table[key].merge(test_rows.drop_duplicates(), how="left", indicator=True)
    changed = (in_test["_merge"] == "both").to_numpy() & unique.to_numpy()
    assert changed.sum() > 50
    table.loc[changed, "support_calls"] += 3
    table.to_csv(source, index=False)

    second = run_pipeline(root, profile="smoke", targets=["features"])
    assert second.succeeded, second.error

    def hashes(run) -> dict[str, str]:
        return run.manifest["stages"]["split"]["output_hashes"]

    assert hashes(second)["test.parquet"] != hashes(first)["test.parquet"]
    assert hashes(second)["train.parquet"] == hashes(first)["train.parquet"]
    assert second.manifest["stages"]["features"]["status"] == "succeeded"  # ran again
    assert _relevance_shown(second.run_dir) == _relevance_shown(first.run_dir)
    assert "support_calls" in _relevance_shown(first.run_dir)
