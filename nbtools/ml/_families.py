"""The model families: each scikit-learn estimator nbtools trains, per task, with its search
spaces, and the family ``family="auto"`` stands for.

The table is declarative; :mod:`nbtools.ml.modeling` re-exports everything public here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge

from nbtools.errors import InvalidParameterError
from nbtools.ml.neural import TorchMLPClassifier, TorchMLPRegressor, require_torch
from nbtools.ml.tuning import resolve_space

__all__ = ["DEFAULT_FAMILY", "TASKS", "ModelFamily", "check_task", "family_table"]

#: The tasks nbtools knows, as written by the ingest stage in ``dataset.json``.
TASKS = ("classification", "regression", "clustering")

#: The family ``family="auto"`` stands for, per task (see the module docstring for why).
DEFAULT_FAMILY = {
    "classification": "hist_gradient_boosting",
    "regression": "hist_gradient_boosting",
    "clustering": "kmeans",
}


@dataclass(frozen=True)
class ModelFamily:
    """One model family for one task, with its search spaces.

    Parameters
    ----------
    name, task : str
        Family name as in the ``family`` parameter (``"random_forest"``), and its task.
    estimator : type
        The scikit-learn estimator class; it is built with ``random_state=seed`` and ``defaults``.
    defaults : dict
        Keyword arguments that differ from scikit-learn's defaults.
    grid : dict
        Estimator parameter name to a list of values, for grid search.
    distributions : dict
        Estimator parameter name to a ``scipy.stats`` distribution or a list, for random and
        successive-halving search.
    preprocessing : {"linear", "forest", "boosting", "neural"}
        The kind of model ``cleaning.build_preprocessor`` prepares the features for.
    requires : callable or None
        Called before the family is used; raises with the install command when what the
        family trains with (PyTorch) is missing. None: nothing beyond nbtools' own needs.
    """

    name: str
    task: str
    estimator: type[BaseEstimator]
    defaults: Mapping[str, Any]
    grid: Mapping[str, list[Any]]
    distributions: Mapping[str, Any]
    preprocessing: str = "linear"
    requires: Callable[[], object] | None = None

    def check_installed(self) -> None:
        """Raise ``InvalidParameterError`` naming the install command when the family's
        extra (``nbtools[torch]``) is missing."""
        if self.requires is not None:
            self.requires()

    def make_estimator(
        self, seed: int, class_weight: str | None = None, *, device: str = "auto"
    ) -> BaseEstimator:
        """Return a fresh unfitted estimator of this family seeded with ``seed``.

        ``class_weight`` is set on estimators that take one (classifiers), ``device`` on those
        that train on a device (``torch_mlp``); others ignore them.
        """
        estimator = self.estimator(random_state=seed, **self.defaults)
        own = estimator.get_params()
        if class_weight is not None and "class_weight" in own:
            estimator.set_params(class_weight=class_weight)
        if "device" in own:
            estimator.set_params(device=device)
        return estimator

    def search_space(
        self, search: str, overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Return the space for ``search`` (``"grid"`` takes lists, ``"random"`` and
        ``"halving"`` distributions), with names prefixed by the pipeline's ``model`` step.

        ``overrides`` is the train stage's ``space`` parameter: lists or ranges laid over the
        built-in space (see :mod:`nbtools.ml.tuning`).
        """
        space = self.grid if search == "grid" else self.distributions
        if overrides:
            tunable = set(self.make_estimator(0).get_params()) - {"random_state"}
            space = resolve_space(space, overrides, search, tunable)
        return {f"model__{name}": values for name, values in space.items()}


def family_table() -> dict[str, dict[str, ModelFamily]]:
    forest_grid: dict[str, list[Any]] = {
        "max_depth": [None, 10],
        "min_samples_leaf": [1, 5],
        "max_features": ["sqrt", 0.5],
    }
    forest_random: dict[str, Any] = {
        "n_estimators": stats.randint(50, 400),
        "max_depth": [None, 5, 10, 20],
        "min_samples_leaf": stats.randint(1, 20),
        "max_features": ["sqrt", 0.3, 0.5, 1.0],
    }
    boosting_grid: dict[str, list[Any]] = {
        "learning_rate": [0.05, 0.1],
        "max_leaf_nodes": [15, 31],
        "min_samples_leaf": [10, 30],
    }
    boosting_random: dict[str, Any] = {
        "learning_rate": stats.loguniform(0.01, 0.3),
        "max_iter": stats.randint(50, 300),
        "max_leaf_nodes": stats.randint(8, 64),
        "min_samples_leaf": stats.randint(5, 40),
        "l2_regularization": stats.loguniform(1e-4, 10.0),
    }
    linear_grid = [0.01, 0.1, 1.0, 10.0, 100.0]
    network_grid: dict[str, list[Any]] = {
        "width": [64, 128],
        "depth": [1, 2],
        "learning_rate": [1e-3, 3e-3],
    }
    network_random: dict[str, Any] = {
        "width": [32, 64, 128, 256],
        "depth": [1, 2, 3],
        "dropout": stats.uniform(0.0, 0.3),
        "learning_rate": stats.loguniform(3e-4, 1e-2),
        "weight_decay": stats.loguniform(1e-6, 1e-2),
        "epochs": [100, 200, 400],
    }
    families = [
        ModelFamily(
            "logistic_regression",
            "classification",
            LogisticRegression,
            {"max_iter": 2000},
            {"C": linear_grid},
            {"C": stats.loguniform(1e-3, 1e2)},
        ),
        ModelFamily(
            "random_forest",
            "classification",
            RandomForestClassifier,
            {},
            forest_grid,
            forest_random,
            "forest",
        ),
        ModelFamily(
            "hist_gradient_boosting",
            "classification",
            HistGradientBoostingClassifier,
            {"categorical_features": "from_dtype"},
            boosting_grid,
            boosting_random,
            "boosting",
        ),
        ModelFamily(
            "ridge",
            "regression",
            Ridge,
            {},
            {"alpha": linear_grid},
            {"alpha": stats.loguniform(1e-3, 1e3)},
        ),
        ModelFamily(
            "random_forest",
            "regression",
            RandomForestRegressor,
            {},
            {**forest_grid, "max_features": [0.5, 1.0]},
            forest_random,
            "forest",
        ),
        ModelFamily(
            "hist_gradient_boosting",
            "regression",
            HistGradientBoostingRegressor,
            {"categorical_features": "from_dtype"},
            boosting_grid,
            boosting_random,
            "boosting",
        ),
        ModelFamily(
            "torch_mlp",
            "classification",
            TorchMLPClassifier,
            {},
            network_grid,
            network_random,
            "neural",
            require_torch,
        ),
        ModelFamily(
            "torch_mlp",
            "regression",
            TorchMLPRegressor,
            {},
            network_grid,
            network_random,
            "neural",
            require_torch,
        ),
        ModelFamily(
            "kmeans",
            "clustering",
            KMeans,
            {"n_init": 10},
            {"n_clusters": list(range(2, 11))},
            {"n_clusters": stats.randint(2, 13)},
        ),
    ]
    by_task: dict[str, dict[str, ModelFamily]] = {task: {} for task in TASKS}
    for family in families:
        by_task[family.task][family.name] = family
    return by_task


def check_task(task: str) -> None:
    """Raise ``InvalidParameterError`` unless ``task`` is one of :data:`TASKS`."""
    if task not in TASKS:
        choices = ", ".join(repr(t) for t in TASKS)
        raise InvalidParameterError(f"The task must be one of {choices}. Got {task!r} instead.")
