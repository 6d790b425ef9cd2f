"""How sure is a score difference? A paired bootstrap of one metric on the same rows.

Two models scored on a few hundred rows differ by a few hundredths of a metric by chance alone.
:func:`paired_gain` says how much of a difference is signal: it draws ``resamples`` bootstrap
samples of the rows (seeded), computes the metric of both models on each sample, and reads the
gain's one-sided lower confidence bound off the distribution of the differences (percentile
method). Resampling the same rows for both models is what makes it *paired*: the rows that are
hard for one model are hard for the other, so the difference varies much less than either score.

For classification the rows are resampled within each class, so every sample keeps the class
counts of the rows (and ROC AUC stays defined). The metrics are computed from per-row quantities
(hits, errors, ranks) weighted by how often each sample draws each row, all samples at once, so
a thousand resamples of thousands of rows take a fraction of a second; on the full rows they
agree with scikit-learn's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, silhouette_samples
from sklearn.pipeline import Pipeline

from nbtools.errors import InvalidParameterError

__all__ = [
    "METRICS",
    "GainInterval",
    "RowScores",
    "paired_gain",
    "row_scores",
]

#: Metrics :func:`row_scores` knows, per task.
METRICS = {
    "classification": ("accuracy", "precision", "recall", "f1", "roc_auc"),
    "regression": ("rmse", "mae", "r2"),
    "clustering": ("silhouette",),
}
_SILHOUETTE_SAMPLE = 2000
#: Cells of one block of bootstrap weights (samples x rows): about 16 MB.
_BLOCK_CELLS = 2_000_000


@dataclass(frozen=True)
class RowScores:
    """What one model predicted for each row, in the form one metric needs.

    Build it with :func:`row_scores`; :meth:`value` computes the metric on any sample of rows.
    """

    metric: str
    y: np.ndarray
    predicted: np.ndarray
    scores: np.ndarray | None = None
    labels: tuple[Any, ...] = ()
    positive: Any = None

    def value(self) -> float:
        """Return the metric on all rows."""
        return float(self.values(np.ones((1, len(self.y))))[0])

    def values(self, weights: np.ndarray) -> np.ndarray:
        """Return the metric on each bootstrap sample, given as row counts.

        Parameters
        ----------
        weights : ndarray of shape (samples, rows)
            How many times each sample draws each row.
        """
        y, predicted, metric = self.y, self.predicted, self.metric
        n = weights.sum(axis=1)
        if metric == "accuracy":
            return weights @ (y == predicted) / n
        if metric in ("precision", "recall", "f1"):
            return _counted(metric, weights, y, predicted, self.labels, self.positive)
        if metric == "roc_auc":
            assert self.scores is not None
            if self.positive is not None:
                return _binary_auc(weights, y == self.positive, self.scores)
            return np.array([self._multiclass_auc(w) for w in weights])
        if metric == "silhouette":
            return weights @ predicted / n  # per-row silhouette values
        error = y - predicted
        if metric == "rmse":
            return np.sqrt(weights @ error**2 / n)
        if metric == "mae":
            return weights @ np.abs(error) / n
        mean = weights @ y / n
        total = weights @ y**2 - n * mean**2
        residual = weights @ error**2
        constant = np.isclose(total, 0.0)  # a constant target scores as in scikit-learn
        fallback = np.where(residual == 0, 1.0, 0.0)
        return np.where(constant, fallback, 1.0 - residual / np.where(constant, 1.0, total))

    def _multiclass_auc(self, weights: np.ndarray) -> float:
        rows = np.repeat(np.arange(len(self.y)), weights.astype(int))
        assert self.scores is not None
        y = self.y[rows]
        if len(set(y.tolist())) < len(self.labels):
            return float("nan")
        return float(
            roc_auc_score(y, self.scores[rows], multi_class="ovr", labels=list(self.labels))
        )


@dataclass(frozen=True)
class GainInterval:
    """The paired bootstrap of a challenger's gain over a champion.

    Parameters
    ----------
    gain : float
        Challenger minus champion on all rows, signed so that positive means better (for an
        error such as RMSE, champion minus challenger).
    lower : float
        One-sided lower confidence bound of the gain: the ``1 - confidence`` quantile of the
        bootstrap gains.
    confidence : float
        Confidence level of ``lower``, e.g. 0.95.
    rows : int
        Rows both models were scored on.
    resamples : int
        Bootstrap samples drawn (those where the metric is undefined are left out).
    seed : int
        Seed of the resampling.
    gains : ndarray
        The gain on each bootstrap sample.
    """

    gain: float
    lower: float
    confidence: float
    rows: int
    resamples: int
    seed: int
    gains: np.ndarray = field(repr=False, compare=False)

    @property
    def share_better(self) -> float:
        """The share of bootstrap samples on which the challenger is better."""
        return float(np.mean(self.gains > 0)) if len(self.gains) else float("nan")


def row_scores(model: Any, X: pd.DataFrame, y: pd.Series | None, *, metric: str) -> RowScores:
    """Predict the rows once and keep what ``metric`` needs of them.

    Parameters
    ----------
    model : estimator
        A fitted scikit-learn estimator or pipeline.
    X : DataFrame
        The rows, with the columns the model takes.
    y : Series or None
        The target; None for clustering (``silhouette``).
    metric : str
        One of :data:`METRICS`.

    Raises
    ------
    InvalidParameterError
        If the metric is unknown, or needs a target or probabilities the model lacks.
    """
    from nbtools.ml.evaluation import positive_label

    known = [name for names in METRICS.values() for name in names]
    if metric not in known:
        raise InvalidParameterError(
            f"The gate's metric must be one of {', '.join(known)}. Got {metric!r} instead."
        )
    if metric == "silhouette":
        return RowScores(metric, np.zeros(len(X)), _silhouettes(model, X))
    if y is None:
        raise InvalidParameterError(f"The metric '{metric}' needs the target; got none.")
    target = np.asarray(pd.Series(y).reset_index(drop=True))
    predicted = np.asarray(model.predict(X))
    if metric in METRICS["regression"]:
        return RowScores(metric, target.astype(float), predicted.astype(float))
    classes = getattr(model, "classes_", None)
    labels = tuple(classes) if classes is not None else tuple(sorted(set(target.tolist())))
    positive = positive_label(target, labels) if len(labels) == 2 else None
    scores = None
    if metric == "roc_auc":
        if not hasattr(model, "predict_proba"):
            raise InvalidParameterError(
                "The metric 'roc_auc' needs class probabilities, and the model has no "
                "predict_proba. Choose another metric (f1, accuracy)."
            )
        proba = np.asarray(model.predict_proba(X))
        scores = proba[:, labels.index(positive)] if positive is not None else proba
    return RowScores(metric, target, predicted, scores, labels, positive)


def paired_gain(
    challenger: RowScores,
    champion: RowScores,
    *,
    greater_is_better: bool,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> GainInterval:
    """Bootstrap the challenger's gain over the champion on the same rows.

    Parameters
    ----------
    challenger, champion : RowScores
        Both models' predictions for the same rows (:func:`row_scores`).
    greater_is_better : bool
        Direction of the metric; the gain is signed so that positive means better.
    confidence : float, default=0.95
        Level of the one-sided lower bound, in (0.5, 1).
    resamples : int, default=1000
        Bootstrap samples to draw; at least 100.
    seed : int, default=0
        Seed of the resampling: the same seed, rows and models give the same bound.

    Returns
    -------
    GainInterval

    Raises
    ------
    InvalidParameterError
        If ``confidence`` or ``resamples`` is out of range, or the two score different rows.
    """
    if not 0.5 < confidence < 1:
        raise InvalidParameterError(
            f"The gate's confidence must be a float in the range (0.5, 1). Got {confidence!r} "
            "instead."
        )
    if not (isinstance(resamples, int) and resamples >= 100):
        raise InvalidParameterError(
            f"The gate's resamples must be an int of at least 100. Got {resamples!r} instead."
        )
    if len(challenger.y) != len(champion.y) or challenger.metric != champion.metric:
        raise InvalidParameterError("Both models must be scored with one metric on the same rows.")
    sign = 1.0 if greater_is_better else -1.0
    gain = sign * (challenger.value() - champion.value())
    rng = np.random.default_rng(seed)
    strata = _strata(challenger)
    n = len(challenger.y)
    block = max(1, _BLOCK_CELLS // max(n, 1))  # bounds the memory of one block of samples
    parts = []
    for start in range(0, resamples, block):
        weights = _draw(rng, strata, n, min(block, resamples - start))
        parts.append(sign * (challenger.values(weights) - champion.values(weights)))
    gains = np.concatenate(parts)
    gains = gains[np.isfinite(gains)]
    lower = float(np.quantile(gains, 1 - confidence)) if len(gains) else float("nan")
    return GainInterval(
        gain=float(gain),
        lower=lower,
        confidence=confidence,
        rows=len(challenger.y),
        resamples=len(gains),
        seed=seed,
        gains=gains,
    )


def _strata(scores: RowScores) -> list[np.ndarray]:
    """Row positions to resample within: one group per class, or all rows."""
    if scores.metric in METRICS["classification"]:
        groups = pd.Series(scores.y).groupby(scores.y, sort=False).indices
        return [np.asarray(rows) for rows in groups.values()]
    return [np.arange(len(scores.y))]


def _draw(rng: np.random.Generator, strata: list[np.ndarray], n: int, samples: int) -> np.ndarray:
    """Row counts of ``samples`` bootstrap samples, each stratum keeping its size."""
    weights = np.zeros((samples, n))
    offsets = (np.arange(samples) * n)[:, None]
    for rows in strata:
        drawn = rows[rng.integers(0, len(rows), size=(samples, len(rows)))]
        weights += np.bincount((drawn + offsets).ravel(), minlength=samples * n).reshape(samples, n)
    return weights


def _counted(
    metric: str,
    weights: np.ndarray,
    y: np.ndarray,
    predicted: np.ndarray,
    labels: tuple[Any, ...],
    positive: Any,
) -> np.ndarray:
    """Precision, recall or F1 from hit counts: of the positive class, or macro-averaged."""
    targets = [positive] if positive is not None else list(labels)
    values = []
    for label in targets:
        actual, guessed = y == label, predicted == label
        tp = weights @ (actual & guessed)
        fp = weights @ (~actual & guessed)
        fn = weights @ (actual & ~guessed)
        if metric == "precision":
            numerator, denominator = tp, tp + fp
        elif metric == "recall":
            numerator, denominator = tp, tp + fn
        else:
            numerator, denominator = 2 * tp, 2 * tp + fp + fn
        safe = np.where(denominator > 0, denominator, 1.0)
        values.append(np.where(denominator > 0, numerator / safe, 0.0))  # zero_division=0
    return np.mean(values, axis=0)


def _binary_auc(weights: np.ndarray, positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC as the Mann-Whitney statistic: the chance a positive outranks a negative.

    Rows with equal scores form one group, and a positive tied with a negative counts half.
    """
    order = np.argsort(scores, kind="stable")
    ranked = scores[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    sorted_weights = weights[:, order]
    pos = np.add.reduceat(sorted_weights * positive[order], starts, axis=1)
    neg = np.add.reduceat(sorted_weights * ~positive[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    wins = np.sum(pos * (below + 0.5 * neg), axis=1)
    return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)


def _silhouettes(model: Any, X: pd.DataFrame) -> np.ndarray:
    """Per-row silhouette values on the features the clustering step sees (seeded sample)."""
    sample = X.sample(min(len(X), _SILHOUETTE_SAMPLE), random_state=0) if len(X) else X
    features = model[:-1].transform(sample) if isinstance(model, Pipeline) else sample
    final = model[-1] if isinstance(model, Pipeline) else model
    labels = final.predict(features)
    if len(np.unique(labels)) < 2 or len(labels) < 3:
        return np.full(len(labels), -1.0)
    return np.asarray(silhouette_samples(features, labels))
