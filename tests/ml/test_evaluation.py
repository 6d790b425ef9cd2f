"""Unit tests of nbtools.ml.evaluation: metrics, positive class, comparison and plots."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from threadpoolctl import threadpool_limits

from nbtools.errors import InvalidParameterError
from nbtools.ml import evaluation


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Fit single-threaded: on a busy machine OpenMP's busy-waiting makes tiny fits 10x slower."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def binary():
    """Features and a "yes"/"no" target where "yes" is the majority (70 %)."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    y = pd.Series(np.where(X["a"] + 0.5 * rng.normal(size=200) > -0.5, "yes", "no"))
    return X, y


@pytest.fixture(scope="module")
def multiclass():
    X, labels = make_blobs(n_samples=150, centers=3, random_state=0)
    return pd.DataFrame(X, columns=["a", "b"]), pd.Series(np.array(["x", "y", "z"])[labels])


def test_primary_metric_per_task():
    assert evaluation.primary_metric("classification", binary=True) == ("roc_auc", True)
    assert evaluation.primary_metric("classification", binary=False) == ("f1", True)
    assert evaluation.primary_metric("regression", binary=False) == ("rmse", False)
    assert evaluation.primary_metric("clustering", binary=False) == ("silhouette", True)
    with pytest.raises(InvalidParameterError, match="Got 'ranking' instead"):
        evaluation.primary_metric("ranking", binary=True)


@pytest.mark.parametrize(
    ("y", "expected"),
    [
        (["no", "yes", "yes", "yes"], "yes"),  # "yes"-like wins even as the majority
        (["False", "True", "True"], "True"),
        ([True, False, False], True),
        ([0, 1, 1], 1),
        (["stay", "leave", "stay"], "leave"),  # otherwise the rarer label
        (["a", "b"], "b"),  # a tie: the later label, like scikit-learn's pos_label
    ],
)
def test_positive_label(y, expected):
    assert evaluation.positive_label(y) == expected


def test_binary_metrics_are_those_of_the_yes_class(binary):
    X, y = binary
    always_yes = DummyClassifier(strategy="constant", constant="yes").fit(X, y)
    metrics = evaluation.evaluate(always_yes, X, y, task="classification")
    share_yes = float((y == "yes").mean())
    assert metrics["recall"] == 1.0  # every "yes" is found...
    assert metrics["precision"] == pytest.approx(share_yes)  # ...at the base rate
    assert metrics["accuracy"] == pytest.approx(share_yes)
    assert metrics["roc_auc"] == 0.5  # constant scores rank nothing

    model = LogisticRegression().fit(X, y)
    metrics = evaluation.evaluate(model, X, y, task="classification")
    assert set(metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert metrics["roc_auc"] > 0.8
    assert all(isinstance(value, float) for value in metrics.values())


def test_multiclass_metrics_are_macro_averages_with_ovr_auc(multiclass):
    X, y = multiclass
    model = LogisticRegression().fit(X, y)
    metrics = evaluation.evaluate(model, X, y, task="classification")
    assert metrics["f1"] > 0.8 and metrics["roc_auc"] > 0.9

    without_z = y != "z"  # ROC AUC is undefined for a class absent from y: left out
    metrics = evaluation.evaluate(model, X[without_z], y[without_z], task="classification")
    assert "roc_auc" not in metrics and "f1" in metrics


def test_regression_metrics():
    y = pd.Series([1.0, 2.0, 3.0, 6.0])
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    metrics = evaluation.evaluate(DummyRegressor().fit(X, y), X, y, task="regression")
    assert metrics["r2"] == pytest.approx(0.0)
    assert metrics["rmse"] == pytest.approx(float(np.std(y)))
    assert metrics["mae"] == pytest.approx(float(np.mean(np.abs(y - 3.0))))


def test_clustering_metrics_need_no_target():
    X, _ = make_blobs(n_samples=120, centers=[[0, 0], [8, 0], [0, 8]], random_state=0)
    model = KMeans(n_clusters=3, n_init=3, random_state=0).fit(X)
    metrics = evaluation.evaluate(model, pd.DataFrame(X), None, task="clustering")
    assert metrics["silhouette"] > 0.6 and metrics["n_clusters"] == 3.0


def test_supervised_evaluation_needs_a_target(binary):
    X, y = binary
    model = LogisticRegression().fit(X, y)
    with pytest.raises(InvalidParameterError, match="needs the target"):
        evaluation.evaluate(model, X, None, task="classification")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def test_plots_per_task_are_pngs_outside_pyplot(binary, multiclass):
    open_before = plt.get_fignums()
    X, y = binary
    figures = evaluation.plots(LogisticRegression().fit(X, y), X, y, task="classification")
    assert list(figures) == ["confusion_matrix", "roc_curve"]

    Xm, ym = multiclass
    multi = evaluation.roc_curve_figure(LogisticRegression().fit(Xm, ym), Xm, ym)
    assert len(multi.axes[0].get_legend().get_texts()) == 4  # three classes and chance

    yr = X["a"] * 2 + 1
    regression = evaluation.plots(LinearRegression().fit(X, yr), X, yr, task="regression")
    assert list(regression) == ["residuals", "predicted_vs_actual"]

    blobs = pd.DataFrame(make_blobs(n_samples=60, centers=3, random_state=0)[0])
    kmeans = KMeans(n_clusters=3, n_init=3, random_state=0).fit(blobs)
    clustering = evaluation.plots(kmeans, blobs, None, task="clustering")
    assert list(clustering) == ["clusters"]

    for figure in [*figures.values(), multi, *regression.values(), *clustering.values()]:
        assert isinstance(figure, Figure) and figure.axes[0].get_title()
        assert _png(figure).startswith(b"\x89PNG")
    assert plt.get_fignums() == open_before  # nothing left open in pyplot
