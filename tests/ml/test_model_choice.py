"""Unit tests of nbtools.ml.model_choice and the per-model encodings: the family comparison,
target encoding of a high-cardinality column, the time budget, and folds that follow the split."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import TargetEncoder

from nbtools.errors import InvalidParameterError
from nbtools.ml import cleaning, features, model_choice, modeling
from nbtools.ml.encoding import NativeCategories, auto_encoding
from nbtools.ml.modeling import TrainParams

NO_SELECTION = features.FeatureParams(selection="none", drop_correlated=1.0)


def _table(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """A binary task whose signal sits in a 2,000-level id, a 3-level category and a number."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 2000, n)
    effect = np.random.default_rng(99).normal(0, 2, 2000)  # the same per-id effect every call
    color = rng.choice(["red", "green", "blue"], n)
    x = rng.normal(size=n)
    x[rng.random(n) < 0.1] = np.nan
    logit = effect[ids] + (color == "red") * 1.0 + np.nan_to_num(x)
    y = pd.Series(np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no"), name="y")
    X = pd.DataFrame({"shop": [f"s{i}" for i in ids], "color": color, "x": x})
    X[["shop", "color"]] = X[["shop", "color"]].astype("str")
    return X, y


def _factory(X: pd.DataFrame, task: str = "classification", params=None):
    numeric, categorical = cleaning.column_types(X, None)
    return model_choice.pipeline_factory(
        params or cleaning.CleaningParams(outliers="none"),
        NO_SELECTION,
        numeric,
        categorical,
        task=task,
        seed=0,
        levels={c: int(X[c].nunique()) for c in categorical},
    )


# --- encodings -------------------------------------------------------------------------------


def test_auto_encoding_suits_the_model_and_the_number_of_levels():
    def auto(model: str, levels: int, target: str | None = "auto") -> str:
        return auto_encoding(model, levels, max_categories=20, target_type=target)

    assert auto("boosting", 200) == "native"
    assert auto("boosting", 300) == "target"
    assert auto("linear", 10) == "onehot"
    assert auto("linear", 21) == "target"
    assert auto("forest", 5) == "ordinal"
    assert auto("linear", 500, target=None) == "onehot"  # clustering: no target to average


def test_each_family_gets_its_preprocessing():
    X, _ = _table(1000)  # about 800 shops, 3 colors
    make = _factory(X)
    steps = {
        family: dict(
            (name, cols) for name, _, cols in make(family).named_steps["preprocess"].transformers
        )
        for family in ("hist_gradient_boosting", "logistic_regression", "random_forest")
    }
    assert steps["hist_gradient_boosting"]["categorical_most_frequent_target"] == ["shop"]
    assert steps["hist_gradient_boosting"]["categorical"] == ["color"]
    native = make("hist_gradient_boosting").named_steps["preprocess"].transformers
    assert isinstance(dict((n, t) for n, t, _ in native)["categorical"][-1], NativeCategories)
    assert steps["logistic_regression"]["categorical"] == ["color"]  # one-hot


def test_native_categories_reach_gradient_boosting_and_unseen_levels_are_missing():
    X, y = _table(600)
    model = _factory(X)("hist_gradient_boosting").fit(X, y)
    booster = model.named_steps["model"]
    assert isinstance(booster, HistGradientBoostingClassifier)
    names = list(booster.feature_names_in_)
    assert booster.is_categorical_[names.index("color")]
    assert not booster.is_categorical_[names.index("shop")]  # target-encoded: a number
    unseen = X.head(3).assign(color="purple", shop="never seen")
    assert model.predict_proba(unseen).shape == (3, 2)


def test_a_high_cardinality_column_keeps_its_signal_through_target_encoding():
    X, y = _table(6000)
    X_test, y_test = _table(3000, seed=1)
    model = _factory(X)("hist_gradient_boosting").fit(X, y)
    encoder = model.named_steps["preprocess"].named_transformers_[
        "categorical_most_frequent_target"
    ]["encode"]
    assert isinstance(encoder, TargetEncoder)
    with_ids = roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])
    without = _factory(X.drop(columns="shop"))("hist_gradient_boosting")
    without.fit(X.drop(columns="shop"), y)
    no_ids = roc_auc_score(y_test, without.predict_proba(X_test.drop(columns="shop"))[:, 1])
    assert with_ids > no_ids + 0.05


def test_target_encoding_is_cross_fitted_on_the_training_rows():
    X, y = _table(2000)
    preprocess = _factory(X)("hist_gradient_boosting").named_steps["preprocess"]
    cross_fitted = preprocess.fit_transform(X, y)["shop"]
    refitted = preprocess.transform(X)["shop"]
    # a row's own target enters the means of transform, never those of fit_transform
    assert not np.allclose(cross_fitted, refitted)


def test_target_encoding_needs_a_target():
    params = cleaning.CleaningParams(encoding="target")
    pre = cleaning.build_preprocessor(params, [], ["c"], target_type="auto")
    assert pre.transformers[0][1]["encode"].target_type == "auto"
    with pytest.raises(InvalidParameterError, match="clustering task has none"):
        cleaning.build_preprocessor(params, [], ["c"])


# --- comparison and budget -------------------------------------------------------------------


def test_auto_compares_three_families_on_validation_and_keeps_a_surely_better_one():
    X, y = _table(1200)
    X_valid, y_valid = _table(400, seed=2)
    lines: list[str] = []
    choice = model_choice.choose_model(
        _factory(X),
        X,
        y,
        X_valid,
        y_valid,
        TrainParams(search="none", time_budget=600),
        task="classification",
        seed=0,
        report=lines.append,
    )
    compared = choice.table[choice.table["step"] == "compare"]
    assert list(compared["family"]) == list(model_choice.AUTO_CANDIDATES["classification"])
    assert compared["validation_score"].notna().all() and compared["fit_seconds"].notna().all()
    scores = compared.set_index("family")["validation_score"]
    assert choice.family in ("hist_gradient_boosting", scores.idxmax())
    assert choice.validation_score == pytest.approx(scores[choice.family])
    assert 0.5 < choice.cv_score <= 1
    assert not choice.budget_hit
    assert any("hist_gradient_boosting: roc_auc" in line for line in lines)


def _linear_table(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 8)), columns=[f"x{i}" for i in range(8)])
    return X, X.sum(axis=1) + rng.normal(scale=0.1, size=n)


def _choose_regression(n_valid: int) -> model_choice.Choice:
    X, y = _linear_table(300, seed=0)
    X_valid, y_valid = _linear_table(n_valid, seed=1)
    return _choose_among_regressors(X, y, X_valid, y_valid)


def _choose_among_regressors(X, y, X_valid, y_valid) -> model_choice.Choice:
    """``family=auto`` on a regression table, with defaults only and room in the budget."""
    return model_choice.choose_model(
        _factory(X, task="regression"),
        X,
        y,
        X_valid,
        y_valid,
        TrainParams(search="none", time_budget=600),
        task="regression",
        seed=0,
        report=None,
    )


def test_a_family_that_is_surely_better_replaces_gradient_boosting():
    # y is a sum of the features: a linear model is far better, on any number of rows
    assert _choose_regression(200).family == "ridge"


def test_a_gain_inside_the_noise_keeps_gradient_boosting():
    # a target that no feature predicts: every family's ROC AUC is chance, one of them highest
    rng = np.random.default_rng(5)
    X = pd.DataFrame(rng.normal(size=(500, 5)), columns=[f"x{i}" for i in range(5)])
    y = pd.Series(rng.choice(["no", "yes"], 500), name="y")
    choice = model_choice.choose_model(
        _factory(X),
        X[:300],
        y[:300],
        X[300:],
        y[300:],
        TrainParams(search="none", time_budget=600),
        task="classification",
        seed=0,
        report=None,
    )
    compared = choice.table[choice.table["step"] == "compare"].set_index("family")
    assert compared["validation_score"].idxmax() != "hist_gradient_boosting"
    assert choice.family == "hist_gradient_boosting"


def _tune_on_a_weak_signal(table_seed: int, **stated) -> model_choice.Choice:
    """Tune gradient boosting on 400 rows of a weak signal, scored on 200 validation rows."""
    rng = np.random.default_rng(table_seed)
    X = pd.DataFrame(rng.normal(size=(600, 4)), columns=[f"x{i}" for i in range(4)])
    y = pd.Series(np.where(X["x0"] + rng.normal(scale=2, size=600) > 0, "yes", "no"), name="y")
    params = {"search": "random", "n_iter": 6, "cv_folds": 3, "time_budget": 600, **stated}
    return model_choice.choose_model(
        _factory(X),
        X[:400],
        y[:400],
        X[400:],
        y[400:],
        TrainParams(family="hist_gradient_boosting", **params),
        task="classification",
        seed=0,
        report=None,
    )


def test_tuned_hyperparameters_replace_the_defaults_only_when_surely_better():
    # table 0: the tuned model scores higher on validation, by less than the noise of 200 rows
    noisy = _tune_on_a_weak_signal(0)
    compared, tuned = noisy.table["validation_score"]
    assert tuned > compared
    assert noisy.params == {}
    assert noisy.validation_score == pytest.approx(compared)
    assert noisy.table["note"].iloc[-1].endswith("defaults kept (not surely better on validation)")
    # table 3: the tuned model gains 0.04 of ROC AUC, surely more than noise
    clear = _tune_on_a_weak_signal(3)
    assert clear.params and clear.table["note"].iloc[-1].endswith("; kept")
    assert clear.validation_score == pytest.approx(clear.table["validation_score"].iloc[-1])


def test_a_stated_space_is_the_users_choice_and_is_kept():
    # the tuning panel's chosen candidate reaches the batch run as a one-point grid
    stated = _tune_on_a_weak_signal(0, search="grid", space={"max_iter": [7], "max_depth": [2]})
    assert stated.params.items() >= {"max_iter": 7, "max_depth": 2}.items()
    assert stated.table["note"].iloc[-1].endswith("kept (the stated space)")


def _choose_with_a_spent_budget(**stated) -> tuple[model_choice.Choice, list[str]]:
    """Choose on 600 rows with a budget spent before the first fit ends; also the output."""
    X, y = _table(600)
    lines: list[str] = []
    choice = model_choice.choose_model(
        _factory(X),
        X,
        y,
        X.head(200),
        y.head(200),
        TrainParams(time_budget=1e-6, **stated),
        task="classification",
        seed=0,
        report=lines.append,
    )
    return choice, lines


def test_a_spent_budget_keeps_the_best_so_far_and_says_so():
    choice, lines = _choose_with_a_spent_budget(n_iter=5, cv_folds=2)
    assert choice.budget_hit
    assert choice.family == "hist_gradient_boosting"  # the first family always runs
    assert list(choice.table["note"])[1:] == ["skipped: budget"] * 3
    assert any("time budget" in line and "best model so far" in line for line in lines)


def test_the_cross_validation_of_the_defaults_stops_at_a_spent_budget_after_two_folds():
    choice, lines = _choose_with_a_spent_budget(family="hist_gradient_boosting", cv_folds=4)
    assert choice.budget_hit and 0.5 < choice.cv_score <= 1
    assert any("2 of 4 folds: the time budget is spent" in line for line in lines)


def test_the_automatic_budget_is_half_the_expected_final_fit_within_its_bounds():
    # 2 s on a 20,000-row sample, final fit on 2,000,000 rows: about 200 s expected, 100 s budget
    budget, why = model_choice.auto_budget(2.0, 20_000, 2_000_000)
    assert budget == pytest.approx(100.0) and why.startswith("half the expected final fit")
    # a small table: room for FIRST_FITS fits like the first, however long that one took
    for first_fit in (0.05, 0.2):
        budget, why = model_choice.auto_budget(first_fit, 1_000, 1_250)
        assert budget == pytest.approx(model_choice.FIRST_FITS * first_fit)
        assert why.startswith(f"{model_choice.FIRST_FITS} times the first fit")
    budget, _ = model_choice.auto_budget(30.0, 20_000, 2_000_000)
    assert budget == model_choice.MAX_BUDGET


def test_an_unstated_budget_comes_from_the_first_fit_and_is_said():
    X, y = _table(600)
    lines: list[str] = []
    choice = model_choice.choose_model(
        _factory(X),
        X,
        y,
        X.head(200),
        y.head(200),
        TrainParams(search="none"),
        task="classification",
        seed=0,
        report=lines.append,
    )
    first_fit = choice.table.iloc[0]["fit_seconds"]  # rounded to 0.01 s
    expected, _ = model_choice.auto_budget(first_fit, len(X), len(X) + 200)  # train+valid.
    assert choice.budget == pytest.approx(expected, abs=model_choice.FIRST_FITS * 0.005)
    assert any(line.startswith(f"Time budget {choice.budget:.0f} s: ") for line in lines)


def test_a_search_past_its_deadline_stops_with_the_candidates_so_far():
    X, y = _table(400)
    pipeline = _factory(X)("logistic_regression")
    params = TrainParams(family="logistic_regression", search="random", n_iter=8, cv_folds=2)
    fitted = modeling.search(
        pipeline, X, y, params, task="classification", seed=0, deadline=time.monotonic() - 1
    )
    assert fitted.stopped_early_
    assert len(fitted.cv_results_["params"]) == 1
    assert hasattr(fitted, "best_estimator_")


def test_the_final_fit_uses_training_and_validation_rows_by_default():
    train = pd.DataFrame({"x": [1, 2, 3], "t": [1, 2, 3]})
    valid = pd.DataFrame({"x": [4], "t": [0]})
    split = {"strategy_used": "time", "time_column": "t"}
    rows = model_choice.final_rows(TrainParams(), train, valid, split)
    assert list(rows["x"]) == [4, 1, 2, 3]  # both, in time order
    assert len(model_choice.final_rows(TrainParams(final_fit="train"), train, valid, split)) == 3


def test_space_with_auto_family_asks_for_a_family():
    X, y = _table(300)
    with pytest.raises(InvalidParameterError, match="Name the family too"):
        model_choice.choose_model(
            _factory(X),
            X,
            y,
            X,
            y,
            TrainParams(space={"C": [1.0]}),
            task="classification",
            seed=0,
            report=None,
        )


def test_class_weight_is_a_stated_parameter_that_reaches_the_estimator():
    estimator = modeling.make_estimator(
        "random_forest", "classification", seed=0, class_weight="balanced"
    )
    assert estimator.class_weight == "balanced"
    assert modeling.make_estimator("ridge", "regression", seed=0, class_weight="balanced")
    for family in modeling.FAMILIES["classification"].values():
        assert "class_weight" not in family.distributions and "class_weight" not in family.grid


# --- folds that follow the split -------------------------------------------------------------


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_group_folds_never_put_one_group_on_both_sides(task):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"customer": rng.integers(0, 40, 400), "y": rng.integers(0, 2, 400)})
    split = {"strategy_used": "group", "group_column": "customer"}
    folds, reason = model_choice.cv_splitter(split, task, 4, seed=0)
    groups = model_choice.split_groups(frame, split)
    assert "customer" in reason
    for train_rows, test_rows in folds.split(frame, frame["y"], groups):
        assert not set(groups.iloc[train_rows]) & set(groups.iloc[test_rows])


def test_time_folds_always_train_on_the_past():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"day": rng.permutation(300), "y": rng.normal(size=300)})
    split = {"strategy_used": "time", "time_column": "day"}
    ordered = model_choice.order_for_split(frame, split)
    folds, _ = model_choice.cv_splitter(split, "regression", 3, seed=0)
    for train_rows, test_rows in folds.split(ordered):
        assert ordered["day"].iloc[train_rows].max() < ordered["day"].iloc[test_rows].min()


def test_the_search_uses_the_group_folds():
    X, y = _table(400)
    groups = pd.Series(np.arange(400) % 20)
    split = {"strategy_used": "group", "group_column": "g"}
    folds, _ = model_choice.cv_splitter(split, "classification", 2, seed=0)
    seen: list[tuple[set, set]] = []

    class Recording(type(folds)):  # the same folds, remembering the groups of each side
        def split(self, X, y=None, groups=None):
            for train_rows, test_rows in super().split(X, y, groups):
                seen.append((set(groups.iloc[train_rows]), set(groups.iloc[test_rows])))
                yield train_rows, test_rows

    recording = Recording(2, shuffle=True, random_state=0)
    params = TrainParams(family="logistic_regression", search="random", n_iter=1, cv_folds=2)
    modeling.search(
        _factory(X)("logistic_regression"),
        X,
        y,
        params,
        task="classification",
        seed=0,
        cv=recording,
        groups=groups,
    )
    assert seen and all(not train & test for train, test in seen)


def test_a_forest_whose_trees_would_overrun_the_deadline_is_given_up_after_a_probe():
    X, y = _table(600)
    forest = _factory(X)("random_forest")
    model, seconds, expected = model_choice.fit_within(forest, X, y, time.monotonic() + 1e-3)
    assert model is None
    assert expected > seconds > 0  # the probe grew a tenth of the trees: the rest is predicted
    assert forest.named_steps["model"].get_params()["n_estimators"] == 100  # settings restored


def test_a_forest_grown_in_two_steps_equals_one_grown_at_once():
    X, y = _table(600)
    probed, _seconds, _expected = model_choice.fit_within(
        _factory(X)("random_forest"), X, y, time.monotonic() + 600
    )
    assert probed is not None
    settings = probed.named_steps["model"].get_params()
    assert (settings["n_estimators"], settings["warm_start"], settings["n_jobs"]) == (
        100,
        False,
        None,
    )
    at_once = _factory(X)("random_forest").fit(X, y)
    np.testing.assert_allclose(probed.predict_proba(X), at_once.predict_proba(X))


def _choose_on_a_sample(X, y, X_valid, y_valid, monkeypatch) -> model_choice.Choice:
    from nbtools.ml import _comparison

    monkeypatch.setattr(_comparison, "COMPARE_ROWS", 100)  # a "large" table of a few rows
    return _choose_among_regressors(X, y, X_valid, y_valid)


def test_a_family_ahead_on_a_sample_is_checked_on_every_row_and_kept_if_still_ahead(monkeypatch):
    X, y = _linear_table(1000, seed=0)
    X_valid, y_valid = _linear_table(300, seed=1)
    choice = _choose_on_a_sample(X, y, X_valid, y_valid, monkeypatch)
    confirmed = choice.table[choice.table["step"] == "confirm"].set_index("family")
    assert set(confirmed.index) == {"hist_gradient_boosting", "ridge"}
    assert (confirmed["rows"] == 1000).all()
    assert choice.family == "ridge"  # a sum of the features: linear wins on any number of rows


def test_a_family_ahead_only_on_a_sample_gives_way_to_one_that_gains_from_every_row(monkeypatch):
    # one linear column and one wavy one: on 100 rows ridge's straight line beats the trees,
    # with 3,000 rows the trees follow the wave too
    def table(n, seed):
        rng = np.random.default_rng(seed)
        X = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.uniform(-3, 3, size=n)})
        return X, X["x0"] + 0.4 * np.sin(3 * X["x1"]) + rng.normal(scale=0.1, size=n)

    X, y = table(3000, seed=0)
    X_valid, y_valid = table(500, seed=1)
    choice = _choose_on_a_sample(X, y, X_valid, y_valid, monkeypatch)
    table = choice.table.set_index(["step", "family"])["validation_score"]
    assert table["compare"].idxmax() == "ridge"
    assert table["confirm"].idxmax() == "hist_gradient_boosting"
    assert choice.family == "hist_gradient_boosting"
