"""Cross-validation folds that follow the split stage's strategy (time, group or shuffled), and
the row order and groups such folds need.

:mod:`nbtools.ml.model_choice` re-exports everything public here.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    TimeSeriesSplit,
)

__all__ = ["cv_splitter", "order_for_split", "split_groups"]


def cv_splitter(split: dict[str, Any], task: str, folds: int, seed: int) -> tuple[Any, str]:
    """Return cross-validation folds that follow the split stage's strategy, and why.

    Parameters
    ----------
    split : dict
        The split stage's ``split.json``: ``strategy_used``, ``group_column``, ``time_column``.
    task : str
        ``"classification"`` stratifies the folds (also group folds).
    folds : int
        The number of folds.
    seed : int
        Seeds the shuffled folds.

    Returns
    -------
    splitter : cross-validation splitter
        ``TimeSeriesSplit`` for a time split (rows must be in time order: each fold trains on
        the past and scores on the rows just after it), ``StratifiedGroupKFold`` or
        ``GroupKFold`` for a group split (no group on both sides of a fold; pass the groups
        to the search), shuffled ``StratifiedKFold`` or ``KFold`` otherwise.
    reason : str
        One sentence for the notebook.
    """
    strategy = split.get("strategy_used", "random")
    if strategy == "time":
        return TimeSeriesSplit(n_splits=folds), (
            f"time split on '{split['time_column']}': each fold trains on earlier rows and "
            "scores on the rows right after them"
        )
    if strategy == "group":
        splitter: Any = (
            StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
            if task == "classification"
            else GroupKFold(folds, shuffle=True, random_state=seed)
        )
        return splitter, (
            f"group split on '{split['group_column']}': the rows of one group stay in one fold"
        )
    if task == "classification":
        return StratifiedKFold(folds, shuffle=True, random_state=seed), (
            "shuffled folds that keep the class shares"
        )
    return KFold(folds, shuffle=True, random_state=seed), "shuffled folds"


def order_for_split(frame: pd.DataFrame, split: dict[str, Any]) -> pd.DataFrame:
    """Return ``frame`` in time order for a time split (as ordered folds need), else as is."""
    if split.get("strategy_used") == "time" and split.get("time_column") in frame.columns:
        return frame.sort_values(split["time_column"], kind="stable").reset_index(drop=True)
    return frame


def split_groups(frame: pd.DataFrame, split: dict[str, Any]) -> pd.Series | None:
    """Return the group of each row for a group split, else None."""
    if split.get("strategy_used") == "group":
        return frame[split["group_column"]]
    return None
