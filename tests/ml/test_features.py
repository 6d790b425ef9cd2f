"""Tests of nbtools.ml.features: feature creation, relevance and selection."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import check_estimator

from nbtools.demo import make_churn
from nbtools.errors import InvalidParameterError
from nbtools.ml import cleaning
from nbtools.ml.features import (
    FeatureCreator,
    FeatureParams,
    add_features,
    build_selector,
    explain_selection,
    relevance,
)
from nbtools.ml.selectors import CorrelationFilter, TopKSelector


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "when": pd.to_datetime(["2024-01-01", "2024-02-15", "2025-03-31"]),
            "spend": [10.0, 20.0, 30.0],
            "months": [0, 2, 3],
            "plan monthly": [1.0, 2.0, 4.0],
            "city": ["a", "b", "c"],
            "y": [0.0, 1.0, 0.0],
        }
    )


# --- parameters --------------------------------------------------------------------------------


def test_params_round_trip_and_validation():
    params = FeatureParams(expressions={"r": "a / b"}, selection="model", k=3)
    assert FeatureParams.from_dict({**params.to_dict(), "numeric_columns": []}) == params
    with pytest.raises(InvalidParameterError, match=r"'selection' parameter of stage 'features'"):
        FeatureParams(selection="best").validate()
    with pytest.raises(InvalidParameterError, match=r"'drop_correlated' .*\(0, 1\]\. Got 1\.5"):
        FeatureParams(drop_correlated=1.5).validate()
    with pytest.raises(InvalidParameterError, match=r"must map new column names to expressions"):
        FeatureParams(expressions={"r": 3}).validate()


# --- creation ----------------------------------------------------------------------------------


def test_date_parts_and_expressions(table):
    params = FeatureParams(
        expressions={"per_month": "spend / months", "scaled": "`plan monthly` * 2 + 1"}
    )
    before = table.copy()
    out, report = add_features(table, params, target="y")
    pd.testing.assert_frame_equal(table, before)
    assert report["created"] == [
        "when_year",
        "when_month",
        "when_day_of_week",
        "per_month",
        "scaled",
    ]
    assert out["when_year"].tolist() == [2024, 2024, 2025]
    assert out["when_day_of_week"].tolist() == [0, 3, 0]
    assert "when" in out.columns  # kept for a time-ordered split
    assert np.isnan(out.loc[0, "per_month"])  # division by zero -> missing, imputed later
    assert out.loc[1, "per_month"] == 10.0
    assert out["scaled"].tolist() == [3.0, 5.0, 9.0]


def test_date_parts_can_be_switched_off(table):
    out, report = add_features(table, FeatureParams(date_parts=False), target="y")
    assert report["created"] == [] and list(out.columns) == list(table.columns)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').getcwd()", "contains a Call"),
        ("spend.sum()", "contains a"),
        ("spend > 3", "contains a Compare"),
        ("'abc'", "may only contain numbers"),
        ("2 + 3", "does not use any column"),
        ("spend +", "is not valid"),
        ("price / months", "uses column 'price', which is not in the data. Available columns"),
        ("spend * y", "uses the target 'y'"),
        ("city * 2", "'city', which is not numeric"),
    ],
)
def test_unsafe_or_wrong_expressions_are_rejected(table, expression, message):
    with pytest.raises(InvalidParameterError, match=message):
        add_features(table, FeatureParams(expressions={"new": expression}), target="y")


def test_new_names_must_be_new(table):
    with pytest.raises(InvalidParameterError, match=r"cannot add column 'spend'"):
        add_features(table, FeatureParams(expressions={"spend": "months * 2"}), target="y")


# --- relevance ---------------------------------------------------------------------------------


def test_relevance_ranks_the_informative_feature_first():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=2000)
    df = pd.DataFrame(
        {
            "noise": rng.normal(size=2000),
            "signal": signal,
            "colour": rng.choice(["r", "g"], 2000),
            "y": np.where(signal + 0.3 * rng.normal(size=2000) > 0, "yes", "no"),
        }
    )
    table = relevance(df, "y", "classification")
    assert table.index[0] == "signal"
    assert table.loc["signal", "correlation"] > 0.7
    assert table.loc["colour", "kind"] == "categorical"
    assert np.isnan(table.loc["colour", "correlation"])
    with pytest.raises(InvalidParameterError, match=r"needs a classification or regression"):
        relevance(df, "y", "clustering")


# --- selection ---------------------------------------------------------------------------------


def test_correlation_filter_drops_the_later_of_a_pair():
    rng = np.random.default_rng(0)
    a = rng.normal(size=500)
    X = np.column_stack(
        [a, rng.normal(size=500), -2 * a + 0.01 * rng.normal(size=500), np.ones(500)]
    )
    filt = CorrelationFilter(threshold=0.9).fit(X)
    assert filt.get_support().tolist() == [True, True, False, True]
    assert filt.dropped_[0][:2] == (2, 0)
    assert list(filt.get_feature_names_out(["a", "b", "c", "d"])) == ["a", "b", "d"]
    assert CorrelationFilter(threshold=1.0).fit(X).get_support().all()
    with pytest.raises(InvalidParameterError, match=r"range \(0, 1\]"):
        CorrelationFilter(threshold=0).fit(X)


def test_top_k_keeps_the_informative_features_and_clips_k():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = (X[:, 3] + 0.1 * rng.normal(size=400) > 0).astype(int)
    for method in ("anova", "model"):
        assert TopKSelector(k=1, method=method).fit(X, y).get_support().tolist() == [
            False,
            False,
            False,
            True,
            False,
        ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        selector = TopKSelector(k=50).fit(X, y)
    assert selector.k_ == 5 and selector.transform(X).shape == (400, 5)
    yr = X[:, 1] * 3 + rng.normal(size=400)
    assert TopKSelector(k=1, task="regression").fit(X, yr).get_support()[1]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
@pytest.mark.parametrize("estimator", [CorrelationFilter(), TopKSelector(k=2)])
def test_selectors_follow_the_scikit_learn_contract(estimator):
    check_estimator(estimator)


def _preprocessed(n_rows: int = 1500) -> tuple[pd.DataFrame, pd.Series, Pipeline]:
    df, _ = cleaning.apply(make_churn(n_rows), cleaning.CleaningParams(), target="churned")
    df, _ = add_features(df, FeatureParams(), target="churned")
    numeric, categorical = cleaning.column_types(df, "churned")
    pre = cleaning.build_preprocessor(cleaning.CleaningParams(), numeric, categorical)
    return df.drop(columns="churned"), df["churned"], pre


def test_the_default_selects_nothing():
    X, y, pre = _preprocessed()
    assert FeatureParams() == FeatureParams(selection="none", drop_correlated=1.0)
    selector = build_selector(FeatureParams(), "regression")
    model = Pipeline([("preprocess", pre), ("select", selector)]).fit(X, y)
    assert np.array_equal(model.transform(X), model.named_steps["preprocess"].transform(X))
    assert list(model.get_feature_names_out()) == list(pre.get_feature_names_out())


@pytest.mark.parametrize("selection", ["kbest", "model", "threshold"])
def test_selection_in_a_model_pipeline(selection):
    X, y, pre = _preprocessed()
    train, test = X.iloc[:1000], X.iloc[1000:]
    params = FeatureParams(selection=selection, k=8)
    model = Pipeline([("preprocess", pre), ("select", build_selector(params, "classification"))])
    fitted = clone(model).fit(train, y.iloc[:1000])
    out = fitted.transform(test)
    n_in = len(fitted.named_steps["preprocess"].get_feature_names_out())
    assert out.shape[0] == len(test) and out.shape[1] <= n_in
    if selection != "threshold":
        assert out.shape[1] == 8
    names = list(fitted.named_steps["preprocess"].get_feature_names_out())
    explained = explain_selection(fitted.named_steps["select"], names)
    assert explained["kept"].sum() == out.shape[1]
    assert (explained.loc[~explained["kept"], "reason"] != "").all()


def test_k_larger_than_the_features_keeps_all():
    X, y, pre = _preprocessed(500)
    params = FeatureParams(selection="kbest", k=1000, drop_correlated=1.0)
    model = Pipeline([("preprocess", pre), ("select", build_selector(params, "classification"))])
    assert model.fit_transform(X, y).shape[1] == len(pre.get_feature_names_out())


def test_clustering_selection_works_without_a_target():
    X, _, pre = _preprocessed(500)
    with pytest.warns(UserWarning, match=r"clustering task has none: all features are kept"):
        selector = build_selector(
            FeatureParams(selection="kbest", k=3, drop_correlated=0.95), "clustering"
        )
    model = Pipeline([("preprocess", pre), ("select", selector)]).fit(X)
    dropped = model.named_steps["select"].named_steps["drop_correlated"].dropped_
    assert model.transform(X).shape[1] == len(pre.get_feature_names_out()) - len(dropped)
    threshold = build_selector(FeatureParams(selection="threshold"), "clustering")
    assert Pipeline([("preprocess", clone(pre)), ("select", threshold)]).fit_transform(X).shape[0]


def test_correlated_features_are_explained():
    X, y, pre = _preprocessed(800)
    X = X.assign(charges_copy=X["monthly_charges"] * 2)
    numeric, categorical = cleaning.column_types(X, None)
    pre = cleaning.build_preprocessor(cleaning.CleaningParams(), numeric, categorical)
    selector = build_selector(FeatureParams(drop_correlated=0.95), "classification")
    model = Pipeline([("preprocess", pre), ("select", selector)]).fit(X, y)
    explained = explain_selection(model.named_steps["select"], list(pre.get_feature_names_out()))
    assert not explained.loc["charges_copy", "kept"]
    assert explained.loc["charges_copy", "reason"].startswith("correlated with monthly_charges")


def test_feature_creator_derives_the_same_columns_in_a_pipeline():
    frame = pd.DataFrame(
        {"when": pd.to_datetime(["2024-01-31", "2024-02-29"]), "a": [1.0, 2.0], "b": [2.0, 0.0]}
    )
    params = FeatureParams(expressions={"ratio": "a / b"})
    expected, _ = add_features(frame, params, target=None)
    creator = FeatureCreator(date_parts=True, expressions={"ratio": "a / b"}).fit(frame)
    pd.testing.assert_frame_equal(creator.transform(frame), expected)
    assert list(creator.get_feature_names_out()) == list(expected.columns)
    assert clone(creator).get_params() == {"date_parts": True, "expressions": {"ratio": "a / b"}}
