"""Metrics by slice: how the model does on each level of a categorical column.

An overall score can hide a group of rows the model serves badly: one region, one contract type,
one product. :func:`slice_metrics` scores the model on every level of the chosen columns (the
rows where the column takes that level), with the row counts, and sorts the slices so that those
whose deciding metric falls furthest below the overall score come first. Slices with few rows
are flagged: their scores move a lot by chance alone.

By default (:func:`default_slice_columns`) the slices are the levels of the categorical input
columns with at most 20 levels: more levels make slices too small to say anything.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from nbtools.errors import InvalidParameterError
from nbtools.ml.evaluation import positive_label, prediction_metrics, primary_metric
from nbtools.ml.explanation import is_categorical

__all__ = [
    "MISSING",
    "default_slice_columns",
    "slice_masks",
    "slice_metrics",
    "slice_summary",
]

#: The level that stands for a missing value in a slice.
MISSING = "(missing)"
_LOWER_IS_BETTER = {"rmse", "mae"}


def default_slice_columns(X: pd.DataFrame, *, max_levels: int = 20) -> list[str]:
    """The categorical columns of ``X`` with between 2 and ``max_levels`` distinct values."""
    return [
        str(name)
        for name, column in X.items()
        if is_categorical(column) and 2 <= column.nunique(dropna=True) <= max_levels
    ]


def slice_masks(X: pd.DataFrame, columns: Sequence[str]) -> Iterator[tuple[str, Any, np.ndarray]]:
    """Yield ``(column, level, mask)`` for each level of each column (missing as :data:`MISSING`).

    Raises
    ------
    InvalidParameterError
        If a column is not in ``X``.
    """
    unknown = [c for c in columns if c not in X.columns]
    if unknown:
        raise InvalidParameterError(
            f"The slice columns {unknown} are not among the columns of the rows "
            f"({', '.join(map(str, X.columns))}). Choose columns the test split has."
        )
    for column in columns:
        values = X[column]
        for level in values.dropna().unique().tolist():
            yield column, level, (values == level).fillna(False).to_numpy(dtype=bool)
        missing = values.isna().to_numpy()
        if missing.any():
            yield column, MISSING, missing


def slice_metrics(
    model: Any,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    task: str,
    columns: Sequence[str],
    metric: str | None = None,
    min_rows: int = 30,
) -> pd.DataFrame:
    """Score the model on every slice of ``columns``, worst slices first.

    Parameters
    ----------
    model : estimator
        A fitted classifier or regressor (pipeline) that takes the columns it was fitted on.
    X : DataFrame
        Held-out rows (the test split), with the model's input columns and the slice columns.
    y : Series
        Their target.
    task : str
        ``"classification"`` or ``"regression"``.
    columns : sequence of str
        The columns whose levels are the slices.
    metric : str, optional
        The metric that orders the slices; by default the task's deciding metric.
    min_rows : int, default=30
        Slices with fewer rows are flagged ``small`` and listed after the others.

    Returns
    -------
    DataFrame
        One row per slice: ``column``, ``level``, ``rows``, every metric of
        :func:`nbtools.ml.evaluation.prediction_metrics` (NaN where undefined, such as ROC AUC
        of a slice with one class), ``drop`` (how far ``metric`` falls below the overall score,
        signed so that positive is worse) and ``small``. ``attrs`` keeps ``metric``,
        ``overall`` and ``min_rows``.
    """
    if task not in ("classification", "regression"):
        raise InvalidParameterError(
            f"Metrics by slice need a 'classification' or 'regression' task. Got {task!r}."
        )
    classes = list(getattr(model, "classes_", [])) or None
    if metric is None:
        metric = primary_metric(task, binary=classes is not None and len(classes) == 2)[0]
    names = list(getattr(model, "feature_names_in_", X.columns))
    with threadpool_limits(1):  # one prediction of test rows: OpenMP's team costs more
        predicted = np.asarray(model.predict(X[names]))
        proba = None
        if task == "classification" and hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(X[names]))
    target = pd.Series(y).reset_index(drop=True)
    binary = classes is not None and len(classes) == 2
    positive = positive_label(target, classes) if binary else None

    def scores(mask: np.ndarray) -> dict[str, float]:
        return prediction_metrics(
            target[mask],
            predicted[mask],
            task=task,
            classes=classes,
            probabilities=None if proba is None else proba[mask],
            positive=positive,
        )

    overall = scores(np.ones(len(target), dtype=bool))
    if metric not in overall:
        raise InvalidParameterError(
            f"The metric {metric!r} is not among the {task} metrics ({', '.join(overall)})."
        )
    sign = -1.0 if metric in _LOWER_IS_BETTER else 1.0
    rows = []
    for column, level, mask in slice_masks(X.reset_index(drop=True), columns):
        values = scores(mask)
        drop = sign * (overall[metric] - values.get(metric, np.nan))
        rows.append(
            {"column": column, "level": level, "rows": int(mask.sum()), **values, "drop": drop}
        )
    table = pd.DataFrame(rows, columns=["column", "level", "rows", *overall, "drop"])
    table["small"] = table["rows"] < min_rows
    table = table.sort_values(["small", "drop"], ascending=[True, False], na_position="last")
    table = table.reset_index(drop=True)
    table.attrs.update(metric=metric, overall=overall[metric], min_rows=min_rows)
    return table


def slice_summary(table: pd.DataFrame) -> str:
    """Say in plain words which slice the model serves worst, from :func:`slice_metrics`."""
    metric, overall = table.attrs["metric"], table.attrs["overall"]
    reliable = table[~table["small"] & table["drop"].notna()]
    small = int(table["small"].sum())
    note = (
        f" {small} slice(s) have fewer than {table.attrs['min_rows']} rows: their scores are "
        "mostly noise and are listed last."
        if small
        else ""
    )
    if reliable.empty:
        return f"No slice has enough rows to be compared with the overall {metric}.{note}"
    worst = reliable.iloc[0]
    if worst["drop"] <= 0:
        return f"No slice scores below the overall {metric} of {overall:.4f}.{note}"
    return (
        f"The weakest slice is {worst['column']} = {worst['level']!r} ({worst['rows']:,} rows): "
        f"{metric} {worst[metric]:.4f} against {overall:.4f} overall.{note}"
    )
