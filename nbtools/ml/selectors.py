"""Feature selectors for the model pipeline, as scikit-learn transformers.

:class:`CorrelationFilter` drops one feature of each highly correlated pair;
:class:`TopKSelector` keeps the ``k`` features that score highest against the target. Both are
fitted on the training split only, inside the model pipeline that
:func:`nbtools.ml.features.build_selector` builds.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor
from sklearn.feature_selection import SelectorMixin, f_classif, f_regression
from sklearn.utils.validation import check_is_fitted, validate_data

from nbtools.errors import InvalidParameterError

__all__ = [
    "CorrelationFilter",
    "TopKSelector",
]

_SAMPLE_ROWS = 20_000


class CorrelationFilter(SelectorMixin, BaseEstimator):
    """Drop one feature of each highly correlated pair.

    Features are visited in order; a feature is dropped when its absolute Pearson correlation
    with an earlier, kept feature exceeds ``threshold``. Constant features have no correlation
    and are kept.

    Parameters
    ----------
    threshold : float, default=0.95
        In (0, 1]; 1 keeps every feature.

    Attributes
    ----------
    support_ : ndarray of bool, shape (n_features,)
        Which features are kept.
    dropped_ : list of tuple (int, int, float)
        For each dropped feature: its index, the index of the kept feature it duplicates, and
        their correlation.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame with string column names.
    """

    def __init__(self, threshold: float = 0.95) -> None:
        self.threshold = threshold

    def fit(self, X: Any, y: Any = None) -> CorrelationFilter:
        """Find the features to drop.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        CorrelationFilter
            The fitted filter.
        """
        number = isinstance(self.threshold, int | float) and not isinstance(self.threshold, bool)
        if not number or not 0 < self.threshold <= 1:
            raise InvalidParameterError(
                "The 'threshold' parameter of CorrelationFilter must be a float in the range "
                f"(0, 1]. Got {self.threshold!r} instead."
            )
        X = validate_data(self, X, dtype=np.float64)
        n_features = X.shape[1]
        self.support_ = np.ones(n_features, dtype=bool)
        self.dropped_: list[tuple[int, int, float]] = []
        if self.threshold >= 1 or n_features < 2 or X.shape[0] < 2:
            return self
        corr = _abs_correlation(X)
        for j in range(1, n_features):
            partners = np.flatnonzero(self.support_[:j] & (corr[j, :j] > self.threshold))
            if partners.size:
                best = partners[np.argmax(corr[j, partners])]
                self.support_[j] = False
                self.dropped_.append((j, int(best), float(corr[j, best])))
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self)
        return self.support_


def _abs_correlation(X: np.ndarray) -> np.ndarray:
    """Absolute Pearson correlation matrix of the columns; 0 for constant columns."""
    centred = X - X.mean(axis=0)
    covariance = centred.T @ centred  # much faster than np.corrcoef on tall matrices
    scale = np.sqrt(np.diag(covariance))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = covariance / np.outer(scale, scale)
    return np.abs(np.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0))


class TopKSelector(SelectorMixin, BaseEstimator):
    """Keep the ``k`` features that score highest against the target.

    Parameters
    ----------
    k : int, default=10
        Number of features to keep; when there are fewer, all are kept.
    method : {"anova", "model"}, default="anova"
        ``"anova"``: the ANOVA F statistic (classification) or the univariate regression F
        statistic; ``"model"``: impurity importances of 100 extra trees fitted on at most
        20,000 sampled rows.
    task : {"classification", "regression"}, default="classification"
        How the target is scored.
    random_state : int, default=0
        Seed of the row sample and of the trees.

    Attributes
    ----------
    scores_ : ndarray of shape (n_features,)
        The score of each feature (NaN scores count as 0).
    k_ : int
        The number of features kept.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame with string column names.
    """

    def __init__(
        self,
        k: int = 10,
        method: str = "anova",
        task: str = "classification",
        random_state: int = 0,
    ) -> None:
        self.k = k
        self.method = method
        self.task = task
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> TopKSelector:
        """Score the features against ``y`` and keep the best ``k``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        TopKSelector
            The fitted selector.
        """
        if isinstance(self.k, bool) or not isinstance(self.k, int | np.integer) or self.k < 1:
            raise InvalidParameterError(
                f"The 'k' parameter of TopKSelector must be an int >= 1. Got {self.k!r} instead."
            )
        if self.method not in ("anova", "model") or self.task not in (
            "classification",
            "regression",
        ):
            raise InvalidParameterError(
                "TopKSelector needs method in {'anova', 'model'} and task in {'classification', "
                f"'regression'}}. Got method={self.method!r}, task={self.task!r} instead."
            )
        if y is None:
            raise InvalidParameterError(
                "TopKSelector scores features against a target; fit it with y."
            )
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=self.task == "regression")
        if self.method == "anova":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # constant features
                scores = (f_classif if self.task == "classification" else f_regression)(X, y)[0]
        else:
            rng = np.random.default_rng(self.random_state)
            rows = np.arange(X.shape[0])
            if X.shape[0] > _SAMPLE_ROWS:
                rows = rng.choice(X.shape[0], _SAMPLE_ROWS, replace=False)
            trees = ExtraTreesClassifier if self.task == "classification" else ExtraTreesRegressor
            model = trees(n_estimators=100, random_state=self.random_state)
            scores = model.fit(X[rows], y[rows]).feature_importances_
        self.scores_ = np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0)
        self.k_ = min(int(self.k), X.shape[1])
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self)
        mask = np.zeros(self.scores_.shape, dtype=bool)
        mask[np.argsort(-self.scores_, kind="mergesort")[: self.k_]] = True
        return mask
