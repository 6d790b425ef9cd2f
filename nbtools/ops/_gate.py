"""The deploy gate: the challenger and the champion scored on the same rows, and the decision,
promoted only when the paired-bootstrap gain is surely above the margin and, when asked, no
slice of the rows loses more than ``max_slice_drop`` against the champion.

:mod:`nbtools.ops.registry` re-exports everything public here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from nbtools.errors import InvalidParameterError, ModelRegistryError
from nbtools.ml import bootstrap, evaluation, slicing
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
    max_slice_drop : float or None, default=None
        The largest loss against the champion allowed on any slice; None: slices are not
        checked.
    worst_slice : str or None, default=None
        The slice (``column = level``) where the challenger loses most against the champion.
    worst_slice_drop : float or None, default=None
        How much it loses there, in the metric's units (positive: worse than the champion).
    interval : GainInterval or None, default=None
        The bootstrap itself (its gains, for a plot); not part of :meth:`to_dict`.
    slices : DataFrame or None, default=None
        Both models' scores on every slice with enough rows, the largest drop first; not part
        of :meth:`to_dict`.
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
    max_slice_drop: float | None = None
    worst_slice: str | None = None
    worst_slice_drop: float | None = None
    interval: GainInterval | None = field(default=None, repr=False, compare=False)
    slices: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as a JSON-serialisable dict (undefined scores become None)."""
        left_out = ("interval", "slices")
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in left_out}
        for key in ("challenger_score", "champion_score", "gain", "gain_lower", "worst_slice_drop"):
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
    slice_columns: Sequence[str] = (),
    max_slice_drop: float | None = None,
    min_slice_rows: int = 30,
) -> GateDecision:
    """Score the challenger and the champion on the same rows and decide on promotion.

    A few hundred rows move a score by a few hundredths by chance, so a higher score alone
    proves little. The gate bootstraps the gain on the gate rows (:func:`~nbtools.ml.
    bootstrap.paired_gain`: ``resamples`` seeded resamples, both models scored on each) and
    promotes the challenger only when the gain's one-sided lower confidence bound is above
    ``margin``. A challenger that is merely as good, or better by less than the noise, is kept
    out. It is promoted without a comparison when there is no champion, and never when its
    own score is undefined (NaN).

    With ``slice_columns``, both models are also scored on every slice of the gate rows (the
    rows where one of those columns takes one level, :func:`nbtools.ml.slicing.slice_masks`)
    that has at least ``min_slice_rows`` rows. With ``max_slice_drop`` set, a challenger that
    wins overall is still refused when it scores more than ``max_slice_drop`` below the
    champion on one of those slices: better on average, but much worse for some group.

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
    slice_columns : sequence of str, default=()
        Columns of ``X_test`` whose levels are the slices compared (the evaluate stage's
        ``slice_columns``).
    max_slice_drop : float or None, default=None
        The largest loss against the champion, in the metric's units, that a promoted
        challenger may have on any slice; None does not check the slices (they are still
        reported).
    min_slice_rows : int, default=30
        Slices with fewer gate rows are left out: their scores are mostly noise.

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
    if max_slice_drop is not None and not max_slice_drop >= 0:
        raise InvalidParameterError(
            "The max_slice_drop must be a float in the range [0, inf) or None. Got "
            f"{max_slice_drop!r} instead."
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
    reason = _reason(metric, score, champion_score, interval, margin, promoted)
    slices = _slice_scores(
        challenger, champion, X_test, slice_columns, min_rows=min_slice_rows, direction=direction
    )
    worst = None if slices is None or slices["drop"].isna().all() else slices.iloc[0]
    if (
        promoted
        and worst is not None
        and max_slice_drop is not None
        and worst["drop"] > max_slice_drop
    ):
        promoted = False
        reason = (
            f"{reason} But on the slice {worst['slice']} ({worst['rows']:,} rows) its "
            f"{metric} is {worst['challenger']:.4f} against the champion's "
            f"{worst['champion']:.4f}, a drop of {worst['drop']:.4f}, more than "
            f"max_slice_drop {max_slice_drop:g}: the champion stays."
        )
    return replace(
        decision,
        promoted=promoted,
        reason=reason,
        gain=interval.gain,
        gain_lower=interval.lower,
        confidence=confidence,
        gate_rows=interval.rows,
        resamples=interval.resamples,
        max_slice_drop=max_slice_drop,
        worst_slice=None if worst is None else str(worst["slice"]),
        worst_slice_drop=None if worst is None else float(worst["drop"]),
        interval=interval,
        slices=slices,
    )


def _slice_scores(
    challenger: RowScores,
    champion: RowScores,
    X: pd.DataFrame,
    columns: Sequence[str],
    *,
    min_rows: int,
    direction: bool,
) -> pd.DataFrame | None:
    """Both models' metric on each slice with at least ``min_rows`` rows, largest drop first.

    Each slice is the whole-rows score restricted by 0/1 row weights, so it is computed exactly
    as the overall score is, from the same predictions.
    """
    if not columns:
        return None
    sign = 1.0 if direction else -1.0
    rows = []
    for column, level, mask in slicing.slice_masks(X.reset_index(drop=True), columns):
        count = int(mask.sum())
        if count < min_rows:
            continue
        weights = mask.astype(float)[None, :]
        ours = float(challenger.values(weights)[0])
        theirs = float(champion.values(weights)[0])
        rows.append(
            {
                "slice": f"{column} = {level!r}",
                "rows": count,
                "challenger": ours,
                "champion": theirs,
                "drop": sign * (theirs - ours),
            }
        )
    table = pd.DataFrame(rows, columns=["slice", "rows", "challenger", "champion", "drop"])
    table["drop"] = table["drop"].astype(float).where(np.isfinite(table["drop"].astype(float)))
    return table.sort_values("drop", ascending=False, na_position="last").reset_index(drop=True)


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
