"""Model families, hyperparameter search and MLflow model logging for the train stage.

A model is always one scikit-learn :class:`~sklearn.pipeline.Pipeline`, ``preprocess -> select ->
model``, so everything that learns from data is fitted on the training split only and travels
into MLflow together. The search tunes the ``model`` step (``model__C``) by cross-validation.

Each task has a few model families, each with a small grid (lists, for ``search="grid"``) and a
wider random space (``scipy.stats`` distributions, for ``search="random"`` and ``"halving"``):

==============  ==================================================================
classification  logistic_regression, random_forest, hist_gradient_boosting, torch_mlp
regression      ridge, random_forest, hist_gradient_boosting, torch_mlp
clustering      kmeans
==============  ==================================================================

``torch_mlp`` is a neural network trained with PyTorch (:mod:`nbtools.ml.neural`), installed
with ``pip install 'nbtools[torch]'``; ``family="auto"`` never picks it.

:func:`get_family` resolves ``family="auto"`` to histogram gradient boosting (k-means for
clustering), the usual strongest single family on tabular data; the train stage itself compares
several families on the validation split (:mod:`nbtools.ml.model_choice`). Class weights are
the ``class_weight`` parameter, a stated choice that is never part of a search space: they move
the threshold-dependent metrics, which a user must see coming.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (enables the import below)
from sklearn.metrics import get_scorer as _sklearn_get_scorer
from sklearn.metrics import get_scorer_names, silhouette_score
from sklearn.model_selection import (
    GridSearchCV,
    HalvingRandomSearchCV,
    KFold,
    RandomizedSearchCV,
    StratifiedKFold,
)
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from nbtools.errors import InvalidParameterError
from nbtools.ml._families import DEFAULT_FAMILY, TASKS, ModelFamily, check_task
from nbtools.ml._families import family_table as _families
from nbtools.ml._mlflow_model import (
    MODEL_REQUIREMENTS,
    SAMPLE_FILE,
    SIGNATURE_ROWS,
    log_model,
    model_input,
    pip_requirements,
    save_model,
    signature_rows,
)
from nbtools.ml.tuning import Candidate, check_space, stepwise_searcher
from nbtools.params import StageParams, param

__all__ = [
    "DEFAULT_FAMILY",
    "FAMILIES",
    "FAMILY_NAMES",
    "HALVING_ROWS",
    "MODEL_REQUIREMENTS",
    "SAMPLE_FILE",
    "SIGNATURE_ROWS",
    "TASKS",
    "ModelFamily",
    "TrainParams",
    "best_params",
    "build_pipeline",
    "get_family",
    "get_scorer",
    "log_model",
    "make_estimator",
    "model_input",
    "pip_requirements",
    "resolve_scoring",
    "resolve_search",
    "save_model",
    "search",
    "search_results",
    "signature_rows",
    "silhouette_scorer",
]

_STAGE = "train"
_SILHOUETTE_SAMPLE = 2000


#: Every model family by task, then by name.
FAMILIES: dict[str, dict[str, ModelFamily]] = _families()

#: Every family name any task accepts, plus ``auto``: the choices of the ``family`` parameter.
FAMILY_NAMES = ("auto", *sorted({name for task in FAMILIES.values() for name in task}))

#: Training rows from which ``search="auto"`` uses successive halving instead of random search.
HALVING_ROWS = 5_000


@dataclass
class TrainParams(StageParams):
    """The parameters of the train stage.

    Each field is declared once with :func:`nbtools.params.param` (type, default, range or
    choices, help); the schema, the template's parameters cell and the ``Parameters`` list
    of this docstring are generated from the declarations.
    """

    family: str = param(
        "auto",
        help="model family, auto: compare hist_gradient_boosting, a linear model and random_forest "
        "on the validation split (kmeans for clustering); torch_mlp: a neural network, "
        "pip install 'nbtools[torch]'",
        choices=FAMILY_NAMES,
    )
    search: str = param(
        "auto",
        help="how the chosen family is tuned, auto: halving from 5,000 training rows, else random; "
        "none: scikit-learn's defaults",
        choices=("auto", "grid", "random", "halving", "none"),
    )
    n_iter: int = param(
        10,
        help="candidates tried by random and halving search",
        range="[1, 1000]",
    )
    cv_folds: int = param(
        3,
        help="cross-validation folds on the training split, following the split strategy",
        range="[2, 20]",
    )
    scoring: str = param(
        "auto",
        help="scikit-learn scorer name, or auto: roc_auc (binary), f1_macro (multiclass), "
        "neg_root_mean_squared_error (regression), silhouette (clustering)",
    )
    class_weight: str = param(
        "none",
        help="balanced: weigh classes by inverse frequency (moves precision and recall)",
        choices=("none", "balanced"),
    )
    device: str = param(
        "auto",
        help="where the torch_mlp network trains, auto: a GPU when PyTorch sees one, else the CPU",
        choices=("auto", "cpu", "cuda"),
    )
    time_budget: float | None = param(
        None,
        help="seconds for comparing and tuning (the final fit comes on top); "
        "None: half the expected final fit, at least 20 times the first fit, at most 120 s",
    )
    final_fit: str = param(
        "train+validation",
        help="rows of the final fit of the chosen model",
        choices=("train+validation", "train"),
    )
    n_jobs: int | None = param(
        None,
        help="parallel fits during the search; None: one at a time, -1: all cores",
    )
    space: dict[str, Any] = param(
        {},
        help="hyperparameter values or ranges replacing the built-in ones, "
        'e.g. {"C": {"low": 0.01, "high": 100, "log": true}} or {"max_depth": [3, 5]}',
    )

    STAGE: ClassVar[str] = _STAGE

    def validate(self, task: str | None = None) -> Self:
        """Check every value and, when ``task`` is given, that family and scoring suit it.

        Returns ``self``, so that ``params = TrainParams(...).validate()`` reads naturally.

        Raises
        ------
        InvalidParameterError
            Naming the parameter, what it accepts and the value found.
        """
        super().validate()
        if task is not None:
            family = get_family(self.family, task)
            family.check_installed()
            family.search_space(resolve_search(self.search, 0), self.space)
            resolve_scoring(self.scoring, task, None)
        return self

    def check(self) -> None:
        """Check that ``n_jobs`` is not 0, ``scoring`` names a scorer and ``space`` is well
        formed."""
        check_space(self.space)
        if self.time_budget is not None and not self.time_budget > 0:
            raise InvalidParameterError(
                f"The 'time_budget' parameter of stage '{_STAGE}' must be a number of seconds "
                f"> 0, or None for a budget scaled with the data. Got {self.time_budget!r} instead."
            )
        if self.n_jobs == 0:
            raise InvalidParameterError(
                f"The 'n_jobs' parameter of stage '{_STAGE}' must be a non-zero int or None. "
                "Got 0 instead."
            )
        if self.scoring not in ("auto", "silhouette", *get_scorer_names()):
            raise InvalidParameterError(
                f"The 'scoring' parameter of stage '{_STAGE}' must be 'auto', 'silhouette' or a "
                "scikit-learn scorer name (see sklearn.metrics.get_scorer_names()). "
                f"Got {self.scoring!r} instead."
            )


def get_family(family: str, task: str) -> ModelFamily:
    """Return the model family ``family`` (or the default for ``"auto"``) of ``task``.

    Raises
    ------
    InvalidParameterError
        When the task is unknown or has no such family (``ridge`` for classification, say).
    """
    check_task(task)
    name = DEFAULT_FAMILY[task] if family == "auto" else family
    choices = FAMILIES[task]
    if name not in choices:
        accepted = ", ".join(repr(c) for c in ("auto", *choices))
        raise InvalidParameterError(
            f"The 'family' parameter of stage '{_STAGE}' must be one of {accepted} for a "
            f"{task} task. Got {family!r} instead."
        )
    return choices[name]


def make_estimator(
    family: str, task: str, *, seed: int, class_weight: str = "none", device: str = "auto"
) -> BaseEstimator:
    """Return a fresh unfitted estimator of ``family`` for ``task``, seeded with ``seed``.

    ``class_weight`` (``"none"`` or ``"balanced"``) and ``device`` are the train stage's
    parameters; ``device`` reaches only the families that take one (``torch_mlp``).
    """
    weight = None if class_weight == "none" else class_weight
    return get_family(family, task).make_estimator(seed, weight, device=device)


def resolve_search(search: str, n_rows: int) -> str:
    """Return the search strategy ``search`` stands for with ``n_rows`` training rows.

    ``"auto"`` is successive halving from :data:`HALVING_ROWS` rows (each round gives the best
    third of the candidates three times more rows, so poor settings cost little), and random
    search below, where every candidate on all rows is cheap anyway.
    """
    if search != "auto":
        return search
    return "halving" if n_rows >= HALVING_ROWS else "random"


def resolve_scoring(scoring: str, task: str, y: pd.Series | None) -> str:
    """Return the concrete scorer name that ``scoring`` (``"auto"``, ``"silhouette"`` or a
    scikit-learn scorer name) stands for; ``y`` tells binary from multiclass classification.

    Raises
    ------
    InvalidParameterError
        When the scorer does not suit the task (a supervised scorer for clustering, or
        silhouette for a supervised task).
    """
    check_task(task)
    if scoring == "auto":
        if task == "clustering":
            return "silhouette"
        if task == "regression":
            return "neg_root_mean_squared_error"
        binary = y is None or pd.Series(y).nunique(dropna=True) <= 2
        return "roc_auc" if binary else "f1_macro"
    if (scoring == "silhouette") != (task == "clustering"):
        expected = "'auto' or 'silhouette'" if task == "clustering" else "a supervised scorer"
        raise InvalidParameterError(
            f"The 'scoring' parameter of stage '{_STAGE}' must be {expected} for a {task} "
            f"task. Got {scoring!r} instead."
        )
    return scoring


def silhouette_scorer(estimator: BaseEstimator, X: Any, y: Any = None) -> float:
    """Score a fitted clustering pipeline by the silhouette of its clusters; ``y`` is ignored.

    The silhouette is computed on the features the clustering step sees (after ``preprocess``
    and ``select``), on a seeded sample of at most 2,000 rows. A single cluster scores -1.
    """
    features = estimator[:-1].transform(X) if isinstance(estimator, Pipeline) else X
    final = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    labels = final.predict(features)
    if len(np.unique(labels)) < 2 or len(labels) < 3:
        return -1.0
    sample = min(len(labels), _SILHOUETTE_SAMPLE)
    return float(silhouette_score(features, labels, sample_size=sample, random_state=0))


def get_scorer(scoring: str) -> Any:
    """Return a scorer callable ``scorer(estimator, X, y)`` for a resolved scorer name."""
    if scoring == "silhouette":
        return silhouette_scorer
    return _sklearn_get_scorer(scoring)


def build_pipeline(
    preprocessor: Any, selector: Any, estimator: BaseEstimator, *, creator: Any = "passthrough"
) -> Pipeline:
    """Chain the parts of an nbtools model into one unfitted pipeline.

    ``creator`` comes from ``features.FeatureCreator``, ``preprocessor`` from
    ``cleaning.build_preprocessor``, ``selector`` from ``features.build_selector`` and
    ``estimator`` from :func:`make_estimator`; the steps are named ``create``, ``preprocess``,
    ``select`` and ``model``. With the feature creation inside, the model takes the cleaned
    columns as they are, so a served model needs no feature code on the client side.
    """
    return Pipeline(
        [
            ("create", creator),
            ("preprocess", preprocessor),
            ("select", selector),
            ("model", estimator),
        ]
    )


def search(
    pipeline: Pipeline,
    X: pd.DataFrame,
    y: pd.Series | None,
    params: TrainParams,
    *,
    task: str,
    seed: int,
    on_candidate: Callable[[Candidate], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    refit: bool = True,
    cv: Any = None,
    groups: Any = None,
    deadline: float | None = None,
) -> GridSearchCV | RandomizedSearchCV | HalvingRandomSearchCV:
    """Tune the ``model`` step of ``pipeline`` by cross-validation, then refit the best on all of X.

    Parameters
    ----------
    pipeline : Pipeline
        From :func:`build_pipeline`; its ``model`` step must belong to ``params.family``.
    X, y : pandas.DataFrame, pandas.Series or None
        The training split only (the test split must never reach a fit); ``y`` is ``None`` for
        clustering.
    params : TrainParams
        Family, search strategy, budget, folds, scoring and parallelism.
    task : str
        ``"classification"``, ``"regression"`` or ``"clustering"``.
    seed : int
        Seeds the folds (stratified for classification) and the candidate draws.
    on_candidate : callable, optional
        Called with a :class:`~nbtools.ml.tuning.Candidate` after each candidate.
    should_stop : callable, optional
        Checked before each candidate; True stops the search with ``SearchCancelledError``.
    refit : bool, default=True
        Refit the best candidate on all of ``X`` (a preview may skip it).
    cv : cross-validation splitter, optional
        The folds, as :func:`nbtools.ml.model_choice.cv_splitter` makes them to follow the
        split strategy (group or time); by default shuffled folds, stratified for
        classification.
    groups : array-like, optional
        The group of each row, for a group splitter.
    deadline : float, optional
        A ``time.monotonic()`` instant: candidates after it are not started, and the search
        ends with the best so far (``stopped_early_`` is then True). At least one candidate
        always runs.

    Returns
    -------
    GridSearchCV, RandomizedSearchCV or HalvingRandomSearchCV
        Fitted; ``best_estimator_`` is the pipeline refitted on all of ``X``.

    Raises
    ------
    InvalidParameterError
        When a parameter is invalid or does not suit the task, the pipeline or the data (more
        folds than rows of the rarest class).
    SearchCancelledError
        When ``should_stop`` returned True.
    """
    params.validate(task)
    family = get_family(params.family, task)
    strategy = resolve_search(params.search, len(X))
    _check_search(pipeline, params, family, strategy, task=task, seed=seed)
    if cv is None:
        folds = StratifiedKFold if task == "classification" else KFold
        cv = folds(params.cv_folds, shuffle=True, random_state=seed)
    _check_folds(cv, y, params, task=task)
    common: dict[str, Any] = {
        "scoring": get_scorer(resolve_scoring(params.scoring, task, y)),
        "cv": cv,
        "n_jobs": params.n_jobs,
        "error_score": "raise",
        "refit": refit,
        "on_candidate": on_candidate,
        "should_stop": should_stop,
        "deadline": deadline,
    }
    common |= _strategy_options(strategy, params, seed)
    space = family.search_space(strategy, params.space)
    searcher = stepwise_searcher(strategy, pipeline, space, **common)
    with threadpool_limits(1):  # threads in small fits mostly spin-wait: n_jobs runs fits instead
        searcher.fit(X, y, groups=groups)
    return searcher


def _check_search(
    pipeline: Pipeline,
    params: TrainParams,
    family: ModelFamily,
    strategy: str,
    *,
    task: str,
    seed: int,
) -> None:
    """Refuse a search with nothing to search, or whose ``model`` step is not of the family."""
    if strategy == "none":
        raise InvalidParameterError(
            f"The 'search' parameter of stage '{_STAGE}' is 'none': there is nothing to search. "
            "Fit the pipeline as it is, or choose 'auto', 'grid', 'random' or 'halving'."
        )
    model = pipeline.named_steps.get("model")
    expected = type(family.make_estimator(seed))
    if type(model) is not expected:
        raise InvalidParameterError(
            f"The 'model' step of the pipeline must be a {expected.__name__} for family "
            f"'{family.name}'. Got {type(model).__name__} instead; build it with "
            f"make_estimator({params.family!r}, {task!r}, seed=...)."
        )


def _check_folds(cv: Any, y: pd.Series | None, params: TrainParams, *, task: str) -> None:
    """Refuse stratified folds that outnumber the training rows of the rarest class."""
    if task == "classification" and y is not None and "Stratified" in type(cv).__name__:
        counts = pd.Series(y).value_counts()
        if counts.min() < params.cv_folds:
            raise InvalidParameterError(
                f"The 'cv_folds' parameter of stage '{_STAGE}' must not exceed the training rows "
                f"of the rarest class: class {counts.idxmin()!r} has {counts.min()}. "
                f"Got {params.cv_folds} instead."
            )


def _strategy_options(strategy: str, params: TrainParams, seed: int) -> dict[str, Any]:
    """The searcher's options that depend on the strategy: how many candidates, seeded how."""
    if strategy == "random":
        return {"n_iter": params.n_iter, "random_state": seed}
    if strategy == "halving":
        # n_iter candidates on few rows, the best third moves on to three times more
        return {"n_candidates": params.n_iter, "min_resources": "exhaust", "random_state": seed}
    return {}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def best_params(fitted_search: Any) -> dict[str, Any]:
    """Return the best hyperparameters, without the ``model__`` prefix, as plain Python values."""
    return {
        name.removeprefix("model__"): _plain(value)
        for name, value in fitted_search.best_params_.items()
    }


def search_results(fitted_search: Any) -> pd.DataFrame:
    """Return a tidy table of a fitted search: one row per candidate (and halving round).

    Columns: ``rank``, ``mean_score``, ``std_score``, ``mean_fit_seconds``, for halving search
    ``iteration`` and ``n_resources`` (training rows used), then the tuned hyperparameters
    (without ``model__``). Best first; for halving the last round first, as scores on fewer rows
    are not comparable. Greater is better, as in scikit-learn (RMSE appears negated).
    """
    raw = fitted_search.cv_results_
    names = {"rank": "rank_test_score", "mean_score": "mean_test_score"}
    names |= {"std_score": "std_test_score", "mean_fit_seconds": "mean_fit_time"}
    table = pd.DataFrame({name: raw[key] for name, key in names.items()})
    order = ["mean_score"]
    if "iter" in raw:
        table["iteration"] = raw["iter"]
        table["n_resources"] = raw["n_resources"]
        order = ["iteration", "mean_score"]
    for key in raw:
        if key.startswith("param_"):
            values = [_plain(v) for v in np.ma.filled(raw[key].astype(object), None)]
            has_none = any(v is None for v in values)  # keep None visible, not NaN
            column = pd.Series(values, dtype=object) if has_none else pd.Series(values)
            table[key.removeprefix("param_model__")] = column
    table = table.sort_values(order, ascending=False, kind="stable").reset_index(drop=True)
    if "iter" in raw:
        table["rank"] = np.arange(1, len(table) + 1)
    return table
