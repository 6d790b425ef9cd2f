"""The torch_mlp family in the tuning panel and the time-budgeted model choice, as every family."""

from __future__ import annotations

import pandas as pd
import pytest

from nbtools import demo
from nbtools.ml import cleaning, features, model_choice, modeling
from nbtools.panels import TuningPanel


@pytest.fixture(scope="module")
def training() -> tuple[pd.DataFrame, pd.Series, object]:
    """600 demo rows, cleaned, and the train stage's pipeline factory for them."""
    cleaned = cleaning.apply(
        demo.make_churn(600, seed=0), cleaning.CleaningParams(), target="churned"
    )[0]
    numeric, categorical = cleaning.column_types(cleaned, "churned")
    make_pipeline = model_choice.pipeline_factory(
        cleaning.CleaningParams(),
        features.FeatureParams(),
        numeric,
        categorical,
        task="classification",
        seed=0,
        levels={c: int(cleaned[c].nunique()) for c in categorical},
    )
    return cleaned[numeric + categorical], cleaned["churned"], make_pipeline


def test_the_panel_searches_the_networks_space_as_the_batch_search_does(training) -> None:
    X, y, make_pipeline = training
    start = modeling.TrainParams(family="logistic_regression", n_iter=3, cv_folds=2)
    panel = TuningPanel(X, y, start, make_pipeline=make_pipeline, task="classification")
    panel.family.value = "torch_mlp"
    assert {"width", "depth", "dropout", "learning_rate", "weight_decay", "epochs"} <= set(
        panel.ranges
    )
    panel.ranges["width"].value = "[16, 32]"
    panel.ranges["epochs"].value = "[20]"
    panel.run_button.click()
    panel.wait()
    assert "Done: 3 candidate(s)" in panel.status.value
    params = panel.params()
    assert params.family == "torch_mlp"
    batch = modeling.search(make_pipeline("torch_mlp"), X, y, params, task="classification", seed=0)
    assert sorted(c.mean_score for c in panel.candidates) == pytest.approx(
        sorted(batch.cv_results_["mean_test_score"])
    )
    assert {c.params["width"] for c in panel.candidates} <= {16, 32}


def test_the_model_choice_tunes_the_network_within_its_budget(training) -> None:
    X, y, make_pipeline = training
    X_train, X_valid, y_train, y_valid = X.iloc[:450], X.iloc[450:], y.iloc[:450], y.iloc[450:]
    params = modeling.TrainParams(family="torch_mlp", search="random", n_iter=4, cv_folds=2)
    folds, _ = model_choice.cv_splitter({}, "classification", 2, 0)
    choice = model_choice.choose_model(
        make_pipeline, X_train, y_train, X_valid, y_valid, params,
        task="classification", seed=0, cv=folds, groups=None,
    )  # fmt: skip
    assert choice.family == "torch_mlp"
    assert choice.validation_score > 0.6  # ROC AUC, well above chance
    assert len(choice.table) >= 1
