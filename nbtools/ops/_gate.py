"""The deploy gate: the challenger and the champion scored on the same rows, and the decision,
promoted only when the paired-bootstrap gain is surely above the margin.

:mod:`nbtools.ops.registry` re-exports everything public here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

import pandas as pd

from nbtools.errors import InvalidParameterError, ModelRegistryError
from nbtools.ml import bootstrap, evaluation
from nbtools.ml.bootstrap import GainInterval, RowScores

__all__ = ["GateDecision", "gate"]

_LOWER_IS_BETTER = {"rmse", "mae"}


@dataclass(frozen=True)
class GateDecision:
    """The outcome of the champion/challenger gate.

    Parameters
    ----------
    promoted : bool
        Whether the challenger should become the champion.
    challenger_score : float
        The challenger's ``metric`` on the gate rows.
    champion_score : float or None
        The champion's ``metric`` on the same rows; None when there is no usable champion.
    metric : str
        The deciding metric.
    reason : str
        One or two sentences saying why, with the scores, the gain and its bound.
    greater_is_better : bool, default=True
        Direction of ``metric``.
    margin : float, default=0.0
        The smallest gain worth a swap, in the metric's units: the gain's lower confidence
        bound had to exceed it.
    champion_version : str or None, default=None
        Registry version of the champion it was compared with.
    gain : float or None, default=None
        Challenger minus champion, signed so that positive means better.
    gain_lower : float or None, default=None
        One-sided lower confidence bound of the gain (paired bootstrap on the gate rows).
    confidence : float or None, default=None
        Level of ``gain_lower``.
    gate_rows : int or None, default=None
        Rows both models were scored on.
    resamples : int or None, default=None
        Bootstrap samples behind ``gain_lower``.
    interval : GainInterval or None, default=None
        The bootstrap itself (its gains, for a plot); not part of :meth:`to_dict`.
    """

    promoted: bool
    challenger_score: float
    champion_score: float | None
    metric: str
    reason: str
    greater_is_better: bool = True
    margin: float = 0.0
    champion_version: str | None = None
    gain: float | None = None
    gain_lower: float | None = None
    confidence: float | None = None
    gate_rows: int | None = None
    resamples: int | None = None
    interval: GainInterval | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as a JSON-serialisable dict (undefined scores become None)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "interval"}
        for key in ("challenger_score", "champion_score", "gain", "gain_lower"):
            if out[key] is not None and not math.isfinite(out[key]):
                out[key] = None
        return out


def gate(
    challenger_model: Any,
    champion_model: Any | None,
    X_test: pd.DataFrame,
    y_test: pd.Series | None,
    *,
    task: str,
    metric: str | None = None,
    greater_is_better: bool | None = None,
    margin: float = 0.0,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
    champion_version: str | None = None,
    replace_broken: bool = False,
) -> GateDecision:
    """Score the challenger and the champion on the same rows and decide on promotion.

    A few hundred rows move a score by a few hundredths by chance, so a higher score alone
    proves little. The gate bootstraps the gain on the gate rows (:func:`~nbtools.ml.
    bootstrap.paired_gain`: ``resamples`` seeded resamples, both models scored on each) and
    promotes the challenger only when the gain's one-sided lower confidence bound is above
    ``margin``. A challenger that is merely as good, or better by less than the noise, is kept
    out. It is promoted without a comparison when there is no champion, and never when its
    own score is undefined (NaN).

    Parameters
    ----------
    challenger_model : estimator
        The new fitted model.
    champion_model : estimator or None
        The current champion (:func:`load_champion`); None when there is none.
    X_test : DataFrame
        Gate rows, the same for both models. Each model gets the columns it was fitted on
        (``feature_names_in_``), so extra columns such as dates or ids do no harm.
    y_test : Series or None
        Their target; None for clustering.
    task : str
        ``"classification"``, ``"regression"`` or ``"clustering"``.
    metric : str, optional
        One of the task's metrics (``roc_auc``, ``f1``, ``accuracy``, ``precision``,
        ``recall``; ``rmse``, ``mae``, ``r2``; ``silhouette``); by default the task's primary
        metric (:func:`nbtools.ml.evaluation.primary_metric`).
    greater_is_better : bool, optional
        Direction of ``metric``; by default False for ``rmse`` and ``mae``, True otherwise.
    margin : float, default=0.0
        The smallest gain worth a swap, in the metric's units. The gain's lower confidence
        bound must exceed it: 0 asks for a gain that is real, 0.01 for one that is surely
        larger than 0.01.
    confidence : float, default=0.95
        Level of the one-sided lower bound, in (0.5, 1).
    resamples : int, default=1000
        Bootstrap samples (at least 100).
    seed : int, default=0
        Seed of the bootstrap (the deploy stage passes the pipeline's seed).
    champion_version : str, optional
        The champion's registry version, reported in the decision. With ``champion_model``
        None it means the champion exists but could not be loaded.
    replace_broken : bool, default=False
        What to do when the champion fails to score the gate rows (its input columns differ
        from the new pipeline's, say): False raises; True lets the challenger replace it.

    Returns
    -------
    GateDecision

    Raises
    ------
    ModelRegistryError
        If the champion cannot score the gate rows and ``replace_broken`` is False.
    InvalidParameterError
        If the task, metric, margin, confidence or resamples is invalid.
    """
    if not margin >= 0:
        raise InvalidParameterError(
            f"The margin must be a float in the range [0, inf). Got {margin!r} instead."
        )
    metric, direction = _gate_metric(task, challenger_model, y_test, metric, greater_is_better)
    challenger = bootstrap.row_scores(
        challenger_model, _model_view(challenger_model, X_test), y_test, metric=metric
    )
    champion, problem = _champion_scores(
        champion_model, X_test, y_test, metric, champion_version, replace_broken=replace_broken
    )

    score = challenger.value()
    champion_score = None if champion is None else champion.value()
    decision = GateDecision(
        promoted=True,
        challenger_score=score,
        champion_score=champion_score,
        metric=metric,
        reason="",
        greater_is_better=direction,
        margin=margin,
        champion_version=champion_version,
    )
    if math.isnan(score):
        reason = f"The challenger's {metric} is undefined (NaN); it cannot be promoted."
        return replace(decision, promoted=False, reason=reason)
    if champion is None or champion_score is None:
        reason = f"There is no champion {metric} to beat; the challenger scores {score:.4f}."
        if problem is not None:
            replaced = f"The champion (version {champion_version}) {problem}; it is replaced."
            reason = f"{replaced} {reason}"
        return replace(decision, reason=reason)
    if math.isnan(champion_score):
        reason = f"The champion's {metric} is undefined (NaN); the challenger replaces it."
        return replace(decision, reason=reason)
    interval = bootstrap.paired_gain(
        challenger,
        champion,
        greater_is_better=direction,
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )
    promoted = interval.lower > margin
    return replace(
        decision,
        promoted=promoted,
        reason=_reason(metric, score, champion_score, interval, margin, promoted),
        gain=interval.gain,
        gain_lower=interval.lower,
        confidence=confidence,
        gate_rows=interval.rows,
        resamples=interval.resamples,
        interval=interval,
    )


def _gate_metric(
    task: str,
    challenger_model: Any,
    y_test: pd.Series | None,
    metric: str | None,
    greater_is_better: bool | None,
) -> tuple[str, bool]:
    """The gate's metric (the task's primary one by default) and its direction."""
    binary = task == "classification" and _n_classes(challenger_model, y_test) == 2
    primary, default_direction = evaluation.primary_metric(task, binary)
    if metric is None:
        metric = primary
    elif metric not in bootstrap.METRICS[task]:
        raise InvalidParameterError(
            f"The metric '{metric}' is not among the {task} metrics "
            f"({', '.join(bootstrap.METRICS[task])})."
        )
    else:
        default_direction = metric not in _LOWER_IS_BETTER
    return metric, default_direction if greater_is_better is None else greater_is_better


def _champion_scores(
    champion_model: Any | None,
    X_test: pd.DataFrame,
    y_test: pd.Series | None,
    metric: str,
    champion_version: str | None,
    *,
    replace_broken: bool,
) -> tuple[RowScores | None, str | None]:
    """The champion's row scores, or None and what is wrong with the champion (if anything)."""
    if champion_model is None:
        return None, None if champion_version is None else "could not be loaded"
    try:
        scores = bootstrap.row_scores(
            champion_model, _model_view(champion_model, X_test), y_test, metric=metric
        )
    except Exception as exc:  # the champion is unusable on this data, whatever the cause
        problem = f"cannot score the test data ({type(exc).__name__}: {exc})"
        if not replace_broken:
            raise ModelRegistryError(
                f"The champion (version {champion_version or 'unknown'}) {problem}. Its "
                "input columns may differ from the new model's. Let the new model replace "
                "it with replace_broken=True (the deploy stage's "
                "replace_broken_champion=True)."
            ) from exc
        return None, problem
    return scores, None


def _reason(
    metric: str,
    score: float,
    champion_score: float,
    interval: GainInterval,
    margin: float,
    promoted: bool,
) -> str:
    """Say why the gate promoted the challenger or kept the champion, with the numbers."""
    level = f"{interval.confidence:.0%}"
    head = (
        f"Challenger {metric} {score:.4f} vs champion {champion_score:.4f}: gain "
        f"{interval.gain:+.4f}, {level} lower bound {interval.lower:+.4f} (one-sided, paired "
        f"bootstrap of {interval.rows:,} rows, {interval.resamples:,} resamples)"
    )
    if promoted:
        return f"{head} is above the margin {margin:g}: the gain is real."
    if interval.gain < 0:
        return f"{head}: the challenger is worse; the champion stays."
    if interval.gain <= margin:
        return f"{head}; the gain is not above the margin {margin:g}."
    return (
        f"{head} is not above the margin {margin:g}: the gain is within the noise of "
        f"{interval.rows:,} rows."
    )


def _model_view(model: Any, X: pd.DataFrame) -> pd.DataFrame:
    """The columns a model was fitted on, when ``X`` has them all; else ``X`` unchanged.

    Models trained on different feature sets can then be scored on the same test rows.
    """
    names = getattr(model, "feature_names_in_", None)
    if names is None or not isinstance(X, pd.DataFrame) or not set(names) <= set(X.columns):
        return X
    return X[list(names)]


def _n_classes(model: Any, y: pd.Series | None) -> int:
    """The classes a classifier knows, or those of ``y`` when it does not say."""
    classes = getattr(model, "classes_", None)
    if classes is not None:
        return len(classes)
    return 0 if y is None else int(pd.Series(y).nunique())
