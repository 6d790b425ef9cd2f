"""Search spaces with user ranges, and searches that report each candidate."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from scipy import stats
from sklearn.datasets import make_classification
from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (enables the import below)
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import HalvingRandomSearchCV, StratifiedKFold

from nbtools.errors import InvalidParameterError, SearchCancelledError
from nbtools.ml.tuning import (
    Candidate,
    candidate_space,
    candidates_table,
    check_space,
    resolve_space,
    stepwise_searcher,
)


@pytest.mark.parametrize(
    ("space", "match"),
    [
        ({"C": {"low": 10, "high": 1}}, "low < high. Got low=10, high=1"),
        ({"C": {"low": 0, "high": 1, "log": True}}, "log range, so low must be > 0"),
        ({"C": []}, "at least one value"),
        ({"C": {"low": 1}}, "must be a list of values or a range"),
    ],
)
def test_a_malformed_space_is_refused_with_a_clear_message(space: dict, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        check_space(space)


def test_a_range_becomes_grid_points_or_a_distribution() -> None:
    base = {"C": [1.0], "penalty": ["l2"]}
    grid = resolve_space(base, {"C": {"low": 0.01, "high": 100, "log": True}}, "grid", {"C"})
    assert grid["C"] == pytest.approx([0.01, 0.1, 1.0, 10.0, 100.0])
    assert grid["penalty"] == ["l2"]
    drawn = resolve_space(base, {"C": {"low": 1, "high": 5}}, "random", {"C"})
    assert isinstance(drawn["C"].dist, type(stats.randint))
    assert set(drawn["C"].rvs(200, random_state=0)) == {1, 2, 3, 4, 5}


def test_an_unknown_hyperparameter_is_named() -> None:
    with pytest.raises(InvalidParameterError, match="names hyperparameter 'Cee'"):
        resolve_space({}, {"Cee": [1]}, "grid", {"C", "tol"})


def test_a_stepwise_halving_search_scores_exactly_like_scikit_learn() -> None:
    X, y = make_classification(300, n_features=5, random_state=0)
    options = {
        "cv": StratifiedKFold(3, shuffle=True, random_state=0),
        "n_candidates": 6,
        "min_resources": "exhaust",
        "random_state": 0,
    }
    space = {"C": stats.loguniform(1e-3, 1e2)}
    seen: list[Candidate] = []
    ours = stepwise_searcher(
        "halving", LogisticRegression(), space, on_candidate=seen.append, **options
    ).fit(X, y)
    plain = HalvingRandomSearchCV(LogisticRegression(), space, **options).fit(X, y)
    np.testing.assert_allclose(
        ours.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"]
    )
    assert len(seen) == len(plain.cv_results_["params"])
    assert [c.number for c in seen] == list(range(1, len(seen) + 1))
    assert {c.iteration for c in seen} == set(plain.cv_results_["iter"])


def test_a_search_stops_when_asked() -> None:
    X, y = make_classification(120, n_features=4, random_state=0)
    seen: list[Candidate] = []
    searcher = stepwise_searcher(
        "grid",
        LogisticRegression(),
        {"C": [0.1, 1.0, 10.0]},
        on_candidate=seen.append,
        should_stop=lambda: len(seen) >= 2,
        cv=2,
    )
    with pytest.raises(SearchCancelledError, match="after 2 candidate"):
        searcher.fit(X, y)
    assert [c.params for c in seen] == [{"C": 0.1}, {"C": 1.0}]


class _Clock:
    """A fake ``time.monotonic`` that only moves when a model is fitted."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


CLOCK = _Clock()


class _TimedModel(LogisticRegression):
    """A logistic regression whose every fit takes one second of :data:`CLOCK`."""

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> _TimedModel:
        CLOCK.now += 1.0
        return super().fit(X, y, sample_weight)


def test_a_search_does_not_start_a_candidate_that_would_end_past_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each candidate takes 2 clock seconds (2 folds). With the deadline at 5, the third would
    start at 4 and end at 6, so the search ends after two candidates, not three."""
    monkeypatch.setattr(time, "monotonic", CLOCK)
    CLOCK.now = 0.0
    X, y = make_classification(120, n_features=4, random_state=0)
    seen: list[Candidate] = []
    searcher = stepwise_searcher(
        "grid",
        _TimedModel(),
        {"C": [0.1, 1.0, 10.0, 100.0]},
        on_candidate=seen.append,
        deadline=5.0,
        cv=2,
    ).fit(X, y)
    assert [c.params for c in seen] == [{"C": 0.1}, {"C": 1.0}]
    assert searcher.stopped_early_


def test_a_candidate_turns_into_a_table_row_and_a_one_point_space() -> None:
    candidate = Candidate(1, {"C": 0.5, "class_weight": None}, 0.8, 0.01, 0.02)
    table = candidates_table([candidate])
    assert list(table.columns) == [
        "candidate",
        "mean_score",
        "std_score",
        "fit_seconds",
        "C",
        "class_weight",
    ]
    assert candidate_space(candidate) == {"C": [0.5], "class_weight": [None]}
