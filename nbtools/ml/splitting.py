"""Splitting a table into training, validation and test rows.

Four strategies, chosen to match how the model will meet new data:

- ``random``: rows are shuffled and cut (with the pipeline seed);
- ``stratified``: like random, but each split keeps the class shares of the target;
- ``group``: all rows of one group (a customer, a patient, a store) land in the same split, so the
  model is tested on groups it has never seen;
- ``time``: the oldest rows train, the newest test, as in production where the model predicts
  the future from the past.

``auto`` stratifies classification targets and shuffles otherwise. When stratifying is not
possible (a class with too few rows), the split falls back to random and says why
(:func:`plan_split`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from nbtools.errors import InvalidParameterError
from nbtools.ml.data import require_columns
from nbtools.params import StageParams, param

__all__ = [
    "SplitParams",
    "plan_split",
    "split",
    "split_summary",
]

_STAGE = "split"


@dataclass
class SplitParams(StageParams):
    """The parameters of the split stage.

    Each field is declared once with :func:`nbtools.params.param` (type, default, range or
    choices, help); the schema, the template's parameters cell and the ``Parameters`` list
    of this docstring are generated from the declarations.
    """

    strategy: str = param(
        "auto",
        help="how rows are assigned to the splits",
        choices=("auto", "random", "stratified", "group", "time"),
    )
    test_size: float = param(
        0.2,
        help="share of rows held out for the final test",
        range="(0, 1)",
    )
    validation_size: float = param(
        0.1,
        help="share of rows for validation; 0 for no validation split",
        range="[0, 1)",
    )
    group_column: str | None = param(
        None,
        help="with strategy group: rows sharing a value of this column stay in one split",
    )
    time_column: str | None = param(
        None,
        help="with strategy time: the column that orders rows from oldest to newest",
    )

    STAGE: ClassVar[str] = _STAGE

    def check(self) -> None:
        """Check that the sizes leave rows to train on and the chosen strategy has its column."""
        if self.test_size + self.validation_size >= 1:
            raise InvalidParameterError(
                f"The 'test_size' and 'validation_size' parameters of stage '{_STAGE}' must sum "
                f"to less than 1, leaving rows to train on. Got {self.test_size} + "
                f"{self.validation_size} = {self.test_size + self.validation_size:g} instead."
            )
        needs = {"group": "group_column", "time": "time_column"}
        if self.strategy in needs and getattr(self, needs[self.strategy]) is None:
            raise InvalidParameterError(
                f"The '{needs[self.strategy]}' parameter of stage '{_STAGE}' must name a column "
                f"when strategy is '{self.strategy}'. Got None instead."
            )


def _sizes(n: int, params: SplitParams, unit: str) -> tuple[int, int, int]:
    """Numbers of training, validation and test units (rows or groups) out of ``n``."""
    n_test = max(1, round(params.test_size * n))
    n_validation = max(1, round(params.validation_size * n)) if params.validation_size else 0
    n_train = n - n_test - n_validation
    if n_train < 1:
        parts = "train, validation and test" if n_validation else "train and test"
        raise InvalidParameterError(
            f"Cannot split {n} {unit} into {parts} with test_size={params.test_size} and "
            f"validation_size={params.validation_size}: no {unit} would be left to train on."
        )
    return n_train, n_validation, n_test


def plan_split(
    df: pd.DataFrame, params: SplitParams, *, target: str | None, task: str
) -> tuple[str, str]:
    """Decide which strategy a split will use, and say why.

    Parameters
    ----------
    df : pandas.DataFrame
        The table to split.
    params : SplitParams
        The split parameters.
    target : str or None
        The target column; ``None`` for clustering.
    task : {"classification", "regression", "clustering"}
        The task.

    Returns
    -------
    strategy : str
        ``"random"``, ``"stratified"``, ``"group"`` or ``"time"``.
    reason : str
        One sentence for the notebook and the run record.

    Raises
    ------
    InvalidParameterError
        If a parameter is invalid, names a missing column, or the table is too small.
    """
    params.validate()
    for name in ("group_column", "time_column"):
        column = getattr(params, name)
        if column is not None:
            require_columns(df, [column], parameter=name, stage=_STAGE)
    _sizes(len(df), params, "rows")
    if params.strategy == "group":
        return "group", f"rows sharing a value of '{params.group_column}' stay in one split"
    if params.strategy == "time":
        return "time", f"the newest rows by '{params.time_column}' are held out"
    if params.strategy == "random":
        return "random", "rows are shuffled with the pipeline seed (requested)"
    wanted = "requested" if params.strategy == "stratified" else "auto"
    if task != "classification" or target is None:
        return "random", (
            f"rows are shuffled with the pipeline seed; stratifying needs class labels and the "
            f"task is {task} ({wanted})"
        )
    problem = _stratify_problem(df[target], params)
    if problem:
        return "random", f"rows are shuffled, not stratified: {problem} ({wanted})"
    return "stratified", f"each split keeps the class shares of '{target}' ({wanted})"


def _stratify_problem(y: pd.Series, params: SplitParams) -> str | None:
    if y.isna().any():
        return f"the target has {int(y.isna().sum())} missing values"
    counts = y.value_counts()
    parts = 3 if params.validation_size else 2
    if counts.iloc[-1] < parts:
        return (
            f"class {counts.index[-1]!r} has only {counts.iloc[-1]} row(s), and every split "
            f"needs at least one of each class ({parts} in all)"
        )
    sizes = dict(zip(("train", "validation", "test"), _sizes(len(y), params, "rows"), strict=True))
    for part, size in sizes.items():
        if size and size < len(counts):
            return f"the {part} split ({size} rows) is smaller than the {len(counts)} classes"
    return None


def split(
    df: pd.DataFrame, params: SplitParams, *, target: str | None, task: str, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split a table into training, validation and test rows.

    Parameters
    ----------
    df : pandas.DataFrame
        The table to split.
    params : SplitParams
        The split parameters.
    target : str or None
        The target column; ``None`` for clustering.
    task : {"classification", "regression", "clustering"}
        The task.
    seed : int
        Seed of the shuffle; the same seed gives the same split.

    Returns
    -------
    train, validation, test : pandas.DataFrame
        Disjoint, together holding every row, each with a fresh index. Random, stratified and
        group splits keep the original row order within each part; a time split orders rows by
        time. With ``validation_size=0`` the validation frame is empty but has every column.

    Raises
    ------
    InvalidParameterError
        As :func:`plan_split`, and when a group split has too few groups or a time column has
        missing or non-temporal values.
    """
    strategy, _ = plan_split(df, params, target=target, task=task)
    positions = np.arange(len(df))
    if strategy == "time":
        parts = _by_time(df, params)
    elif strategy == "group":
        parts = _by_group(df, params, seed)
    else:
        _, n_validation, n_test = _sizes(len(df), params, "rows")
        labels = df[target].to_numpy() if strategy == "stratified" else None
        rest, test = train_test_split(
            positions, test_size=n_test, random_state=seed, stratify=labels
        )
        validation = np.array([], dtype=int)
        if n_validation:
            rest_labels = labels[rest] if labels is not None else None
            rest, validation = train_test_split(
                rest, test_size=n_validation, random_state=seed, stratify=rest_labels
            )
        parts = (np.sort(rest), np.sort(validation), np.sort(test))
    train, validation, test = (df.iloc[p].reset_index(drop=True) for p in parts)
    return train, validation, test


def _by_time(df: pd.DataFrame, params: SplitParams) -> tuple[np.ndarray, ...]:
    name = str(params.time_column)
    column = df[name]
    if pd.api.types.is_string_dtype(column) or column.dtype == object:
        try:
            column = pd.to_datetime(column, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise InvalidParameterError(
                f"The 'time_column' parameter of stage '{_STAGE}' names column '{name}', whose "
                f"values are neither dates nor numbers (dtype {df[name].dtype})."
            ) from exc
    if column.isna().any():
        raise InvalidParameterError(
            f"Column '{name}' (the 'time_column' of stage '{_STAGE}') has "
            f"{int(column.isna().sum())} missing values; a time split needs a time for every row."
        )
    order = np.argsort(column.to_numpy(), kind="stable")
    n_train, n_validation, _ = _sizes(len(df), params, "rows")
    return (
        order[:n_train],
        order[n_train : n_train + n_validation],
        order[n_train + n_validation :],
    )


def _by_group(df: pd.DataFrame, params: SplitParams, seed: int) -> tuple[np.ndarray, ...]:
    name = str(params.group_column)
    codes, uniques = pd.factorize(df[name], use_na_sentinel=False)
    n_train, n_validation, _ = _sizes(len(uniques), params, f"groups of '{name}'")
    shuffled = np.random.default_rng(seed).permutation(len(uniques))
    part_of_group = np.empty(len(uniques), dtype=int)
    part_of_group[shuffled[:n_train]] = 0
    part_of_group[shuffled[n_train : n_train + n_validation]] = 1
    part_of_group[shuffled[n_train + n_validation :]] = 2
    part = part_of_group[codes]
    return tuple(np.flatnonzero(part == i) for i in range(3))


def split_summary(
    parts: Mapping[str, pd.DataFrame], *, target: str | None, task: str
) -> pd.DataFrame:
    """Tabulate the size of each split and how the target is distributed in it.

    Parameters
    ----------
    parts : mapping of str to pandas.DataFrame
        The splits by name, such as ``{"train": train, "validation": validation, "test": test}``.
    target : str or None
        The target column.
    task : {"classification", "regression", "clustering"}
        The task.

    Returns
    -------
    pandas.DataFrame
        One row per split with ``rows`` and ``share`` of all rows; for classification the share
        of each class (``class=<label>`` columns), for regression the target ``mean`` and ``std``.
    """
    total = sum(len(frame) for frame in parts.values()) or 1
    labels: list[Any] = []
    if target is not None and task == "classification":
        labels = sorted(pd.concat([p[target] for p in parts.values()]).dropna().unique())
    rows: list[dict[str, Any]] = []
    for name, frame in parts.items():
        row: dict[str, Any] = {"split": name, "rows": len(frame), "share": len(frame) / total}
        if labels:
            shares = frame[target].value_counts(normalize=True)
            row.update(
                {f"class={label}": float(shares.get(label, 0.0)) for label in labels}
                if len(frame)
                else dict.fromkeys((f"class={label}" for label in labels), np.nan)
            )
        elif target is not None and task == "regression":
            row.update({"mean": frame[target].mean(), "std": frame[target].std()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("split")
