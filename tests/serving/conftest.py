"""Fixtures: a registry with models built like the pipeline's, and real services to call."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servicekit import MODEL, Registry, Service, start_service, stop_service


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Registry:
    """Log and register two models exactly as the train and deploy stages do."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from nbtools.demo import make_churn
    from nbtools.ml import cleaning, features, modeling
    from nbtools.ops import registry

    folder = tmp_path_factory.mktemp("registry")
    shutil.copy(migrated_db, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    data = make_churn(300, seed=0).drop(columns=["signup_date"])
    X, y = data.drop(columns=["churned"]), data["churned"]
    numeric = [c for c in X.columns if X[c].dtype.kind in "if"]
    categorical = [c for c in X.columns if c not in numeric]
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("serve", artifact_location=(folder / "art").as_uri())
        for estimator in (
            LogisticRegression(max_iter=500),
            RandomForestClassifier(n_estimators=10),
        ):
            pipeline = modeling.build_pipeline(
                cleaning.build_preprocessor(cleaning.CleaningParams(), numeric, categorical),
                features.build_selector(features.FeatureParams(), "classification"),
                estimator,
            ).fit(X, y)
            with mlflow.start_run(experiment_id=experiment):
                model_uri = modeling.log_model(pipeline, X, task="classification")
            registry.register(model_uri, MODEL)
        MlflowClient().set_registered_model_alias(MODEL, "champion", "1")
    finally:
        mlflow.set_tracking_uri(previous)
    return Registry(folder, X)


@pytest.fixture
def own_registry(registry: Registry, tmp_path: Path) -> Registry:
    """A private copy of the registry database (same artifacts), for tests that move aliases."""
    folder = tmp_path / "registry"
    folder.mkdir()
    shutil.copy(registry.folder / "mlflow.db", folder / "mlflow.db")
    return Registry(folder, registry.X)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start services for one test; all are stopped when it ends."""
    started: list[Service] = []

    def launch(registry: Registry, *args: str, env: dict[str, str] | None = None) -> Service:
        folder = tmp_path / f"service-{len(started)}"
        folder.mkdir()
        service = start_service(registry, folder, *args, env=env)
        started.append(service)
        return service

    yield launch
    for service in started:
        stop_service(service)


@pytest.fixture(scope="module")
def service(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service shared by a module's tests, with a small body limit (100 kB)."""
    running = start_service(
        registry, tmp_path_factory.mktemp("service"), "--max-body-bytes", "100000"
    )
    yield running
    stop_service(running)
