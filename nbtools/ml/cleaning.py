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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from nbtools.errors import InvalidParameterError
from nbtools.ml._outliers import OutlierClipper, clipping_report, iqr_bounds
from nbtools.ml._preprocessor import build_preprocessor, check_column_choices, grouped_categories
from nbtools.ml.data import require_columns
from nbtools.params import Parameter, StageParams

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

_SCHEMA = {
    "drop_duplicates": Parameter("drop_duplicates", False, "bool"),
    "drop_columns": Parameter("drop_columns", [], "list"),
    "non_negative_columns": Parameter("non_negative_columns", [], "list"),
    "fix_types": Parameter("fix_types", True, "bool"),
    "numeric_imputation": Parameter(
        "numeric_imputation", "median", "str", choices=("median", "mean", "constant")
    ),
    "numeric_fill_value": Parameter("numeric_fill_value", 0.0, "float"),
    "categorical_imputation": Parameter(
        "categorical_imputation", "most_frequent", "str", choices=("most_frequent", "constant")
    ),
    "categorical_fill_value": Parameter("categorical_fill_value", "missing", "str"),
    "outliers": Parameter("outliers", "none", "str", choices=("none", "clip")),
    "iqr_factor": Parameter(
        "iqr_factor", 1.5, "float", low=0, high=None, low_inclusive=False, high_inclusive=False
    ),
    "encoding": Parameter(
        "encoding", "auto", "str", choices=("auto", "onehot", "ordinal", "target")
    ),
    "max_categories": Parameter(
        "max_categories", 20, "int", low=2, high=None, high_inclusive=False
    ),
    "scaling": Parameter("scaling", "standard", "str", choices=("standard", "none")),
    "column_choices": Parameter("column_choices", {}, "dict"),
}


@dataclass
class CleaningParams(StageParams):
    """The parameters of the clean stage.

    Parameters
    ----------
    drop_duplicates : bool, default=False
        Drop rows that repeat an earlier row exactly. Off by default: in a table with few
        columns, identical rows are ordinary observations (two passengers of the same sex, age
        and class). :func:`apply` counts them either way.
    drop_columns : list of str, default=[]
        Columns to drop (identifiers, free text, leaks).
    non_negative_columns : list of str, default=[]
        Numeric columns whose negative values are invalid: such rows are dropped.
    fix_types : bool, default=True
        Convert text columns holding only numbers to numbers, ISO dates to datetimes and
        complete yes/no (y/n, true/false) columns other than the target to booleans.
    numeric_imputation : {"median", "mean", "constant"}, default="median"
        How the preprocessor fills missing numbers (learned on the training split).
    numeric_fill_value : float, default=0.0
        The fill value of ``numeric_imputation="constant"``.
    categorical_imputation : {"most_frequent", "constant"}, default="most_frequent"
        How the preprocessor fills missing categories.
    categorical_fill_value : str, default="missing"
        The fill value of ``categorical_imputation="constant"``.
    outliers : {"none", "clip"}, default="none"
        ``"clip"`` limits numbers to ``[Q1 - f * IQR, Q3 + f * IQR]`` of the training split.
        Off by default: on a heavy-tailed column the fences clip the most informative values,
        and tree models never need it. :func:`clipping_report` says what clipping changed.
    iqr_factor : float, default=1.5
        The factor ``f`` of the outlier bounds; must be > 0 (3.0 clips only extreme values).
    encoding : {"auto", "onehot", "ordinal", "target"}, default="auto"
        How categories become numbers. ``"auto"`` suits the model (see
        :func:`build_preprocessor`): gradient boosting splits on categories natively, linear
        models get one column per category, forests one integer code per column, and a column
        with more levels than those encodings handle well gets its target mean, cross-fitted
        (scikit-learn's ``TargetEncoder``). ``"onehot"`` and ``"ordinal"`` force that encoding
        (grouping rare categories beyond ``max_categories``), ``"target"`` forces target means.
    max_categories : int, default=20
        With ``"onehot"`` and ``"ordinal"``: most categories kept per column, rarer ones are
        grouped as "infrequent". With ``"auto"``: the most levels one-hot (linear models) and
        ordinal codes (forests) take; a column with more is target-encoded. At least 2.
    scaling : {"standard", "none"}, default="standard"
        Standardise numeric columns to zero mean and unit variance.
    column_choices : dict, default={}
        Per-column choices that override the table-wide ones, as
        ``{"zip": {"type": "categorical", "encoding": "ordinal"}, "age": {"imputation": "mean"}}``.
        ``type`` (numeric, categorical, datetime) converts the column row by row in
        :func:`apply`; ``imputation``, ``outliers`` and ``encoding`` go to the preprocessor and
        must suit the column's kind (no outlier clipping for a category, say).
    """

    drop_duplicates: bool = False
    drop_columns: list[str] = field(default_factory=list)
    non_negative_columns: list[str] = field(default_factory=list)
    fix_types: bool = True
    numeric_imputation: str = "median"
    numeric_fill_value: float = 0.0
    categorical_imputation: str = "most_frequent"
    categorical_fill_value: str = "missing"
    outliers: str = "none"
    iqr_factor: float = 1.5
    encoding: str = "auto"
    max_categories: int = 20
    scaling: str = "standard"
    column_choices: dict[str, dict[str, str]] = field(default_factory=dict)

    STAGE: ClassVar[str] = _STAGE
    SCHEMA: ClassVar[Mapping[str, Parameter]] = _SCHEMA
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

    out, fixes, lost = _fix_types(out, params, target)
    report["type_fixes"] = fixes
    report["made_missing"] = {name: n for name, n in lost.items() if n}
    check_column_choices(params, *column_types(out, target), target=target, present=out.columns)

    keep, missing_target, invalid = _rows_to_keep(out, params, target)
    report["missing_target_dropped"] = missing_target
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


def _fix_types(
    out: pd.DataFrame, params: CleaningParams, target: str | None
) -> tuple[pd.DataFrame, dict[str, str], dict[str, int]]:
    """Fix the column types (``fix_types``), then apply the chosen ones (``column_choices``).

    Returns the table, the fixes ({column: "old -> new"}) and, per column, the values that
    became missing. ``out`` is changed in place.
    """
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
    return out, fixes, lost


def _rows_to_keep(
    out: pd.DataFrame, params: CleaningParams, target: str | None
) -> tuple[pd.Series, int, dict[str, int]]:
    """Mark the rows to keep: those with a target and no negative ``non_negative_columns`` value.

    Returns the mask, the rows without a target and the invalid rows per column.
    """
    keep = pd.Series(True, index=out.index)
    if target is not None:
        keep &= out[target].notna()
    missing_target = int((~keep).sum())
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
    return keep, missing_target, invalid


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
