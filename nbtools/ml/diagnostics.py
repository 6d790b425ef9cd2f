"""What the evaluate stage shows beside the test metrics: is the model any good, and why not?

- :func:`baseline` fits the obvious dummy (the majority class, the mean) on the training rows, to
  be scored on the same test rows: a model must beat it to be worth anything;
- :func:`fit_gap` scores the fitted model on its own training rows, against the train stage's
  cross-validated score: a large gap is overfitting;
- :func:`learning_curve_table` cross-validates the model's pipeline on growing shares of the
  training rows: does more data still help?
- for binary classification, :func:`threshold_table` gives precision, recall and F1 at every
  decision threshold, and :func:`precision_recall_figure`, :func:`threshold_figure` and
  :func:`calibration_figure` plot them and the calibration of the probabilities.

Everything works on the training split or the test split it is given; nothing here tunes
anything. The figures are built without pyplot, as in :mod:`nbtools.ml.evaluation`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.base import clone
from sklearn.calibration import CalibrationDisplay
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.metrics import PrecisionRecallDisplay, precision_recall_curve
from sklearn.model_selection import learning_curve
from threadpoolctl import threadpool_limits

from nbtools.errors import InvalidParameterError
from nbtools.ml.evaluation import positive_label
from nbtools.ml.modeling import get_scorer

__all__ = [
    "baseline",
    "calibration_figure",
    "fit_gap",
    "learning_curve_figure",
    "learning_curve_table",
    "precision_recall_figure",
    "threshold_figure",
    "threshold_table",
]


def baseline(task: str, X_train: pd.DataFrame, y_train: pd.Series) -> Any:
    """Fit the dummy model a real one must beat: the class shares, or the mean.

    Parameters
    ----------
    task : str
        ``"classification"`` or ``"regression"``.
    X_train, y_train
        The training rows (the dummy ignores the features).

    Returns
    -------
    DummyClassifier or DummyRegressor
        Fitted; a ``DummyClassifier(strategy="prior")`` predicts the majority class and gives
        every row the class shares as probabilities (ROC AUC 0.5).
    """
    if task == "classification":
        return DummyClassifier(strategy="prior").fit(X_train, y_train)
    if task == "regression":
        return DummyRegressor(strategy="mean").fit(X_train, y_train)
    raise InvalidParameterError(
        f"A dummy baseline needs a 'classification' or 'regression' task. Got {task!r} instead."
    )


def fit_gap(
    model: Any, X_train: pd.DataFrame, y_train: pd.Series | None, *, scoring: str, cv_score: float
) -> dict[str, float]:
    """Score the fitted model on its training rows and compare with its cross-validated score.

    Parameters
    ----------
    model : estimator
        The fitted model, trained on these rows.
    X_train, y_train
        The training rows.
    scoring : str
        The train stage's scorer (``roc_auc``, ``neg_root_mean_squared_error``...): greater is
        better, as for every scikit-learn scorer.
    cv_score : float
        The train stage's cross-validated score with that scorer.

    Returns
    -------
    dict
        ``train_score``, ``cv_score`` and ``gap`` (train minus CV: how much better the model
        does on rows it has seen; near 0 is no overfitting).
    """
    train_score = float(get_scorer(scoring)(model, X_train, y_train))
    return {"train_score": train_score, "cv_score": cv_score, "gap": train_score - cv_score}


def learning_curve_table(
    model: Any,
    X_train: pd.DataFrame,
    y_train: pd.Series | None,
    *,
    scoring: str,
    sizes: tuple[float, ...] = (0.2, 0.4, 0.7, 1.0),
    folds: int | Any = 3,
    groups: pd.Series | None = None,
    max_rows: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Cross-validate the model's pipeline, refitted, on growing shares of the training rows.

    The pipeline is cloned with its chosen hyperparameters and refitted on each share of each
    training fold, so only the training split is used. Rows beyond ``max_rows`` are left out
    (a seeded sample) to keep the stage quick.

    Parameters
    ----------
    model : estimator
        The fitted model; only its hyperparameters are used.
    X_train, y_train
        The training rows.
    scoring : str
        The train stage's scorer.
    sizes : tuple of float, default=(0.2, 0.4, 0.7, 1.0)
        Shares of a training fold to fit on.
    folds : int or cross-validation splitter, default=3
        Cross-validation folds: a number, or the splitter that follows the split stage's
        strategy (:func:`nbtools.ml.model_choice.cv_splitter`), so a group or time split
        gets the same folds as the train stage's search.
    groups : pandas.Series, optional
        The group of each training row, for a group splitter.
    max_rows : int, default=2000
        At most this many training rows take part.
    seed : int, default=0
        Seed of the sample and of the order in which training rows are taken.

    Returns
    -------
    DataFrame
        One row per size: ``rows`` (fitted on), ``train_score`` and ``cv_score`` (means over
        the folds) and ``cv_std``.
    """
    if len(X_train) > max_rows:
        # sort_index keeps time-ordered rows in order for ordered (time) folds
        X_train = X_train.sample(max_rows, random_state=seed).sort_index()
        y_train = None if y_train is None else y_train.loc[X_train.index]
        groups = None if groups is None else groups.loc[X_train.index]
    with threadpool_limits(1):  # many small fits: a thread team costs more than it gains
        rows, train_scores, cv_scores = learning_curve(
            clone(model),
            X_train,
            y_train,
            groups=groups,
            train_sizes=np.asarray(sizes),
            cv=folds,
            scoring=get_scorer(scoring),
            shuffle=True,
            random_state=seed,
            error_score=np.nan,
        )
    return pd.DataFrame(
        {
            "rows": rows,
            "train_score": train_scores.mean(axis=1),
            "cv_score": cv_scores.mean(axis=1),
            "cv_std": cv_scores.std(axis=1),
        }
    )


def learning_curve_figure(table: pd.DataFrame, *, scoring: str) -> Figure:
    """Plot :func:`learning_curve_table`: training and cross-validated score against rows."""
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.set_title("Learning curve")
    axes.plot(table["rows"], table["train_score"], marker="o", label="training rows")
    axes.plot(table["rows"], table["cv_score"], marker="o", label="cross-validated")
    axes.fill_between(
        table["rows"],
        table["cv_score"] - table["cv_std"],
        table["cv_score"] + table["cv_std"],
        alpha=0.2,
    )
    axes.set_xlabel("training rows")
    axes.set_ylabel(scoring)
    axes.legend(loc="best")
    return figure


def _positive_scores(model: Any, X: pd.DataFrame, y: pd.Series) -> tuple[Any, np.ndarray]:
    classes = list(model.classes_)
    if len(classes) != 2 or not hasattr(model, "predict_proba"):
        raise InvalidParameterError(
            "Threshold curves need a binary classifier with predict_proba; got "
            f"{len(classes)} classes."
        )
    positive = positive_label(y, classes)
    return positive, np.asarray(model.predict_proba(X))[:, classes.index(positive)]


def threshold_table(model: Any, X: pd.DataFrame, y: pd.Series) -> pd.DataFrame:
    """Precision, recall and F1 of the positive class at each probability threshold.

    A row is predicted positive when its probability is at least the threshold; ``predict``
    uses 0.5. Raising the threshold trades recall for precision.

    Returns
    -------
    DataFrame
        Columns ``threshold``, ``precision``, ``recall``, ``f1``, ``predicted_positive`` (share
        of rows), ordered by threshold.
    """
    positive, scores = _positive_scores(model, X, y)
    actual = np.asarray(y) == positive
    precision, recall, thresholds = precision_recall_curve(actual, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    predicted = np.array([(scores >= t).mean() for t in thresholds])
    return pd.DataFrame(
        {
            "threshold": thresholds,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "predicted_positive": predicted,
        }
    )


def precision_recall_figure(model: Any, X: pd.DataFrame, y: pd.Series) -> Figure:
    """Plot the precision-recall curve of the positive class, with its average precision."""
    positive, scores = _positive_scores(model, X, y)
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.set_title(f"Precision-recall curve (positive class {positive!r})")
    PrecisionRecallDisplay.from_predictions(
        np.asarray(y) == positive,
        scores,
        pos_label=True,
        name="model",
        ax=axes,
        plot_chance_level=True,
    )
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.legend(loc="best")
    return figure


def threshold_figure(table: pd.DataFrame) -> Figure:
    """Plot precision, recall and F1 against the threshold (:func:`threshold_table`)."""
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.set_title("Metrics against the decision threshold")
    for column in ("precision", "recall", "f1"):
        axes.plot(table["threshold"], table[column], label=column)
    best = table.loc[table["f1"].idxmax()]
    axes.axvline(0.5, color="grey", linestyle="--", label="0.5 (predict)")
    axes.axvline(best["threshold"], color="#c33", linestyle=":", label="best F1")
    axes.set_xlabel("probability threshold")
    axes.set_ylim(0, 1.02)
    axes.legend(loc="best")
    return figure


def calibration_figure(model: Any, X: pd.DataFrame, y: pd.Series, *, bins: int = 10) -> Figure:
    """Plot predicted probability against the observed share of positives (quantile bins)."""
    positive, scores = _positive_scores(model, X, y)
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.set_title("Calibration")
    CalibrationDisplay.from_predictions(
        np.asarray(y) == positive, scores, n_bins=bins, strategy="quantile", ax=axes, name="model"
    )
    axes.set_xlabel("mean predicted probability")
    axes.set_ylabel(f"observed share of {positive!r}")
    return figure
