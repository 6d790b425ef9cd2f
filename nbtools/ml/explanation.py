"""What a fitted model relies on: permutation importance and partial dependence.

Both follow scikit-learn's inspection tools on the whole fitted pipeline, so they speak of the
columns the pipeline takes (the cleaned input columns), not of the encoded features inside it:

- :func:`permutation_importances` shuffles one input column at a time on held-out rows and
  measures how much the deciding metric worsens (the computation of :func:`sklearn.inspection.
  permutation_importance`, with all shuffles of a column predicted in one call), repeated with
  different shuffles to show the spread;
- :func:`partial_dependence_table` and :func:`partial_dependence_figure` show how the average
  prediction moves when one column is set to each value of a grid, all else kept as it is
  (:func:`sklearn.inspection.partial_dependence`);
- :func:`importance_summary` says in plain words which columns matter and which do not
  measurably.

The metric is computed as the deploy gate computes it (:class:`nbtools.ml.bootstrap.
RowScores`), so importances are in the units of the scores the stages report. Both
make dozens of predictions of at most a few thousand rows; they run them on one thread, since at
that size OpenMP's thread team costs more than it saves, and spins when the machine is busy. The
figures are built without pyplot, as in :mod:`nbtools.ml.evaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.inspection import partial_dependence
from sklearn.utils import resample
from threadpoolctl import threadpool_limits

from nbtools.errors import InvalidParameterError
from nbtools.ml import bootstrap
from nbtools.ml.evaluation import positive_label

__all__ = [
    "can_vary",
    "dependence_columns",
    "importance_figure",
    "importance_summary",
    "is_categorical",
    "partial_dependence_figure",
    "partial_dependence_table",
    "permutation_importances",
    "sample_rows",
]

_LOWER_IS_BETTER = {"rmse", "mae"}
_MAX_LEVELS = 20


def is_categorical(column: pd.Series) -> bool:
    """Whether a column holds categories (text, category or boolean dtype) rather than numbers."""
    dtype = column.dtype
    return bool(
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def can_vary(column: pd.Series) -> bool:
    """Whether a partial dependence can set the column to a grid of values: categories or
    numbers, not dates or durations."""
    if is_categorical(column):
        return True
    return bool(
        pd.api.types.is_numeric_dtype(column.dtype)
        and not pd.api.types.is_datetime64_any_dtype(column.dtype)
        and not pd.api.types.is_timedelta64_dtype(column.dtype)
    )


def dependence_columns(
    table: pd.DataFrame, X: pd.DataFrame, *, columns: Sequence[str] = (), top: int = 3
) -> list[str]:
    """The columns whose partial dependence to show: ``columns`` when given, else the ``top``
    most important ones (from :func:`permutation_importances`) that a grid can vary.

    Raises
    ------
    InvalidParameterError
        If a given column is not an input column of the model, or is a date.
    """
    if columns:
        unknown = [c for c in columns if c not in X.columns]
        if unknown:
            raise InvalidParameterError(
                f"The columns {unknown} to explain are not among the model's input columns "
                f"({', '.join(map(str, X.columns))}). Leave the list empty for the {top} most "
                "important ones."
            )
        dates = [c for c in columns if not can_vary(X[c])]
        if dates:
            raise InvalidParameterError(
                f"The columns {dates} hold dates or durations, which a partial dependence "
                "cannot vary; choose numeric or categorical columns."
            )
        return list(columns)
    return [str(c) for c in table.index if can_vary(X[c])][:top]


def sample_rows(
    X: pd.DataFrame, y: pd.Series | None, *, max_rows: int, seed: int = 0
) -> tuple[pd.DataFrame, pd.Series | None]:
    """Return at most ``max_rows`` rows of ``X`` and ``y``, a seeded sample (stratified on a
    categorical ``y``, so that every class keeps its share); all rows when there are fewer.
    """
    if max_rows < 1:
        raise InvalidParameterError(f"'max_rows' must be at least 1. Got {max_rows!r} instead.")
    if len(X) <= max_rows:
        return X, y
    stratify = None
    if y is not None and is_categorical(y) and y.value_counts().min() >= 2:
        stratify = y
    if y is None:
        return X.sample(max_rows, random_state=seed), None
    X_s, y_s = resample(
        X, y, n_samples=max_rows, replace=False, random_state=seed, stratify=stratify
    )
    return X_s, y_s


class _Scorer:
    """Scores many blocks of rows predicted in one call, higher being better.

    A pipeline's fixed cost per prediction call (column checks, pandas indexing) dwarfs the
    cost per row at a few thousand rows, so all shuffles of a column are predicted at once;
    each block is then scored as the deploy gate scores (:class:`~nbtools.ml.bootstrap.
    RowScores`), with numpy alone.
    """

    def __init__(self, model: Any, metric: str, y: pd.Series) -> None:
        self.model, self.metric = model, metric
        self.sign = -1.0 if metric in _LOWER_IS_BETTER else 1.0
        self.regression = metric in bootstrap.METRICS["regression"]
        target = np.asarray(pd.Series(y).reset_index(drop=True))
        self.y = target.astype(float) if self.regression else target
        classes = getattr(model, "classes_", None)
        self.labels = tuple(classes) if classes is not None else tuple(sorted(set(target)))
        binary = not self.regression and len(self.labels) == 2
        self.positive = positive_label(target, self.labels) if binary else None

    def scores(self, X: pd.DataFrame, blocks: int) -> np.ndarray:
        """The score of each of ``blocks`` consecutive blocks of ``len(y)`` rows of ``X``."""
        proba = None
        if self.metric == "roc_auc":  # the probabilities alone; the class is their argmax
            proba = np.asarray(self.model.predict_proba(X))
            predicted = np.asarray(self.labels, dtype=object)[proba.argmax(axis=1)]
            if self.positive is not None:
                proba = proba[:, self.labels.index(self.positive)]
        else:
            predicted = np.asarray(self.model.predict(X))
        if self.regression:
            predicted = predicted.astype(float)
        n, out = len(self.y), []
        for block in range(blocks):
            rows = slice(block * n, (block + 1) * n)
            scores = bootstrap.RowScores(
                self.metric,
                self.y,
                predicted[rows],
                None if proba is None else proba[rows],
                self.labels,
                self.positive,
            )
            out.append(self.sign * scores.value())
        return np.asarray(out)


def permutation_importances(
    model: Any,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    metric: str,
    repeats: int = 5,
    max_rows: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Measure how much the metric worsens when each input column is shuffled.

    This is :func:`sklearn.inspection.permutation_importance` (the score on the rows as they
    are, minus the score with one column's values shuffled across the rows, ``repeats``
    times per column), computed with the metric as the deploy gate computes it and with
    all shuffles of a column predicted in one call, which makes it several times faster on a
    pipeline.

    Parameters
    ----------
    model : estimator
        A fitted scikit-learn pipeline that takes the columns of ``X``.
    X : DataFrame
        Held-out rows (the test split), with the columns the pipeline takes.
    y : Series
        Their target.
    metric : str
        The metric to measure with (one of :data:`nbtools.ml.bootstrap.METRICS` for
        classification or regression), usually the task's deciding metric.
    repeats : int, default=5
        Shuffles of each column; their spread says how sure each importance is.
    max_rows : int, default=2000
        At most this many rows take part (a seeded, stratified sample), so that the cost (one
        prediction of ``repeats * max_rows`` rows per column) stays small on big tables.
    seed : int, default=0
        Seed of the sample and of the shuffles.

    Returns
    -------
    DataFrame
        One row per column, most important first, indexed by column name: ``importance`` (the
        mean worsening of ``metric``, in its units: positive means the model relies on the
        column), ``std`` (over the repeats), ``rank`` (1 = most important) and
        ``above_noise`` (the mean is more than two standard deviations above zero).
    """
    if metric not in (*bootstrap.METRICS["classification"], *bootstrap.METRICS["regression"]):
        raise InvalidParameterError(
            "Permutation importance needs a classification or regression metric "
            f"({', '.join(bootstrap.METRICS['classification'] + bootstrap.METRICS['regression'])})"
            f". Got {metric!r} instead."
        )
    if not (isinstance(repeats, int) and repeats >= 2):
        raise InvalidParameterError(
            f"'repeats' must be an int of at least 2 (one shuffle has no spread). Got {repeats!r}"
            " instead."
        )
    if metric == "roc_auc" and not hasattr(model, "predict_proba"):
        raise InvalidParameterError(
            "The metric 'roc_auc' needs class probabilities, and the model has no predict_proba."
            " Choose another metric (f1, accuracy)."
        )
    X_s, y_s = sample_rows(X, y, max_rows=max_rows, seed=seed)
    X_s = X_s.reset_index(drop=True)
    scorer = _Scorer(model, metric, y_s)
    rng = np.random.default_rng(seed)
    stacked = pd.concat([X_s] * repeats, ignore_index=True)
    drops = []
    with threadpool_limits(1):
        baseline = scorer.scores(X_s, 1)[0]
        for column in X_s.columns:
            shuffled = stacked.copy()
            permuted = [X_s[column].iloc[rng.permutation(len(X_s))] for _ in range(repeats)]
            shuffled[column] = pd.concat(permuted, ignore_index=True)
            drops.append(baseline - scorer.scores(shuffled, repeats))
    table = pd.DataFrame(
        {"importance": [d.mean() for d in drops], "std": [d.std() for d in drops]},
        index=pd.Index(list(X.columns), name="column"),
    )
    table = table.sort_values("importance", ascending=False, kind="stable")
    table["rank"] = np.arange(1, len(table) + 1)
    table["above_noise"] = table["importance"] - 2 * table["std"] > 0
    table.attrs.update(metric=metric, repeats=repeats, rows=len(X_s))
    return table


def importance_figure(table: pd.DataFrame, *, top: int = 15) -> Figure:
    """Plot the importances of the ``top`` columns as bars, with the spread over repeats."""
    shown = table.head(top).iloc[::-1]
    figure = Figure(figsize=(7, 1.0 + 0.35 * max(len(shown), 1)), layout="constrained")
    axes = figure.subplots()
    colours = ["#3a6ea5" if clear else "#b0b0b0" for clear in shown["above_noise"]]
    axes.barh(shown.index.astype(str), shown["importance"], xerr=2 * shown["std"], color=colours)
    axes.axvline(0.0, color="black", linewidth=0.8)
    metric = table.attrs.get("metric", "the metric")
    axes.set_xlabel(f"drop in {metric} when the column is shuffled (lines: ± 2 sd)")
    axes.set_title("Permutation importance (grey: within the noise)")
    return figure


def importance_summary(table: pd.DataFrame, *, top: int = 3) -> str:
    """Say in plain words which columns the model relies on, and which it does not measurably.

    Parameters
    ----------
    table : DataFrame
        The result of :func:`permutation_importances`.
    top : int, default=3
        How many of the strongest columns to name.
    """
    metric = table.attrs.get("metric", "score")
    repeats = table.attrs.get("repeats")
    clear = table[table["above_noise"]]
    noise = table[~table["above_noise"]]

    def described(name: Any) -> str:
        row = table.loc[name]
        return f"**{name}** ({row['importance']:.3f} ± {row['std']:.3f})"

    if clear.empty:
        text = (
            f"No column's importance is clearly above zero: shuffling any one of them changes "
            f"the {metric} by no more than the spread over {repeats} shuffles. Either the model "
            "learned little, or the information is spread over several correlated columns, so "
            "that shuffling one leaves the others to carry it."
        )
    else:
        names = [described(n) for n in clear.index[:top]]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        text = (
            f"The model relies most on {listed}: shuffling each of these columns worsens the "
            f"{metric} on the test rows by that much (mean ± standard deviation over {repeats} "
            "shuffles), more than twice its spread."
        )
        if len(clear) > top:
            text += f" {len(clear) - top} more column(s) matter less, but measurably."
    if not noise.empty:
        quiet = ", ".join(str(n) for n in noise.index[:8])
        more = f" and {len(noise) - 8} more" if len(noise) > 8 else ""
        text += (
            f" The importance of {quiet}{more} is within the spread of zero: on these rows the "
            "model does not measurably use them on their own (it may have dropped them, or a "
            "correlated column carries the same information)."
        )
    return text


def _grid(column: pd.Series, points: int) -> np.ndarray:
    """The values a partial dependence sets a column to: its levels, or quantiles 5 %-95 %."""
    values = column.dropna()
    if is_categorical(column):
        return np.asarray(values.value_counts().index[:_MAX_LEVELS].tolist(), dtype=object)
    numbers = values.to_numpy(dtype=float)
    distinct = np.unique(numbers)
    if len(distinct) <= points:
        return distinct
    grid = np.unique(np.quantile(numbers, np.linspace(0.05, 0.95, points)))
    if np.allclose(distinct, np.round(distinct)):
        grid = np.unique(np.round(grid))
    return grid


def partial_dependence_table(
    model: Any,
    X: pd.DataFrame,
    column: str,
    *,
    positive: Any = None,
    grid_points: int = 10,
    max_rows: int = 500,
    seed: int = 0,
) -> pd.DataFrame:
    """Average prediction with ``column`` set to each value of a grid, the other columns kept.

    Parameters
    ----------
    model : estimator
        A fitted scikit-learn pipeline that takes the columns of ``X``.
    X : DataFrame
        Rows to average over (the test split), with the columns the pipeline takes.
    column : str
        The column to vary: a categorical column is set to each of its (at most 20 most
        frequent) levels, a numeric one to ``grid_points`` quantiles between 5 % and 95 %.
    positive : optional
        The positive class of a binary classifier, whose probability is shown; by default the
        classifier's second class, as scikit-learn does.
    grid_points : int, default=10
        Values of a numeric column's grid.
    max_rows : int, default=500
        At most this many rows are averaged over (a seeded sample).
    seed : int, default=0
        Seed of the sample.

    Returns
    -------
    DataFrame
        Indexed by the column's values: one column per output, ``prediction`` for a regressor,
        ``P(<class>)`` for a classifier (the positive class only, for two classes).
    """
    if column not in X.columns:
        raise InvalidParameterError(
            f"The column {column!r} is not among the model's input columns "
            f"({', '.join(map(str, X.columns))})."
        )
    if not can_vary(X[column]):
        raise InvalidParameterError(
            f"The column {column!r} holds {X[column].dtype} values, which a partial dependence "
            "cannot vary; choose a numeric or categorical column."
        )
    X_s, _ = sample_rows(X, None, max_rows=max_rows, seed=seed)
    grid = _grid(X[column], grid_points)
    if len(grid) == 0:
        raise InvalidParameterError(f"The column {column!r} has no values to vary.")
    categorical = is_categorical(X[column])
    if not categorical and not pd.api.types.is_float_dtype(X_s[column]):
        # scikit-learn refuses integer columns (a grid value would be rounded): vary floats.
        X_s = X_s.assign(**{column: X_s[column].astype(float)})
    with threadpool_limits(1):
        result = partial_dependence(
            model,
            X_s,
            [column],
            categorical_features=[column] if categorical else None,
            custom_values={column: grid},
            kind="average",
        )
    average = np.asarray(result["average"])
    values = result["grid_values"][0]
    classes = list(getattr(model, "classes_", []))
    if not hasattr(model, "predict_proba"):
        outputs = {"prediction": average[0]}
    elif len(classes) == 2:
        # scikit-learn gives the second class's probability for two classes.
        label = classes[1] if positive is None else positive
        share = average[0] if label == classes[1] else 1.0 - average[0]
        outputs = {f"P({label})": share}
    else:
        outputs = {f"P({label})": average[i] for i, label in enumerate(classes)}
    return pd.DataFrame(outputs, index=pd.Index(values, name=column))


def partial_dependence_figure(
    model: Any,
    X: pd.DataFrame,
    columns: Sequence[str],
    *,
    positive: Any = None,
    grid_points: int = 10,
    max_rows: int = 500,
    seed: int = 0,
) -> Figure:
    """Plot the partial dependence of each of ``columns``, one panel each.

    Numeric columns are lines over their grid (with the data's deciles as ticks at the bottom);
    categorical columns are bars, one per level. See :func:`partial_dependence_table` for the
    parameters.
    """
    if not columns:
        raise InvalidParameterError("Give at least one column to plot the partial dependence of.")
    ncols = min(3, len(columns))
    nrows = -(-len(columns) // ncols)
    figure = Figure(figsize=(4.2 * ncols, 3.4 * nrows), layout="constrained")
    grid_axes = np.atleast_1d(figure.subplots(nrows, ncols, squeeze=False).ravel())
    for axes, column in zip(grid_axes, columns, strict=False):
        table = partial_dependence_table(
            model, X, column, positive=positive, grid_points=grid_points, max_rows=max_rows,
            seed=seed,
        )  # fmt: skip
        if is_categorical(X[column]):
            positions = np.arange(len(table))
            width = 0.8 / len(table.columns)
            for i, name in enumerate(table.columns):
                axes.bar(positions + i * width, table[name], width=width, label=name)
            axes.set_xticks(positions + 0.4 - width / 2, [str(v) for v in table.index])
            axes.tick_params(axis="x", labelrotation=30)
        else:
            for name in table.columns:
                axes.plot(table.index.astype(float), table[name], marker=".", label=name)
            deciles = np.nanquantile(X[column].to_numpy(dtype=float), np.linspace(0.1, 0.9, 9))
            axes.plot(deciles, np.zeros_like(deciles), "|", color="black", markersize=10,
                      transform=axes.get_xaxis_transform())  # fmt: skip
        axes.set_xlabel(column)
        axes.set_ylabel("average " + ("prediction" if "prediction" in table else "probability"))
        if len(table.columns) > 1 or "prediction" not in table:
            axes.legend(fontsize="small")
    for axes in grid_axes[len(columns) :]:
        axes.set_visible(False)
    figure.suptitle("Partial dependence on the test rows")
    return figure
