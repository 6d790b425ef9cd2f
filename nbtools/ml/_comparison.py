"""The steps of the model choice: comparing families on the same rows, keeping the first unless
another is surely better, tuning the winner within the time budget.

:func:`nbtools.ml.model_choice.choose_model` runs them through a :class:`Chooser`;
:mod:`nbtools.ml.model_choice` re-exports everything public here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline

from nbtools.ml._budget import COST, MAX_BUDGET, PROBE_SHARE, auto_budget, fit_within
from nbtools.ml._folds import cv_splitter
from nbtools.ml.modeling import (
    TrainParams,
    best_params,
    get_family,
    get_scorer,
    resolve_scoring,
    resolve_search,
    search,
)

__all__ = ["COMPARE_ROWS", "Chooser", "surely_better"]

#: Training rows the comparison and the search use at most (a seeded sample of larger tables).
COMPARE_ROWS = 20_000


class Chooser:
    """The state that the steps of one :func:`nbtools.ml.model_choice.choose_model` share.

    It holds the compared rows (a sample of :data:`COMPARE_ROWS` at most), the scorer, the
    folds, the time budget and its deadline, and collects the table's rows and the search's
    candidates as the steps run. ``budget`` is None until the first family's fit sets it,
    unless the parameters state it.
    """

    def __init__(
        self,
        make_pipeline: Callable[[str], Pipeline],
        X_train: pd.DataFrame,
        y_train: pd.Series | None,
        X_valid: pd.DataFrame,
        y_valid: pd.Series | None,
        params: TrainParams,
        *,
        task: str,
        seed: int,
        cv: Any,
        groups: Any,
        say: Callable[[str], None],
    ) -> None:
        self.make_pipeline, self.params, self.task, self.seed = make_pipeline, params, task, seed
        self.X_valid, self.y_valid, self.say = X_valid, y_valid, say
        self.started = time.monotonic()
        self.budget = params.time_budget  # None: set from the first fit's time
        self.deadline = self.started + (self.budget or MAX_BUDGET)
        self.final_rows = len(X_train) + (
            len(X_valid) if params.final_fit == "train+validation" else 0
        )
        self.scoring = resolve_scoring(params.scoring, task, y_train)
        self.scorer = get_scorer(self.scoring)
        self.X_all, self.y_all = X_train, y_train
        self.X, self.y, self.groups = _sample(X_train, y_train, groups, seed)
        self.cv = cv_splitter({}, task, params.cv_folds, seed)[0] if cv is None else cv
        self.rows: list[dict[str, Any]] = []
        self.candidates: list[Any] = []
        self.budget_hit = False

    def score(self, model: Pipeline) -> float:
        """Score a fitted model on the validation rows, or cross-validated without them."""
        if len(self.X_valid):
            return float(self.scorer(model, self.X_valid, self.y_valid))
        folds = cross_val_score(
            clone(model), self.X, self.y, groups=self.groups, scoring=self.scorer, cv=self.cv
        )
        return float(np.mean(folds))

    def compare(self, names: tuple[str, ...]) -> dict[str, tuple[Pipeline, float]]:
        """Fit and score each family with its defaults, skipping those the budget has no room for.

        Returns each fitted family's model and score; the first family always runs.
        """
        fitted: dict[str, tuple[Pipeline, float]] = {}
        if self.budget is not None:
            self.say(f"Time budget {self.budget:.0f} s (stated).")
        self.say(f"Comparing {', '.join(names)} on {len(self.X):,} training rows.")
        first_seconds: float | None = None
        for name in names:
            family = get_family(name, self.task)
            cost = COST[family.preprocessing]
            expected = 0.0 if first_seconds is None else first_seconds * cost
            if fitted and time.monotonic() + expected > self.deadline:
                why = "spent" if time.monotonic() > self.deadline else "too short for it"
                self._skip(family.name, None, f"the time budget is {why} (about {expected:.0f} s)")
                continue
            # the first family always runs; a later forest only if its trees fit the budget
            model, seconds, expected = fit_within(
                self.make_pipeline(family.name), self.X, self.y, self.deadline if fitted else None
            )
            if model is None:
                self._skip(
                    family.name,
                    seconds,
                    f"the time budget is too short for it (about {expected:.0f} s, judged from "
                    f"{PROBE_SHARE:.0%} of its trees)",
                )
                continue
            if first_seconds is None:
                first_seconds = seconds / cost
                self._set_budget(seconds)
            value = self.score(model)
            fitted[family.name] = (model, value)
            self.rows.append(
                _row("compare", family.name, value, None, seconds, len(self.X), "defaults")
            )
            self.say(f"  {family.name}: {self.scoring} {value:.4f} ({seconds:.1f} s)")
        return fitted

    def _skip(self, family: str, seconds: float | None, why: str) -> None:
        self.budget_hit = True
        self.rows.append(
            _row("compare", family, None, None, seconds, len(self.X), "skipped: budget")
        )
        self.say(f"  {family}: skipped, {why}")

    def _set_budget(self, first_fit_seconds: float) -> None:
        """Set the budget from the first family's fit, unless stated, and its deadline."""
        if self.budget is None:
            self.budget, why = auto_budget(first_fit_seconds, len(self.X), self.final_rows)
            self.say(f"Time budget {self.budget:.0f} s: {why}.")
        self.deadline = self.started + self.budget

    def pick(self, fitted: dict[str, tuple[Pipeline, float]], names: tuple[str, ...]) -> str:
        """Return the winner of the comparison, saying when the first family is kept.

        A challenger replaces the first family when it scores surely better
        (:func:`surely_better`) and, if the families were compared on a sample of a larger
        table, when it is still ahead when both are fitted on every row (:meth:`still_ahead`).
        """
        winner = surely_better(
            fitted,
            names,
            self.X_valid,
            self.y_valid,
            self.scoring,
            task=self.task,
            seed=self.seed,
        )
        if winner != max(fitted, key=lambda name: fitted[name][1]):
            self.say(f"Kept {winner}: no other family scored surely better on the validation rows.")
        first = next(name for name in names if name in fitted)
        if winner != first and not self.still_ahead(winner, first, fitted):
            return first
        return winner

    def still_ahead(
        self, challenger: str, first: str, fitted: dict[str, tuple[Pipeline, float]]
    ) -> bool:
        """Whether ``challenger``, ahead of ``first`` on the sample, is ahead on every row too.

        When the families were compared on a sample of :data:`COMPARE_ROWS` rows, the sample
        cannot tell which family gains more from the rest: a flexible model keeps gaining long
        after a linear one has stopped (on 262,000 flights, ridge leads gradient boosting when
        both are fitted on 10,000 to 80,000 rows, and trails it when both have every row). So
        both are fitted again on every training row, and the challenger must still be surely
        better (:func:`surely_better`). When the budget has no room for those two fits, the
        first family is kept. Without validation rows the sample's verdict stands.
        """
        rows = len(self.X_all)
        if len(self.X) >= rows or not len(self.X_valid):
            return True
        seconds = {row["family"]: row["fit_seconds"] or 0.0 for row in self.rows}
        expected = (seconds[first] + seconds[challenger]) * rows / len(self.X)
        if time.monotonic() + expected > self.deadline:
            self.say(
                f"Kept {first}: {challenger} scored better on the {len(self.X):,}-row sample, but "
                f"{first} may gain more from the other rows, and the time budget has no room to "
                f"fit both on all {rows:,} training rows (about {expected:.0f} s). Raise "
                "train.time_budget to check."
            )
            return False
        on_all = {}
        for name in (first, challenger):
            tick = time.perf_counter()
            model = self.make_pipeline(name).fit(self.X_all, self.y_all)
            on_all[name] = (model, self.score(model))
            note = "every training row"
            self.rows.append(
                _row("confirm", name, on_all[name][1], None, time.perf_counter() - tick, rows, note)
            )
            self.say(
                f"  {name} on all {rows:,} training rows: {self.scoring} {on_all[name][1]:.4f}"
            )
        winner = surely_better(
            on_all,
            (first, challenger),
            self.X_valid,
            self.y_valid,
            self.scoring,
            task=self.task,
            seed=self.seed,
        )
        if winner == first:
            self.say(
                f"Kept {first}: {challenger} scored better on the {len(self.X):,}-row sample, "
                f"but not surely better when both were fitted on all {rows:,} training rows."
            )
        return winner == challenger

    def tune(
        self, winner: str, model: Pipeline, validation_score: float
    ) -> tuple[Pipeline, float, dict[str, Any], float | None]:
        """Search the winner's hyperparameters within what is left of the budget.

        Returns the model and its validation score (the tuned ones when :meth:`_keep_tuned`
        keeps them), the tuned hyperparameters (empty when the defaults stay) and the search's
        cross-validated score (None without a search).
        """
        strategy = resolve_search(self.params.search, len(self.X))
        # the cross-validated score of kept defaults comes after the search, inside the budget
        winner_seconds = next(row["fit_seconds"] for row in self.rows if row["family"] == winner)
        search_deadline = self.deadline - (self.params.cv_folds - 1) * winner_seconds
        if strategy == "none":
            return model, validation_score, {}, None
        if time.monotonic() >= search_deadline:
            self.budget_hit = True
            self.rows.append(_row("tune", winner, None, None, None, len(self.X), "skipped: budget"))
            self.say(f"No search: the time budget of {self.budget:.0f} s is spent.")
            return model, validation_score, {}, None
        tuned = TrainParams(**{**self.params.to_dict(), "family": winner})

        def on_candidate(candidate: Any) -> None:
            self.candidates.append(candidate)
            self.say(_progress(candidate))

        self.say(f"Tuning {winner}: {strategy} search, {self.params.n_iter} candidates at most.")
        tick = time.perf_counter()
        fitted_search = search(
            self.make_pipeline(winner),
            self.X,
            self.y,
            tuned,
            task=self.task,
            seed=self.seed,
            cv=self.cv,
            groups=self.groups,
            deadline=search_deadline,
            on_candidate=on_candidate,
        )
        seconds = time.perf_counter() - tick
        stopped = bool(getattr(fitted_search, "stopped_early_", False))
        self.budget_hit |= stopped
        value = self.score(fitted_search.best_estimator_)
        cv_score = float(fitted_search.best_score_)
        kept, why = self._keep_tuned(model, validation_score, fitted_search.best_estimator_, value)
        note = f"{len(self.candidates)} candidates" + (", stopped by the budget" if stopped else "")
        note += f"; {why}"
        self.rows.append(_row("tune", winner, value, cv_score, seconds, len(self.X), note))
        self.say(f"  tuned {winner}: {self.scoring} {value:.4f} (cv {cv_score:.4f}); {note}")
        if kept:
            return fitted_search.best_estimator_, value, best_params(fitted_search), cv_score
        return model, validation_score, {}, cv_score

    def _keep_tuned(
        self, defaults: Pipeline, default_score: float, tuned: Pipeline, tuned_score: float
    ) -> tuple[bool, str]:
        """Whether the tuned model replaces the defaults, and the note that says why.

        A stated ``space`` is the user's choice (the tuning panel's chosen candidate is one), so
        its best candidate is kept. Otherwise the tuned model must be surely better on the
        validation rows (:func:`surely_better`): a search picks the best of many candidates by
        cross-validation, and a gain of a few thousandths on a few hundred validation rows is as
        likely noise as real, so a tuned model kept on any gain is as often worse on new rows.
        """
        if self.params.space:
            return True, "kept (the stated space)"
        fitted = {"defaults": (defaults, default_score), "tuned": (tuned, tuned_score)}
        winner = surely_better(
            fitted,
            ("defaults", "tuned"),
            self.X_valid,
            self.y_valid,
            self.scoring,
            task=self.task,
            seed=self.seed,
        )
        if winner == "tuned":
            return True, "kept"
        if tuned_score > default_score:
            return False, "defaults kept (not surely better on validation)"
        return False, "defaults kept (not better on validation)"

    def default_cv_score(self, winner: str) -> float:
        """Cross-validate the winner with its defaults, for a score beside its validation score.

        The folds run one after another; once two have run, a fold that would end past the
        budget's deadline (judged from the slowest fold so far) is not started, and the mean of
        the folds that ran is the score, said as such. On a busy machine the folds can take far
        longer than the comparison's fit predicted, and a stated budget bounds all of train.
        """
        tick = time.perf_counter()
        scores: list[float] = []
        folds = list(self.cv.split(self.X, self.y, self.groups))
        slowest = 0.0
        for train_rows, test_rows in folds:
            if len(scores) >= 2 and time.monotonic() + slowest > self.deadline:
                break
            started = time.perf_counter()
            model = self.make_pipeline(winner).fit(
                self.X.iloc[train_rows], None if self.y is None else self.y.iloc[train_rows]
            )
            y_fold = None if self.y is None else self.y.iloc[test_rows]
            scores.append(float(self.scorer(model, self.X.iloc[test_rows], y_fold)))
            slowest = max(slowest, time.perf_counter() - started)
        cv_score = float(np.mean(scores))
        folds_note = ""
        if len(scores) < len(folds):
            self.budget_hit = True
            folds_note = f", {len(scores)} of {len(folds)} folds: the time budget is spent"
        self.say(
            f"Cross-validated {self.scoring} of {winner} with defaults: {cv_score:.4f} "
            f"({time.perf_counter() - tick:.1f} s{folds_note})"
        )
        return cv_score


#: Bootstrap metric (and whether greater is better) of each scorer the comparison can test.
_BOOTSTRAP_METRICS = {
    "roc_auc": ("roc_auc", True),
    "accuracy": ("accuracy", True),
    "r2": ("r2", True),
    "neg_root_mean_squared_error": ("rmse", False),
    "neg_mean_absolute_error": ("mae", False),
}


def surely_better(
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
