"""Search spaces a user can narrow, and searches that report each candidate as it finishes.

The train stage's ``space`` parameter overrides a model family's built-in search space, one
hyperparameter at a time. Each entry is either a list of values or a range::

    {"C": {"low": 0.01, "high": 100, "log": true}, "class_weight": [null, "balanced"]}

A range becomes five evenly spaced values (on a log scale with ``log``) for grid search, and a
uniform (or log-uniform) distribution for random and successive-halving search; a range of two
ints draws ints.

:func:`stepwise_searcher` wraps scikit-learn's search classes so that candidates are evaluated
one at a time, with a callback after each and a stop flag checked before each. The scores are
exactly those of the plain search (same folds, same scorer, same candidates): the train stage
and the tuning panel run the same search. A ``deadline`` (a ``time.monotonic()`` instant) ends
the search with the candidates evaluated so far: the best of them is chosen and refitted, and
``stopped_early_`` says so. A candidate is not started when the slowest one so far (per row, for
successive halving, whose later rounds use more rows) says it would end past the deadline, so
the search keeps to its budget rather than overrunning it by one candidate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (enables the import below)
from sklearn.model_selection import GridSearchCV, HalvingRandomSearchCV, RandomizedSearchCV

from nbtools.errors import InvalidParameterError, SearchCancelledError

__all__ = [
    "Candidate",
    "StepwiseGridSearchCV",
    "StepwiseHalvingRandomSearchCV",
    "StepwiseRandomizedSearchCV",
    "candidate_space",
    "candidates_table",
    "check_space",
    "resolve_space",
    "stepwise_searcher",
]

_STAGE = "train"
_GRID_POINTS = 5
_RANGE_KEYS = {"low", "high", "log"}


@dataclass(frozen=True)
class Candidate:
    """One evaluated candidate of a search.

    Parameters
    ----------
    number : int
        1 for the first candidate evaluated, then 2, 3, ...
    params : dict
        The hyperparameters, without the pipeline's ``model__`` prefix, as plain values.
    mean_score, std_score : float
        Cross-validated score (greater is better) and its spread across folds.
    fit_seconds : float
        Mean fit time per fold.
    iteration : int or None
        The successive-halving round; None for grid and random search.
    n_resources : int or None
        Training rows the halving round used; None for grid and random search.
    """

    number: int
    params: dict[str, Any]
    mean_score: float
    std_score: float
    fit_seconds: float
    iteration: int | None = None
    n_resources: int | None = None


def check_space(space: Mapping[str, Any]) -> None:
    """Check the shape of a ``space`` parameter, without knowing the model family.

    Raises
    ------
    InvalidParameterError
        When an entry is neither a non-empty list nor a range with numeric ``low`` < ``high``
        (and ``low`` > 0 for a log range).
    """
    for name, entry in space.items():
        where = f"Hyperparameter '{name}' in the 'space' parameter of stage '{_STAGE}'"
        if isinstance(entry, list | tuple):
            if not entry:
                raise InvalidParameterError(
                    f"{where} must list at least one value. Got an empty list instead."
                )
            continue
        if not isinstance(entry, Mapping) or not {"low", "high"} <= set(entry) <= _RANGE_KEYS:
            raise InvalidParameterError(
                f"{where} must be a list of values or a range {{'low': a, 'high': b}} "
                f"(optionally 'log': true). Got {entry!r} instead."
            )
        low, high = entry["low"], entry["high"]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
        if not numeric or not low < high:
            raise InvalidParameterError(
                f"{where} must be a range with numbers low < high. "
                f"Got low={low!r}, high={high!r} instead."
            )
        if entry.get("log") and low <= 0:
            raise InvalidParameterError(
                f"{where} is a log range, so low must be > 0. Got low={low!r} instead."
            )


def resolve_space(
    base: Mapping[str, Any], space: Mapping[str, Any], search: str, tunable: set[str]
) -> dict[str, Any]:
    """Return the search space with the user's entries laid over a family's built-in space.

    Parameters
    ----------
    base : mapping
        The family's space for ``search``, keyed by estimator parameter (without ``model__``).
    space : mapping
        The ``space`` parameter (see the module docstring).
    search : {"grid", "random", "halving"}
        Grid search takes lists; a range becomes five points. Other searches take distributions.
    tunable : set of str
        The estimator's parameter names, to reject a misspelt hyperparameter.

    Returns
    -------
    dict
        Estimator parameter name to a list or a ``scipy.stats`` distribution.

    Raises
    ------
    InvalidParameterError
        When an entry is malformed or names a parameter the estimator does not have.
    """
    check_space(space)
    resolved = dict(base)
    for name, entry in space.items():
        if name not in tunable:
            raise InvalidParameterError(
                f"The 'space' parameter of stage '{_STAGE}' names hyperparameter '{name}', which "
                f"the model does not have. Its hyperparameters are: {', '.join(sorted(tunable))}."
            )
        resolved[name] = _values(entry, search)
    return resolved


def _values(entry: Any, search: str) -> Any:
    if isinstance(entry, list | tuple):
        return list(entry)
    low, high, log = entry["low"], entry["high"], bool(entry.get("log", False))
    integers = isinstance(low, int) and isinstance(high, int)
    if search == "grid":
        points = (
            np.geomspace(low, high, _GRID_POINTS) if log else np.linspace(low, high, _GRID_POINTS)
        )
        if integers:
            return sorted({round(float(p)) for p in points})
        return [float(p) for p in points]
    if integers:
        return stats.randint(low, high + 1)
    return stats.loguniform(low, high) if log else stats.uniform(low, high - low)


class _Stepwise:
    """Evaluates the candidates of a scikit-learn search one at a time (see the module doc)."""

    on_candidate: Callable[[Candidate], None] | None = None
    should_stop: Callable[[], bool] | None = None
    deadline: float | None = None
    stopped_early_: bool = False

    def _run_search(self, evaluate_candidates: Any, *, callback_ctx: Any = None) -> None:
        self.stopped_early_ = False
        if self.on_candidate is None and self.should_stop is None and self.deadline is None:
            # nobody listens: all candidates at once, so n_jobs spreads over candidates and folds
            super()._run_search(evaluate_candidates, callback_ctx=callback_ctx)  # type: ignore[misc]
            return
        done = 0
        slowest = 0.0  # the slowest candidate's seconds per resource (rows, or 1 without halving)

        def one_at_a_time(
            candidate_params: Any, cv: Any = None, more_results: Any = None, **_context: Any
        ) -> Any:
            # scikit-learn's callback contexts name sub-tasks by their position in one call;
            # with one call per candidate they would collide, so none are passed on
            nonlocal done, slowest
            results = None
            for index, params in enumerate(list(candidate_params)):
                if self.should_stop is not None and self.should_stop():
                    raise SearchCancelledError(
                        f"The search was cancelled after {done} candidate(s)."
                    )
                extra = None
                resources = 1
                if more_results is not None:
                    extra = {key: [values[index]] for key, values in more_results.items()}
                    resources = int(extra.get("n_resources", [1])[0])
                ends = time.monotonic() + slowest * resources
                if done and self.deadline is not None and ends > self.deadline:
                    raise _OutOfTime
                started = time.monotonic()
                results = evaluate_candidates([params], cv, extra)
                slowest = max(slowest, (time.monotonic() - started) / resources)
                done += 1
                if self.on_candidate is not None:
                    self.on_candidate(_candidate(done, results))
            return results

        try:
            super()._run_search(one_at_a_time, callback_ctx=callback_ctx)  # type: ignore[misc]
        except _OutOfTime:
            # fit goes on with the results so far: the best of them is chosen and refitted
            self.stopped_early_ = True


class _OutOfTime(Exception):
    """Raised between candidates once the deadline has passed; never leaves the search."""


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _candidate(number: int, results: Mapping[str, Any]) -> Candidate:
    params = {
        name.removeprefix("model__"): _plain(value) for name, value in results["params"][-1].items()
    }
    iteration = results.get("iter")
    resources = results.get("n_resources")
    return Candidate(
        number=number,
        params=params,
        mean_score=float(results["mean_test_score"][-1]),
        std_score=float(results["std_test_score"][-1]),
        fit_seconds=float(results["mean_fit_time"][-1]),
        iteration=None if iteration is None else int(iteration[-1]),
        n_resources=None if resources is None else int(resources[-1]),
    )


class StepwiseGridSearchCV(_Stepwise, GridSearchCV):
    """``GridSearchCV`` evaluating one candidate at a time (see :func:`stepwise_searcher`)."""


class StepwiseRandomizedSearchCV(_Stepwise, RandomizedSearchCV):
    """``RandomizedSearchCV`` evaluating one candidate at a time."""


class StepwiseHalvingRandomSearchCV(_Stepwise, HalvingRandomSearchCV):
    """``HalvingRandomSearchCV`` evaluating one candidate at a time."""


_SEARCHERS: dict[str, type[Any]] = {
    "grid": StepwiseGridSearchCV,
    "random": StepwiseRandomizedSearchCV,
    "halving": StepwiseHalvingRandomSearchCV,
}


def stepwise_searcher(
    search: str,
    estimator: Any,
    space: Mapping[str, Any],
    *,
    on_candidate: Callable[[Candidate], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    deadline: float | None = None,
    **options: Any,
) -> Any:
    """Build an unfitted search that evaluates candidates one by one.

    Parameters
    ----------
    search : {"grid", "random", "halving"}
        The search strategy.
    estimator : estimator
        The pipeline to tune.
    space : mapping
        Parameter names (``model__C``) to lists or distributions.
    on_candidate : callable, optional
        Called with a :class:`Candidate` after each candidate is cross-validated.
    should_stop : callable, optional
        Checked before each candidate; when it returns True, ``fit`` raises
        :class:`~nbtools.errors.SearchCancelledError`.
    deadline : float, optional
        A ``time.monotonic()`` instant by which the search ends: no candidate starts that the
        slowest so far says would end after it. The search then ends normally with the
        candidates evaluated so far (at least one).
    **options
        Passed to the scikit-learn class (``scoring``, ``cv``, ``n_iter``, ``random_state``...).

    Returns
    -------
    GridSearchCV, RandomizedSearchCV or HalvingRandomSearchCV subclass
        Unfitted.
    """
    searcher = _SEARCHERS[search](estimator, dict(space), **options)
    searcher.on_candidate = on_candidate
    searcher.should_stop = should_stop
    searcher.deadline = deadline
    return searcher


def candidates_table(candidates: list[Candidate]) -> pd.DataFrame:
    """Return evaluated candidates as a table, one row each, in the order they were evaluated.

    Columns: ``candidate``, ``mean_score``, ``std_score``, ``fit_seconds``, for halving search
    ``iteration`` and ``n_resources``, then one column per hyperparameter.
    """
    rows = []
    for item in candidates:
        row: dict[str, Any] = {
            "candidate": item.number,
            "mean_score": item.mean_score,
            "std_score": item.std_score,
            "fit_seconds": item.fit_seconds,
        }
        if item.iteration is not None:
            row["iteration"] = item.iteration
            row["n_resources"] = item.n_resources
        rows.append(row | item.params)
    return pd.DataFrame(rows)


def candidate_space(candidate: Candidate) -> dict[str, list[Any]]:
    """Return the ``space`` parameter that makes a grid search try exactly this candidate."""
    return {name: [value] for name, value in candidate.params.items()}
