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
   says so. Unless stated, the budget is half of what the final fit is
   expected to cost (:func:`auto_budget`), so choosing never costs much more than fitting.

:func:`fit_final` then refits the chosen pipeline on the training rows, or on training and
validation rows together (the default), which is what a plain model fitted on all non-test rows
gets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    TimeSeriesSplit,
    cross_val_score,
)
from sklearn.pipeline import Pipeline

from nbtools.errors import InvalidParameterError
from nbtools.ml.cleaning import CleaningParams, build_preprocessor
from nbtools.ml.encoding import TARGET_TYPES
from nbtools.ml.features import FeatureCreator, FeatureParams, build_selector
from nbtools.ml.modeling import (
    TrainParams,
    best_params,
    build_pipeline,
    get_family,
    get_scorer,
    make_estimator,
    resolve_scoring,
    resolve_search,
    search,
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

#: Training rows the comparison and the search use at most (a seeded sample of larger tables).
COMPARE_ROWS = 20_000

#: ``time_budget=None``: the comparison and the search may take this share of the expected
#: final fit, at least :data:`MIN_BUDGET` and at most :data:`MAX_BUDGET` seconds.
BUDGET_SHARE, MIN_BUDGET, MAX_BUDGET = 0.5, 5.0, 120.0

#: Rough fit time of each kind of model with default settings, relative to gradient boosting
#: (100 full-depth trees of a forest cost far more than 100 small boosted trees): a family whose
#: expected fit would overrun the budget is skipped rather than started.
_COST = {"boosting": 1.0, "linear": 0.3, "forest": 8.0}

#: A forest's cost grows with the rows far faster than boosting's, so :data:`_COST` can be off
#: several times over: a forest is first grown to this share of its trees, timed, and finished
#: only when the rest fits the budget.
PROBE_SHARE = 0.1


def fit_within(
    pipeline: Pipeline, X: pd.DataFrame, y: pd.Series | None, deadline: float | None = None
) -> tuple[Pipeline | None, float, float]:
    """Fit ``pipeline``, or give up on a forest whose full fit would end after ``deadline``.

    A model that grows independent trees (``n_estimators``, ``warm_start`` and ``n_jobs``: a
    random forest) builds them on every core. With a ``deadline`` it is grown in two steps:
    :data:`PROBE_SHARE` of its trees, timed, then (warm-started, so the trees are those of a
    single fit) the rest, if the time the probe predicts for them ends before the deadline.
    Other models are simply fitted. The model keeps its own ``n_estimators``, ``n_jobs`` and
    ``warm_start`` settings afterwards, so one-row predictions stay on one thread.

    Returns
    -------
    model : Pipeline or None
        ``pipeline``, fitted; None when the forest was given up.
    seconds : float
        Time spent, the probe included.
    expected : float
        The expected time of the full fit (``seconds`` for a model fitted in one step).
    """
    tick = time.perf_counter()
    estimator = pipeline.named_steps["model"]
    own = estimator.get_params()
    if not {"n_estimators", "warm_start", "n_jobs"} <= set(own):
        pipeline.fit(X, y)
        seconds = time.perf_counter() - tick
        return pipeline, seconds, seconds
    trees = own["n_estimators"]
    probe = trees if deadline is None else max(1, round(trees * PROBE_SHARE))
    try:
        estimator.set_params(n_estimators=probe, warm_start=True, n_jobs=-1)
        pipeline.fit(X, y)
        probe_seconds = time.perf_counter() - tick
        expected = probe_seconds * trees / probe
        if probe < trees:
            if deadline is not None and time.monotonic() + expected - probe_seconds > deadline:
                return None, probe_seconds, expected
            estimator.set_params(n_estimators=trees)
            pipeline.fit(X, y)
    finally:
        estimator.set_params(n_estimators=trees, warm_start=own["warm_start"], n_jobs=own["n_jobs"])
    return pipeline, time.perf_counter() - tick, expected


def auto_budget(first_fit_seconds: float, sample_rows: int, final_rows: int) -> float:
    """Return the time budget ``time_budget=None`` stands for, in seconds.

    The comparison and the search are worth a share (:data:`BUDGET_SHARE`) of what the final
    fit will cost, which is estimated from the first family's fit on the compared rows, scaled
    to the rows of the final fit. A small table gets :data:`MIN_BUDGET` (a few seconds buy a
    real search there); a large one at most :data:`MAX_BUDGET`. So the whole train stage takes
    about one and a half plain fits of the final rows, plus the minimum.

    Parameters
    ----------
    first_fit_seconds : float
        Time of the first family's fit, with default settings, on ``sample_rows`` rows.
    sample_rows : int
        Rows that fit used (the training rows, or a sample of :data:`COMPARE_ROWS`).
    final_rows : int
        Rows the final fit will use.
    """
    expected_final = first_fit_seconds * final_rows / max(sample_rows, 1)
    return float(np.clip(BUDGET_SHARE * expected_final, MIN_BUDGET, MAX_BUDGET))


def cv_splitter(split: dict[str, Any], task: str, folds: int, seed: int) -> tuple[Any, str]:
    """Return cross-validation folds that follow the split stage's strategy, and why.

    Parameters
    ----------
    split : dict
        The split stage's ``split.json``: ``strategy_used``, ``group_column``, ``time_column``.
    task : str
        ``"classification"`` stratifies the folds (also group folds).
    folds : int
        The number of folds.
    seed : int
        Seeds the shuffled folds.

    Returns
    -------
    splitter : cross-validation splitter
        ``TimeSeriesSplit`` for a time split (rows must be in time order: each fold trains on
        the past and scores on the rows just after it), ``StratifiedGroupKFold`` or
        ``GroupKFold`` for a group split (no group on both sides of a fold; pass the groups
        to the search), shuffled ``StratifiedKFold`` or ``KFold`` otherwise.
    reason : str
        One sentence for the notebook.
    """
    strategy = split.get("strategy_used", "random")
    if strategy == "time":
        return TimeSeriesSplit(n_splits=folds), (
            f"time split on '{split['time_column']}': each fold trains on earlier rows and "
            "scores on the rows right after them"
        )
    if strategy == "group":
        splitter: Any = (
            StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
            if task == "classification"
            else GroupKFold(folds, shuffle=True, random_state=seed)
        )
        return splitter, (
            f"group split on '{split['group_column']}': the rows of one group stay in one fold"
        )
    if task == "classification":
        return StratifiedKFold(folds, shuffle=True, random_state=seed), (
            "shuffled folds that keep the class shares"
        )
    return KFold(folds, shuffle=True, random_state=seed), "shuffled folds"


def order_for_split(frame: pd.DataFrame, split: dict[str, Any]) -> pd.DataFrame:
    """Return ``frame`` in time order for a time split (as ordered folds need), else as is."""
    if split.get("strategy_used") == "time" and split.get("time_column") in frame.columns:
        return frame.sort_values(split["time_column"], kind="stable").reset_index(drop=True)
    return frame


def split_groups(frame: pd.DataFrame, split: dict[str, Any]) -> pd.Series | None:
    """Return the group of each row for a group split, else None."""
    if split.get("strategy_used") == "group":
        return frame[split["group_column"]]
    return None


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
            "-p train.family=hist_gradient_boosting."
        )
    params.validate(task)
    say = report or (lambda _line: None)
    started = time.monotonic()
    budget = params.time_budget  # None: set from the first fit's time
    deadline = started + (budget or MAX_BUDGET)
    final_rows = len(X_train) + (len(X_valid) if params.final_fit == "train+validation" else 0)
    scoring = resolve_scoring(params.scoring, task, y_train)
    scorer = get_scorer(scoring)
    X, y, g = _sample(X_train, y_train, groups, seed)
    if cv is None:
        cv = cv_splitter({}, task, params.cv_folds, seed)[0]

    def score(model: Pipeline) -> float:
        if len(X_valid):
            return float(scorer(model, X_valid, y_valid))
        folds = cross_val_score(clone(model), X, y, groups=g, scoring=scorer, cv=cv)
        return float(np.mean(folds))

    names = AUTO_CANDIDATES[task] if params.family == "auto" else (params.family,)
    rows: list[dict[str, Any]] = []
    fitted: dict[str, tuple[Pipeline, float]] = {}
    budget_hit = False
    if budget is not None:
        say(f"Time budget {budget:.0f} s (stated).")
    say(f"Comparing {', '.join(names)} on {len(X):,} training rows.")
    first_seconds: float | None = None
    for name in names:
        family = get_family(name, task)
        expected = 0.0 if first_seconds is None else first_seconds * _COST[family.preprocessing]
        if fitted and time.monotonic() + expected > deadline:
            budget_hit = True
            why = "spent" if time.monotonic() > deadline else "too short for it"
            rows.append(_row("compare", family.name, None, None, None, len(X), "skipped: budget"))
            say(f"  {family.name}: skipped, the time budget is {why} (about {expected:.0f} s)")
            continue
        # the first family always runs; a later forest only if its trees fit the budget
        model, seconds, expected = fit_within(
            make_pipeline(family.name), X, y, deadline if fitted else None
        )
        if model is None:
            budget_hit = True
            rows.append(
                _row("compare", family.name, None, None, seconds, len(X), "skipped: budget")
            )
            say(
                f"  {family.name}: skipped, the time budget is too short for it (about "
                f"{expected:.0f} s, judged from {PROBE_SHARE:.0%} of its trees)"
            )
            continue
        if first_seconds is None:
            first_seconds = seconds / _COST[family.preprocessing]
            if budget is None:
                budget = auto_budget(seconds, len(X), final_rows)
                say(
                    f"Time budget {budget:.0f} s: half the expected final fit "
                    f"({final_rows:,} rows), at least {MIN_BUDGET:.0f} s."
                )
            deadline = started + budget
        value = score(model)
        fitted[family.name] = (model, value)
        rows.append(_row("compare", family.name, value, None, seconds, len(X), "defaults"))
        say(f"  {family.name}: {scoring} {value:.4f} ({seconds:.1f} s)")
    assert budget is not None  # the first family's fit set it
    winner = _surely_better(fitted, names, X_valid, y_valid, scoring, task=task, seed=seed)
    model, validation_score = fitted[winner]
    if winner != max(fitted, key=lambda name: fitted[name][1]):
        say(f"Kept {winner}: no other family scored surely better on the validation rows.")
    chosen: dict[str, Any] = {}
    cv_score: float | None = None
    candidates: list[Any] = []
    strategy = resolve_search(params.search, len(X))
    # the cross-validated score of kept defaults comes after the search, inside the budget
    winner_seconds = next(row["fit_seconds"] for row in rows if row["family"] == winner)
    search_deadline = deadline - (params.cv_folds - 1) * winner_seconds
    if strategy != "none" and time.monotonic() < search_deadline:
        tuned = TrainParams(**{**params.to_dict(), "family": winner})

        def on_candidate(candidate: Any) -> None:
            candidates.append(candidate)
            say(_progress(candidate))

        say(f"Tuning {winner}: {strategy} search, {params.n_iter} candidates at most.")
        tick = time.perf_counter()
        fitted_search = search(
            make_pipeline(winner),
            X,
            y,
            tuned,
            task=task,
            seed=seed,
            cv=cv,
            groups=g,
            deadline=search_deadline,
            on_candidate=on_candidate,
        )
        seconds = time.perf_counter() - tick
        stopped = bool(getattr(fitted_search, "stopped_early_", False))
        budget_hit |= stopped
        value = score(fitted_search.best_estimator_)
        cv_score = float(fitted_search.best_score_)
        kept = value > validation_score
        note = f"{len(candidates)} candidates" + (", stopped by the budget" if stopped else "")
        note += "; kept" if kept else "; defaults kept (not better on validation)"
        rows.append(_row("tune", winner, value, cv_score, seconds, len(X), note))
        say(f"  tuned {winner}: {scoring} {value:.4f} (cv {cv_score:.4f}); {note}")
        if kept:
            model, validation_score = fitted_search.best_estimator_, value
            chosen = best_params(fitted_search)
    elif strategy != "none":
        budget_hit = True
        rows.append(_row("tune", winner, None, None, None, len(X), "skipped: budget"))
        say(f"No search: the time budget of {budget:.0f} s is spent.")
    if cv_score is None or not chosen:
        # the cross-validated score of the chosen model itself, beside its validation score
        tick = time.perf_counter()
        folds = cross_val_score(
            make_pipeline(winner), X, y, groups=g, scoring=scorer, cv=cv, error_score="raise"
        )
        cv_score = float(np.mean(folds))
        say(
            f"Cross-validated {scoring} of {winner} with defaults: {cv_score:.4f} "
            f"({time.perf_counter() - tick:.1f} s)"
        )
    if budget_hit:
        say(f"The time budget ({budget:.0f} s) stopped the search: the best model so far is kept.")
    table = pd.DataFrame(rows)
    return Choice(
        family=winner,
        params=chosen,
        model=model,
        validation_score=validation_score if len(X_valid) else None,
        cv_score=cv_score,
        scoring=scoring,
        table=table,
        budget=budget,
        budget_hit=budget_hit,
        seconds=time.monotonic() - started,
        candidates=candidates,
    )


#: Bootstrap metric (and whether greater is better) of each scorer the comparison can test.
_BOOTSTRAP_METRICS = {
    "roc_auc": ("roc_auc", True),
    "accuracy": ("accuracy", True),
    "r2": ("r2", True),
    "neg_root_mean_squared_error": ("rmse", False),
    "neg_mean_absolute_error": ("mae", False),
}


def _surely_better(
    fitted: dict[str, tuple[Pipeline, float]],
    names: tuple[str, ...],
    X_valid: pd.DataFrame,
    y_valid: pd.Series | None,
    scoring: str,
    *,
    task: str,
    seed: int,
) -> str:
    """Return the first family, unless another beats it beyond the noise of the validation rows.

    The best-scoring challenger replaces the first family only when the 95 % lower bound of its
    paired-bootstrap gain is above zero. Without validation rows, or for a scorer the bootstrap
    does not know, the highest score wins.
    """
    best = max(fitted, key=lambda name: fitted[name][1])
    first = next((name for name in names if name in fitted), best)
    metric = _BOOTSTRAP_METRICS.get(scoring)
    if best == first or metric is None or not len(X_valid) or y_valid is None:
        return best
    from nbtools.ml.bootstrap import paired_gain, row_scores

    name, greater_is_better = metric
    interval = paired_gain(
        row_scores(fitted[best][0], X_valid, y_valid, metric=name),
        row_scores(fitted[first][0], X_valid, y_valid, metric=name),
        greater_is_better=greater_is_better,
        seed=seed,
    )
    return best if interval.lower > 0 else first


def pipeline_factory(
    cleaning_params: CleaningParams,
    feature_params: FeatureParams,
    numeric_columns: list[str],
    categorical_columns: list[str],
    *,
    task: str,
    seed: int,
    class_weight: str = "none",
    levels: Mapping[str, int] | None = None,
) -> Callable[[str], Pipeline]:
    """Return ``make_pipeline(family)``: the unfitted model pipeline of a family.

    Each family gets preprocessing that suits it (``ModelFamily.preprocessing``, see
    :func:`nbtools.ml.cleaning.build_preprocessor`): gradient boosting keeps missing values
    and categories for its native handling, unless a feature selector, which needs finite
    numbers, sits in between. ``levels`` (distinct values per categorical column of the
    training split) decides which columns are target-encoded.
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
        if chosen.preprocessing == "boosting":
            selector.set_output(transform="pandas")  # keeps the category columns' dtype
        pipeline = build_pipeline(
            preprocessor,
            selector,
            make_estimator(chosen.name, task, seed=seed, class_weight=class_weight),
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


def _sample(
    X: pd.DataFrame, y: pd.Series | None, groups: Any, seed: int
) -> tuple[pd.DataFrame, pd.Series | None, Any]:
    """At most COMPARE_ROWS rows, drawn with the seed, in their original order."""
    if len(X) <= COMPARE_ROWS:
        return X, y, groups
    keep = np.sort(np.random.default_rng(seed).choice(len(X), COMPARE_ROWS, replace=False))
    sample_groups = None if groups is None else np.asarray(groups)[keep]
    return (
        X.iloc[keep].reset_index(drop=True),
        None if y is None else y.iloc[keep].reset_index(drop=True),
        sample_groups,
    )


def _row(
    step: str,
    family: str,
    validation: float | None,
    cv: float | None,
    seconds: float | None,
    rows: int,
    note: str,
) -> dict[str, Any]:
    return {
        "step": step,
        "family": family,
        "validation_score": validation,
        "cv_score": cv,
        "fit_seconds": None if seconds is None else round(seconds, 2),
        "rows": rows,
        "note": note,
    }


def _progress(candidate: Any) -> str:
    where = ""
    if candidate.iteration is not None:
        where = f" (round {candidate.iteration}, {candidate.n_resources:,} rows)"
    return f"    candidate {candidate.number}: cv {candidate.mean_score:.4f}{where}"
