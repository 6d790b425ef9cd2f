"""A panel's choices, saved to pipeline.yaml, make a batch run produce exactly what it previewed."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from nbtools.core import cleaning, data, features
from nbtools.core.project import create_project
from nbtools.core.runner import run_pipeline
from nbtools.core.spec import load_pipeline
from nbtools.panels import CleaningPanel, FeatureSelectionPanel

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
    assert clean_record["recorded"]["content_hash"] == data.content_hash(previewed)
    snapshot = tmp_path / "previewed.parquet"
    data.write_snapshot(previewed, snapshot)
    file_hash = "sha256:" + hashlib.sha256(snapshot.read_bytes()).hexdigest()
    assert clean_record["output_hashes"]["data.parquet"] == file_hash

    handed_over = json.loads((batch.run_dir / "03_features" / "features.json").read_text())
    assert handed_over["exclude_columns"] == selection_panel.export()["exclude_columns"]
    kept = set(selection_panel.kept.value)
    assert set(handed_over["numeric_columns"]) | set(handed_over["categorical_columns"]) == kept

    executed = json.loads((batch.run_dir / "02_clean" / "output.ipynb").read_text())
    state = executed["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert any(model["model_name"] == "SelectMultipleModel" for model in state.values())
