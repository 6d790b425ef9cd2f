"""The tuning panel: ranges, a search with progress and cancel, sorting, picking a candidate."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nbtools.ml import cleaning, features, modeling
from nbtools.panels import TuningPanel


@pytest.fixture
def training(churn: pd.DataFrame):
    cleaned = cleaning.apply(churn, cleaning.CleaningParams(), target="churned")[0]
    numeric, categorical = cleaning.column_types(cleaned, "churned")
    X, y = cleaned[numeric + categorical], cleaned["churned"]

    def make_pipeline(family: str):
        return modeling.build_pipeline(
            cleaning.build_preprocessor(cleaning.CleaningParams(), numeric, categorical),
            features.build_selector(features.FeatureParams(selection="none"), "classification"),
            modeling.make_estimator(family, "classification", seed=0),
        )

    return X, y, make_pipeline


def _panel(training, project: Path | None = None, **params) -> TuningPanel:
    X, y, make_pipeline = training
    start = modeling.TrainParams(family="logistic_regression", n_iter=3, cv_folds=2, **params)
    return TuningPanel(
        X, y, start, make_pipeline=make_pipeline, task="classification", project_dir=project
    )


def test_a_search_reports_every_candidate_with_the_scores_of_the_batch_search(training) -> None:
    panel = _panel(training)
    panel.ranges["C"].value = "{low: 0.01, high: 10, log: true}"
    panel.run_button.click()
    panel.wait()
    assert panel.progress.value == 3
    assert "Done: 3 candidate(s)" in panel.status.value
    X, y, make_pipeline = training
    batch = modeling.search(
        make_pipeline("logistic_regression"), X, y, panel.params(), task="classification", seed=0
    )
    assert sorted(c.mean_score for c in panel.candidates) == pytest.approx(
        sorted(batch.cv_results_["mean_test_score"])
    )


def test_the_results_sort_by_any_column(training) -> None:
    panel = _panel(training)
    panel.run_button.click()
    panel.wait()
    panel.sort_by.value = "C"
    panel.descending.value = False
    assert list(panel.table()["C"]) == sorted(c.params["C"] for c in panel.candidates)


def test_cancel_stops_after_the_current_candidate(training) -> None:
    panel = _panel(training)
    panel.progress.observe(
        lambda change: panel.cancel_button.click() if change["new"] == 1 else None, "value"
    )
    panel.run_button.click()
    panel.wait()
    assert len(panel.candidates) == 1
    assert "Cancelled after 1 candidate(s)" in panel.status.value


def test_picking_a_candidate_exports_a_grid_over_exactly_that_candidate(
    training, project: Path
) -> None:
    panel = _panel(training, project)
    panel.run_button.click()
    panel.wait()
    chosen = panel.candidates[1]
    panel.pick.value = chosen.number
    panel.pick_button.click()
    exported = panel.export()
    assert exported["search"] == "grid"
    assert exported["space"] == {name: [value] for name, value in chosen.params.items()}
    panel.save_button.click()
    assert "space:" in (project / "pipeline.yaml").read_text(encoding="utf-8")


def test_an_impossible_range_is_shown_and_not_saved(training, project: Path) -> None:
    before = (project / "pipeline.yaml").read_text(encoding="utf-8")
    panel = _panel(training, project)
    panel.ranges["C"].value = "{low: 10, high: 1}"
    panel.run_button.click()
    assert "low < high. Got low=10, high=1" in panel.message_text
    assert panel.candidates == []
    panel.save_button.click()
    assert (project / "pipeline.yaml").read_text(encoding="utf-8") == before
