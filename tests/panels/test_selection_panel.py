"""The feature-selection panel: scores, rules, hand choice, zero features refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nbtools.ml import cleaning, features
from nbtools.panels import FeatureSelectionPanel
from nbtools.pipeline.spec import load_pipeline


@pytest.fixture
def cleaned(churn: pd.DataFrame) -> pd.DataFrame:
    return cleaning.apply(churn, cleaning.CleaningParams(), target="churned")[0]


def _panel(cleaned: pd.DataFrame, project: Path | None = None) -> FeatureSelectionPanel:
    return FeatureSelectionPanel(
        cleaned,
        features.FeatureParams(exclude_columns=["region"]),
        target="churned",
        task="classification",
        project_dir=project,
    )


def test_every_candidate_has_relevance_and_redundancy(cleaned: pd.DataFrame) -> None:
    panel = _panel(cleaned)
    assert "churned" not in panel.scores.index
    assert panel.scores["mutual_info"].notna().all()
    assert panel.scores.loc["total_charges", "most_correlated_with"] != ""
    assert "region" not in panel.kept.value


def test_the_top_k_rule_keeps_the_most_relevant_features(cleaned: pd.DataFrame) -> None:
    panel = _panel(cleaned)
    panel.rule.value = "top_k"
    panel.rule_value.value = 3
    panel.apply_rule.click()
    best = set(panel.scores["mutual_info"].nlargest(3).index)
    assert set(panel.kept.value) == best
    assert set(panel.export()["exclude_columns"]) == set(panel.scores.index) - best


def test_keeping_features_by_hand_is_saved_as_exclude_columns(
    cleaned: pd.DataFrame, project: Path
) -> None:
    panel = _panel(cleaned, project)
    panel.kept.value = ("tenure_months", "contract")
    panel.inputs["k"].value = 5
    panel.save_button.click()
    resolved = load_pipeline(project).resolve()["features"]
    assert resolved["k"] == 5
    assert set(resolved["exclude_columns"]) == set(panel.scores.index) - {
        "tenure_months",
        "contract",
    }


def test_selecting_zero_features_is_shown_and_not_saved(
    cleaned: pd.DataFrame, project: Path
) -> None:
    before = (project / "pipeline.yaml").read_text(encoding="utf-8")
    panel = _panel(cleaned, project)
    panel.kept.value = ()
    assert "No feature is kept" in panel.message_text
    panel.save_button.click()
    assert "leaves the model no feature" in panel.message_text
    assert (project / "pipeline.yaml").read_text(encoding="utf-8") == before


def test_a_rule_that_keeps_nothing_is_refused(cleaned: pd.DataFrame) -> None:
    panel = _panel(cleaned)
    kept = panel.kept.value
    panel.rule.value = "min_relevance"
    panel.rule_value.value = 100.0
    panel.apply_rule.click()
    assert "keeps no feature" in panel.message_text
    assert panel.kept.value == kept
