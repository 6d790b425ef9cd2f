"""Tests of nbtools.ml.diagnostics: baseline, overfitting gap, learning curve, thresholds."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.datasets import make_classification
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import f1_score, precision_score, recall_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from nbtools.errors import InvalidParameterError
from nbtools.ml import diagnostics, evaluation


@pytest.fixture(scope="module")
def churn() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    X, y = make_classification(
        n_samples=900,
        n_features=6,
        n_informative=3,
        weights=[0.8],
        n_clusters_per_class=1,
        flip_y=0.05,
        class_sep=1.5,
        random_state=0,
    )
    X = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)])
    y = pd.Series(np.where(y == 1, "yes", "no"))
    return X.iloc[:600], y.iloc[:600], X.iloc[600:], y.iloc[600:]


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def test_the_dummy_baseline_predicts_the_majority_and_loses(churn) -> None:
    X, y, X_test, y_test = churn
    dummy = diagnostics.baseline("classification", X, y)
    scores = evaluation.evaluate(dummy, X_test, y_test, task="classification")
    assert scores["roc_auc"] == pytest.approx(0.5) and scores["recall"] == 0
    assert scores["accuracy"] == pytest.approx((y_test == "no").mean())
    model = LogisticRegression().fit(X, y)
    assert evaluation.evaluate(model, X_test, y_test, task="classification")["roc_auc"] > 0.8
    mean = diagnostics.baseline("regression", X, pd.Series(np.arange(600.0)))
    assert mean.predict(X_test.head(2)).tolist() == [299.5, 299.5]
    with pytest.raises(InvalidParameterError, match="'classification' or 'regression'"):
        diagnostics.baseline("clustering", X, None)


def test_a_memorising_model_shows_a_large_gap(churn) -> None:
    X, y, _, _ = churn
    tree = DecisionTreeClassifier(random_state=0).fit(X, y)
    gap = diagnostics.fit_gap(tree, X, y, scoring="roc_auc", cv_score=0.7)
    assert gap["train_score"] == pytest.approx(1.0) and gap["gap"] == pytest.approx(0.3)
    linear = LinearRegression().fit(X, np.arange(600.0))
    errors = diagnostics.fit_gap(
        linear, X, np.arange(600.0), scoring="neg_root_mean_squared_error", cv_score=-200.0
    )
    assert errors["train_score"] < 0 and errors["gap"] == errors["train_score"] + 200.0


def test_learning_curve_refits_on_growing_shares_of_the_training_rows(churn) -> None:
    X, y, _, _ = churn
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    table = diagnostics.learning_curve_table(
        model, X, y, scoring="roc_auc", sizes=(0.25, 0.5, 1.0), folds=2, max_rows=400
    )
    assert table["rows"].tolist() == [50, 100, 200]  # 400 sampled rows, half in each fold
    assert table[["train_score", "cv_score"]].notna().all().all()
    assert (table["cv_score"] > 0.7).all() and (table["cv_std"] >= 0).all()
    tree = DecisionTreeClassifier(random_state=0).fit(X, y)
    overfit = diagnostics.learning_curve_table(tree, X, y, scoring="roc_auc", folds=2)
    assert (overfit["train_score"] == 1.0).all()
    assert (overfit["cv_score"] < 0.95).all()
    assert png(diagnostics.learning_curve_figure(table, scoring="roc_auc"))[:4] == b"\x89PNG"


def test_threshold_table_matches_scikit_learn_at_each_threshold(churn) -> None:
    X, y, X_test, y_test = churn
    model = LogisticRegression().fit(X, y)
    table = diagnostics.threshold_table(model, X_test, y_test)
    assert table["threshold"].is_monotonic_increasing
    assert table["recall"].is_monotonic_decreasing
    scores = model.predict_proba(X_test)[:, list(model.classes_).index("yes")]
    for _, row in table.iloc[:: max(1, len(table) // 7)].iterrows():
        predicted = np.where(scores >= row["threshold"], "yes", "no")
        assert row["precision"] == pytest.approx(
            precision_score(y_test, predicted, pos_label="yes", zero_division=0)
        )
        assert row["recall"] == pytest.approx(recall_score(y_test, predicted, pos_label="yes"))
        assert row["f1"] == pytest.approx(f1_score(y_test, predicted, pos_label="yes"))
        assert row["predicted_positive"] == pytest.approx((predicted == "yes").mean())


def test_binary_figures_are_pngs_and_need_two_classes(churn) -> None:
    X, y, X_test, y_test = churn
    model = LogisticRegression().fit(X, y)
    table = diagnostics.threshold_table(model, X_test, y_test)
    for figure in (
        diagnostics.precision_recall_figure(model, X_test, y_test),
        diagnostics.threshold_figure(table),
        diagnostics.calibration_figure(model, X_test, y_test),
    ):
        assert png(figure)[:4] == b"\x89PNG"
    three = pd.Series(np.array(["a", "b", "c"])[np.arange(600) % 3])
    multi = LogisticRegression().fit(X, three)
    with pytest.raises(InvalidParameterError, match="binary classifier"):
        diagnostics.threshold_table(multi, X, three)
