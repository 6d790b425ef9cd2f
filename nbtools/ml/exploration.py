"""Quick views of a table for the interactive panels: samples, histograms, redundancy, rules.

Everything here is cheap on large tables: the panels call these functions on a seeded row sample
and say so, while the stages apply their parameters to every row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nbtools.errors import InvalidParameterError

__all__ = [
    "RULES",
    "SAMPLE_ROWS",
    "choose_features",
    "column_histogram",
    "redundancy",
    "sample_rows",
]

#: Rows a panel looks at; larger tables are sampled (and the panel says so).
SAMPLE_ROWS = 50_000

#: The automatic feature-selection rules of :func:`choose_features`.
RULES = ("top_k", "min_relevance", "drop_correlated")


def sample_rows(df: pd.DataFrame, n_rows: int = SAMPLE_ROWS, *, seed: int = 0) -> pd.DataFrame:
    """Return ``df`` itself when it has at most ``n_rows`` rows, else a seeded sample in order.

    The sample keeps the original row order, so row-level steps that look at order (dropping
    repeated rows, say) behave as on the full table.
    """
    if len(df) <= n_rows:
        return df
    rows = np.sort(np.random.default_rng(seed).choice(len(df), n_rows, replace=False))
    return df.iloc[rows]


def column_histogram(column: pd.Series, bins: int = 8) -> list[int]:
    """Count the values of a column in ``bins`` groups, for a small inline chart.

    Numbers are counted in equal-width bins between their minimum and maximum; other values by
    their ``bins`` most frequent categories (most frequent first). Missing values are ignored.
    """
    values = column.dropna()
    if values.empty:
        return []
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric:
        array = values.to_numpy(dtype=np.float64)
        finite = array[np.isfinite(array)]
        if finite.size == 0:
            return []
        counts, _ = np.histogram(finite, bins=bins)
        return [int(c) for c in counts]
    return [int(c) for c in values.astype(str).value_counts().head(bins)]


def redundancy(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """For every numeric column, its strongest absolute correlation with another one.

    Parameters
    ----------
    df : pandas.DataFrame
        The table (a sample is plenty).
    columns : list of str
        The candidate feature columns; non-numeric ones get no correlation.

    Returns
    -------
    pandas.DataFrame
        Indexed by column, with ``max_correlation`` (missing for non-numeric or constant columns)
        and ``most_correlated_with`` (the partner column, or empty).
    """
    numeric = [
        c
        for c in columns
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]
    table = pd.DataFrame(
        {"max_correlation": np.nan, "most_correlated_with": ""}, index=pd.Index(columns)
    )
    if len(numeric) < 2:
        return table
    corr = df[numeric].astype("float64").corr().abs().to_numpy(copy=True)
    np.fill_diagonal(corr, np.nan)
    for i, name in enumerate(numeric):
        row = corr[i]
        if np.all(np.isnan(row)):
            continue
        j = int(np.nanargmax(row))
        table.loc[name, "max_correlation"] = float(row[j])
        table.loc[name, "most_correlated_with"] = numeric[j]
    return table


def choose_features(scores: pd.DataFrame, rule: str, value: float) -> list[str]:
    """Apply an automatic selection rule to a table of relevance and redundancy scores.

    Parameters
    ----------
    scores : pandas.DataFrame
        Indexed by feature, with ``mutual_info`` and ``max_correlation`` /
        ``most_correlated_with`` columns (from ``features.relevance`` joined with
        :func:`redundancy`).
    rule : {"top_k", "min_relevance", "drop_correlated"}
        ``top_k``: the ``value`` features with the highest mutual information;
        ``min_relevance``: features with mutual information at least ``value``;
        ``drop_correlated``: of each pair correlated above ``value``, drop the less relevant.
    value : float
        The rule's number.

    Returns
    -------
    list of str
        The features kept, in the order of ``scores``.

    Raises
    ------
    InvalidParameterError
        For an unknown rule, a value out of range, or a rule that keeps no feature.
    """
    if rule not in RULES:
        raise InvalidParameterError(
            f"The selection rule must be one of {', '.join(RULES)}. Got {rule!r} instead."
        )
    ranked = scores.sort_values("mutual_info", ascending=False, kind="stable")
    if rule == "top_k":
        if value < 1 or value != int(value):
            raise InvalidParameterError(
                f"The top_k rule needs a whole number of features >= 1. Got {value!r} instead."
            )
        kept = set(ranked.index[: int(value)])
    elif rule == "min_relevance":
        kept = set(ranked.index[ranked["mutual_info"] >= value])
    else:
        if not 0 < value <= 1:
            raise InvalidParameterError(
                "The drop_correlated rule needs a correlation in the range (0, 1]. "
                f"Got {value!r} instead."
            )
        kept = set(ranked.index)
        for name, row in ranked.iterrows():
            partner: Any = row["most_correlated_with"]
            if (
                name in kept
                and partner in kept
                and row["max_correlation"] > value
                and scores.loc[partner, "mutual_info"] >= row["mutual_info"]
            ):
                kept.discard(name)
    if not kept:
        raise InvalidParameterError(
            f"The {rule} rule with value {value!r} keeps no feature; choose a looser value."
        )
    return [name for name in scores.index if name in kept]
