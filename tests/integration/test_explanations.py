"""Explanations, slices and the slice check of the gate, through the real stages.

The table is built so that the answer is known. Outside the ``special`` region the target is
``driver + 2 * w > 0``; inside it (15 % of the rows) it is ``z > 0``. The first run leaves ``w``
out of the model: a champion that is mediocre overall but right in ``special``. The second run
leaves ``z`` out instead: a challenger far better overall but guessing in ``special``. With
``deploy.max_slice_drop`` set, the gate must refuse it although its overall gain is real.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from nbtools import run_pipeline
from nbtools.pipeline.project import create_project

pytestmark = pytest.mark.integration


def known_table(n: int = 1600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "east", "special"], size=n, p=[0.3, 0.3, 0.25, 0.15])
    frame = pd.DataFrame(
        {
            "driver": rng.normal(size=n),
            "w": rng.normal(size=n),
            "z": rng.normal(size=n),
            "noise": rng.normal(size=n),
            "region": region,
        }
    )
    usual = frame["driver"] + 2 * frame["w"] > 0
    frame["outcome"] = np.where(np.where(region == "special", frame["z"] > 0, usual), "yes", "no")
    return frame


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path):
    folder = tmp_path_factory.mktemp("explain")
    known_table().to_csv(folder / "known.csv", index=False)
    root = create_project(folder / "known", data=str(folder / "known.csv"), target="outcome")
    shutil.copy(migrated_db, root / "mlflow.db")
    champion = run_pipeline(
        root, profile="smoke", stop="deploy", overrides={"features.exclude_columns": ["w"]}
    )
    assert champion.succeeded, champion.error
    challenger = run_pipeline(
        root,
        profile="smoke",
        stop="deploy",
        overrides={"features.exclude_columns": ["z"], "deploy.max_slice_drop": 0.1},
    )
    assert challenger.succeeded, challenger.error
    return root, champion, challenger


def test_evaluate_explains_the_model_and_lists_the_special_region_first(runs) -> None:
    _, _, challenger = runs
    folder = challenger.run_dir / "06_evaluate"
    importance = pd.read_csv(folder / "importance.csv", index_col="column")
    assert importance.index[0] == "w" and bool(importance.loc["w", "above_noise"])
    assert not importance.loc["noise", "above_noise"]
    assert (folder / "importance.png").stat().st_size > 0
    assert (folder / "partial_dependence.png").stat().st_size > 0
    slices = pd.read_csv(folder / "slices.csv")
    assert (slices.iloc[0]["column"], slices.iloc[0]["level"]) == ("region", "special")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert slices.groupby("column")["rows"].sum().tolist() == [metrics["rows"]]
    assert metrics["importance"]["columns"][0]["column"] == "w"
    assert "**w**" in metrics["importance"]["summary"]
    assert metrics["slices"]["columns"] == ["region"]
    manifest = json.loads((challenger.run_dir / "manifest.json").read_text())
    recorded = manifest["stages"]["evaluate"]["recorded"]
    assert recorded["top_feature"] == "w" and recorded["worst_slice"] == "region=special"


def test_mlflow_holds_the_explanations(runs) -> None:
    root, _, challenger = runs
    manifest = json.loads((challenger.run_dir / "manifest.json").read_text())
    run_id = manifest["stages"]["evaluate"]["mlflow_run_id"]
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.data.metrics["top_importance"] > 0.1
    assert run.data.metrics["worst_slice_drop"] > 0.2
    logged = {a.path for a in client.list_artifacts(run_id, "explanation")}
    assert logged == {"explanation/importance.csv", "explanation/slices.csv"}
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"plots/importance.png", "plots/partial_dependence.png"} <= plots


def test_the_gate_refuses_a_challenger_better_overall_but_worse_on_a_slice(runs) -> None:
    root, champion, challenger = runs
    first = json.loads((champion.run_dir / "07_deploy" / "deployment.json").read_text())
    assert first["promoted"] and first["version"] == "1"
    deployment = json.loads((challenger.run_dir / "07_deploy" / "deployment.json").read_text())
    assert deployment["gain_lower"] > 0  # the overall gain alone would have promoted it
    assert not deployment["promoted"]
    assert deployment["worst_slice"] == "region = 'special'"
    assert deployment["worst_slice_drop"] > 0.1 and deployment["max_slice_drop"] == 0.1
    assert "region = 'special'" in deployment["reason"]
    assert "max_slice_drop 0.1" in deployment["reason"]
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    assert str(client.get_model_version_by_alias("known-model", "champion").version) == "1"


def test_deploy_writes_the_model_card_and_logs_it_to_the_version(runs) -> None:
    root, _, challenger = runs
    folder = challenger.run_dir / "07_deploy"
    card = (folder / "model_card.md").read_text()
    assert card.startswith("# Model card: known-model version 2")
    for part in ("## Data", "sha256:", "## Task and target", "predicting `outcome`", "### By slice",
                 "## What the model relies on", "**w**", "## Gate decision against the champion",
                 "Not promoted", "max_slice_drop 0.1", "## Environment", "scikit-learn==",
                 "## Limitations"):  # fmt: skip
        assert part in card, part
    assert "<table>" in (folder / "model_card.html").read_text()
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    version = client.get_model_version("known-model", "2")
    location = version.tags["nbtools.model_card"]
    deploy_run = json.loads((challenger.run_dir / "manifest.json").read_text())["stages"]["deploy"]
    assert location == f"runs:/{deploy_run['mlflow_run_id']}/model_card"
    logged = {a.path for a in client.list_artifacts(deploy_run["mlflow_run_id"], "model_card")}
    assert logged == {"model_card/model_card.md", "model_card/model_card.html"}
