"""The compiled form of model pipelines: the same predictions as scikit-learn, for every family
and task the train stage offers, and scikit-learn whenever that cannot be shown."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from servicekit import MODEL, Registry, Service

from nbtools.errors import InvalidParameterError
from nbtools.ml.cleaning import CleaningParams, column_types
from nbtools.ml.features import FeatureParams
from nbtools.ml.model_choice import pipeline_factory
from nbtools.ml.modeling import FAMILIES, SAMPLE_FILE, ModelFamily, save_model
from nbtools.serving import model as served
from nbtools.serving.compiled import NotCompilable, compile_pipeline, disagreement
from nbtools.serving.schema import InputSchema

pytestmark = pytest.mark.serving

ROWS = 1500


def table(seed: int = 0) -> pd.DataFrame:
    """Numeric, categorical and date columns with missing values, and one column of 300 levels
    (more than one-hot and native categories take, so it is target-encoded). The pipeline adds
    the date's parts."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 12, ROWS),
            "fare": rng.lognormal(3, 1, ROWS),
            "visits": rng.integers(0, 6, ROWS).astype(float),
            "sex": rng.choice(["f", "m"], ROWS),
            "port": rng.choice(["C", "Q", "S"], ROWS, p=[0.2, 0.1, 0.7]),
            "town": rng.choice([f"town {i}" for i in range(300)], ROWS),
            "joined": pd.Timestamp("2020-01-01")
            + pd.to_timedelta(rng.integers(0, 2000, ROWS), "D"),
        }
    )
    frame.loc[rng.random(ROWS) < 0.1, "age"] = np.nan
    frame.loc[rng.random(ROWS) < 0.05, "joined"] = pd.NaT
    frame.loc[rng.random(ROWS) < 0.1, "port"] = None
    return frame


def targets(frame: pd.DataFrame) -> dict[str, pd.Series | None]:
    rng = np.random.default_rng(1)
    town = frame["town"].str.removeprefix("town ").astype(int)
    score = (
        frame["age"].fillna(40) / 10
        + 2 * (frame["sex"] == "f")
        + (town % 7) / 3
        + np.log(frame["fare"])
        + frame["joined"].dt.month.fillna(6) / 4
        + rng.normal(size=len(frame))
    )
    return {
        "binary": (score > score.median()).map({True: "yes", False: "no"}),
        "multiclass": pd.qcut(score, 3, labels=["low", "mid", "high"]).astype(str),
        "regression": score,
        "clustering": None,
    }


def fitted(task: str, family: str, cleaning: CleaningParams, features: FeatureParams) -> Any:
    frame = table()
    y = targets(frame)[task]
    kind = {"binary": "classification", "multiclass": "classification"}.get(task, task)
    numeric, categorical = column_types(frame, None)
    levels = {column: frame[column].nunique() for column in categorical}
    make = pipeline_factory(
        cleaning, features, numeric, categorical, task=kind, seed=0, levels=levels
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k-means' memory-leak note on some platforms
        return make(family).fit(frame, y)


def new_rows() -> pd.DataFrame:
    """Rows the models never saw, with unseen levels and missing values in every column."""
    rows = table(seed=7).head(300).copy()
    rows.loc[:9, "port"] = "a port never seen"
    rows.loc[10:19, "town"] = "a town never seen"
    rows.loc[20:29, "sex"] = None
    for column in ("fare", "visits", "town", "joined"):
        rows.loc[30:39, column] = None
    rows.loc[40:49, "fare"] = 1e9  # far outside the training range
    return rows


def _installed(family: ModelFamily) -> bool:
    try:
        family.check_installed()
    except InvalidParameterError:
        return False
    return True


#: Every family of every task; ``torch_mlp`` where PyTorch is installed (``test_torch_extra.py``
#: runs these cases in an environment with ``nbtools[torch]``).
CASES = [
    (task, name)
    for task in ("binary", "multiclass", "regression", "clustering")
    for name, family in FAMILIES[
        {"binary": "classification", "multiclass": "classification"}.get(task, task)
    ].items()
    if _installed(family)
]


@pytest.mark.parametrize(("task", "family"), CASES)
@pytest.mark.parametrize("outliers", ["none", "clip"])
def test_the_compiled_form_predicts_as_the_pipeline(task: str, family: str, outliers: str) -> None:
    pipeline = fitted(task, family, CleaningParams(outliers=outliers), FeatureParams())
    compiled = compile_pipeline(pipeline)
    rows = new_rows()
    assert disagreement(compiled, pipeline, rows) is None
    for index in range(0, len(rows), 37):  # one row at a time, as most requests come
        one = rows.iloc[[index]]
        assert disagreement(compiled, pipeline, one) is None, index


def test_feature_selection_is_compiled_too() -> None:
    """Selection keeps some of the preprocessed columns: the others feed nothing."""
    features = FeatureParams(selection="kbest", k=4, drop_correlated=0.9)
    pipeline = fitted("binary", "logistic_regression", CleaningParams(), features)
    assert disagreement(compile_pipeline(pipeline), pipeline, new_rows()) is None


def test_created_features_are_not_compiled_and_the_reason_is_given() -> None:
    features = FeatureParams(expressions={"fare_per_visit": "fare / (visits + 1)"})
    pipeline = fitted("binary", "hist_gradient_boosting", CleaningParams(), features)
    with pytest.raises(NotCompilable, match="creates features"):
        compile_pipeline(pipeline)


def saved(tmp_path: Path, pipeline: object) -> tuple[Path, InputSchema]:
    from mlflow.models import Model

    folder = save_model(pipeline, tmp_path / "model", table(), task="classification")
    return folder, InputSchema.from_signature(Model.load(folder).signature)


def test_a_model_is_served_compiled_only_after_it_agrees_on_its_stored_rows(
    tmp_path: Path,
) -> None:
    pipeline = fitted("binary", "hist_gradient_boosting", CleaningParams(), FeatureParams())
    folder, schema = saved(tmp_path, pipeline)
    compiled, note = served.choose_engine(pipeline, schema, folder)
    assert compiled is not None
    assert "served compiled: it predicts as the pipeline on 205 stored rows" in note


def test_a_compiled_form_that_disagrees_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = fitted("binary", "hist_gradient_boosting", CleaningParams(), FeatureParams())
    other = fitted("binary", "logistic_regression", CleaningParams(), FeatureParams())
    folder, schema = saved(tmp_path, pipeline)
    # a compiler with a bug: it compiles another model than the one it is given
    monkeypatch.setattr(served, "compile_pipeline", lambda _pipeline: compile_pipeline(other))
    compiled, note = served.choose_engine(pipeline, schema, folder)
    assert compiled is None
    assert note.startswith(
        "served by scikit-learn, as the compiled form disagrees with it: predictions"
    )


def test_a_compiler_that_fails_unexpectedly_leaves_the_model_served_by_scikit_learn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = fitted("regression", "ridge", CleaningParams(), FeatureParams())
    folder, schema = saved(tmp_path, pipeline)

    def broken(_pipeline: Any) -> None:
        raise AttributeError("'Ridge' object has no attribute 'coef_'")

    monkeypatch.setattr(served, "compile_pipeline", broken)
    compiled, note = served.choose_engine(pipeline, schema, folder)
    assert compiled is None
    assert note == (
        "served by scikit-learn, as compiling the model failed "
        "(AttributeError: 'Ridge' object has no attribute 'coef_')"
    )


def test_a_model_without_a_stored_sample_is_served_by_scikit_learn(tmp_path: Path) -> None:
    pipeline = fitted("binary", "random_forest", CleaningParams(), FeatureParams())
    folder, schema = saved(tmp_path, pipeline)
    (folder / "extra_files" / SAMPLE_FILE).unlink()  # as a model logged by an older nbtools
    compiled, note = served.choose_engine(pipeline, schema, folder)
    assert compiled is None
    assert f"no stored sample ({SAMPLE_FILE})" in note


def test_the_stored_sample_holds_a_missing_value_of_every_column_that_has_one_and_real_dates(
    tmp_path: Path,
) -> None:
    pipeline = fitted("binary", "logistic_regression", CleaningParams(), FeatureParams())
    folder, _schema = saved(tmp_path, pipeline)
    stored = json.loads((folder / "extra_files" / SAMPLE_FILE).read_text())
    sample = pd.DataFrame(stored["data"], columns=stored["columns"])
    assert sample["age"].isna().any() and sample["port"].isna().any()
    assert pd.to_datetime(sample["joined"]).dt.year.min() >= 2020  # dates as dates, not numbers


def edge_rows(thresholds: np.ndarray, features: np.ndarray, width: int) -> np.ndarray:
    """Rows whose values sit on, just below and just above the model's split thresholds, and
    missing: where a float32 or an off-by-one comparison would send a row the wrong way."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(600, width))
    picks = rng.integers(0, len(thresholds), size=(600, width))
    for column in range(width):
        on_column = thresholds[(features == column) & np.isfinite(thresholds)]
        if len(on_column):
            chosen = on_column[picks[:, column] % len(on_column)]
            rows[:, column] = chosen + rng.choice([-1e-9, 0.0, 1e-9], size=600)
    rows[rng.random(rows.shape) < 0.05] = np.nan
    return rows


def test_forest_trees_split_exactly_where_scikit_learn_does() -> None:
    from sklearn.ensemble import RandomForestRegressor

    from nbtools.serving._trees import flatten_forest

    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 4))
    y = X[:, 0] + rng.normal(size=800)
    X[rng.random(X.shape) < 0.05] = np.nan
    forest = RandomForestRegressor(n_estimators=20, random_state=0).fit(X, y)
    trees = flatten_forest(forest.estimators_)
    splits = ~trees.leaf
    rows = edge_rows(trees.threshold[splits], trees.feature[splits], 4)
    ours = trees.value[trees.leaves(rows)].mean(axis=1)
    np.testing.assert_allclose(ours, forest.predict(rows), rtol=1e-12)


def test_boosting_trees_split_exactly_where_scikit_learn_does() -> None:
    """On numeric thresholds, and for category codes training never saw (6, 7, 200), which go
    where missing values go, as in scikit-learn's own tree predictor."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from nbtools.serving._trees import flatten_boosting

    rng = np.random.default_rng(0)
    n = 2000
    X = pd.DataFrame(
        {"x": rng.normal(size=n), "level": pd.Categorical(rng.choice(list("abcdef"), n))}
    )
    X.loc[rng.random(n) < 0.05, "x"] = np.nan
    y = (X["x"].fillna(0) + X["level"].isin(["a", "c"]) + rng.normal(size=n) > 0.7).astype(int)
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    model.fit(X, y)
    trees = flatten_boosting(model)
    # the model's matrix holds the category codes first, then the numeric column
    assert trees.categorical is not None
    numeric = trees.threshold[(trees.feature == 1) & ~trees.leaf & ~trees.categorical]
    Z = np.column_stack(
        [
            rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 200, np.nan], 600),
            edge_rows(numeric, np.zeros(len(numeric), int), 1)[:, 0],
        ]
    )
    known, feature_map = model._bin_mapper.make_known_categories_bitsets()
    expected = model._baseline_prediction[0] + sum(
        predictor.predict(Z, known, feature_map, 1)
        for iteration in model._predictors
        for predictor in iteration
    )
    ours = model._baseline_prediction[0] + trees.value[trees.leaves(Z)].sum(axis=1)
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


def test_a_model_that_cannot_be_compiled_is_served_by_scikit_learn_and_says_why(
    own_registry: Registry, serve: Callable[..., Service]
) -> None:
    import mlflow

    from nbtools.ml.modeling import log_model
    from nbtools.ops import registry

    features = FeatureParams(expressions={"fare_per_visit": "fare / (visits + 1)"})
    pipeline = fitted("binary", "hist_gradient_boosting", CleaningParams(), features)
    mlflow.set_tracking_uri(own_registry.uri)
    experiment = mlflow.get_experiment_by_name("serve")
    assert experiment is not None
    with mlflow.start_run(experiment_id=experiment.experiment_id):
        version = registry.register(log_model(pipeline, table(), task="classification"), MODEL)
    service = serve(own_registry, "--model", f"models:/{MODEL}/{version}", "--no-prediction-log")
    rows = new_rows().head(20)
    with service.client() as client:
        runtime = client.get("/metadata").json()["runtime"]
        body = json.loads(rows.to_json(orient="split", index=False, date_format="iso"))
        answer = client.post("/invocations", json={"dataframe_split": body})
    assert runtime["engine"] == "scikit-learn"
    reason = "the model cannot be compiled: the pipeline creates features from expressions"
    assert reason in runtime["engine_note"]
    assert reason in service.log.read_text()
    assert answer.json()["predictions"] == pipeline.predict(rows).tolist()
