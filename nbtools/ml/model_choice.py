"""Choosing the model: a comparison of families, a search within a time budget, a final fit.

:func:`choose_model` is what the train stage runs:

1. **Compare.** Each candidate family (:data:`AUTO_CANDIDATES` for ``family="auto"``, else the
   one named) is fitted with scikit-learn's default hyperparameters on the training rows and
   scored on the validation rows. On a large table the comparison uses a seeded sample of
   :data:`COMPARE_ROWS` training rows: it ranks families as well as all rows would, at a
   fraction of the cost. The first candidate (gradient boosting, the strongest default on
   tabular data) stays the choice unless another family is *surely* better on the validation
   rows: the one-sided 95 % lower bound of its paired-bootstrap gain
   (:func:`nbtools.ml.bootstrap.paired_gain`) is above zero. A few hundred validation rows
   move a score by a few hundredths, and picking the highest of three noisy scores would often
   pick noise.
2. **Tune.** The winner's hyperparameters are searched by cross-validation on the same rows, with
   folds that follow the split strategy (:func:`cv_splitter`). The tuned model replaces the
   default one only if it scores better on the validation rows.
3. Both steps share one **time budget**: a candidate family that would start after it, or whose
   expected fit time (measured on the first family, scaled by a rough cost per kind of model;
   for a forest, measured on a tenth of its trees: :func:`fit_within`) would overrun it, is
   skipped, as is a search candidate after it; the choice is the best so far, and the result
   says so. Unless stated, the budget is half of what the final fit is expected to cost, and at
   least :data:`FIRST_FITS` fits like the first family's (:func:`auto_budget`): every family is
   compared and a few candidates are tried, and on a busy machine the comparison and the search
   stay about the same, only slower.

:func:`fit_final` then refits the chosen pipeline on the training rows, or on training and
validation rows together (the default), which is what a plain model fitted on all non-test rows
gets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from nbtools.errors import InvalidParameterError
from nbtools.ml._budget import BUDGET_SHARE as BUDGET_SHARE
from nbtools.ml._budget import FIRST_FITS as FIRST_FITS
from nbtools.ml._budget import MAX_BUDGET as MAX_BUDGET
from nbtools.ml._budget import PROBE_SHARE, auto_budget, fit_within
from nbtools.ml._comparison import COMPARE_ROWS, Chooser
from nbtools.ml._folds import cv_splitter, order_for_split, split_groups
from nbtools.ml.cleaning import CleaningParams, build_preprocessor
from nbtools.ml.encoding import TARGET_TYPES
from nbtools.ml.features import FeatureCreator, FeatureParams, build_selector
from nbtools.ml.modeling import (
    TrainParams,
    build_pipeline,
    get_family,
    make_estimator,
)

__all__ = [
    "AUTO_CANDIDATES",
    "COMPARE_ROWS",
    "PROBE_SHARE",
    "Choice",
    "auto_budget",
    "choose_model",
    "cv_splitter",
    "final_rows",
    "fit_final",
    "fit_within",
    "order_for_split",
    "pipeline_factory",
    "split_groups",
]

#: The families ``family="auto"`` compares, per task: boosting with native categories, a
#: regularised linear model and a random forest.
AUTO_CANDIDATES = {
    "classification": ("hist_gradient_boosting", "logistic_regression", "random_forest"),
    "regression": ("hist_gradient_boosting", "ridge", "random_forest"),
    "clustering": ("kmeans",),
}


@dataclass
class Choice:
    """The outcome of :func:`choose_model`.

    Attributes
    ----------
    family : str
        The chosen family.
    params : dict
        Its hyperparameters (without ``model__``); empty for scikit-learn's defaults.
    model : Pipeline
        The chosen pipeline, fitted on the compared training rows.
    validation_score : float or None
        Its score on the validation rows (None without validation rows).
    cv_score : float
        Its cross-validated score on the compared training rows.
    scoring : str
        The scorer's name.
    table : pandas.DataFrame
        One row per family tried, then one for the tuned winner: ``step``, ``family``,
        ``validation_score``, ``cv_score``, ``fit_seconds``, ``rows``, ``note``.
    budget : float
        The time budget in seconds.
    budget_hit : bool
        Whether the budget skipped a family or ended the search early.
    seconds : float
        Time taken by the whole choice.
    """

    family: str
    params: dict[str, Any]
    model: Pipeline
    validation_score: float | None
    cv_score: float
    scoring: str
    table: pd.DataFrame
    budget: float
    budget_hit: bool
    seconds: float
    candidates: list[Any] = field(default_factory=list)


def choose_model(
    make_pipeline: Callable[[str], Pipeline],
    X_train: pd.DataFrame,
    y_train: pd.Series | None,
    X_valid: pd.DataFrame,
    y_valid: pd.Series | None,
    params: TrainParams,
    *,
    task: str,
    seed: int,
    cv: Any = None,
    groups: Any = None,
    report: Callable[[str], None] | None = print,
) -> Choice:
    """Compare families, tune the best within the time budget, and return the choice.

    Parameters
    ----------
    make_pipeline : callable
        ``make_pipeline(family)`` returns the unfitted pipeline of a family, with preprocessing
        suited to it.
    X_train, y_train, X_valid, y_valid : DataFrame and Series
        The training and validation splits (``y`` None for clustering). With no validation
        rows, families are compared by their cross-validated score instead.
    params : TrainParams
        ``family``, ``search``, ``n_iter``, ``cv_folds``, ``scoring``, ``time_budget``...
    task : str
        ``"classification"``, ``"regression"`` or ``"clustering"``.
    seed : int
        Seeds the sample, the folds and the candidates.
    cv, groups : optional
        Folds and groups from :func:`cv_splitter` and :func:`split_groups`.
    report : callable or None, default=print
        Receives one line per step, as progress.

    Returns
    -------
    Choice
    """
    if params.family == "auto" and params.space and len(AUTO_CANDIDATES.get(task, ())) > 1:
        raise InvalidParameterError(
            "The 'space' parameter of stage 'train' sets hyperparameters of one model family, "
            "and 'family' is 'auto', which compares several. Name the family too, for example "
            "family: hist_gradient_boosting."
        )
    params.validate(task)
    chooser = Chooser(
        make_pipeline,
        X_train,
        y_train,
        X_valid,
        y_valid,
        params,
        task=task,
        seed=seed,
        cv=cv,
        groups=groups,
        say=report or (lambda _line: None),
    )
    names = AUTO_CANDIDATES[task] if params.family == "auto" else (params.family,)
    fitted = chooser.compare(names)
    assert chooser.budget is not None  # the first family's fit set it
    winner = chooser.pick(fitted, names)
    model, validation_score, chosen, cv_score = chooser.tune(winner, *fitted[winner])
    if cv_score is None or not chosen:
        cv_score = chooser.default_cv_score(winner)
    if chooser.budget_hit:
        chooser.say(
            f"The time budget ({chooser.budget:.0f} s) stopped the search: the best model so far "
            "is kept."
        )
    return Choice(
        family=winner,
        params=chosen,
        model=model,
        validation_score=validation_score if len(X_valid) else None,
        cv_score=cv_score,
        scoring=chooser.scoring,
        table=pd.DataFrame(chooser.rows),
        budget=chooser.budget,
        budget_hit=chooser.budget_hit,
        seconds=time.monotonic() - chooser.started,
        candidates=chooser.candidates,
    )


def pipeline_factory(
    cleaning_params: CleaningParams,
    feature_params: FeatureParams,
    numeric_columns: list[str],
    categorical_columns: list[str],
    *,
    task: str,
    seed: int,
    class_weight: str = "none",
    device: str = "auto",
    levels: Mapping[str, int] | None = None,
) -> Callable[[str], Pipeline]:
    """Return ``make_pipeline(family)``: the unfitted model pipeline of a family.

    Each family gets preprocessing that suits it (``ModelFamily.preprocessing``, see
    :func:`nbtools.ml.cleaning.build_preprocessor`): gradient boosting keeps missing values
    and categories for its native handling, unless a feature selector, which needs finite
    numbers, sits in between. ``levels`` (distinct values per categorical column of the
    training split) decides which columns are target-encoded. ``class_weight`` and ``device``
    are the train stage's parameters (:func:`nbtools.ml.modeling.make_estimator`).
    """
    target_type = TARGET_TYPES.get(task)

    def make_pipeline(family: str) -> Pipeline:
        chosen = get_family(family, task)
        selector = build_selector(feature_params, task)
        finite = any(step != "passthrough" for _, step in selector.steps)
        preprocessor = build_preprocessor(
            cleaning_params,
            numeric_columns,
            categorical_columns,
            model=chosen.preprocessing,
            target_type=target_type,
            levels=levels,
            finite=finite,
        )
        if chosen.preprocessing in ("boosting", "neural"):
            selector.set_output(transform="pandas")  # keeps the category columns' dtype
        pipeline = build_pipeline(
            preprocessor,
            selector,
            make_estimator(chosen.name, task, seed=seed, class_weight=class_weight, device=device),
            creator=FeatureCreator(feature_params.date_parts, feature_params.expressions),
        )
        return pipeline

    return make_pipeline


def fit_final(
    choice: Choice,
    make_pipeline: Callable[[str], Pipeline],
    X: pd.DataFrame,
    y: pd.Series | None,
) -> Pipeline:
    """Fit the chosen family with the chosen hyperparameters on ``X`` (all rows meant for it).

    Returns
    -------
    Pipeline
        A fresh pipeline, fitted; the choice's own model is left as it is.
    """
    pipeline = make_pipeline(choice.family)
    pipeline.set_params(**{f"model__{name}": value for name, value in choice.params.items()})
    fitted, _seconds, _expected = fit_within(pipeline, X, y)
    assert fitted is not None  # without a deadline nothing is given up
    return fitted


def final_rows(
    params: TrainParams,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    split: dict[str, Any],
) -> pd.DataFrame:
    """Return the rows of the final fit: the training rows, or training and validation rows.

    Raises
    ------
    InvalidParameterError
        When ``final_fit`` is not one of its choices.
    """
    if params.final_fit == "train":
        return train
    if params.final_fit != "train+validation":
        raise InvalidParameterError(
            "The 'final_fit' parameter of stage 'train' must be 'train+validation' or 'train'. "
            f"Got {params.final_fit!r} instead."
        )
    return order_for_split(pd.concat([train, validation], ignore_index=True), split)
