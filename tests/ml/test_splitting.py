"""Tests of nbtools.ml.splitting: strategies, fallbacks, sizes and no overlap."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from nbtools.demo import make_churn
from nbtools.errors import InvalidParameterError
from nbtools.ml.splitting import SplitParams, plan_split, split, split_summary


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return make_churn(2000, seed=0).drop_duplicates().reset_index(drop=True)


def _row_ids(*frames: pd.DataFrame) -> list[set[tuple]]:
    return [set(map(tuple, f.astype(str).to_numpy())) for f in frames]


# --- parameters --------------------------------------------------------------------------------


def test_invalid_params_name_the_parameter():
    expected = re.escape(
        "The 'test_size' parameter of stage 'split' must be a float in the range (0, 1). "
        "Got 1.5 instead."
    )
    with pytest.raises(InvalidParameterError, match=expected):
        SplitParams(test_size=1.5).validate()
    with pytest.raises(InvalidParameterError, match=r"must sum to less than 1"):
        SplitParams(test_size=0.5, validation_size=0.5).validate()
    with pytest.raises(InvalidParameterError, match=r"'group_column' parameter .* strategy is"):
        SplitParams(strategy="group").validate()
    with pytest.raises(InvalidParameterError, match=r"'strategy' parameter of stage 'split'"):
        SplitParams(strategy="kfold").validate()
    assert SplitParams.from_dict(SplitParams(test_size=0.3).to_dict()) == SplitParams(test_size=0.3)


# --- random and stratified ---------------------------------------------------------------------


def test_split_is_a_partition_with_the_requested_sizes(churn):
    train, validation, test = split(
        churn, SplitParams(), target="churned", task="classification", seed=0
    )
    assert (len(train), len(validation), len(test)) == (
        len(churn) - round(0.2 * len(churn)) - round(0.1 * len(churn)),
        round(0.1 * len(churn)),
        round(0.2 * len(churn)),
    )
    parts = _row_ids(train, validation, test)
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set.union(*parts) == _row_ids(churn)[0]
    assert list(train.columns) == list(churn.columns)


def test_split_is_reproducible_by_seed(churn):
    params = SplitParams(strategy="random")
    first = split(churn, params, target="churned", task="classification", seed=1)
    again = split(churn, params, target="churned", task="classification", seed=1)
    other = split(churn, params, target="churned", task="classification", seed=2)
    assert first[2].equals(again[2])
    assert not first[2].equals(other[2])


def test_classification_is_stratified_by_default(churn):
    strategy, reason = plan_split(churn, SplitParams(), target="churned", task="classification")
    assert strategy == "stratified" and "class shares of 'churned'" in reason
    parts = split(churn, SplitParams(), target="churned", task="classification", seed=0)
    overall = (churn["churned"] == "yes").mean()
    for part in parts:
        assert abs((part["churned"] == "yes").mean() - overall) < 0.01


def test_stratifying_falls_back_with_a_reason_when_a_class_is_tiny(churn):
    df = churn.copy()
    df.loc[0, "churned"] = "maybe"
    strategy, reason = plan_split(df, SplitParams(), target="churned", task="classification")
    assert strategy == "random"
    assert "class 'maybe' has only 1 row(s)" in reason
    train, validation, test = split(
        df, SplitParams(strategy="stratified"), target="churned", task="classification", seed=0
    )
    assert len(train) + len(validation) + len(test) == len(df)


def test_regression_and_clustering_are_shuffled(churn):
    assert plan_split(churn, SplitParams(), target="age", task="regression")[0] == "random"
    strategy, reason = plan_split(churn, SplitParams(), target=None, task="clustering")
    assert strategy == "random" and "task is clustering" in reason
    train, _, test = split(churn, SplitParams(), target=None, task="clustering", seed=0)
    assert len(train) and len(test)


def test_no_validation_split_gives_an_empty_frame_with_all_columns(churn):
    train, validation, test = split(
        churn, SplitParams(validation_size=0.0), target="churned", task="classification", seed=0
    )
    assert validation.empty and list(validation.columns) == list(churn.columns)
    assert (validation.dtypes == churn.dtypes).all()
    assert len(train) + len(test) == len(churn)


def test_too_few_rows_is_a_clear_error():
    df = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
    with pytest.raises(InvalidParameterError, match=r"Cannot split 2 rows .* left to train on"):
        split(df, SplitParams(), target="y", task="classification", seed=0)


# --- group and time ----------------------------------------------------------------------------


def test_group_split_keeps_each_group_in_one_split():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"customer": rng.integers(0, 60, 1000), "x": rng.normal(size=1000)})
    df.loc[:9, "customer"] = np.nan  # missing group values form one group
    params = SplitParams(strategy="group", group_column="customer")
    train, validation, test = split(df, params, target=None, task="clustering", seed=0)
    groups = [set(part["customer"].astype(str)) for part in (train, validation, test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert len(train) + len(validation) + len(test) == len(df)
    assert len(groups[2]) == round(0.2 * 61)


def test_group_split_needs_enough_groups_and_an_existing_column(churn):
    df = pd.DataFrame({"g": ["a", "a", "b", "b"] * 5, "x": range(20)})
    with pytest.raises(InvalidParameterError, match=r"groups of 'g'"):
        split(
            df,
            SplitParams(strategy="group", group_column="g"),
            target=None,
            task="clustering",
            seed=0,
        )
    with pytest.raises(InvalidParameterError, match=r"names column 'shop'.*Available columns"):
        split(
            churn,
            SplitParams(strategy="group", group_column="shop"),
            target="churned",
            task="classification",
            seed=0,
        )


def test_time_split_tests_on_the_newest_rows(churn):
    params = SplitParams(strategy="time", time_column="signup_date")
    train, validation, test = split(churn, params, target="churned", task="classification", seed=0)
    assert train["signup_date"].max() <= validation["signup_date"].min()
    assert validation["signup_date"].max() <= test["signup_date"].min()
    assert train["signup_date"].is_monotonic_increasing


def test_time_split_accepts_iso_text_and_rejects_gaps():
    df = pd.DataFrame({"day": ["2024-01-03", "2024-01-01", "2024-01-02"] * 4, "x": range(12)})
    train, _, test = split(
        df, SplitParams(strategy="time", time_column="day"), target=None, task="clustering", seed=0
    )
    assert train["day"].max() <= test["day"].min()
    df.loc[0, "day"] = None
    with pytest.raises(InvalidParameterError, match=r"'day' .* has 1 missing values"):
        split(
            df,
            SplitParams(strategy="time", time_column="day"),
            target=None,
            task="clustering",
            seed=0,
        )


def test_split_summary_shows_sizes_and_class_shares(churn):
    train, validation, test = split(
        churn, SplitParams(validation_size=0.0), target="churned", task="classification", seed=0
    )
    summary = split_summary(
        {"train": train, "validation": validation, "test": test},
        target="churned",
        task="classification",
    )
    assert summary.loc["train", "rows"] == len(train)
    assert summary["share"].sum() == pytest.approx(1.0)
    assert summary.loc["test", "class=yes"] == pytest.approx((test["churned"] == "yes").mean())
    assert np.isnan(summary.loc["validation", "class=yes"])
