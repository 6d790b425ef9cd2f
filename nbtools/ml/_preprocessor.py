"""The learned half of cleaning: the per-column choices each kind of column accepts, and the
preprocessor (imputation, outlier clipping, scaling, encoding) built from the cleaning parameters.

:mod:`nbtools.ml.cleaning` re-exports everything public here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from nbtools.errors import InvalidParameterError
from nbtools.ml._outliers import OutlierClipper
from nbtools.ml.encoding import MODEL_KINDS, NativeCategories, auto_encoding, target_encoder

if TYPE_CHECKING:
    from nbtools.ml.cleaning import CleaningParams

__all__ = ["build_preprocessor", "check_column_choices", "grouped_categories"]

_FITTING: dict[str, dict[str, tuple[str, ...]]] = {
    "numeric": {"imputation": ("median", "mean", "constant"), "outliers": ("none", "clip")},
    "categorical": {
        "imputation": ("most_frequent", "constant"),
        "encoding": ("onehot", "ordinal", "target"),
    },
    "datetime": {},
}


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
        where = f"The 'column_choices' parameter of stage '{params.STAGE}'"
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
    models only: trees split on order, which scaling does not change, and a neural network
    standardises its inputs itself). Categorical columns: the encoding ``params.encoding``
    names, or with ``"auto"`` the one that suits ``model``
    (:func:`nbtools.ml.encoding.auto_encoding`): native categories for gradient boosting and
    for a neural network's embeddings, one-hot for linear models, ordinal codes for forests,
    and the cross-fitted target mean for a column with more levels than those take. Columns in
    neither list are dropped. Categories not seen during fit do not fail at prediction time:
    one-hot encodes them as the "infrequent" column (or all zeros), ordinal as -1, native
    categories and target means as missing or the overall mean.

    Parameters
    ----------
    params : CleaningParams
        The cleaning parameters.
    numeric_columns, categorical_columns : list of str
        From :func:`column_types`.
    model : {"linear", "forest", "boosting", "neural"}, default="linear"
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
