"""The time budget of the model choice: how long choosing may take, and a fit that gives up a
forest whose trees would overrun it.

:mod:`nbtools.ml.model_choice` re-exports everything public here.
"""

from __future__ import annotations

import time

import pandas as pd
from sklearn.pipeline import Pipeline

__all__ = [
    "BUDGET_SHARE",
    "COST",
    "FIRST_FITS",
    "MAX_BUDGET",
    "PROBE_SHARE",
    "auto_budget",
    "fit_within",
]

#: ``time_budget=None``: the comparison and the search may take this share of the expected
#: final fit, at least :data:`FIRST_FITS` times the first family's fit, and at most
#: :data:`MAX_BUDGET` seconds.
BUDGET_SHARE, MAX_BUDGET = 0.5, 120.0

#: The least an automatic budget allows, in fits of the first family: room to fit the other
#: families (a forest costs about 8, :data:`COST`), to cross-validate a few search candidates,
#: and to cross-validate the winner. Counted in the first fit's time rather than in seconds, so
#: on a busy or slower machine the comparison and the search stay about the same, only slower.
FIRST_FITS = 20

#: Rough fit time of each kind of model with default settings, relative to gradient boosting
#: (100 full-depth trees of a forest cost far more than 100 small boosted trees): a family whose
#: expected fit would overrun the budget is skipped rather than started.
COST = {"boosting": 1.0, "linear": 0.3, "forest": 8.0, "neural": 3.0}

#: A forest's cost grows with the rows far faster than boosting's, so :data:`COST` can be off
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


def auto_budget(first_fit_seconds: float, sample_rows: int, final_rows: int) -> tuple[float, str]:
    """Return the time budget ``time_budget=None`` stands for, in seconds, and why.

    The comparison and the search are worth a share (:data:`BUDGET_SHARE`) of what the final
    fit will cost, which is estimated from the first family's fit on the compared rows, scaled
    to the rows of the final fit. They always get room for :data:`FIRST_FITS` fits like the
    first one, so every family is compared and a few candidates are tried; and at most
    :data:`MAX_BUDGET` seconds. The lower bounds are measured in the first fit's time, so on a
    busy machine the comparison and the search stay about the same, only slower.

    Parameters
    ----------
    first_fit_seconds : float
        Time of the first family's fit, with default settings, on ``sample_rows`` rows.
    sample_rows : int
        Rows that fit used (the training rows, or a sample of :data:`COMPARE_ROWS`).
    final_rows : int
        Rows the final fit will use.

    Returns
    -------
    budget : float
        Seconds.
    why : str
        Which bound set it, for the train stage's output.
    """
    expected_final = first_fit_seconds * final_rows / max(sample_rows, 1)
    share = BUDGET_SHARE * expected_final
    room = FIRST_FITS * first_fit_seconds
    if max(share, room) >= MAX_BUDGET:
        return MAX_BUDGET, f"the most an automatic budget allows ({MAX_BUDGET:.0f} s)"
    if share >= room:
        return float(share), f"half the expected final fit ({final_rows:,} rows)"
    return float(room), (
        f"{FIRST_FITS} times the first fit ({first_fit_seconds:.2f} s), room to compare every "
        "family and try a few candidates"
    )
