"""Unit tests of nbtools.ml.explanation and nbtools.ml.slicing on tables whose answer is known.

One column (``driver``) decides the target, one (``noise``) is unrelated, and in one region
(``hard``) the target is a coin toss, so the model cannot do better than chance there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LinearRegression
from threadpoolctl import threadpool_limits

from nbtools.errors import InvalidParameterError
from nbtools.ml import cleaning, explanation, modeling, slicing

REGIONS = ["north", "south", "east", "hard"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Fit single-threaded: on a busy machine OpenMP's busy-waiting makes tiny fits 10x slower."""
    with threadpool_limits(1):
        yield


def known_table(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "driver": rng.normal(size=n),
            "noise": rng.normal(size=n),
            "region": pd.Series(rng.choice(REGIONS, size=n), dtype="str"),
        }
    )
    decided = X["driver"] + 0.3 * rng.normal(size=n) > 0
    coin = rng.random(n) < 0.5
    yes = np.where(X["region"] == "hard", coin, decided)
    return X, pd.Series(np.where(yes, "yes", "no"), name="churned")


@pytest.fixture(scope="module")
def fitted():
    """The nbtools preprocessing and gradient boosting, fitted on 1,200 rows; 800 test rows."""
    X, y = known_table(2000, seed=0)
    preprocessor = cleaning.build_preprocessor(
        cleaning.CleaningParams(), ["driver", "noise"], ["region"], model="boosting"
    )
    estimator = modeling.make_estimator("hist_gradient_boosting", "classification", seed=0)
    model = modeling.build_pipeline(preprocessor, "passthrough", estimator)
    model.fit(X[:1200], y[:1200])
    return model, X[1200:].reset_index(drop=True), y[1200:].reset_index(drop=True)


def test_the_driving_column_ranks_first_and_the_unrelated_one_is_within_the_noise(fitted):
    model, X, y = fitted
    table = explanation.permutation_importances(
        model, X, y, metric="roc_auc", repeats=5, max_rows=500, seed=0
    )
    assert list(table.index) == ["driver", "region", "noise"]
    assert table.loc["driver", "importance"] > 0.3 and table.loc["driver", "above_noise"]
    assert not table.loc["noise", "above_noise"]
    assert table.attrs == {"metric": "roc_auc", "repeats": 5, "rows": 500}
    again = explanation.permutation_importances(
        model, X, y, metric="roc_auc", repeats=5, max_rows=500, seed=0
    )
    pd.testing.assert_frame_equal(table, again)  # seeded
    text = explanation.importance_summary(table)
    assert text.startswith("The model relies most on **driver**")
    assert "noise is within the spread of zero" in text


def test_importances_agree_with_scikit_learns_permutation_importance(fitted):
    model, X, y = fitted
    ours = explanation.permutation_importances(model, X, y, metric="accuracy", repeats=10)
    theirs = permutation_importance(model, X, y, scoring="accuracy", n_repeats=10, random_state=0)
    for i, column in enumerate(X.columns):
        spread = 2 * max(ours.loc[column, "std"], theirs.importances_std[i], 0.005)
        assert abs(ours.loc[column, "importance"] - theirs.importances_mean[i]) < spread


def test_importance_of_a_regressor_is_in_the_units_of_its_error() -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    y = pd.Series(3 * X["a"] + 0.1 * rng.normal(size=300))
    model = LinearRegression().fit(X, y)
    table = explanation.permutation_importances(model, X, y, metric="rmse", seed=0)
    # Shuffling a (sd 1, weight 3) raises the RMSE from 0.1 to about sqrt(2) * 3.
    assert table.index[0] == "a" and 3.5 < table.loc["a", "importance"] < 5
    assert abs(table.loc["b", "importance"]) < 0.05


def test_bad_arguments_are_clear_errors(fitted):
    model, X, y = fitted
    with pytest.raises(InvalidParameterError, match="classification or regression metric"):
        explanation.permutation_importances(model, X, y, metric="silhouette")
    with pytest.raises(InvalidParameterError, match="at least 2"):
        explanation.permutation_importances(model, X, y, metric="roc_auc", repeats=1)
    with pytest.raises(InvalidParameterError, match="'age' is not among"):
        explanation.partial_dependence_table(model, X, "age")


def test_sample_rows_is_seeded_and_keeps_the_class_shares(fitted):
    _, X, y = fitted
    X_s, y_s = explanation.sample_rows(X, y, max_rows=200, seed=3)
    assert len(X_s) == 200 and list(X_s.index) == list(y_s.index)
    assert abs((y_s == "yes").mean() - (y == "yes").mean()) < 0.01
    assert list(explanation.sample_rows(X, y, max_rows=200, seed=3)[0].index) == list(X_s.index)
    assert explanation.sample_rows(X, y, max_rows=5000)[0] is X


def test_partial_dependence_rises_with_the_driver_far_more_than_with_the_noise(fitted):
    model, X, _ = fitted
    driver = explanation.partial_dependence_table(model, X, "driver", positive="yes")
    assert list(driver.columns) == ["P(yes)"]
    rise = driver["P(yes)"].iloc[-1] - driver["P(yes)"].iloc[0]
    assert rise > 0.4
    noise = explanation.partial_dependence_table(model, X, "noise", positive="yes")
    assert noise["P(yes)"].max() - noise["P(yes)"].min() < rise / 2  # the trees fit some noise
    no = explanation.partial_dependence_table(model, X, "driver", positive="no")
    np.testing.assert_allclose(no["P(no)"], 1 - driver["P(yes)"])
    regions = explanation.partial_dependence_table(model, X, "region", positive="yes")
    assert set(regions.index) == set(REGIONS)


def test_partial_dependence_figure_has_one_panel_per_column(fitted):
    model, X, _ = fitted
    figure = explanation.partial_dependence_figure(model, X, ["driver", "region"])
    assert isinstance(figure, Figure)
    assert [a.get_xlabel() for a in figure.axes if a.get_visible()] == ["driver", "region"]


def test_the_hard_region_is_the_first_slice_and_small_slices_come_last(fitted):
    model, X, y = fitted
    X = X.assign(plan=np.where(np.arange(len(X)) < 10, "rare", "common"))
    assert slicing.default_slice_columns(X) == ["region", "plan"]
    table = slicing.slice_metrics(
        model, X, y, task="classification", columns=["region", "plan"], min_rows=30
    )
    assert (table.iloc[0]["column"], table.iloc[0]["level"]) == ("region", "hard")
    assert table.iloc[0]["roc_auc"] < 0.7 and table.iloc[0]["drop"] > 0.15
    assert table.iloc[-1]["level"] == "rare" and table.iloc[-1]["small"]
    assert table.groupby("column")["rows"].sum().tolist() == [len(X), len(X)]
    assert {"accuracy", "precision", "recall", "f1", "roc_auc"} <= set(table.columns)
    assert table.attrs["metric"] == "roc_auc"
    assert slicing.slice_summary(table).startswith("The weakest slice is region = 'hard'")


def test_missing_values_form_their_own_slice_and_unknown_columns_are_refused(fitted):
    model, X, y = fitted
    X = X.assign(region=X["region"].where(np.arange(len(X)) % 10 != 0))
    table = slicing.slice_metrics(model, X, y, task="classification", columns=["region"])
    assert slicing.MISSING in set(table["level"]) and table["rows"].sum() == len(X)
    with pytest.raises(InvalidParameterError, match=r"slice columns \['plan'\]"):
        slicing.slice_metrics(model, X, y, task="classification", columns=["plan"])


def test_regression_slices_put_the_largest_error_first() -> None:
    rng = np.random.default_rng(2)
    X = pd.DataFrame({"a": rng.normal(size=400), "group": np.repeat(["calm", "wild"], 200)})
    y = pd.Series(2 * X["a"] + np.where(X["group"] == "wild", 2.0, 0.1) * rng.normal(size=400))
    model = LinearRegression().fit(X[["a"]], y)
    table = slicing.slice_metrics(model, X, y, task="regression", columns=["group"])
    assert table.attrs["metric"] == "rmse"
    assert table["level"].tolist() == ["wild", "calm"] and table.iloc[0]["drop"] > 0
