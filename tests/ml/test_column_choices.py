"""Per-column cleaning choices: a column's own type, imputation, outlier handling and encoding."""

from __future__ import annotations

import pandas as pd
import pytest

from nbtools import demo
from nbtools.errors import InvalidParameterError
from nbtools.ml import cleaning


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return demo.make_churn(400, seed=0)


def test_a_chosen_type_converts_the_column_row_by_row(churn: pd.DataFrame) -> None:
    params = cleaning.CleaningParams(column_choices={"support_calls": {"type": "categorical"}})
    cleaned, report = cleaning.apply(churn, params, target="churned")
    assert "support_calls" in cleaning.column_types(cleaned, "churned")[1]
    assert report["type_fixes"]["support_calls"].endswith("(chosen)")
    assert set(cleaned["support_calls"].dropna()) == {str(v) for v in churn["support_calls"]}


def test_columns_with_their_own_choices_get_their_own_preprocessing(churn: pd.DataFrame) -> None:
    params = cleaning.CleaningParams(
        column_choices={
            "age": {"imputation": "mean", "outliers": "none"},
            "contract": {"encoding": "ordinal"},
        }
    )
    cleaned, _ = cleaning.apply(churn, params, target="churned")
    numeric, categorical = cleaning.column_types(cleaned, "churned")
    preprocessor = cleaning.build_preprocessor(params, numeric, categorical)
    preprocessor.fit(cleaned[numeric + categorical])
    steps = {name: (pipe, cols) for name, pipe, cols in preprocessor.transformers_}
    assert steps["numeric_none_mean"][1] == ["age"]
    assert "clip" not in steps["numeric_none_mean"][0].named_steps
    assert steps["numeric_none_mean"][0].named_steps["impute"].strategy == "mean"
    assert "age" not in steps["numeric"][1]
    assert steps["categorical_most_frequent_ordinal"][1] == ["contract"]
    assert "contract" in preprocessor.get_feature_names_out()


@pytest.mark.parametrize(
    ("choices", "match"),
    [
        (
            {"contract": {"imputation": "median"}},
            "which is categorical; categorical columns accept",
        ),
        ({"contract": {"outliers": "clip"}}, "categorical columns have no outliers choice"),
        ({"age": {"encoding": "onehot"}}, "which is numeric"),
        ({"region": {"imputation": "mean"}}, "not in the cleaned data"),
        ({"churned": {"encoding": "ordinal"}}, "for the target 'churned'"),
        ({"age": {"imputation": "avg"}}, "Accepted: type:"),
    ],
)
def test_a_choice_that_does_not_fit_its_column_is_refused(
    churn: pd.DataFrame, choices: dict, match: str
) -> None:
    params = cleaning.CleaningParams(drop_columns=["region"], column_choices=choices)
    with pytest.raises(InvalidParameterError, match=match):
        cleaning.apply(churn, params, target="churned")
