"""Samples, histograms, redundancy and selection rules for the panels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbtools.errors import InvalidParameterError
from nbtools.ml.exploration import choose_features, column_histogram, redundancy, sample_rows


def test_a_sample_keeps_the_row_order_and_a_small_table_is_not_sampled() -> None:
    df = pd.DataFrame({"x": range(1000)})
    sample = sample_rows(df, 100, seed=1)
    assert len(sample) == 100
    assert sample["x"].is_monotonic_increasing
    assert sample_rows(df, 5000) is df


def test_histograms_count_numbers_in_bins_and_text_by_category() -> None:
    assert sum(column_histogram(pd.Series([1.0, 2.0, np.nan, 3.0]), bins=3)) == 3
    assert column_histogram(pd.Series(["a", "b", "a", None])) == [2, 1]
    assert column_histogram(pd.Series([np.nan, np.nan])) == []


def test_redundancy_names_the_most_correlated_partner() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    df = pd.DataFrame(
        {
            "x": x,
            "twin": x * 2 + 0.01 * rng.normal(size=500),
            "noise": rng.normal(size=500),
            "text": "a",
        }
    )
    table = redundancy(df, ["x", "twin", "noise", "text"])
    assert table.loc["x", "most_correlated_with"] == "twin"
    assert table.loc["x", "max_correlation"] > 0.99
    assert np.isnan(table.loc["text", "max_correlation"])


@pytest.fixture
def scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "mutual_info": [0.3, 0.1, 0.25, 0.0],
            "max_correlation": [0.97, 0.2, 0.97, np.nan],
            "most_correlated_with": ["c", "a", "a", ""],
        },
        index=["a", "b", "c", "d"],
    )


def test_rules_keep_the_right_features(scores: pd.DataFrame) -> None:
    assert choose_features(scores, "top_k", 2) == ["a", "c"]
    assert choose_features(scores, "min_relevance", 0.1) == ["a", "b", "c"]
    assert choose_features(scores, "drop_correlated", 0.9) == ["a", "b", "d"]


def test_a_rule_keeping_nothing_or_out_of_range_is_refused(scores: pd.DataFrame) -> None:
    with pytest.raises(InvalidParameterError, match="keeps no feature"):
        choose_features(scores, "min_relevance", 1.0)
    with pytest.raises(InvalidParameterError, match="range \\(0, 1\\]"):
        choose_features(scores, "drop_correlated", 1.5)
    with pytest.raises(InvalidParameterError, match="whole number"):
        choose_features(scores, "top_k", 0)
