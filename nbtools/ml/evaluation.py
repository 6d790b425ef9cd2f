"""Metrics and diagnostic plots of the evaluate stage.

:func:`evaluate` turns a fitted model and a held-out split into a flat dict of metrics:

==============  ==============================================================
classification  accuracy, precision, recall, f1, roc_auc (when probabilities)
regression      rmse, mae, r2
clustering      silhouette, n_clusters
==============  ==============================================================

For binary classification, precision, recall and F1 are those of the positive class: the label
that reads as "yes" (``yes``, ``true``, ``1``, ...) or else the rarer one, since that is the class
people care to find (churners, fraud, disease). With more classes they are macro averages, each
class counting the same. The plot functions return :class:`matplotlib.figure.Figure` objects built
without pyplot, so they never change the backend of a notebook and need no closing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    RocCurveDisplay,
    accuracy_score,
    f1_score,
    mean_absolute_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.pipeline import Pipeline

from nbtools.errors import InvalidParameterError
from nbtools.ml.modeling import TASKS, silhouette_scorer

__all__ = [
    "clusters_figure",
    "confusion_matrix_figure",
    "evaluate",
    "plots",
    "positive_label",
    "predicted_vs_actual_figure",
    "prediction_metrics",
    "primary_metric",
    "residuals_figure",
    "roc_curve_figure",
]

_YES_LIKE = {"yes", "y", "true", "1", "positive", "pos"}
_PLOT_SAMPLE = 2000


def primary_metric(task: str, binary: bool) -> tuple[str, bool]:
    """Return the metric that decides between models, and whether greater is better.

    ROC AUC for binary classification (threshold-free and insensitive to class balance), macro
    F1 for multiclass, RMSE for regression and silhouette for clustering: the same criteria the
    train stage's ``scoring="auto"`` optimises.

    Parameters
    ----------
    task : str
        ``"classification"``, ``"regression"`` or ``"clustering"``.
    binary : bool
        Whether a classification task has exactly two classes; ignored for other tasks.
    """
    if task not in TASKS:
        raise InvalidParameterError(
            f"The task must be one of {', '.join(repr(t) for t in TASKS)}. Got {task!r} instead."
        )
    if task == "classification":
        return ("roc_auc", True) if binary else ("f1", True)
    if task == "regression":
        return "rmse", False
    return "silhouette", True


def positive_label(y: Sequence[Any] | pd.Series, classes: Sequence[Any] | None = None) -> Any:
    """Return the positive class of a binary target: the "yes"-like label, else the rarer one.

    Parameters
    ----------
    y : array-like
        Observed labels.
    classes : sequence, optional
        The two classes (a classifier's ``classes_``); by default the distinct labels of ``y``.
    """
    counts = pd.Series(y).value_counts()
    labels = list(classes) if classes is not None else sorted(counts.index.tolist())
    yes_like = [c for c in labels if str(c).strip().lower() in _YES_LIKE]
    if len(yes_like) == 1:
        return yes_like[0]
    # The rarer label; on a tie the later one, as scikit-learn's default pos_label=classes_[1].
    return min(reversed(labels), key=lambda c: counts.get(c, 0))


def _classes(model: Any, y: pd.Series) -> list[Any]:
    classes = getattr(model, "classes_", None)
    return list(classes) if classes is not None else sorted(pd.Series(y).unique().tolist())


def _classification_metrics(model: Any, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    classes = _classes(model, y)
    proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
    return prediction_metrics(
        y, model.predict(X), task="classification", classes=classes, probabilities=proba
    )


def prediction_metrics(
    y: Sequence[Any] | pd.Series,
    predicted: Sequence[Any] | np.ndarray,
    *,
    task: str,
    classes: Sequence[Any] | None = None,
    probabilities: np.ndarray | None = None,
    positive: Any = None,
) -> dict[str, float]:
    """Compute the metrics of :func:`evaluate` from predictions already made.

    The monitoring side uses this on the predictions a served model logged, once their labels
    arrive, so that served and held-out performance are measured the same way.

    Parameters
    ----------
    y : array-like
        The true labels or values.
    predicted : array-like
        The model's predictions for the same rows.
    task : str
        ``"classification"`` or ``"regression"``.
    classes : sequence, optional
        The classifier's classes, in the order of the columns of ``probabilities``; by default
        the distinct labels of ``y``.
    probabilities : ndarray, optional
        Class probabilities, one column per class; ROC AUC needs them.
    positive : optional
        The positive class of a binary task; by default :func:`positive_label` of ``y``. Give
        it when scoring a subset of rows, where the rarer class may not be the overall one.

    Returns
    -------
    dict of str to float
        Metric name to value, as :func:`evaluate` returns them.
    """
    if task not in ("classification", "regression"):
        raise InvalidParameterError(
            "Metrics from predictions need a 'classification' or 'regression' task. "
            f"Got {task!r} instead."
        )
    y = pd.Series(y).reset_index(drop=True)
    if task == "regression":
        return {
            "rmse": float(root_mean_squared_error(y, predicted)),
            "mae": float(mean_absolute_error(y, predicted)),
            "r2": float(r2_score(y, predicted)),
        }
    labels = list(classes) if classes is not None else sorted(y.unique().tolist())
    if len(labels) == 2:
        pos_label = positive_label(y, labels) if positive is None else positive
        average: dict[str, Any] = {"average": "binary", "pos_label": pos_label}
    else:
        average = {"average": "macro", "labels": labels}
    metrics = {
        "accuracy": accuracy_score(y, predicted),
        "precision": precision_score(y, predicted, zero_division=0, **average),
        "recall": recall_score(y, predicted, zero_division=0, **average),
        "f1": f1_score(y, predicted, zero_division=0, **average),
    }
    # ROC AUC needs scores and every class present in y; otherwise it is left out, not faked.
    if probabilities is not None and set(labels) <= set(y.unique()):
        if len(labels) == 2:
            positive = labels.index(average["pos_label"])
            metrics["roc_auc"] = roc_auc_score(y == labels[positive], probabilities[:, positive])
        else:
            metrics["roc_auc"] = roc_auc_score(y, probabilities, multi_class="ovr", labels=labels)
    return {name: float(value) for name, value in metrics.items()}


def _clustering_features(model: Any, X: pd.DataFrame) -> Any:
    return model[:-1].transform(X) if isinstance(model, Pipeline) else X


def evaluate(model: Any, X: pd.DataFrame, y: pd.Series | None, *, task: str) -> dict[str, float]:
    """Compute the metrics of a fitted model on a held-out split.

    Parameters
    ----------
    model : estimator
        A fitted scikit-learn estimator or pipeline (``mlflow.sklearn.load_model`` gives one).
    X : pandas.DataFrame
        Features of the split, with the columns the model was trained on.
    y : pandas.Series or None
        Its target; ``None`` for clustering.
    task : str
        ``"classification"``, ``"regression"`` or ``"clustering"``.

    Returns
    -------
    dict of str to float
        Metric name to value; see the module docstring for the names per task.
    """
    primary_metric(task, binary=True)  # validates the task
    if task == "clustering":
        labels = model.predict(X)
        return {
            "silhouette": silhouette_scorer(model, X),
            "n_clusters": float(len(np.unique(labels))),
        }
    if y is None:
        raise InvalidParameterError(
            f"A {task} model needs the target to be evaluated; got no target column. "
            "Set ingest.target to the column to predict."
        )
    if task == "classification":
        return _classification_metrics(model, X, y)
    return prediction_metrics(y, model.predict(X), task="regression")


def _figure(title: str) -> tuple[Figure, Any]:
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.set_title(title)
    return figure, axes


def confusion_matrix_figure(model: Any, X: pd.DataFrame, y: pd.Series) -> Figure:
    """Plot the confusion matrix of a classifier: true labels in rows, predictions in columns."""
    figure, axes = _figure("Confusion matrix")
    ConfusionMatrixDisplay.from_predictions(
        y, model.predict(X), labels=_classes(model, y), ax=axes, colorbar=False, cmap="Blues"
    )
    return figure


def roc_curve_figure(model: Any, X: pd.DataFrame, y: pd.Series) -> Figure:
    """Plot the ROC curve of a probabilistic classifier (one curve per class beyond two)."""
    figure, axes = _figure("ROC curve")
    classes = _classes(model, y)
    proba = model.predict_proba(X)
    targets = [positive_label(y, classes)] if len(classes) == 2 else classes
    for label in targets:
        column = proba[:, classes.index(label)]
        RocCurveDisplay.from_predictions(
            y == label, column, pos_label=True, name=f"{label}", ax=axes, plot_chance_level=False
        )
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance (AUC = 0.5)")
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.legend(loc="lower right")
    return figure


def residuals_figure(model: Any, X: pd.DataFrame, y: pd.Series) -> Figure:
    """Plot residuals (actual - predicted) against predictions; a pattern means missed signal."""
    figure, axes = _figure("Residuals vs predicted")
    predicted = np.asarray(model.predict(X), dtype=float)
    axes.scatter(predicted, np.asarray(y, dtype=float) - predicted, s=10, alpha=0.5)
    axes.axhline(0.0, color="grey", linestyle="--")
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual - predicted")
    return figure


def predicted_vs_actual_figure(model: Any, X: pd.DataFrame, y: pd.Series) -> Figure:
    """Plot predictions against actual values; a perfect model lies on the diagonal."""
    figure, axes = _figure("Predicted vs actual")
    actual = np.asarray(y, dtype=float)
    predicted = np.asarray(model.predict(X), dtype=float)
    axes.scatter(actual, predicted, s=10, alpha=0.5)
    low, high = float(np.nanmin([actual, predicted])), float(np.nanmax([actual, predicted]))
    axes.plot([low, high], [low, high], color="grey", linestyle="--")
    axes.set_xlabel("actual")
    axes.set_ylabel("predicted")
    return figure


def clusters_figure(model: Any, X: pd.DataFrame) -> Figure:
    """Plot the clusters on the first two principal components of the model's input features."""
    figure, axes = _figure("Clusters (first two principal components)")
    sample = X.sample(min(len(X), _PLOT_SAMPLE), random_state=0) if len(X) else X
    features = _clustering_features(model, sample)
    features = features.toarray() if hasattr(features, "toarray") else np.asarray(features)
    points = PCA(n_components=min(2, features.shape[1]), random_state=0).fit_transform(features)
    if points.shape[1] == 1:
        points = np.column_stack([points[:, 0], np.zeros(len(points))])
    scatter = axes.scatter(
        points[:, 0], points[:, 1], c=model.predict(sample), s=10, cmap="tab20", vmin=0, vmax=19
    )
    axes.legend(*scatter.legend_elements(), title="cluster", loc="best", fontsize="small")
    axes.set_xlabel("PC 1")
    axes.set_ylabel("PC 2")
    return figure


def plots(model: Any, X: pd.DataFrame, y: pd.Series | None, *, task: str) -> dict[str, Figure]:
    """Return the diagnostic figures for ``task``, keyed by a file-name stem.

    Classification: ``confusion_matrix`` and, with probabilities, ``roc_curve``; regression:
    ``residuals`` and ``predicted_vs_actual``; clustering: ``clusters``.
    """
    primary_metric(task, binary=True)  # validates the task
    if task == "clustering":
        return {"clusters": clusters_figure(model, X)}
    if task == "regression":
        return {
            "residuals": residuals_figure(model, X, y),
            "predicted_vs_actual": predicted_vs_actual_figure(model, X, y),
        }
    figures = {"confusion_matrix": confusion_matrix_figure(model, X, y)}
    if hasattr(model, "predict_proba"):
        figures["roc_curve"] = roc_curve_figure(model, X, y)
    return figures
