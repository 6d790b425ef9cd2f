"""Data cleaning in two halves: row-level fixes before the split, learned transforms after it.

:func:`apply` does what learns nothing from the data and may therefore run on the whole table
before it is split: dropping columns, duplicates, invalid rows and rows without a target, and
fixing column types (numbers or dates stored as text, yes/no flags).

:func:`build_preprocessor` returns the part that *does* learn (imputation values, outlier bounds,
scaling statistics, category lists) as an unfitted scikit-learn transformer. It becomes the first
step of the model pipeline and is fitted on the training split only, so no statistic of the
validation or test rows leaks into the model, and prediction preprocesses exactly like training.

Both halves read the same :class:`CleaningParams`, which the clean stage and the cleaning panel
edit.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from nbtools.errors import InvalidParameterError
from nbtools.ml.data import require_columns
from nbtools.ml.encoding import MODEL_KINDS, NativeCategories, auto_encoding, target_encoder
from nbtools.params import StageParams, param

__all__ = [
    "CHOICES",
    "CleaningParams",
    "OutlierClipper",
    "apply",
    "build_preprocessor",
    "check_column_choices",
    "clipping_report",
    "column_types",
    "grouped_categories",
    "iqr_bounds",
    "summarize",
]

_STAGE = "clean"
_HANDOVER_KEYS = ("numeric_columns", "categorical_columns", "target", "task")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
_FLAGS = ({"yes", "no"}, {"y", "n"}, {"true", "false"})
_TRUE = {"yes", "y", "true"}
_LEADING_ZERO = re.compile(r"^[+-]?0\d")
_SUMMARY_COLUMNS = ["dtype", "missing", "missing_share", "distinct", "outliers"]

#: What ``column_choices`` may set for one column, and the values each column kind accepts.
CHOICES = {
    "type": ("numeric", "categorical", "datetime"),
    "imputation": ("median", "mean", "most_frequent", "constant"),
    "outliers": ("none", "clip"),
    "encoding": ("onehot", "ordinal", "target"),
}
_FITTING: dict[str, dict[str, tuple[str, ...]]] = {
    "numeric": {"imputation": ("median", "mean", "constant"), "outliers": ("none", "clip")},
    "categorical": {
        "imputation": ("most_frequent", "constant"),
        "encoding": ("onehot", "ordinal", "target"),
    },
    "datetime": {},
}


@dataclass
class CleaningParams(StageParams):
    """The parameters of the clean stage.

    Each field is declared once with :func:`nbtools.params.param` (type, default, range or
    choices, help); the schema, the template's parameters cell and the ``Parameters`` list
    of this docstring are generated from the declarations.
    """

    drop_duplicates: bool = param(
        False,
        help="drop rows that repeat an earlier row exactly (they are counted either way)",
    )
    drop_columns: list[str] = param(
        [],
        help="columns to drop, e.g. identifiers, free text or leaks",
    )
    non_negative_columns: list[str] = param(
        [],
        help='numeric columns where a negative value marks an invalid row, e.g. ["tenure_months"]',
    )
    fix_types: bool = param(
        True,
        help="text holding numbers or ISO dates becomes numbers or dates; complete yes/no columns "
        "become bool",
    )
    numeric_imputation: str = param(
        "median",
        help="how missing numbers are filled",
        choices=("median", "mean", "constant"),
    )
    numeric_fill_value: float = param(
        0.0,
        help="the fill value when numeric_imputation is constant",
    )
    categorical_imputation: str = param(
        "most_frequent",
        help="how missing categories are filled",
        choices=("most_frequent", "constant"),
    )
    categorical_fill_value: str = param(
        "missing",
        help="the fill value when categorical_imputation is constant",
    )
    outliers: str = param(
        "none",
        help="leave numbers as they are, or clip them to the IQR fences",
        choices=("none", "clip"),
    )
    iqr_factor: float = param(
        1.5,
        help="fences at Q1 - f*IQR and Q3 + f*IQR (1.5 is Tukey's rule, 3 clips only far outliers)",
        range="(0, inf)",
    )
    encoding: str = param(
        "auto",
        help="auto suits each column to the model the train stage fits (see the table above)",
        choices=("auto", "onehot", "ordinal", "target"),
    )
    max_categories: int = param(
        20,
        help="most levels a one-hot or ordinal column keeps "
        "(auto target-encodes a column with more)",
        range="[2, inf)",
    )
    scaling: str = param(
        "standard",
        help="standardise numbers to mean 0 and standard deviation 1",
        choices=("standard", "none"),
    )
    column_choices: dict[str, dict[str, str]] = param(
        {},
        help='per-column choices overriding the above, e.g. {"zip": {"type": "categorical"}, '
        '"age": {"imputation": "mean", "outliers": "none"}}',
    )

    STAGE: ClassVar[str] = _STAGE
    HANDOVER_KEYS: ClassVar[tuple[str, ...]] = _HANDOVER_KEYS

    def check(self) -> None:
        """Check that the column lists hold column names and ``column_choices`` is well formed."""
        for column, choices in self.column_choices.items():
            if not isinstance(choices, Mapping) or not choices:
                raise InvalidParameterError(
                    f"The 'column_choices' parameter of stage '{_STAGE}' must map each column to "
                    f"a dict of choices such as {{'imputation': 'mean'}}. Got {column!r}: "
                    f"{choices!r} instead."
                )
            for key, value in choices.items():
                if key not in CHOICES or value not in CHOICES[key]:
                    accepted = "; ".join(f"{k}: {', '.join(v)}" for k, v in CHOICES.items())
                    raise InvalidParameterError(
                        f"The 'column_choices' parameter of stage '{_STAGE}' sets {key!r} = "
                        f"{value!r} for column {column!r}. Accepted: {accepted}."
                    )
        for name in ("drop_columns", "non_negative_columns"):
            values = getattr(self, name)
            if not all(isinstance(value, str) for value in values):
                raise InvalidParameterError(
                    f"The '{name}' parameter of stage '{_STAGE}' must be a list of column names. "
                    f"Got {values!r} instead."
                )


def apply(
    df: pd.DataFrame, params: CleaningParams, *, target: str | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Apply the row-level cleaning, which learns nothing from the data.

    In order: drop the named columns, fix column types, drop rows without a target, rows with a
    negative value in a ``non_negative_columns`` column, and duplicate rows.

    Parameters
    ----------
    df : pandas.DataFrame
        The ingested table; it is not modified.
    params : CleaningParams
        The cleaning parameters.
    target : str or None
        The target column (never converted to bool, never dropped); ``None`` for clustering.

    Returns
    -------
    cleaned : pandas.DataFrame
        The cleaned table, with a fresh index.
    report : dict
        ``rows_in``, ``rows_out``, ``columns_dropped``, ``type_fixes`` ({column: "old -> new"}),
        ``made_missing`` ({column: values that a type fix or a chosen type could not convert,
        now missing}), ``missing_target_dropped``, ``invalid_rows_dropped`` ({column: rows}),
        ``duplicates`` (rows repeating an earlier row exactly, dropped or not) and
        ``duplicates_dropped``.

    Raises
    ------
    InvalidParameterError
        If a parameter names a column that is not in the data, the target is to be dropped, or
        a ``non_negative_columns`` column is not numeric.
    """
    params.validate()
    require_columns(df, params.drop_columns, parameter="drop_columns", stage=_STAGE)
    require_columns(df, params.non_negative_columns, parameter="non_negative_columns", stage=_STAGE)
    if target is not None and target in params.drop_columns:
        raise InvalidParameterError(
            f"The 'drop_columns' parameter of stage '{_STAGE}' names the target '{target}'; the "
            "target cannot be dropped. Change ingest.target instead."
        )
    report: dict[str, Any] = {"rows_in": len(df), "columns_dropped": list(params.drop_columns)}
    out = df.drop(columns=params.drop_columns)

    fixes: dict[str, str] = {}
    lost: dict[str, int] = {}
    if params.fix_types:
        for name in out.columns:
            fixed = _fix_type(out[name], allow_bool=name != target)
            if fixed is not None:
                fixes[str(name)] = f"{out[name].dtype} -> {fixed.dtype}"
                lost[str(name)] = _made_missing(out[name], fixed)
                out[name] = fixed
    for name, choices in params.column_choices.items():
        if "type" in choices and name in out.columns:
            converted = _convert(out[name], choices["type"])
            if converted.dtype != out[name].dtype:
                fixes[name] = f"{out[name].dtype} -> {converted.dtype} (chosen)"
            lost[name] = lost.get(name, 0) + _made_missing(out[name], converted)
            out[name] = converted
    report["type_fixes"] = fixes
    report["made_missing"] = {name: n for name, n in lost.items() if n}
    check_column_choices(params, *column_types(out, target), target=target, present=out.columns)

    keep = pd.Series(True, index=out.index)
    if target is not None:
        keep &= out[target].notna()
    report["missing_target_dropped"] = int((~keep).sum())
    invalid: dict[str, int] = {}
    for name in params.non_negative_columns:
        column = out[name]
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            raise InvalidParameterError(
                f"The 'non_negative_columns' parameter of stage '{_STAGE}' names column "
                f"'{name}', which is not numeric (dtype {column.dtype})."
            )
        negative = keep & (column < 0)
        invalid[name] = int(negative.sum())
        keep &= ~negative
    report["invalid_rows_dropped"] = invalid
    out = out[keep]

    duplicates = out.duplicated()
    report["duplicates"] = int(duplicates.sum())
    if not params.drop_duplicates:
        duplicates = pd.Series(False, index=out.index)
    report["duplicates_dropped"] = int(duplicates.sum())
    out = out[~duplicates].reset_index(drop=True)
    report["rows_out"] = len(out)
    return out, report


def _made_missing(before: pd.Series, after: pd.Series) -> int:
    """Count the values a conversion turned into missing ones (blank text included)."""
    return int((before.notna() & after.isna()).sum())


def _convert(column: pd.Series, kind: str) -> pd.Series:
    """Convert a column to the chosen kind; values that do not convert become missing."""
    if kind == "numeric":
        if pd.api.types.is_numeric_dtype(column):
            return column
        return pd.to_numeric(column.astype("str").str.strip(), errors="coerce")
    if kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(column):
            return column
        return pd.to_datetime(column, errors="coerce", format="ISO8601")
    if pd.api.types.is_string_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column
    return column.map(lambda value: value if pd.isna(value) else str(value)).astype("str")


def check_column_choices(
    params: CleaningParams,
    numeric_columns: list[str],
    categorical_columns: list[str],
    *,
    target: str | None = None,
    present: Iterable[Any] | None = None,
) -> None:
    """Check that every per-column choice names a feature column and suits its kind.

    Columns in neither list are taken as dates. ``present`` (the cleaned table's columns, when
    known) catches choices for a column that is missing or dropped.

    Raises
    ------
    InvalidParameterError
        When a column is the target or not a feature, or a choice does not fit the column's
        kind (median imputation of a categorical column, outlier clipping of a date...).
    """
    kinds = {name: "numeric" for name in numeric_columns}
    kinds |= {name: "categorical" for name in categorical_columns}
    for column, choices in params.column_choices.items():
        where = f"The 'column_choices' parameter of stage '{_STAGE}'"
        if column == target:
            raise InvalidParameterError(f"{where} sets choices for the target '{column}'.")
        if present is not None and column not in set(present):
            raise InvalidParameterError(
                f"{where} names column '{column}', which is not in the cleaned data (missing or "
                "dropped). Remove its choices."
            )
        kind = kinds.get(column, choices.get("type", "datetime"))
        if column not in kinds and kind != "datetime":
            raise InvalidParameterError(
                f"{where} names column '{column}', which is not a feature column of the data."
            )
        fitting = _FITTING[kind]
        for key, value in choices.items():
            if key != "type" and value not in fitting.get(key, ()):
                accepted = (
                    f"accept {key}: {', '.join(fitting[key])}"
                    if key in fitting
                    else f"have no {key} choice"
                )
                raise InvalidParameterError(
                    f"{where} sets {key} '{value}' for column '{column}', which is {kind}; "
                    f"{kind} columns {accepted}."
                )


def _fix_type(column: pd.Series, *, allow_bool: bool) -> pd.Series | None:
    """Return ``column`` converted to a better type, or None when it is fine as it is."""
    if not (pd.api.types.is_string_dtype(column) or column.dtype == object):
        return None
    # decide on the distinct values: fast even for millions of rows of a few categories
    distinct = pd.Series(column.dropna().unique())
    if distinct.empty or not all(isinstance(value, str) for value in distinct):
        return None
    stripped = distinct.str.strip()
    filled = stripped[stripped != ""]
    if filled.empty:
        return None
    # codes with leading zeros (zip codes, account numbers) stay text
    leading_zero = filled.str.match(_LEADING_ZERO).any()
    if not leading_zero and pd.to_numeric(filled, errors="coerce").notna().all():
        text = column.str.strip()
        return pd.to_numeric(text.where(text != ""), errors="coerce")
    if filled.str.match(_ISO_DATE).all():
        try:
            return pd.to_datetime(column.str.strip(), format="ISO8601")
        except ValueError:
            return None
    lowered = set(filled.str.lower())
    complete = column.notna().all() and len(filled) == len(distinct)
    if allow_bool and complete and any(lowered <= flags for flags in _FLAGS):
        return column.str.strip().str.lower().isin(_TRUE)
    return None


def column_types(df: pd.DataFrame, target: str | None) -> tuple[list[str], list[str]]:
    """Split the feature columns into numeric and categorical ones.

    Date and time columns are in neither list: the model does not take them as they are (the
    features stage turns dates into numeric parts; the split stage can order rows by them).

    Parameters
    ----------
    df : pandas.DataFrame
        The cleaned table.
    target : str or None
        The target column, left out of both lists.

    Returns
    -------
    numeric : list of str
        Numeric and boolean columns.
    categorical : list of str
        Text and categorical columns.
    """
    numeric: list[str] = []
    categorical: list[str] = []
    for name, column in df.items():
        if name == target:
            continue
        if pd.api.types.is_datetime64_any_dtype(column) or pd.api.types.is_timedelta64_dtype(
            column
        ):
            continue
        if pd.api.types.is_numeric_dtype(column):
            numeric.append(str(name))
        else:
            categorical.append(str(name))
    return numeric, categorical


class OutlierClipper(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Clip each numeric column to ``[Q1 - factor * IQR, Q3 + factor * IQR]``.

    The quartiles are learned in :meth:`fit` (on the training split, inside the model
    pipeline). Missing values pass through unchanged. A column whose IQR is zero (a constant
    or a mostly constant column, such as a rare 0/1 flag) is left as it is, since its bounds
    would otherwise clip every non-typical value.

    Parameters
    ----------
    factor : float, default=1.5
        Width of the accepted band in IQRs; 1.5 is Tukey's rule, 3.0 clips only far outliers.

    Attributes
    ----------
    lower_, upper_ : ndarray of shape (n_features,)
        The learned bounds; ``-inf`` / ``inf`` for columns that are not clipped.
    n_clipped_ : ndarray of int, shape (n_features,)
        How many values of each column of the fitted data lie beyond the bounds, i.e. how
        many values clipping changed in the training split (see :func:`clipping_report`).
    n_values_ : ndarray of int, shape (n_features,)
        How many values of each column of the fitted data are not missing.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame with string column names.
    """

    def __init__(self, factor: float = 1.5) -> None:
        self.factor = factor

    def fit(self, X: Any, y: Any = None) -> OutlierClipper:
        """Learn the clipping bounds of every column of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Numeric data; may contain NaN.
        y : None
            Ignored.

        Returns
        -------
        OutlierClipper
            The fitted clipper.
        """
        number = isinstance(self.factor, int | float) and not isinstance(self.factor, bool)
        if not number or not self.factor > 0:
            raise InvalidParameterError(
                f"The 'factor' parameter of OutlierClipper must be a float > 0. "
                f"Got {self.factor!r} instead."
            )
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        self.lower_, self.upper_ = iqr_bounds(X, self.factor)
        self.n_clipped_ = (np.less(X, self.lower_) | np.greater(X, self.upper_)).sum(axis=0)
        self.n_values_ = (~np.isnan(X)).sum(axis=0)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Clip ``X`` to the learned bounds.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite="allow-nan")
        return np.clip(X, self.lower_, self.upper_)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def clipping_report(model: Any) -> pd.DataFrame:
    """Say how many values outlier clipping changed in each column, as fitted in ``model``.

    Parameters
    ----------
    model : estimator
        A fitted model pipeline; every fitted :class:`OutlierClipper` inside it (in a
        ``Pipeline`` or ``ColumnTransformer``, at any depth) is reported.

    Returns
    -------
    pandas.DataFrame
        One row per clipped column, indexed by column name, with ``lower`` and ``upper`` (the
        fences), ``values`` (non-missing values in the fitted data), ``clipped`` (values beyond
        the fences, which clipping changed) and ``share``; empty when the model clips nothing.
    """
    rows = []
    for clipper in _clippers(model):
        names = getattr(clipper, "feature_names_in_", None)
        if names is None:
            names = [f"x{i}" for i in range(clipper.n_features_in_)]
        for i, name in enumerate(names):
            values, clipped = int(clipper.n_values_[i]), int(clipper.n_clipped_[i])
            rows.append(
                {
                    "column": str(name),
                    "lower": float(clipper.lower_[i]),
                    "upper": float(clipper.upper_[i]),
                    "values": values,
                    "clipped": clipped,
                    "share": clipped / values if values else 0.0,
                }
            )
    columns = ["column", "lower", "upper", "values", "clipped", "share"]
    return pd.DataFrame(rows, columns=columns).set_index("column")


def _clippers(estimator: Any) -> Iterable[OutlierClipper]:
    """Yield the fitted outlier clippers inside ``estimator``, in pipeline order."""
    if isinstance(estimator, OutlierClipper):
        if hasattr(estimator, "n_clipped_"):
            yield estimator
    elif isinstance(estimator, Pipeline):
        for _, step in estimator.steps:
            yield from _clippers(step)
    elif isinstance(estimator, ColumnTransformer):
        for _, transformer, _ in getattr(estimator, "transformers_", []):
            yield from _clippers(transformer)


def iqr_bounds(values: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Tukey bounds ``Q1 - factor * IQR`` and ``Q3 + factor * IQR`` of each column.

    Parameters
    ----------
    values : ndarray of shape (n_samples, n_features)
        Numbers; NaN is ignored.
    factor : float
        Width of the band in IQRs.

    Returns
    -------
    lower, upper : ndarray of shape (n_features,)
        ``-inf`` and ``inf`` for columns with a zero (or undefined) IQR.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        q1, q3 = np.nanpercentile(values, [25, 75], axis=0)
    iqr = q3 - q1
    usable = iqr > 0
    lower = np.where(usable, q1 - factor * iqr, -np.inf)
    upper = np.where(usable, q3 + factor * iqr, np.inf)
    return lower, upper


def build_preprocessor(
    params: CleaningParams,
    numeric_columns: list[str],
    categorical_columns: list[str],
    *,
    model: str = "linear",
    target_type: str | None = None,
    levels: Mapping[str, int] | None = None,
    finite: bool = True,
) -> ColumnTransformer:
    """Build the learned half of cleaning as an unfitted transformer, suited to a kind of model.

    Numeric columns: outlier clipping (optional), imputation, and scaling (optional, for linear
    models only: trees split on order, which scaling does not change). Categorical columns:
    the encoding ``params.encoding`` names, or with ``"auto"`` the one that suits ``model``
    (:func:`nbtools.ml.encoding.auto_encoding`): native categories for gradient boosting,
    one-hot for linear models, ordinal codes for forests, and the cross-fitted target mean for
    a column with more levels than those take. Columns in neither list are dropped. Categories
    not seen during fit do not fail at prediction time: one-hot encodes them as the
    "infrequent" column (or all zeros), ordinal as -1, native categories and target means as
    missing or the overall mean.

    Parameters
    ----------
    params : CleaningParams
        The cleaning parameters.
    numeric_columns, categorical_columns : list of str
        From :func:`column_types`.
    model : {"linear", "forest", "boosting"}, default="linear"
        The kind of model the output feeds (``ModelFamily.preprocessing``).
    target_type : str or None, default=None
        ``TargetEncoder``'s target type (:data:`nbtools.ml.encoding.TARGET_TYPES` of the
        task); None (clustering, or a preview without a target) never target-encodes.
    levels : mapping of str to int, optional
        Distinct values of each categorical column in the training split, which decide where
        ``"auto"`` target-encodes. Unknown columns count as few levels.
    finite : bool, default=True
        Whether the output must be free of missing values. Gradient boosting handles missing
        values natively, so with ``model="boosting"`` and ``finite=False`` (nothing between the
        preprocessor and the model needs finite numbers) nothing is imputed.

    Returns
    -------
    sklearn.compose.ColumnTransformer
        Unfitted. Its output is a dense float array with names from ``get_feature_names_out``,
        or, when a column keeps native categories, a DataFrame with ``category`` columns.

    Raises
    ------
    InvalidParameterError
        If a parameter is invalid, both column lists are empty, or target encoding is chosen
        without a target.
    """
    params.validate()
    if model not in MODEL_KINDS:
        choices = ", ".join(repr(k) for k in MODEL_KINDS)
        raise InvalidParameterError(f"The model kind must be one of {choices}. Got {model!r}.")
    if not numeric_columns and not categorical_columns:
        raise InvalidParameterError(
            "The preprocessor needs at least one numeric or categorical feature column; "
            "the cleaned data has none besides the target."
        )
    check_column_choices(params, numeric_columns, categorical_columns)
    impute = finite or model != "boosting"
    transformers: list[tuple[str, Any, list[str]]] = []
    numeric_groups = _groups(
        params,
        numeric_columns,
        {"outliers": params.outliers, "imputation": params.numeric_imputation},
    )
    for name, (outliers, imputation), columns in _named(numeric_groups, "numeric"):
        steps = _numeric_steps(params, outliers, imputation if impute else None, model)
        transformers.append((name, steps, columns))
    encodings = {}
    for column in categorical_columns:
        chosen = params.column_choices.get(column, {}).get("encoding", params.encoding)
        if chosen == "auto":
            chosen = auto_encoding(
                model,
                None if levels is None else levels.get(column),
                max_categories=params.max_categories,
                target_type=target_type,
            )
        encodings[column] = chosen
    table_wide = {"imputation": params.categorical_imputation, "encoding": params.encoding}
    if params.encoding == "auto":
        table_wide["encoding"] = auto_encoding(
            model, None, max_categories=params.max_categories, target_type=target_type
        )
    categorical_groups = _groups(params, categorical_columns, table_wide, encodings)
    native = False
    for name, (imputation, encoding), columns in _named(categorical_groups, "categorical"):
        native |= encoding == "native"
        steps = _categorical_steps(params, imputation, encoding, target_type, impute=impute)
        transformers.append((name, steps, columns))
    preprocessor = ColumnTransformer(
        transformers, remainder="drop", verbose_feature_names_out=False
    )
    return preprocessor.set_output(transform="pandas") if native else preprocessor


def _groups(
    params: CleaningParams,
    columns: list[str],
    defaults: dict[str, str],
    encodings: Mapping[str, str] | None = None,
) -> dict[tuple[str, ...], list[str]]:
    """Group columns by their effective choices; the table-wide group comes first.

    ``encodings`` (categorical columns) gives each column's resolved encoding, which replaces
    the ``encoding`` entry of its key.
    """
    groups: dict[tuple[str, ...], list[str]] = {tuple(defaults.values()): []}
    for column in columns:
        chosen = dict(params.column_choices.get(column, {}))
        if encodings is not None:
            chosen["encoding"] = encodings[column]
        key = tuple(chosen.get(k, v) for k, v in defaults.items())
        groups.setdefault(key, []).append(column)
    return groups


def _named(
    groups: dict[tuple[str, ...], list[str]], kind: str
) -> list[tuple[str, tuple[str, ...], list[str]]]:
    """Name the groups: the table-wide one ``kind``, the others ``kind_<choices>``."""
    named = []
    for position, (key, columns) in enumerate(groups.items()):
        if columns:
            named.append((kind if position == 0 else "_".join((kind, *key)), key, columns))
    return named


def _numeric_steps(
    params: CleaningParams, outliers: str, imputation: str | None, model: str
) -> Pipeline | str:
    steps: list[tuple[str, Any]] = []
    if outliers == "clip":
        steps.append(("clip", OutlierClipper(factor=params.iqr_factor)))
    if imputation is not None:
        steps.append(("impute", _imputer(imputation, params.numeric_fill_value)))
    if params.scaling == "standard" and model == "linear":
        steps.append(("scale", StandardScaler()))
    return Pipeline(steps) if steps else "passthrough"


def _categorical_steps(
    params: CleaningParams,
    imputation: str,
    encoding: str,
    target_type: str | None,
    *,
    impute: bool,
) -> Pipeline:
    encoder: Any
    if encoding == "target":
        # missing values are a level of their own for the target means
        return Pipeline([("encode", target_encoder(target_type))])
    if encoding == "native":
        encoder = NativeCategories()
    elif encoding == "onehot":
        encoder = OneHotEncoder(
            handle_unknown="infrequent_if_exist",
            max_categories=params.max_categories,
            sparse_output=False,
        )
    else:
        encoder = OrdinalEncoder(
            handle_unknown="use_encoded_value",
            unknown_value=-1,
            max_categories=params.max_categories,
        )
    if encoding == "native" and not impute:
        return Pipeline([("encode", encoder)])
    imputer = _imputer(imputation, params.categorical_fill_value)
    return Pipeline([("impute", imputer), ("encode", encoder)])


def _imputer(strategy: str, fill_value: Any) -> SimpleImputer:
    if strategy == "constant":
        return SimpleImputer(strategy="constant", fill_value=fill_value)
    return SimpleImputer(strategy=strategy)


def grouped_categories(
    df: pd.DataFrame, categorical_columns: list[str], max_categories: int
) -> pd.DataFrame:
    """Say which categorical columns have more levels than the encoder keeps apart.

    With ``max_categories`` set, scikit-learn's encoders keep the ``max_categories - 1`` most
    frequent levels of such a column and group the rest into one "infrequent" level, so the
    model can no longer tell the rarer levels apart.

    Parameters
    ----------
    df : pandas.DataFrame
        The cleaned table.
    categorical_columns : list of str
        The columns to look at.
    max_categories : int
        The clean stage's ``max_categories``.

    Returns
    -------
    pandas.DataFrame
        One row per column with more than ``max_categories`` levels, indexed by column name,
        with ``levels``, ``levels_grouped``, ``rows_grouped`` and ``share`` (of the rows with a
        value); empty when no column has that many levels.
    """
    rows = []
    for name in categorical_columns:
        counts = df[name].value_counts()
        if len(counts) > max_categories:
            grouped = int(counts.iloc[max_categories - 1 :].sum())
            rows.append(
                {
                    "column": name,
                    "levels": len(counts),
                    "levels_grouped": len(counts) - max_categories + 1,
                    "rows_grouped": grouped,
                    "share": grouped / int(counts.sum()),
                }
            )
    columns = ["column", "levels", "levels_grouped", "rows_grouped", "share"]
    return pd.DataFrame(rows, columns=columns).set_index("column")


def summarize(df: pd.DataFrame, *, iqr_factor: float = 1.5) -> pd.DataFrame:
    """Summarise every column for display: type, missing values, distinct values, outliers.

    Parameters
    ----------
    df : pandas.DataFrame
    iqr_factor : float, default=1.5
        Outliers are numeric values outside ``[Q1 - f * IQR, Q3 + f * IQR]``.

    Returns
    -------
    pandas.DataFrame
        One row per column, indexed by column name, with ``dtype``, ``missing``,
        ``missing_share``, ``distinct`` and ``outliers`` (missing for non-numeric columns).
    """
    rows = []
    for name, column in df.items():
        outliers: Any = pd.NA
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            lower, upper = iqr_bounds(values[:, None], iqr_factor)
            outliers = int(((values < lower[0]) | (values > upper[0])).sum())
        missing = int(column.isna().sum())
        rows.append(
            {
                "column": name,
                "dtype": str(column.dtype),
                "missing": missing,
                "missing_share": missing / len(df) if len(df) else 0.0,
                "distinct": int(column.nunique()),
                "outliers": outliers,
            }
        )
    summary = pd.DataFrame(rows, columns=["column", *_SUMMARY_COLUMNS]).set_index("column")
    summary["outliers"] = summary["outliers"].astype("Int64")
    return summary
