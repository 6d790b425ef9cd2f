"""Performance monitoring: labels joined to served predictions, metrics over time windows.

A served model's predictions are logged as they are made (:mod:`nbtools.ops.predictions`); the
true labels usually arrive later, from a CRM export or a label queue. :func:`join_labels` joins
them to the logged predictions by ``request_id`` and ``request_row``; :func:`add_predictions`
makes the same columns for labelled data that never went through the service, by scoring it
with the model. :func:`split_windows` cuts either into time windows, and
:func:`performance_windows` computes, per window, exactly the metrics of the evaluate stage
(:func:`nbtools.ml.evaluation.prediction_metrics`) and flags a window whose deciding metric
fell more than ``max_drop`` below the baseline (the model's score when it was deployed).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nbtools.errors import DataSourceError, InvalidParameterError
from nbtools.ml.evaluation import prediction_metrics
from nbtools.ops.predictions import (
    META_COLUMNS,
    PREDICTION_COLUMN,
    PROBA_PREFIX,
    ROW_COLUMN,
)

#: The columns that name one logged prediction.
LABEL_KEYS = ("request_id", ROW_COLUMN)
TIME_COLUMN = META_COLUMNS[0]


@dataclass(frozen=True)
class Window:
    """One time window of new data.

    Parameters
    ----------
    start, end : str or None
        Bounds of the window (ISO 8601, end excluded); None for data without times.
    data : DataFrame
        Its rows.
    """

    start: str | None
    end: str | None
    data: pd.DataFrame

    @property
    def label(self) -> str:
        """The window as people read it: ``start .. end``, or ``all rows``."""
        return "all rows" if self.start is None else f"{self.start} .. {self.end}"


@dataclass(frozen=True)
class PerformanceWindow:
    """The model's performance on the labelled rows of one window.

    Parameters
    ----------
    start, end : str or None
        Bounds of the window, as in :class:`Window`.
    rows : int
        Labelled rows in the window.
    metrics : dict
        Every metric of the evaluate stage; empty when there were too few rows.
    metric : str
        The deciding metric.
    greater_is_better : bool
        Its direction.
    score : float or None
        Its value; None when there were too few rows.
    baseline : float or None
        What it is compared with: the score at deployment, or the first scored window's.
    drop : float or None
        How much worse than the baseline, in the metric's units (negative: better).
    decayed : bool or None
        Whether ``drop`` exceeds the allowed drop; None when untested.
    """

    start: str | None
    end: str | None
    rows: int
    metrics: dict[str, float]
    metric: str
    greater_is_better: bool
    score: float | None
    baseline: float | None
    drop: float | None
    decayed: bool | None

    def to_dict(self) -> dict[str, Any]:
        """Return the window as a JSON-serialisable dict."""
        return asdict(self)


def join_labels(log: pd.DataFrame, labels: pd.DataFrame, *, target: str) -> pd.DataFrame:
    """Join late-arriving labels to the logged predictions they belong to.

    Parameters
    ----------
    log : DataFrame
        The prediction log (:func:`nbtools.ops.predictions.read_predictions`).
    labels : DataFrame
        One row per labelled prediction: ``request_id``, ``request_row`` (may be left out when
        every request had one row) and the ``target`` column.
    target : str
        Name of the label column, the model's target.

    Returns
    -------
    DataFrame
        The whole log, oldest first, with the label in column ``target`` (missing for the
        predictions whose label has not arrived yet).

    Raises
    ------
    DataSourceError
        If either side is empty or lacks a column, a prediction is labelled twice, or labels
        name predictions that are not in the log.
    """
    if log.empty:
        raise DataSourceError(
            "The prediction log is empty: there are no predictions to join labels to. Serve "
            "the model with its prediction log on (nbtools serve) first."
        )
    if labels.empty:
        raise DataSourceError("The labels file has no rows: there is nothing to join.")
    if ROW_COLUMN not in labels.columns and "request_id" in labels.columns:
        if log.groupby("request_id").size().max() > 1:
            raise DataSourceError(
                f"The labels have no '{ROW_COLUMN}' column, but some logged requests hold "
                f"several rows. Add '{ROW_COLUMN}' (0 for a request's first row) to the labels."
            )
        labels = labels.assign(**{ROW_COLUMN: 0})
    missing = [c for c in (*LABEL_KEYS, target) if c not in labels.columns]
    if missing:
        raise DataSourceError(
            f"The labels must have the columns {[*LABEL_KEYS, target]} (the model's target is "
            f"'{target}'). Missing: {missing}; found {list(labels.columns)}."
        )
    labels = labels[[*LABEL_KEYS, target]].astype({"request_id": str, ROW_COLUMN: "int64"})
    twice = labels.duplicated(list(LABEL_KEYS))
    if twice.any():
        first = labels[twice].iloc[0]
        raise DataSourceError(
            f"{int(twice.sum())} labels repeat a prediction that is already labelled, e.g. "
            f"request {first['request_id']!r} row {first[ROW_COLUMN]}. Keep one label each."
        )
    keys = log[list(LABEL_KEYS)].astype({"request_id": str, ROW_COLUMN: "int64"})
    known = pd.MultiIndex.from_frame(keys)
    unmatched = ~pd.MultiIndex.from_frame(labels[list(LABEL_KEYS)]).isin(known)
    if unmatched.any():
        shown = labels[unmatched].head(3)
        examples = ", ".join(
            f"{r.request_id!r} row {getattr(r, ROW_COLUMN)}" for r in shown.itertuples()
        )
        raise DataSourceError(
            f"{int(unmatched.sum())} of {len(labels)} labels do not match any logged "
            f"prediction (e.g. {examples}). Labels must use the request ids the service "
            "answered with (X-Request-ID); pass the prediction log those requests went to."
        )
    joined = log.drop(columns=[target], errors="ignore").assign(request_id=keys["request_id"])
    joined = joined.merge(labels, on=list(LABEL_KEYS), how="left", validate="one_to_one")
    return joined.sort_values(TIME_COLUMN, kind="stable").reset_index(drop=True)


def add_predictions(model: Any, data: pd.DataFrame, X: pd.DataFrame) -> pd.DataFrame:
    """Score labelled data with the model, adding the columns the prediction log would have.

    Parameters
    ----------
    model : estimator
        The fitted model pipeline.
    data : DataFrame
        New rows, with the target.
    X : DataFrame
        The same rows as the model takes them: its input columns, with their training types.

    Returns
    -------
    DataFrame
        ``data`` with a ``prediction`` column and, for a classifier with probabilities, one
        ``proba_<class>`` column per class.
    """
    out = data.assign(**{PREDICTION_COLUMN: model.predict(X)})
    classes = getattr(model, "classes_", None)
    if classes is not None and hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        for i, label in enumerate(classes):
            out[f"{PROBA_PREFIX}{label}"] = proba[:, i]
    return out


def split_windows(
    data: pd.DataFrame, every: str | None, time_column: str = TIME_COLUMN
) -> list[Window]:
    """Cut new data into consecutive time windows, oldest first, leaving out empty ones.

    Parameters
    ----------
    data : DataFrame
        The new rows.
    every : str or None
        Window length as a pandas frequency (``"1D"``, ``"6h"``, ``"7D"``); None keeps all rows
        as one window.
    time_column : str, default="timestamp"
        Column holding each row's time (the prediction log's ``timestamp``).

    Raises
    ------
    DataSourceError
        If ``data`` has no rows, or windows are asked for but it has no time column.
    InvalidParameterError
        If ``every`` is not a pandas frequency.
    """
    if data.empty:
        raise DataSourceError(
            "The current data has no rows (an empty window): there is nothing to monitor. "
            "Point it at data with rows, or wait until the service has logged predictions."
        )
    if every is None:
        return [Window(None, None, data)]
    try:
        step = pd.tseries.frequencies.to_offset(every)
    except ValueError as exc:
        raise InvalidParameterError(
            f"The window length must be a pandas frequency such as '1D', '6h' or '7D'. "
            f"Got {every!r} instead."
        ) from exc
    if time_column not in data.columns:
        raise DataSourceError(
            f"Windows of {every} need a time column '{time_column}', which the current data "
            f"lacks (its columns: {list(data.columns)[:10]}). Leave the window out to check "
            "all rows at once."
        )
    times = pd.to_datetime(data[time_column], utc=True)
    windows = []
    for start, rows in data.groupby(times.dt.floor(step), sort=True):
        if len(rows):
            end = start + step
            windows.append(Window(start.isoformat(), end.isoformat(), rows))
    return windows


def performance_windows(
    windows: list[Window],
    *,
    target: str,
    task: str,
    metric: str,
    greater_is_better: bool,
    baseline: float | None,
    max_drop: float,
    min_rows: int = 30,
) -> list[PerformanceWindow]:
    """Compute the evaluation metrics of each window and flag a drop beyond ``max_drop``.

    Parameters
    ----------
    windows : list of Window
        Labelled windows: the target, ``prediction`` and any ``proba_<class>`` columns.
    target : str
        The label column.
    task : str
        ``"classification"`` or ``"regression"``.
    metric : str
        The deciding metric (as the deploy gate used it).
    greater_is_better : bool
        Its direction.
    baseline : float or None
        The score to compare with, usually the model's test score when it was deployed; None
        takes the first window with enough rows as the baseline.
    max_drop : float
        Largest allowed drop below the baseline, in the metric's units.
    min_rows : int, default=30
        Fewest labelled rows a window needs to be scored.

    Returns
    -------
    list of PerformanceWindow
        One per window, in order.
    """
    if not max_drop >= 0:
        raise InvalidParameterError(
            f"The 'max_drop' parameter must be a float in the range [0, inf). Got {max_drop!r}."
        )
    results = []
    for window in windows:
        rows = window.data[window.data[target].notna()] if target in window.data else None
        count = 0 if rows is None else len(rows)
        metrics: dict[str, float] = {}
        if rows is not None and count >= min_rows:
            metrics = _window_metrics(rows, target, task)
        score = metrics.get(metric)
        if score is not None and not math.isfinite(score):
            score = None
        if baseline is None and score is not None:
            baseline = score
        drop = None
        if score is not None and baseline is not None:
            drop = baseline - score if greater_is_better else score - baseline
        results.append(
            PerformanceWindow(
                start=window.start,
                end=window.end,
                rows=count,
                metrics=metrics,
                metric=metric,
                greater_is_better=greater_is_better,
                score=score,
                baseline=baseline,
                drop=drop,
                decayed=None if drop is None else drop > max_drop,
            )
        )
    return results


def _window_metrics(rows: pd.DataFrame, target: str, task: str) -> dict[str, float]:
    proba_columns = [c for c in rows.columns if c.startswith(PROBA_PREFIX)]
    classes: list[Any] | None = None
    probabilities = None
    if task == "classification" and proba_columns:
        scored = rows[proba_columns].notna().all(axis=1)
        if scored.all():  # requests that asked for probabilities: all of them, or ROC AUC is off
            probabilities = rows[proba_columns].to_numpy(dtype=float)
            classes = [_label(c[len(PROBA_PREFIX) :], rows[target]) for c in proba_columns]
    return prediction_metrics(
        rows[target],
        rows[PREDICTION_COLUMN].to_numpy(),
        task=task,
        classes=classes,
        probabilities=probabilities,
    )


def _label(text: str, labels: pd.Series) -> Any:
    """The class whose text form is ``text`` (column names turn labels into text)."""
    for value in pd.unique(labels):
        if str(value) == text:
            return value
    return text


def performance_figure(results: list[PerformanceWindow], max_drop: float) -> Figure:
    """Plot the deciding metric per window against the baseline and the allowed drop.

    Parameters
    ----------
    results : list of PerformanceWindow
        Output of :func:`performance_windows`.
    max_drop : float
        The allowed drop, drawn as a dashed line below (or above) the baseline.

    Returns
    -------
    matplotlib.figure.Figure
        Built without pyplot; decayed windows are marked red.
    """
    fig = Figure(figsize=(7, 3))
    ax = fig.subplots()
    scored = [r for r in results if r.score is not None]
    scores = [float(r.score) for r in scored if r.score is not None]
    labels = [r.start[:16] if r.start else "all rows" for r in scored]
    x = np.arange(len(scored))
    ax.plot(x, scores, marker="o", color="#4c72b0")
    for i, r in enumerate(scored):
        if r.decayed:
            ax.plot(i, scores[i], marker="o", color="#b00020", markersize=9)
    if scored and scored[0].baseline is not None:
        base = scored[0].baseline
        limit = base - max_drop if scored[0].greater_is_better else base + max_drop
        ax.axhline(base, color="black", linewidth=1, label="baseline")
        ax.axhline(limit, color="#b00020", linestyle="--", linewidth=1, label="allowed drop")
        ax.legend(loc="best", fontsize="small")
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(scored[0].metric if scored else "metric")
    ax.set_title("Performance over time", fontsize=10)
    return fig
