"""Feature creation, relevance and selection.

Creation is stateless and runs before the split (:func:`add_features`): date parts of datetime
columns, and arithmetic features the user writes as expressions over columns
(``{"charges_per_month": "total_charges / (tenure_months + 1)"}``).

Selection learns from data, so it is an unfitted transformer (:func:`build_selector`) that the
train stage puts into the model pipeline after the preprocessor, and that is fitted on the
training split only. When asked to (by default it keeps every feature), it drops one feature of
each highly correlated pair (a :class:`~nbtools.ml.selectors.CorrelationFilter`), then keeps
the most relevant features (``kbest`` by an ANOVA F test, ``model`` by tree importances) or drops
near-constant ones (``threshold``).

:func:`relevance` scores the raw columns against the target, for display.
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_selection import (
    VarianceThreshold,
    mutual_info_classif,
    mutual_info_regression,
)
from sklearn.pipeline import Pipeline

from nbtools.errors import InvalidParameterError
from nbtools.ml.cleaning import column_types
from nbtools.ml.selectors import CorrelationFilter, TopKSelector
from nbtools.params import StageParams, param

__all__ = [
    "DATE_PARTS",
    "FeatureCreator",
    "FeatureParams",
    "add_features",
    "build_selector",
    "explain_selection",
    "model_columns",
    "relevance",
]

_STAGE = "features"
_HANDOVER_KEYS = (
    "input_columns",
    "created",
    "numeric_columns",
    "categorical_columns",
    "target",
    "task",
)
#: The parts of every date column that ``date_parts`` adds, as ``<column>_<part>``.
DATE_PARTS = ("year", "month", "day_of_week")
_SAMPLE_ROWS = 20_000
_BACKTICKED = re.compile(r"`([^`]+)`")
_ALLOWED_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Name,
    ast.Constant,
    ast.Load,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
    ast.USub,
    ast.UAdd,
)


@dataclass
class FeatureParams(StageParams):
    """The parameters of the features stage.

    Each field is declared once with :func:`nbtools.params.param` (type, default, range or
    choices, help); the schema, the template's parameters cell and the ``Parameters`` list
    of this docstring are generated from the declarations.
    """

    date_parts: bool = param(
        True,
        help="add year, month and day of the week of every date column",
    )
    expressions: dict[str, str] = param(
        {},
        help='new numeric features as {"name": "expression"}, e.g. {"charges_per_month": '
        '"total_charges / (tenure_months + 1)"}',
    )
    selection: str = param(
        "none",
        help="how features are selected in the model pipeline (none keeps all)",
        choices=("none", "kbest", "threshold", "model"),
    )
    k: int = param(
        20,
        help="features kept by kbest and model; more than there are keeps all",
        range="[1, inf)",
    )
    variance_threshold: float = param(
        0.01,
        help="with selection threshold, drop features whose variance is at most this",
        range="[0, inf)",
    )
    drop_correlated: float = param(
        1.0,
        help="drop one of two features whose absolute correlation exceeds this; 1 keeps all",
        range="(0, 1]",
    )
    exclude_columns: list[str] = param(
        [],
        help="columns (cleaned or created) the model leaves out, e.g. chosen in the "
        "feature-selection panel",
    )

    STAGE: ClassVar[str] = _STAGE
    HANDOVER_KEYS: ClassVar[tuple[str, ...]] = _HANDOVER_KEYS

    def check(self) -> None:
        """Check that ``expressions`` maps new column names to expression strings and that
        ``exclude_columns`` holds column names."""
        if not all(isinstance(name, str) for name in self.exclude_columns):
            raise InvalidParameterError(
                f"The 'exclude_columns' parameter of stage '{_STAGE}' must be a list of column "
                f"names. Got {self.exclude_columns!r} instead."
            )
        for name, expression in self.expressions.items():
            if not isinstance(name, str) or not name or not isinstance(expression, str):
                raise InvalidParameterError(
                    f"The 'expressions' parameter of stage '{_STAGE}' must map new column names "
                    f"to expressions, both strings. Got {name!r}: {expression!r} instead."
                )


def add_features(
    df: pd.DataFrame, params: FeatureParams, *, target: str | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Create features row by row; nothing is learned from the data.

    Parameters
    ----------
    df : pandas.DataFrame
        The cleaned table; it is not modified.
    params : FeatureParams
        ``date_parts`` and ``expressions`` are used here.
    target : str or None
        The target column, which no feature may be computed from.

    Returns
    -------
    features : pandas.DataFrame
        ``df`` with the new columns appended.
    report : dict
        ``created``: the new column names, in order; ``expressions``: the expressions used.

    Raises
    ------
    InvalidParameterError
        If a new name already exists, or an expression is not plain arithmetic, uses an
        unknown, non-numeric or target column.
    """
    params.validate()
    out = df.copy()
    created: list[str] = []
    if params.date_parts:
        for name, column in df.items():
            if name == target or not pd.api.types.is_datetime64_any_dtype(column):
                continue
            for part in DATE_PARTS:
                new = f"{name}_{part}"
                _check_new_name(out, new, f"the date parts of '{name}'")
                out[new] = getattr(column.dt, part).astype("float64")
                created.append(new)
    for new, expression in params.expressions.items():
        _check_new_name(out, new, f"expression {expression!r}")
        out[new] = _evaluate(out, expression, target=target)
        created.append(new)
    return out, {"created": created, "expressions": dict(params.expressions)}


def model_columns(
    featured: pd.DataFrame, params: FeatureParams, *, target: str | None
) -> tuple[list[str], list[str]]:
    """Return the numeric and categorical columns the model uses, without ``exclude_columns``.

    Parameters
    ----------
    featured : pandas.DataFrame
        The table after :func:`add_features`.
    params : FeatureParams
        ``exclude_columns`` is used here.
    target : str or None
        The target column, never a feature.

    Returns
    -------
    numeric, categorical : list of str

    Raises
    ------
    InvalidParameterError
        If an excluded column is not in the data, or no feature would be left.
    """
    unknown = [name for name in params.exclude_columns if name not in featured.columns]
    if unknown:
        raise InvalidParameterError(
            f"The 'exclude_columns' parameter of stage '{_STAGE}' names {unknown}, which are not "
            f"in the data. Available columns: {', '.join(map(str, featured.columns))}."
        )
    numeric, categorical = column_types(featured, target)
    excluded = set(params.exclude_columns)
    numeric = [name for name in numeric if name not in excluded]
    categorical = [name for name in categorical if name not in excluded]
    if not numeric and not categorical:
        raise InvalidParameterError(
            f"The 'exclude_columns' parameter of stage '{_STAGE}' leaves the model no feature: "
            f"it excludes all {len(excluded)} feature columns. Keep at least one."
        )
    return numeric, categorical


class FeatureCreator(TransformerMixin, BaseEstimator):
    """The feature creation of :func:`add_features` as the first step of a model pipeline.

    It learns nothing; inside the fitted pipeline it lets the model take the cleaned columns
    as they are and derive the created features itself, identically in training and serving.

    Parameters
    ----------
    date_parts : bool
        Add year, month and day of the week of every date column.
    expressions : dict or None
        New numeric features as ``{"name": "expression"}``.
    """

    def __init__(self, date_parts: bool = True, expressions: dict[str, str] | None = None):
        self.date_parts = date_parts
        self.expressions = expressions

    def fit(self, X: pd.DataFrame, y: Any = None) -> FeatureCreator:
        """Check the parameters on ``X``; record its columns as ``feature_names_in_``."""
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.feature_names_out_ = np.asarray(self.transform(X.head(1)).columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Return ``X`` with the created features appended."""
        params = FeatureParams(date_parts=self.date_parts, expressions=dict(self.expressions or {}))
        return add_features(X, params, target=None)[0]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Return the input columns followed by the created ones."""
        return self.feature_names_out_


def _check_new_name(df: pd.DataFrame, name: str, origin: str) -> None:
    if name in df.columns:
        raise InvalidParameterError(
            f"The features stage cannot add column '{name}' (from {origin}): a column of that "
            "name already exists. Choose another name."
        )


def _evaluate(df: pd.DataFrame, expression: str, *, target: str | None) -> pd.Series:
    """Evaluate a whitelisted arithmetic expression over the columns of ``df``."""
    quoted = _BACKTICKED.findall(expression)
    placeholders = {f"__column_{i}__": name for i, name in enumerate(quoted)}
    plain = expression
    for placeholder, name in placeholders.items():
        plain = plain.replace(f"`{name}`", placeholder, 1)
    problem = f"The expression {expression!r} of the 'expressions' parameter of stage '{_STAGE}'"
    try:
        tree = ast.parse(plain, mode="eval")
    except SyntaxError as exc:
        raise InvalidParameterError(f"{problem} is not valid: {exc.msg}.") from exc
    used: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise InvalidParameterError(
                f"{problem} may only combine columns and numbers with + - * / // % ** and "
                f"parentheses; it contains a {type(node).__name__}."
            )
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
            raise InvalidParameterError(f"{problem} may only contain numbers, not {node.value!r}.")
        if isinstance(node, ast.Name):
            used.append(placeholders.get(node.id, node.id))
    if not used:
        raise InvalidParameterError(f"{problem} does not use any column.")
    for name in used:
        if name not in df.columns:
            raise InvalidParameterError(
                f"{problem} uses column '{name}', which is not in the data. Available columns: "
                f"{', '.join(map(str, df.columns))}."
            )
        if name == target:
            raise InvalidParameterError(
                f"{problem} uses the target '{target}'; a feature computed from the target "
                "leaks the answer into the model."
            )
        column = df[name]
        if not pd.api.types.is_numeric_dtype(column):
            raise InvalidParameterError(
                f"{problem} uses column '{name}', which is not numeric (dtype {column.dtype})."
            )
    numbers = df[list(dict.fromkeys(used))].astype("float64")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        result = numbers.eval(expression, engine="python")
    return result.astype("float64").replace([np.inf, -np.inf], np.nan)


def relevance(df: pd.DataFrame, target: str, task: str, *, seed: int = 0) -> pd.DataFrame:
    """Score every feature column against the target, for display.

    Computed on at most 20,000 sampled rows; missing values are filled with the median
    (numbers) or count as a category of their own (text). Datetime columns are skipped.

    Parameters
    ----------
    df : pandas.DataFrame
        Features and target.
    target : str
        The target column.
    task : {"classification", "regression"}
        The task; clustering has no target to score against.
    seed : int, default=0
        Seed of the row sample and of the mutual-information estimate.

    Returns
    -------
    pandas.DataFrame
        Indexed by feature, sorted by decreasing ``mutual_info``, with ``kind`` (numeric or
        categorical), ``mutual_info`` (nats) and ``correlation`` (Pearson with the target, for
        numeric features of a regression or two-class task; missing otherwise).

    Raises
    ------
    InvalidParameterError
        If ``target`` is not a column or ``task`` is not supervised.
    """
    if task not in ("classification", "regression"):
        raise InvalidParameterError(
            f"Relevance needs a classification or regression task with a target. Got {task!r}."
        )
    if target not in df.columns:
        raise InvalidParameterError(f"Target column '{target}' is not in the data.")
    data = df[df[target].notna()]
    if len(data) > _SAMPLE_ROWS:
        data = data.sample(_SAMPLE_ROWS, random_state=seed)
    if task == "classification":
        y = pd.Series(pd.factorize(data[target], sort=True)[0], index=data.index, dtype=float)
        numeric_target = data[target].nunique() == 2
    else:
        y = data[target].astype("float64")
        numeric_target = True
    columns: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    for name, column in data.items():
        if name == target or pd.api.types.is_datetime64_any_dtype(column):
            continue
        if pd.api.types.is_numeric_dtype(column):
            values = column.astype("float64")
            columns[str(name)] = values.fillna(values.median()).fillna(0.0).to_numpy()
            kinds[str(name)] = "numeric"
        else:
            columns[str(name)] = pd.factorize(column, use_na_sentinel=False)[0].astype(float)
            kinds[str(name)] = "categorical"
    names = list(columns)
    if not names:
        return pd.DataFrame(columns=["kind", "mutual_info", "correlation"])
    X = np.column_stack([columns[name] for name in names])
    discrete = np.array([kinds[name] == "categorical" for name in names])
    estimate = mutual_info_classif if task == "classification" else mutual_info_regression
    mutual_info = estimate(X, y.to_numpy(), discrete_features=discrete, random_state=seed)
    correlation = [
        _pearson(columns[name], y.to_numpy())
        if kinds[name] == "numeric" and numeric_target
        else np.nan
        for name in names
    ]
    table = pd.DataFrame(
        {"kind": [kinds[n] for n in names], "mutual_info": mutual_info, "correlation": correlation},
        index=pd.Index(names, name="feature"),
    )
    return table.sort_values("mutual_info", ascending=False)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def build_selector(params: FeatureParams, task: str) -> Pipeline:
    """Build the feature selection as an unfitted transformer for the model pipeline.

    It works on the preprocessor's output (all numeric) and has two steps:
    ``drop_correlated`` (a :class:`CorrelationFilter`, or ``"passthrough"`` when
    ``drop_correlated`` is 1) and ``select`` (a :class:`TopKSelector`, a ``VarianceThreshold``
    or ``"passthrough"``). With nothing to do, both steps pass the data through unchanged.

    Parameters
    ----------
    params : FeatureParams
        ``selection``, ``k``, ``variance_threshold`` and ``drop_correlated`` are used here.
    task : {"classification", "regression", "clustering"}
        For clustering there is no target: ``"kbest"`` and ``"model"`` then select nothing
        (with a warning).

    Returns
    -------
    sklearn.pipeline.Pipeline
        Unfitted.
    """
    params.validate()
    correlation: Any = "passthrough"
    if params.drop_correlated < 1:
        correlation = CorrelationFilter(threshold=params.drop_correlated)
    select: Any = "passthrough"
    if params.selection == "threshold":
        select = VarianceThreshold(threshold=params.variance_threshold)
    elif params.selection in ("kbest", "model"):
        if task == "clustering":
            warnings.warn(
                f"Feature selection '{params.selection}' scores features against a target, and "
                "a clustering task has none: all features are kept. Use selection='threshold' "
                "to drop near-constant features instead.",
                UserWarning,
                stacklevel=2,
            )
        else:
            method = "anova" if params.selection == "kbest" else "model"
            select = TopKSelector(k=params.k, method=method, task=task)
    return Pipeline([("drop_correlated", correlation), ("select", select)])


def explain_selection(selector: Pipeline, feature_names: list[str]) -> pd.DataFrame:
    """Say for every input feature whether a fitted selector keeps it, and why not.

    Parameters
    ----------
    selector : sklearn.pipeline.Pipeline
        A fitted pipeline from :func:`build_selector`.
    feature_names : list of str
        Names of the selector's input features (the preprocessor's output names).

    Returns
    -------
    pandas.DataFrame
        Indexed by feature, with ``kept`` (bool), ``score`` (the ``TopKSelector`` score or the
        variance, when the select step has one) and ``reason`` (empty for kept features).
    """
    names = np.asarray(feature_names, dtype=object)
    kept = np.ones(len(names), dtype=bool)
    reason = np.full(len(names), "", dtype=object)
    score = np.full(len(names), np.nan)
    correlation = selector.named_steps["drop_correlated"]
    if isinstance(correlation, CorrelationFilter):
        for dropped, partner, value in correlation.dropped_:
            kept[dropped] = False
            reason[dropped] = f"correlated with {names[partner]} (|r| = {value:.2f})"
    survivors = np.flatnonzero(kept)
    select = selector.named_steps["select"]
    if isinstance(select, TopKSelector):
        score[survivors] = select.scores_
        for index in survivors[~select.get_support()]:
            kept[index] = False
            reason[index] = f"not among the {select.k_} highest scores"
    elif isinstance(select, VarianceThreshold):
        score[survivors] = select.variances_
        for index in survivors[~select.get_support()]:
            kept[index] = False
            reason[index] = f"variance at most {select.threshold:g}"
    return pd.DataFrame(
        {"kept": kept, "score": score, "reason": reason}, index=pd.Index(names, name="feature")
    )
