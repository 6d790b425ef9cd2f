"""Tests of nbtools.ops.registry on a throwaway SQLite registry with real logged models."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.datasets import make_classification
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from nbtools.errors import InvalidParameterError, ModelRegistryError
from nbtools.ops import registry

NAME = "churn-model"


@pytest.fixture
def experiment(tmp_path: Path, migrated_db: Path) -> str:
    """Point MLflow at a fresh copy of the template store; return an experiment id."""
    db = tmp_path / "mlflow.db"
    shutil.copy(migrated_db, db)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    try:
        yield mlflow.create_experiment("test", artifact_location=(tmp_path / "art").as_uri())
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series]:
    X, y = make_classification(
        n_samples=300, n_features=4, n_informative=3, n_redundant=0, class_sep=2.0, random_state=0
    )
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    return frame, pd.Series(np.where(y == 1, "yes", "no"), name="churned")


def log(model: object, experiment: str) -> str:
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            pip_requirements=["scikit-learn"],
            serialization_format="cloudpickle",
        )
    return info.model_uri


def deploy(
    model: object, experiment: str, X: pd.DataFrame, y: pd.Series, **gate_options: object
) -> tuple[str, registry.GateDecision, list[str]]:
    """What the deploy stage does: register, load the champion, gate, promote."""
    version = registry.register(log(model, experiment), NAME, tags={"origin": "test"})
    champion, champion_model = registry.load_champion(NAME)
    decision = registry.gate(
        model,
        champion_model,
        X,
        y,
        task="classification",
        champion_version=champion,
        **gate_options,
    )
    return version, decision, registry.promote(NAME, version, decision)


def good(X: pd.DataFrame, y: pd.Series) -> LogisticRegression:
    return LogisticRegression().fit(X, y)


def poor(X: pd.DataFrame, y: pd.Series) -> DummyClassifier:
    return DummyClassifier(strategy="prior").fit(X, y)


def test_unknown_model_has_no_champion(experiment: str) -> None:
    assert registry.champion_version("never-registered") is None
    assert registry.load_champion("never-registered") == (None, None)


def test_first_model_becomes_champion_and_loads(experiment: str, data) -> None:
    X, y = data
    version, decision, aliases = deploy(good(X, y), experiment, X, y)
    assert decision.promoted and decision.champion_score is None
    assert decision.metric == "roc_auc" and decision.challenger_score > 0.8
    assert "no champion" in decision.reason
    assert aliases == ["challenger", "champion"]
    assert registry.champion_version(NAME).version in (version, int(version))
    loaded = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    assert set(loaded.predict(X.head(10))) <= {"yes", "no"}
    tags = MlflowClient().get_model_version(NAME, version).tags
    assert tags["origin"] == "test"
    assert tags["nbtools.gate.promoted"] == "true"
    assert tags["nbtools.gate.metric"] == "roc_auc"


def test_worse_challenger_is_rejected_and_champion_stays(experiment: str, data) -> None:
    X, y = data
    first, _, _ = deploy(good(X, y), experiment, X, y)
    second, decision, aliases = deploy(poor(X, y), experiment, X, y)
    assert not decision.promoted
    assert decision.challenger_score == pytest.approx(0.5)
    assert decision.champion_score > 0.8 and decision.champion_version == first
    assert "worse" in decision.reason
    assert aliases == ["challenger"]
    assert str(registry.champion_version(NAME).version) == first
    tags = MlflowClient().get_model_version(NAME, second).tags
    assert tags["nbtools.gate.promoted"] == "false"
    assert float(tags["nbtools.gate.champion_score"]) == pytest.approx(decision.champion_score)


def test_better_challenger_is_promoted(experiment: str, data) -> None:
    X, y = data
    first, _, _ = deploy(poor(X, y), experiment, X, y)
    second, decision, aliases = deploy(good(X, y), experiment, X, y)
    assert decision.promoted and decision.champion_version == first
    assert aliases == ["challenger", "champion"]
    assert str(registry.champion_version(NAME).version) == second
    assert MlflowClient().get_model_version(NAME, first).aliases == []
    history = registry.version_history(NAME)
    assert history.index.tolist() == [2, 1]
    assert history["aliases"].tolist() == ["challenger, champion", ""]
    assert history["promoted"].tolist() == ["true", "true"]
    assert history.loc[2, "champion_score"] == pytest.approx(0.5)
    assert registry.version_history("never-registered").empty


def test_a_challenger_only_as_good_is_held_back_and_the_margin_raises_the_bar(
    experiment: str, data
) -> None:
    X, y = data
    model = good(X, y)
    deploy(model, experiment, X, y)
    _, decision, aliases = deploy(model, experiment, X, y)
    assert not decision.promoted and aliases == ["challenger"]
    assert decision.gain == 0 and decision.gain_lower == 0
    assert "not above the margin 0" in decision.reason
    X_gate, y_gate = X.iloc[:150], y.iloc[:150]
    wins = registry.gate(model, poor(X, y), X_gate, y_gate, task="classification")
    assert wins.promoted and wins.gain_lower > 0.3
    bar = registry.gate(
        model, poor(X, y), X_gate, y_gate, task="classification", margin=wins.gain_lower + 0.01
    )
    assert not bar.promoted and bar.gain == wins.gain
    tags = MlflowClient().get_model_version(NAME, "2").tags
    assert float(tags["nbtools.gate.gain_lower"]) == 0.0
    assert tags["nbtools.gate.resamples"] == "1000" and tags["nbtools.gate.gate_rows"] == "300"


def noisy_data() -> tuple[pd.DataFrame, pd.Series]:
    X, y = make_classification(
        n_samples=1600,
        n_features=8,
        n_informative=4,
        n_redundant=0,
        flip_y=0.1,
        class_sep=0.8,
        random_state=1,
    )
    return pd.DataFrame(X, columns=list("abcdefgh")), pd.Series(np.where(y == 1, "yes", "no"))


def test_gate_refuses_a_gain_inside_the_noise_and_accepts_a_clear_one() -> None:
    X, y = noisy_data()
    X_gate, y_gate = X.iloc[1300:], y.iloc[1300:]
    # The same model family fitted on two disjoint halves of the same rows: as good as each
    # other, and yet the second scores higher on the 300 gate rows.
    champion = LogisticRegression().fit(X.iloc[:400], y.iloc[:400])
    lucky = LogisticRegression().fit(X.iloc[400:800], y.iloc[400:800])
    noise = registry.gate(lucky, champion, X_gate, y_gate, task="classification", seed=42)
    assert noise.challenger_score > noise.champion_score  # a plain comparison would promote
    assert noise.gain == pytest.approx(noise.challenger_score - noise.champion_score)
    assert noise.gain_lower < 0 < noise.gain
    assert not noise.promoted and "within the noise of 300 rows" in noise.reason
    assert (noise.gate_rows, noise.resamples, noise.confidence) == (300, 1000, 0.95)
    again = registry.gate(lucky, champion, X_gate, y_gate, task="classification", seed=42)
    assert again.gain_lower == noise.gain_lower  # seeded
    # A champion that misses half the informative features loses clearly.
    narrow = LogisticRegression().fit(X.iloc[:1300][["a", "b"]], y.iloc[:1300])
    wide = LogisticRegression().fit(X.iloc[:1300], y.iloc[:1300])
    clear = registry.gate(wide, narrow, X_gate, y_gate, task="classification")
    assert clear.promoted and clear.gain_lower > 0.1
    assert "is above the margin 0: the gain is real" in clear.reason
    assert not registry.gate(narrow, wide, X_gate, y_gate, task="classification").promoted


def test_champion_that_cannot_be_loaded(experiment: str, data, tmp_path: Path) -> None:
    X, y = data
    first, _, _ = deploy(good(X, y), experiment, X, y)
    shutil.rmtree(tmp_path / "art")  # the champion's artifacts are gone
    with pytest.raises(ModelRegistryError, match=r"version 1\) cannot be loaded.*replace_broken"):
        deploy(poor(X, y), experiment, X, y)
    with pytest.warns(UserWarning, match="treated as absent"):
        champion, model = registry.load_champion(NAME, replace_broken=True)
    assert (champion, model) == (first, None)
    decision = registry.gate(
        poor(X, y), None, X, y, task="classification", champion_version=champion
    )
    assert decision.promoted and "could not be loaded" in decision.reason


def test_models_with_different_features_are_scored_on_the_same_rows(data) -> None:
    X, y = data
    narrow = LogisticRegression().fit(X[["a", "b"]], y)
    wide = good(X, y)
    decision = registry.gate(
        wide, narrow, X.assign(customer_id=range(len(X))), y, task="classification"
    )
    assert decision.champion_score is not None
    assert decision.challenger_score > decision.champion_score


def test_champion_that_cannot_score_the_test_data(data) -> None:
    X, y = data
    old = LogisticRegression().fit(X.rename(columns={"d": "old"}), y)
    with pytest.raises(ModelRegistryError, match=r"version 3\) cannot score the test data"):
        registry.gate(good(X, y), old, X, y, task="classification", champion_version="3")
    decision = registry.gate(
        good(X, y), old, X, y, task="classification", champion_version="3", replace_broken=True
    )
    assert decision.promoted and decision.champion_score is None
    assert "cannot score" in decision.reason


def test_regression_gate_prefers_the_lower_error() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=200)})
    y = pd.Series(3 * X["x"] + rng.normal(scale=0.1, size=200))
    linear, mean = LinearRegression().fit(X, y), DummyRegressor().fit(X, y)
    decision = registry.gate(linear, mean, X, y, task="regression")
    assert decision.metric == "rmse" and not decision.greater_is_better
    assert decision.promoted and decision.challenger_score < decision.champion_score
    assert not registry.gate(mean, linear, X, y, task="regression").promoted
    explicit = registry.gate(mean, linear, X, y, task="regression", metric="r2")
    assert explicit.greater_is_better and not explicit.promoted


def test_gate_rejects_an_unknown_metric_and_a_negative_margin(data) -> None:
    X, y = data
    model = good(X, y)
    with pytest.raises(InvalidParameterError, match="'mape' is not among the classification"):
        registry.gate(model, None, X, y, task="classification", metric="mape")
    with pytest.raises(InvalidParameterError, match="margin"):
        registry.gate(model, model, X, y, task="classification", margin=-0.1)


def test_decision_is_json_ready() -> None:
    decision = registry.GateDecision(False, float("nan"), 0.8, "roc_auc", "undefined")
    assert decision.to_dict()["challenger_score"] is None
    assert "interval" not in decision.to_dict()


def regional_data(n: int = 1200) -> tuple[pd.DataFrame, pd.Series]:
    """Outside the ``special`` region the target follows a and b; inside it (15 %), c."""
    rng = np.random.default_rng(3)
    region = rng.choice(["north", "south", "special"], size=n, p=[0.45, 0.4, 0.15])
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"]).assign(region=region)
    usual = X["a"] + 2 * X["b"] > 0
    return X, pd.Series(np.where(np.where(region == "special", X["c"] > 0, usual), "yes", "no"))


def test_gate_refuses_a_challenger_better_overall_but_much_worse_on_a_slice() -> None:
    X, y = regional_data()
    special = (X["region"] == "special").to_numpy()
    # The champion knows the special region's rule only; the challenger everyone else's.
    champion = LogisticRegression().fit(X.loc[special, ["c"]], y[special])
    challenger = LogisticRegression().fit(X.loc[~special, ["a", "b"]], y[~special])
    options = {"task": "classification", "slice_columns": ["region"], "seed": 0}
    reported = registry.gate(challenger, champion, X, y, **options)
    assert reported.promoted and reported.gain_lower > 0.1  # no slice check asked for
    assert reported.worst_slice == "region = 'special'" and reported.worst_slice_drop > 0.3
    assert reported.slices["slice"].iloc[0] == "region = 'special'"
    assert reported.slices["rows"].sum() == len(X)
    refused = registry.gate(challenger, champion, X, y, max_slice_drop=0.1, **options)
    assert not refused.promoted and refused.max_slice_drop == 0.1
    assert "But on the slice region = 'special'" in refused.reason
    assert "more than max_slice_drop 0.1: the champion stays" in refused.reason
    assert refused.to_dict()["worst_slice"] == "region = 'special'"
    assert "slices" not in refused.to_dict()
    # A slice with fewer gate rows than min_slice_rows is left out: too few rows to judge.
    ignored = registry.gate(
        challenger, champion, X, y, max_slice_drop=0.1, min_slice_rows=int(special.sum()) + 1,
        **options,
    )  # fmt: skip
    assert ignored.promoted and ignored.worst_slice != "region = 'special'"
    with pytest.raises(InvalidParameterError, match="max_slice_drop"):
        registry.gate(challenger, champion, X, y, max_slice_drop=-1.0, **options)
    with pytest.raises(InvalidParameterError, match=r"slice columns \['plan'\]"):
        registry.gate(challenger, champion, X, y, **{**options, "slice_columns": ["plan"]})
