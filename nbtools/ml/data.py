"""Checking a table before it enters the pipeline, and snapshotting it.

:func:`require_columns` and :func:`validate_dataset` raise a
:class:`~nbtools.errors.DataSourceError` whose message names the column and the fix;
:func:`infer_task` decides between classification and regression from the target;
:func:`write_snapshot` writes the ingest stage's Parquet snapshot. Reading a source is
:mod:`nbtools.tables`' job.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from nbtools.errors import DataSourceError, InvalidParameterError
from nbtools.tables import content_hash

__all__ = [
    "MAX_CLASSES",
    "TASKS",
    "infer_task",
    "require_columns",
    "validate_dataset",
    "write_snapshot",
]

TASKS = ("classification", "regression", "clustering")
"""The tasks nbtools knows; ``"auto"`` lets :func:`infer_task` choose from the target."""

MAX_CLASSES = 20
"""A numeric target with at most this many distinct integer values is treated as classes."""


def require_columns(
    df: pd.DataFrame, columns: Iterable[str], *, parameter: str, stage: str
) -> None:
    """Check that every column a parameter names exists in ``df``.

    Parameters
    ----------
    df : pandas.DataFrame
        The data.
    columns : iterable of str
        Column names taken from the parameter.
    parameter, stage : str
        Name of the parameter and of its stage, for the message.

    Raises
    ------
    InvalidParameterError
        Naming the first missing column and listing the available ones.
    """
    for column in columns:
        if column not in df.columns:
            raise InvalidParameterError(
                f"The '{parameter}' parameter of stage '{stage}' names column '{column}', which "
                f"is not in the data. Available columns: {', '.join(map(str, df.columns))}."
            )


def infer_task(y: pd.Series | None) -> str:
    """Choose the learning task from the target column.

    Parameters
    ----------
    y : pandas.Series or None
        The target; ``None`` means there is no target.

    Returns
    -------
    str
        ``"clustering"`` without a target; ``"classification"`` for text, boolean or
        categorical targets and for integer-valued targets with at most :data:`MAX_CLASSES`
        distinct values; ``"regression"`` otherwise.

    Raises
    ------
    DataSourceError
        If every value of ``y`` is missing.
    """
    if y is None:
        return "clustering"
    values = y.dropna()
    if values.empty:
        raise DataSourceError(f"Target column '{y.name}' has no values: all of them are missing.")
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "classification"
    integral = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
    return "classification" if integral and values.nunique() <= MAX_CLASSES else "regression"


def validate_dataset(
    df: pd.DataFrame, *, target: str | None, task: str = "auto", source: str = "the data"
) -> str:
    """Check that a freshly loaded table can feed the pipeline, and settle the task.

    Parameters
    ----------
    df : pandas.DataFrame
        The loaded data.
    target : str or None
        Target column; ``None`` (or ``""``) for clustering without labels.
    task : str, default="auto"
        ``"auto"`` or one of :data:`TASKS`.
    source : str
        The source string, used in messages.

    Returns
    -------
    str
        The task: the given one, or the one :func:`infer_task` chose for ``"auto"``.

    Raises
    ------
    DataSourceError
        If the table has no rows or no feature columns, a column is entirely empty, column
        names repeat, the target is missing or all empty, a classification target has fewer
        than two classes, or a regression target is not numeric.
    InvalidParameterError
        If ``task`` is unknown, or a supervised task is asked for without a target.
    """
    if task != "auto" and task not in TASKS:
        raise InvalidParameterError(
            f"The 'task' parameter of stage 'ingest' must be one of auto, {', '.join(TASKS)}. "
            f"Got {task!r} instead."
        )
    target = target or None
    _check_table(df, target, source)
    if target is None:
        if task in ("classification", "regression"):
            raise InvalidParameterError(
                f"The 'target' parameter of stage 'ingest' must name a column for a {task} "
                "task. Got no target; give one, or use task='clustering'."
            )
        return "clustering"
    y = df[target]
    if y.isna().all():
        raise DataSourceError(
            f"Target column '{target}' has no values: all {len(y)} of them are missing."
        )
    resolved = infer_task(y) if task == "auto" else task
    _check_target(y, target, resolved)
    return resolved


def _check_table(df: pd.DataFrame, target: str | None, source: str) -> None:
    """Refuse a table without rows or features, with repeated names, empty columns or no target."""
    if df.shape[1] == 0:
        raise DataSourceError(f"The table read from '{source}' has no columns.")
    if len(df) == 0:
        raise DataSourceError(
            f"The table read from '{source}' has no rows (columns: "
            f"{', '.join(map(str, df.columns))})."
        )
    repeated = df.columns[df.columns.duplicated()].unique().tolist()
    if repeated:
        raise DataSourceError(
            f"Column names in '{source}' must be unique; {', '.join(map(repr, repeated))} "
            "appears more than once."
        )
    if target is not None and target not in df.columns:
        raise DataSourceError(
            f"Target column '{target}' is not in the data from '{source}'. Available columns: "
            f"{', '.join(map(str, df.columns))}."
        )
    for column in df.columns:
        if column != target and df[column].isna().all():
            raise DataSourceError(
                f"Column '{column}' is empty (all {len(df)} values are missing). Leave it out "
                f"with the ingest stage's 'ignore_columns' parameter: ['{column}']."
            )
    if target is not None and df.shape[1] == 1:
        raise DataSourceError(f"The data from '{source}' has no column besides the target.")


def _check_target(y: pd.Series, target: str, task: str) -> None:
    """Refuse a single-class classification target or a regression target holding text."""
    if task == "classification":
        classes = y.dropna().unique()
        if len(classes) < 2:
            raise DataSourceError(
                f"Target column '{target}' has a single class ({classes[0]!r}) in "
                f"{int(y.notna().sum())} rows; classification needs at least two classes."
            )
    elif task == "regression" and not pd.api.types.is_numeric_dtype(y):
        numbers = pd.to_numeric(y.dropna(), errors="coerce")
        if numbers.isna().any():
            example = y.dropna()[numbers.isna()].iloc[0]
            raise DataSourceError(
                f"Target column '{target}' must be numeric for regression; it holds text such "
                f"as {example!r}. Use task='classification' or fix the column."
            )


def write_snapshot(df: pd.DataFrame, path: str | Path) -> str:
    """Write a table as a Parquet snapshot and return its content hash.

    Parameters
    ----------
    df : pandas.DataFrame
        The table; its index is not written.
    path : str or Path
        Destination ``.parquet`` file; parent folders are created.

    Returns
    -------
    str
        :func:`content_hash` of the table, equal to the hash of the file read back.

    Raises
    ------
    DataSourceError
        If a column cannot be stored in Parquet (text mixed with numbers, say).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = df.reset_index(drop=True)
    try:
        frame.to_parquet(path, index=False)
    except Exception as exc:  # pyarrow's conversion errors share no useful base class
        path.unlink(missing_ok=True)
        raise DataSourceError(
            f"Cannot write the snapshot {path.name}: {exc}. A column that mixes text and "
            "numbers must be fixed at the source or left out with the ingest stage's "
            "'ignore_columns' parameter."
        ) from exc
    return content_hash(frame)
