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
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from nbtools.errors import InvalidParameterError
from nbtools.ml._outliers import OutlierClipper, clipping_report, iqr_bounds
from nbtools.ml._preprocessor import build_preprocessor, check_column_choices, grouped_categories
from nbtools.ml.data import require_columns
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
