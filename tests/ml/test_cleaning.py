"""Tests of nbtools.ml.cleaning: row-level cleaning, the learned preprocessor, summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator

from nbtools.demo import make_churn
from nbtools.errors import InvalidParameterError
from nbtools.ml.cleaning import (
    CleaningParams,
    OutlierClipper,
    apply,
    build_preprocessor,
    clipping_report,
    column_types,
    grouped_categories,
    summarize,
)


@pytest.fixture
def dirty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["001", "002", "003", "003", "005", "006"],
            "amount": ["1.5", " ", "3", "3", "-4", "7"],
            "signed_up": ["2024-01-02"] * 6,
            "vip": ["yes", "no", "YES", "YES", "no", "no"],
            "note": ["yes", None, "no", "no", "yes", "no"],
            "age": [20.0, 30.0, 40.0, 40.0, 50.0, -1.0],
            "label": ["a", "b", "a", "a", None, "b"],
        }
    )


# --- parameters --------------------------------------------------------------------------------


def test_params_round_trip_through_a_dict():
    params = CleaningParams(drop_columns=["id"], outliers="none", max_categories=5)
    assert CleaningParams.from_dict(params.to_dict()) == params


def test_from_dict_accepts_cleaning_json_but_not_unknown_keys():
    data = {
        **CleaningParams().to_dict(),
        "numeric_columns": ["a"],
        "categorical_columns": [],
        "target": "y",
        "task": "regression",
    }
    assert CleaningParams.from_dict(data) == CleaningParams()
    with pytest.raises(InvalidParameterError, match=r"Stage 'clean' has no parameter 'scaler'"):
        CleaningParams.from_dict({"scaler": "standard"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"numeric_imputation": "mode"}, "The 'numeric_imputation' parameter of stage 'clean'"),
        ({"iqr_factor": 0.0}, r"'iqr_factor' .* range \(0, inf\)\. Got 0\.0 instead"),
        ({"max_categories": 1}, "'max_categories' parameter of stage 'clean' must be an int"),
        ({"drop_columns": "id"}, "'drop_columns' parameter of stage 'clean' must be a list"),
        ({"drop_columns": [1]}, "must be a list of column names"),
    ],
)
def test_invalid_params_name_the_parameter(changes, message):
    with pytest.raises(InvalidParameterError, match=message):
        CleaningParams(**changes).validate()


# --- row-level cleaning ------------------------------------------------------------------------


def test_defaults_keep_duplicates_and_do_not_clip():
    params = CleaningParams()
    assert params.drop_duplicates is False and params.outliers == "none"


def test_duplicates_are_counted_and_kept_by_default():
    df = pd.DataFrame({"sex": ["f", "f", "m", "f"], "age": [30, 30, 40, 30], "y": [1, 1, 0, 1]})
    cleaned, report = apply(df, CleaningParams(), target="y")
    assert report["duplicates"] == 2 and report["duplicates_dropped"] == 0
    assert len(cleaned) == report["rows_out"] == 4
    cleaned, report = apply(df, CleaningParams(drop_duplicates=True), target="y")
    assert report["duplicates"] == report["duplicates_dropped"] == 2
    assert len(cleaned) == 2


def test_apply_drops_bad_rows_and_reports_them(dirty):
    params = CleaningParams(
        drop_columns=["id"], non_negative_columns=["amount", "age"], drop_duplicates=True
    )
    before = dirty.copy()
    cleaned, report = apply(dirty, params, target="label")
    pd.testing.assert_frame_equal(dirty, before)  # the input is untouched
    assert report["rows_in"] == 6
    assert report["missing_target_dropped"] == 1
    assert report["invalid_rows_dropped"] == {"amount": 0, "age": 1}
    assert report["duplicates_dropped"] == 1
    assert report["rows_out"] == len(cleaned) == 3
    assert report["columns_dropped"] == ["id"]
    assert "id" not in cleaned.columns
    assert list(cleaned.index) == [0, 1, 2]


def test_type_fixes(dirty):
    cleaned, report = apply(dirty, CleaningParams(drop_duplicates=False), target="label")
    assert pd.api.types.is_float_dtype(cleaned["amount"])
    assert cleaned["amount"].isna().sum() == 1  # the blank became missing, not an error
    assert pd.api.types.is_datetime64_any_dtype(cleaned["signed_up"])
    assert cleaned["vip"].dtype == bool and cleaned["vip"].tolist() == [
        True,
        False,
        True,
        True,
        False,
    ]
    assert pd.api.types.is_string_dtype(cleaned["id"])  # leading zeros: an identifier
    assert pd.api.types.is_string_dtype(cleaned["note"])  # yes/no with gaps stays categorical
    assert set(report["type_fixes"]) == {"amount", "signed_up", "vip"}
    assert report["made_missing"] == {"amount": 1}  # the blank, the only value lost


def test_a_chosen_type_counts_the_values_it_could_not_convert():
    df = pd.DataFrame({"code": ["1", "2", "n/a", "x", "5"], "y": [0, 1, 0, 1, 0]})
    params = CleaningParams(column_choices={"code": {"type": "numeric"}})
    cleaned, report = apply(df, params, target="y")
    assert cleaned["code"].isna().sum() == 2
    assert report["made_missing"] == {"code": 2}


def test_target_is_never_turned_into_bool():
    df = pd.DataFrame({"x": [1, 2, 3, 4], "churned": ["yes", "no", "yes", "no"]})
    cleaned, _ = apply(df, CleaningParams(), target="churned")
    assert cleaned["churned"].tolist() == ["yes", "no", "yes", "no"]


def test_fix_types_can_be_switched_off(dirty):
    cleaned, report = apply(dirty, CleaningParams(fix_types=False), target="label")
    assert report["type_fixes"] == {}
    assert pd.api.types.is_string_dtype(cleaned["amount"])


def test_apply_rejects_columns_that_do_not_exist(dirty):
    with pytest.raises(InvalidParameterError, match=r"names column 'price'.*Available columns: id"):
        apply(dirty, CleaningParams(drop_columns=["price"]), target="label")
    with pytest.raises(InvalidParameterError, match=r"names the target 'label'"):
        apply(dirty, CleaningParams(drop_columns=["label"]), target="label")
    with pytest.raises(InvalidParameterError, match=r"'note', which is not numeric"):
        apply(dirty, CleaningParams(non_negative_columns=["note"]), target="label")


def test_clean_churn_demo():
    df = make_churn(3000)
    cleaned, report = apply(
        df,
        CleaningParams(non_negative_columns=["tenure_months"], drop_duplicates=True),
        target="churned",
    )
    assert report["duplicates_dropped"] > 0 and report["invalid_rows_dropped"]["tenure_months"] > 0
    assert not cleaned.duplicated().any()
    assert (cleaned["tenure_months"] >= 0).all()
    numeric, categorical = column_types(cleaned, "churned")
    assert "churned" not in numeric + categorical
    assert "signup_date" not in numeric + categorical
    assert {"tenure_months", "paperless_billing"} <= set(numeric)
    assert {"contract", "payment_method"} <= set(categorical)


# --- the outlier clipper -----------------------------------------------------------------------


def test_clipper_learns_bounds_from_the_data_it_is_fitted_on():
    train = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 1.0], [np.nan, 0.0]])
    clipper = OutlierClipper(factor=1.0).fit(train)
    q1, q3 = 1.75, 3.25
    assert clipper.lower_[0] == pytest.approx(q1 - 1.5) and clipper.upper_[0] == pytest.approx(
        q3 + 1.5
    )
    out = clipper.transform(np.array([[100.0, 1.0], [-100.0, 5.0], [np.nan, 0.0]]))
    assert out[0, 0] == pytest.approx(4.75) and out[1, 0] == pytest.approx(0.25)
    assert np.isnan(out[2, 0])
    assert out[:, 1].tolist() == [1.0, 5.0, 0.0]  # IQR of 0: a mostly-constant flag is untouched


def test_clipper_counts_the_values_it_clipped_during_fit():
    values = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 5.0], [50.0, 9.0], [np.nan, 5.0]])
    clipper = OutlierClipper().fit(values)
    assert clipper.n_clipped_.tolist() == [1, 0]  # 50 is beyond the fences; the flag is untouched
    assert clipper.n_values_.tolist() == [5, 6]


def test_clipping_report_finds_the_clippers_inside_a_fitted_pipeline():
    rng = np.random.default_rng(0)
    train = pd.DataFrame(
        {
            "delay": np.r_[rng.normal(10, 2, 95), np.full(5, 300.0)],
            "seats": rng.normal(100, 5, 100),
            "carrier": rng.choice(["a", "b"], 100),
        }
    )
    params = CleaningParams(outliers="clip", column_choices={"seats": {"outliers": "none"}})
    pre = build_preprocessor(params, ["delay", "seats"], ["carrier"]).fit(train)
    report = clipping_report(pre)
    assert list(report.index) == ["delay"]  # seats is not clipped, carrier is a category
    assert report.loc["delay", "clipped"] >= 5 and report.loc["delay", "values"] == 100
    assert report.loc["delay", "share"] == report.loc["delay", "clipped"] / 100
    assert report.loc["delay", "upper"] < 300
    assert clipping_report(build_preprocessor(CleaningParams(), ["delay"], []).fit(train)).empty


def test_clipper_rejects_a_bad_factor():
    with pytest.raises(InvalidParameterError, match=r"'factor' parameter of OutlierClipper"):
        OutlierClipper(factor=-1).fit(np.ones((3, 1)))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_clipper_follows_the_scikit_learn_contract():
    check_estimator(OutlierClipper())


# --- the preprocessor --------------------------------------------------------------------------


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.DataFrame(
        {
            "n": [1.0, 2.0, 3.0, np.nan, 5.0, 6.0],
            "c": ["red", "red", "blue", None, "blue", "red"],
        }
    )
    test = pd.DataFrame({"n": [np.nan, 1000.0], "c": ["green", None]})
    return train, test


def test_preprocessor_learns_from_train_only():
    train, test = _frames()
    params = CleaningParams(scaling="none", outliers="none")
    pre = build_preprocessor(params, ["n"], ["c"]).fit(train)
    out = pre.transform(test)
    names = list(pre.get_feature_names_out())
    assert names == ["n", "c_blue", "c_red"]
    assert out[0, 0] == 3.0  # the training median, not one influenced by the test's 1000
    assert out[0, 1:].tolist() == [0.0, 0.0]  # an unseen category does not crash
    assert out[1, 1:].tolist() == [0.0, 1.0]  # missing -> the most frequent training category


def test_preprocessor_clips_and_scales_with_training_statistics():
    train, test = _frames()
    pre = build_preprocessor(CleaningParams(outliers="clip"), ["n"], ["c"]).fit(train)
    numeric = pre.named_transformers_["numeric"]
    assert numeric.named_steps["clip"].upper_[0] < 20
    scaled = pre.transform(test)[1, 0]
    expected = (numeric.named_steps["clip"].upper_[0] - numeric.named_steps["scale"].mean_[0]) / (
        numeric.named_steps["scale"].scale_[0]
    )
    assert scaled == pytest.approx(expected)


def test_ordinal_encoding_and_constant_imputation():
    train, test = _frames()
    params = CleaningParams(
        encoding="ordinal",
        categorical_imputation="constant",
        numeric_imputation="constant",
        numeric_fill_value=-1.0,
        scaling="none",
        outliers="none",
    )
    pre = build_preprocessor(params, ["n"], ["c"]).fit(train)
    out = pre.transform(test)
    assert out[0, 0] == -1.0
    assert out[0, 1] == -1.0  # unseen category
    assert out[1, 1] == list(pre.named_transformers_["categorical"][-1].categories_[0]).index(
        "missing"
    )


def test_max_categories_groups_rare_ones():
    df = pd.DataFrame({"c": list("aaaabbbcd")})
    pre = build_preprocessor(CleaningParams(max_categories=2), [], ["c"]).fit(df)
    assert list(pre.get_feature_names_out()) == ["c_a", "c_infrequent_sklearn"]


def test_grouped_categories_lists_the_columns_whose_rare_levels_merge():
    df = pd.DataFrame({"c": list("aaaabbbcd"), "d": list("xxxxxyyyy")})
    grouped = grouped_categories(df, ["c", "d"], max_categories=2)
    assert list(grouped.index) == ["c"]  # d has only two levels
    assert grouped.loc["c", "levels"] == 4 and grouped.loc["c", "levels_grouped"] == 3
    assert grouped.loc["c", "rows_grouped"] == 5 and grouped.loc["c", "share"] == 5 / 9
    assert grouped_categories(df, ["c"], max_categories=4).empty


def test_preprocessor_is_cloneable_and_needs_columns():
    pre = build_preprocessor(CleaningParams(outliers="clip"), ["n"], ["c"])
    assert clone(pre).get_params()["numeric__clip__factor"] == 1.5
    with pytest.raises(InvalidParameterError, match=r"at least one numeric or categorical"):
        build_preprocessor(CleaningParams(), [], [])


def test_preprocessor_on_the_churn_demo_has_no_missing_output():
    df, _ = apply(make_churn(2000), CleaningParams(), target="churned")
    numeric, categorical = column_types(df, "churned")
    pre = build_preprocessor(CleaningParams(), numeric, categorical)
    out = pre.fit_transform(df.drop(columns="churned"))
    assert out.shape[0] == len(df) and not np.isnan(out).any()


# --- summaries ---------------------------------------------------------------------------------


def test_summarize_counts_missing_distinct_and_outliers():
    df = pd.DataFrame(
        {"x": [1.0, 2.0, 3.0, 4.0, 100.0, np.nan], "c": ["a", "b", "a", None, "a", "a"]}
    )
    summary = summarize(df)
    assert summary.loc["x", "missing"] == 1
    assert summary.loc["x", "missing_share"] == pytest.approx(1 / 6)
    assert summary.loc["x", "outliers"] == 1
    assert summary.loc["c", "distinct"] == 2
    assert pd.isna(summary.loc["c", "outliers"])
