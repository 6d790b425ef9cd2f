"""Tests of nbtools.ml.bootstrap: row-level metrics and the paired bootstrap of a gain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs, make_classification
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import silhouette_score
from sklearn.tree import DecisionTreeClassifier

from nbtools.errors import InvalidParameterError
from nbtools.ml import bootstrap, evaluation


@pytest.fixture(scope="module")
def binary() -> tuple[LogisticRegression, pd.DataFrame, pd.Series]:
    X, y = make_classification(n_samples=400, n_features=5, flip_y=0.2, random_state=3)
    X = pd.DataFrame(X, columns=list("abcde"))
    y = pd.Series(np.where(y == 1, "yes", "no"))
    return LogisticRegression().fit(X, y), X, y


@pytest.mark.parametrize("metric", ["accuracy", "precision", "recall", "f1", "roc_auc"])
def test_binary_metrics_agree_with_the_evaluate_stage(binary, metric) -> None:
    model, X, y = binary
    expected = evaluation.evaluate(model, X, y, task="classification")[metric]
    assert bootstrap.row_scores(model, X, y, metric=metric).value() == pytest.approx(expected)


def test_roc_auc_counts_ties_as_half() -> None:
    # A tree scores many rows alike: the rank statistic must handle the ties as scikit-learn.
    X, y = make_classification(n_samples=300, n_features=4, random_state=0)
    X = pd.DataFrame(X, columns=list("abcd"))
    tree = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y)
    expected = evaluation.evaluate(tree, X, pd.Series(y), task="classification")["roc_auc"]
    assert bootstrap.row_scores(tree, X, pd.Series(y), metric="roc_auc").value() == (
        pytest.approx(expected)
    )


@pytest.mark.parametrize("metric", ["accuracy", "precision", "recall", "f1", "roc_auc"])
def test_multiclass_metrics_are_macro_averages(metric) -> None:
    X, y = make_classification(
        n_samples=300, n_features=6, n_informative=4, n_classes=3, random_state=0
    )
    X = pd.DataFrame(X, columns=list("abcdef"))
    y = pd.Series(np.array(["low", "mid", "high"])[y])
    model = LogisticRegression().fit(X, y)
    expected = evaluation.evaluate(model, X, y, task="classification")[metric]
    assert bootstrap.row_scores(model, X, y, metric=metric).value() == pytest.approx(expected)


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
def test_regression_metrics_agree(metric) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=200)})
    y = pd.Series(2 * X["x"] + rng.normal(size=200))
    model = LinearRegression().fit(X, y)
    expected = evaluation.evaluate(model, X, y, task="regression")[metric]
    assert bootstrap.row_scores(model, X, y, metric=metric).value() == pytest.approx(expected)


def test_silhouette_is_the_mean_of_the_row_values() -> None:
    X, _ = make_blobs(n_samples=300, centers=3, random_state=0)
    X = pd.DataFrame(X, columns=["a", "b"])
    model = KMeans(n_clusters=3, n_init=3, random_state=0).fit(X)
    value = bootstrap.row_scores(model, X, None, metric="silhouette").value()
    assert value == pytest.approx(silhouette_score(X, model.predict(X)))


def test_resamples_keep_the_class_counts_and_the_seed_repeats(binary) -> None:
    model, X, y = binary
    rows = bootstrap.row_scores(model, X, y, metric="accuracy")
    strata = bootstrap._strata(rows)
    weights = bootstrap._draw(np.random.default_rng(0), strata, len(y), 50)
    positives = (y == "yes").to_numpy()
    assert (weights.sum(axis=1) == len(y)).all()
    assert (weights[:, positives].sum(axis=1) == positives.sum()).all()
    dummy = bootstrap.row_scores(DummyClassifier().fit(X, y), X, y, metric="accuracy")
    first = bootstrap.paired_gain(rows, dummy, greater_is_better=True, seed=7)
    second = bootstrap.paired_gain(rows, dummy, greater_is_better=True, seed=7)
    assert first.lower == second.lower and first.resamples == 1000 and first.rows == 400
    assert first.lower < first.gain and first.share_better == 1.0


def test_a_lower_error_is_a_positive_gain() -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"x": rng.normal(size=300)})
    y = pd.Series(3 * X["x"] + rng.normal(scale=0.5, size=300))
    good = bootstrap.row_scores(LinearRegression().fit(X, y), X, y, metric="rmse")
    flat = bootstrap.row_scores(LinearRegression().fit(X * 0, y), X * 0, y, metric="rmse")
    interval = bootstrap.paired_gain(good, flat, greater_is_better=False)
    assert interval.gain == pytest.approx(flat.value() - good.value())
    assert 0 < interval.lower < interval.gain


def test_bad_settings_are_clear_errors(binary) -> None:
    model, X, y = binary
    rows = bootstrap.row_scores(model, X, y, metric="f1")
    with pytest.raises(InvalidParameterError, match=r"confidence must be a float in the range"):
        bootstrap.paired_gain(rows, rows, greater_is_better=True, confidence=95)
    with pytest.raises(InvalidParameterError, match="resamples must be an int of at least 100"):
        bootstrap.paired_gain(rows, rows, greater_is_better=True, resamples=10)
    with pytest.raises(InvalidParameterError, match="must be one of"):
        bootstrap.row_scores(model, X, y, metric="mape")
    with pytest.raises(InvalidParameterError, match="needs the target"):
        bootstrap.row_scores(model, X, None, metric="f1")
