"""Unit tests of nbtools.ml.modeling: parameters, model families, search and MLflow logging."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import Model, infer_signature
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import ParameterSampler

from nbtools import demo
from nbtools.errors import InvalidParameterError
from nbtools.ml import cleaning, features, modeling
from nbtools.ml.modeling import TrainParams

FAST = {"n_iter": 2, "cv_folds": 2}
SELECTION = {"classification": "kbest", "regression": "kbest", "clustering": "threshold"}


@pytest.fixture(scope="module")
def churn() -> tuple[pd.DataFrame, pd.Series, list[str], list[str]]:
    """A small cleaned churn table: features, target and the two column lists."""
    cleaned, _ = cleaning.apply(
        demo.make_churn(300, seed=0), cleaning.CleaningParams(), target="churned"
    )
    cleaned = cleaned.drop(columns=["signup_date"])
    numeric, categorical = cleaning.column_types(cleaned, "churned")
    return cleaned.drop(columns=["churned"]), cleaned["churned"], numeric, categorical


def _pipeline(churn, family: str, task: str):
    _, _, numeric, categorical = churn
    return modeling.build_pipeline(
        cleaning.build_preprocessor(cleaning.CleaningParams(), numeric, categorical),
        features.build_selector(features.FeatureParams(selection=SELECTION[task]), task),
        modeling.make_estimator(family, task, seed=0),
    )


@pytest.fixture
def tracking(tmp_path: Path, migrated_db: Path):
    """An active MLflow run in a throwaway SQLite store; the previous tracking URI is restored."""
    shutil.copy(migrated_db, tmp_path / "mlflow.db")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = mlflow.create_experiment("test", artifact_location=str(tmp_path / "artifacts"))
    with mlflow.start_run(experiment_id=experiment) as run:
        yield run
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def fitted_classifier(churn):
    X, y, _, _ = churn
    params = TrainParams(family="logistic_regression", **FAST)
    pipeline = _pipeline(churn, "logistic_regression", "classification")
    return modeling.search(pipeline, X, y, params, task="classification", seed=0).best_estimator_


# --- parameters ------------------------------------------------------------------------------


def test_default_params_are_valid_and_round_trip():
    params = TrainParams().validate()
    assert params.family == "auto" and params.search == "auto"
    assert TrainParams.from_dict(params.to_dict()) == params
    assert json.loads(json.dumps(params.to_dict())) == params.to_dict()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"n_iter": 0},
            "The 'n_iter' parameter of stage 'train' must be an int in the range [1, 1000]. "
            "Got 0 instead.",
        ),
        (
            {"cv_folds": 1},
            "The 'cv_folds' parameter of stage 'train' must be an int in the range [2, 20]. "
            "Got 1 instead.",
        ),
        (
            {"search": "bayes"},
            "The 'search' parameter of stage 'train' must be one of 'auto', 'grid', 'random', "
            "'halving', 'none'. Got 'bayes' instead.",
        ),
        (
            {"time_budget": 0.0},
            "The 'time_budget' parameter of stage 'train' must be a number of seconds > 0",
        ),
        (
            {"class_weight": "balanced_subsample"},
            "The 'class_weight' parameter of stage 'train' must be one of 'none', 'balanced'.",
        ),
        ({"n_iter": True}, "The 'n_iter' parameter of stage 'train' must be an int"),
        (
            {"n_jobs": 0},
            "The 'n_jobs' parameter of stage 'train' must be a non-zero int or None. "
            "Got 0 instead.",
        ),
        ({"family": "xgboost"}, "The 'family' parameter of stage 'train' must be one of 'auto'"),
        ({"scoring": "acc"}, "The 'scoring' parameter of stage 'train' must be 'auto'"),
    ],
)
def test_bad_params_raise_with_the_style_message(changes, message):
    with pytest.raises(InvalidParameterError) as error:
        TrainParams(**changes).validate()
    assert str(error.value).startswith(message)


def test_family_and_scoring_must_suit_the_task():
    with pytest.raises(InvalidParameterError, match=r"for a classification task\. Got 'ridge'"):
        TrainParams(family="ridge").validate("classification")
    with pytest.raises(InvalidParameterError, match=r"for a clustering task\. Got 'accuracy'"):
        TrainParams(scoring="accuracy").validate("clustering")
    with pytest.raises(InvalidParameterError, match="supervised scorer for a regression task"):
        TrainParams(scoring="silhouette").validate("regression")
    with pytest.raises(InvalidParameterError, match="task must be one of"):
        TrainParams().validate("forecasting")


def test_from_dict_rejects_unknown_names_and_bad_values():
    with pytest.raises(InvalidParameterError, match="Stage 'train' has no parameter 'folds'"):
        TrainParams.from_dict({"folds": 3})
    with pytest.raises(InvalidParameterError, match="'cv_folds' parameter of stage 'train'"):
        TrainParams.from_dict({"cv_folds": 100})


def test_auto_resolves_to_a_fixed_family_and_scorer_per_task():
    assert isinstance(modeling.make_estimator("auto", "clustering", seed=0), KMeans)
    assert modeling.get_family("auto", "regression").name == "hist_gradient_boosting"
    assert modeling.resolve_scoring("auto", "classification", pd.Series(["a", "b"])) == "roc_auc"
    assert modeling.resolve_scoring("auto", "classification", pd.Series([1, 2, 3])) == "f1_macro"
    assert (
        modeling.resolve_scoring("auto", "regression", pd.Series([1.0]))
        == "neg_root_mean_squared_error"
    )
    assert modeling.resolve_scoring("auto", "clustering", None) == "silhouette"


def test_every_family_offers_a_grid_and_a_wider_random_space():
    for families in modeling.FAMILIES.values():
        for family in families.values():
            grid = family.search_space("grid")
            distributions = family.search_space("random")
            assert grid and all(isinstance(values, list) for values in grid.values())
            assert distributions.keys() >= grid.keys()
            assert all(name.startswith("model__") for name in distributions)
            estimator = family.make_estimator(seed=0)
            for candidate in ParameterSampler(distributions, n_iter=3, random_state=0):
                estimator.set_params(**{k.removeprefix("model__"): v for k, v in candidate.items()})


class _NoTorch:
    """An import finder that fails every import of torch, as where PyTorch is not installed."""

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name.split(".")[0] == "torch":
            raise ImportError("No module named 'torch'")


def test_the_torch_family_without_its_extra_names_the_install_command(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", [_NoTorch(), *sys.meta_path])
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    for task in ("classification", "regression"):
        with pytest.raises(InvalidParameterError, match=r"pip install 'nbtools\[torch\]'"):
            TrainParams(family="torch_mlp").validate(task)
    with pytest.raises(InvalidParameterError, match="must be one of"):
        TrainParams(family="torch_mlp").validate("clustering")


# --- search ----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["grid", "random", "halving"])
def test_each_search_strategy_tunes_the_model_step(churn, strategy):
    X, y, _, _ = churn
    params = TrainParams(family="logistic_regression", search=strategy, **FAST)
    pipeline = _pipeline(churn, "logistic_regression", "classification")
    fitted = modeling.search(pipeline, X, y, params, task="classification", seed=0)

    assert fitted.best_score_ > 0.6  # ROC AUC, better than chance
    assert set(fitted.best_estimator_.named_steps) == {"create", "preprocess", "select", "model"}
    assert set(fitted.best_estimator_.predict(X.head(5))) <= {"yes", "no"}
    best = modeling.best_params(fitted)
    assert set(best) == {"C"}  # class weights are a stated choice, never searched silently
    json.dumps(best)  # plain Python values, ready for model.json

    table = modeling.search_results(fitted)
    assert table.loc[0, "rank"] == 1
    assert {"mean_score", "std_score", "mean_fit_seconds", "C"} <= set(table.columns)
    if strategy == "halving":
        assert {"iteration", "n_resources"} <= set(table.columns)
    else:
        assert table["mean_score"].is_monotonic_decreasing


def test_regression_and_clustering_searches(churn):
    X, _, _, _ = churn
    y = X["monthly_charges"].fillna(60.0) * 2 + X["tenure_months"]
    X = X.drop(columns=["monthly_charges"])
    _, _, numeric, categorical = churn
    numeric = [c for c in numeric if c != "monthly_charges"]
    small = (X, None, numeric, categorical)

    params = TrainParams(family="ridge", **FAST)
    regression = modeling.search(
        _pipeline(small, "ridge", "regression"), X, y, params, task="regression", seed=0
    )
    assert regression.best_score_ < 0  # negative RMSE
    assert np.isfinite(regression.best_estimator_.predict(X.head(3))).all()

    clustering = modeling.search(
        _pipeline(small, "kmeans", "clustering"),
        X,
        None,
        TrainParams(**FAST),
        task="clustering",
        seed=0,
    )
    assert -1 <= clustering.best_score_ <= 1
    assert modeling.best_params(clustering)["n_clusters"] >= 2
    assert len(set(clustering.best_estimator_.predict(X))) >= 2


def test_auto_family_searches_gradient_boosting(churn):
    X, y, _, _ = churn
    fitted = modeling.search(
        _pipeline(churn, "auto", "classification"),
        X,
        y,
        TrainParams(**FAST),
        task="classification",
        seed=0,
    )
    assert type(fitted.best_estimator_[-1]).__name__ == "HistGradientBoostingClassifier"
    assert {"learning_rate", "max_leaf_nodes"} <= set(modeling.best_params(fitted))


def test_search_refuses_a_model_step_of_another_family(churn):
    X, y, _, _ = churn
    pipeline = _pipeline(churn, "logistic_regression", "classification")
    with pytest.raises(InvalidParameterError, match="must be a RandomForestClassifier"):
        modeling.search(
            pipeline,
            X,
            y,
            TrainParams(family="random_forest", **FAST),
            task="classification",
            seed=0,
        )


def test_search_refuses_more_folds_than_rows_of_the_rarest_class(churn):
    X, y, _, _ = churn
    y = y.copy()
    y.iloc[:2] = "maybe"
    pipeline = _pipeline(churn, "logistic_regression", "classification")
    params = TrainParams(family="logistic_regression", search="random", n_iter=1, cv_folds=3)
    with pytest.raises(InvalidParameterError) as error:
        modeling.search(pipeline, X, y, params, task="classification", seed=0)
    assert str(error.value) == (
        "The 'cv_folds' parameter of stage 'train' must not exceed the training rows of the "
        "rarest class: class 'maybe' has 2. Got 3 instead."
    )


def test_search_is_reproducible_with_the_seed(churn):
    X, y, _, _ = churn
    params = TrainParams(family="logistic_regression", **FAST)
    runs = [
        modeling.search(
            _pipeline(churn, "logistic_regression", "classification"),
            X,
            y,
            params,
            task="classification",
            seed=7,
        )
        for _ in range(2)
    ]
    assert runs[0].best_params_ == runs[1].best_params_
    assert runs[0].best_score_ == runs[1].best_score_


def test_silhouette_scorer_ignores_y_and_scores_one_cluster_minus_one():
    X, _ = make_blobs(n_samples=90, centers=[[0, 0], [8, 0], [0, 8]], random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b"])
    good = modeling.make_estimator("kmeans", "clustering", seed=0).set_params(n_clusters=3)
    assert modeling.silhouette_scorer(good.fit(frame), frame) > 0.5
    one = modeling.make_estimator("kmeans", "clustering", seed=0).set_params(n_clusters=1)
    assert modeling.silhouette_scorer(one.fit(frame), frame) == -1.0


# --- MLflow ----------------------------------------------------------------------------------


def test_pip_requirements_are_pinned_to_the_installed_versions():
    requirements = modeling.pip_requirements()
    for package in ("scikit-learn", "pandas", "numpy", "scipy", "cloudpickle", "nbtools"):
        assert f"{package}=={importlib.metadata.version(package)}" in requirements


def test_logged_model_serves_missing_values_and_unseen_categories(
    churn, fitted_classifier, tracking
):
    X, _, _, _ = churn
    uri = modeling.log_model(fitted_classifier, X, task="classification")

    assert mlflow.get_logged_model(uri.removeprefix("models:/")).source_run_id == (
        tracking.info.run_id
    )
    model = mlflow.pyfunc.load_model(uri)
    signature = model.metadata.signature
    assert signature is not None
    inputs = {spec.name: spec.type.name for spec in signature.inputs.inputs}
    assert list(inputs) == list(X.columns)
    assert inputs["tenure_months"] == "double"  # integers declared as doubles: NaN allowed

    rows = modeling.model_input(X.head(3)).copy()
    rows.loc[rows.index[0], "tenure_months"] = np.nan
    rows.loc[rows.index[1], "monthly_charges"] = np.nan
    rows.loc[rows.index[2], "region"] = "atlantis"  # never seen in training
    predictions = model.predict(rows)
    assert set(np.asarray(predictions)) <= {"yes", "no"} and len(predictions) == 3

    folder = Path(mlflow.artifacts.download_artifacts(uri))
    requirements = (folder / "requirements.txt").read_text().split()
    assert set(modeling.pip_requirements()) <= set(requirements)
    assert Model.load(folder).metadata["task"] == "classification"
    assert (folder / "input_example.json").is_file()


@pytest.mark.parametrize(("family", "task"), [("ridge", "regression"), ("kmeans", "clustering")])
def test_regression_and_clustering_models_log_and_predict_numbers(churn, tracking, family, task):
    X, _, _, _ = churn
    y = X["age"].fillna(45.0) if task == "regression" else None
    pipeline = _pipeline(churn, family, task).fit(X, y)
    model = mlflow.pyfunc.load_model(modeling.log_model(pipeline, X, task=task))
    predictions = np.asarray(model.predict(modeling.model_input(X.head(4))))
    assert predictions.shape == (4,) and np.issubdtype(predictions.dtype, np.number)
    assert model.metadata.metadata["task"] == task


def test_saved_model_loads_with_probabilities_and_is_replaced_on_rerun(
    churn, fitted_classifier, tmp_path
):
    X, _, _, _ = churn
    path = tmp_path / "model"
    modeling.save_model(fitted_classifier, path, X, task="classification")
    modeling.save_model(fitted_classifier, path, X, task="classification")  # a re-run

    loaded = mlflow.sklearn.load_model(str(path))
    np.testing.assert_allclose(
        loaded.predict_proba(X.head(5)), fitted_classifier.predict_proba(X.head(5))
    )
    assert "cloudpickle" in (path / "MLmodel").read_text()
    assert set(modeling.pip_requirements()) <= set((path / "requirements.txt").read_text().split())


def test_model_input_casts_integers_only():
    frame = pd.DataFrame({"n": [1, 2], "x": [0.5, 1.5], "s": ["a", "b"], "b": [True, False]})
    cast = modeling.model_input(frame)
    assert cast["n"].dtype == "float64"
    assert cast["s"].dtype == frame["s"].dtype and cast["b"].dtype == bool


def test_build_pipeline_names_its_steps():
    pipeline = modeling.build_pipeline("passthrough", "passthrough", LogisticRegression())
    assert [name for name, _ in pipeline.steps] == ["create", "preprocess", "select", "model"]


def test_a_signature_from_a_few_rows_declares_what_every_row_would() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "x": rng.normal(size=6000),
            "n": rng.integers(0, 9, 6000).astype("float64"),
            "city": rng.choice(["a", "b"], 6000).astype(object),
        }
    )
    X.loc[5000, "x"] = np.nan  # missing only far beyond the first rows
    X.loc[5500, "city"] = None

    rows = modeling.signature_rows(X)

    assert len(rows) == modeling.SIGNATURE_ROWS + 2
    assert infer_signature(rows).inputs == infer_signature(X).inputs
    assert not infer_signature(rows).inputs.input_dict()["x"].required
    assert infer_signature(rows).inputs.input_dict()["n"].required
