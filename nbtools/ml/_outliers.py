"""Outliers: Tukey's IQR fences, the transformer that clips to them, and what clipping changed.

:class:`OutlierClipper` is a step of the preprocessor :func:`nbtools.ml.cleaning.build_preprocessor`
builds; :mod:`nbtools.ml.cleaning` re-exports everything public here.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted, validate_data

from nbtools.errors import InvalidParameterError

__all__ = ["OutlierClipper", "clipping_report", "iqr_bounds"]


class OutlierClipper(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Clip each numeric column to ``[Q1 - factor * IQR, Q3 + factor * IQR]``.

    The quartiles are learned in :meth:`fit` (on the training split, inside the model
    pipeline). Missing values pass through unchanged. A column whose IQR is zero (a constant
    or a mostly constant column, such as a rare 0/1 flag) is left as it is, since its bounds
    would otherwise clip every non-typical value.

    Parameters
    ----------
    factor : float, default=1.5
        Width of the accepted band in IQRs; 1.5 is Tukey's rule, 3.0 clips only far outliers.

    Attributes
    ----------
    lower_, upper_ : ndarray of shape (n_features,)
        The learned bounds; ``-inf`` / ``inf`` for columns that are not clipped.
    n_clipped_ : ndarray of int, shape (n_features,)
        How many values of each column of the fitted data lie beyond the bounds, i.e. how
        many values clipping changed in the training split (see :func:`clipping_report`).
    n_values_ : ndarray of int, shape (n_features,)
        How many values of each column of the fitted data are not missing.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame with string column names.
    """

    def __init__(self, factor: float = 1.5) -> None:
        self.factor = factor

    def fit(self, X: Any, y: Any = None) -> OutlierClipper:
        """Learn the clipping bounds of every column of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Numeric data; may contain NaN.
        y : None
            Ignored.

        Returns
        -------
        OutlierClipper
            The fitted clipper.
        """
        number = isinstance(self.factor, int | float) and not isinstance(self.factor, bool)
        if not number or not self.factor > 0:
            raise InvalidParameterError(
                f"The 'factor' parameter of OutlierClipper must be a float > 0. "
                f"Got {self.factor!r} instead."
            )
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        self.lower_, self.upper_ = iqr_bounds(X, self.factor)
        self.n_clipped_ = (np.less(X, self.lower_) | np.greater(X, self.upper_)).sum(axis=0)
        self.n_values_ = (~np.isnan(X)).sum(axis=0)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Clip ``X`` to the learned bounds.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite="allow-nan")
        return np.clip(X, self.lower_, self.upper_)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def clipping_report(model: Any) -> pd.DataFrame:
    """Say how many values outlier clipping changed in each column, as fitted in ``model``.

    Parameters
    ----------
    model : estimator
        A fitted model pipeline; every fitted :class:`OutlierClipper` inside it (in a
        ``Pipeline`` or ``ColumnTransformer``, at any depth) is reported.

    Returns
    -------
    pandas.DataFrame
        One row per clipped column, indexed by column name, with ``lower`` and ``upper`` (the
        fences), ``values`` (non-missing values in the fitted data), ``clipped`` (values beyond
        the fences, which clipping changed) and ``share``; empty when the model clips nothing.
    """
    rows = []
    for clipper in _clippers(model):
        names = getattr(clipper, "feature_names_in_", None)
        if names is None:
            names = [f"x{i}" for i in range(clipper.n_features_in_)]
        for i, name in enumerate(names):
            values, clipped = int(clipper.n_values_[i]), int(clipper.n_clipped_[i])
            rows.append(
                {
                    "column": str(name),
                    "lower": float(clipper.lower_[i]),
                    "upper": float(clipper.upper_[i]),
                    "values": values,
                    "clipped": clipped,
                    "share": clipped / values if values else 0.0,
                }
            )
    columns = ["column", "lower", "upper", "values", "clipped", "share"]
    return pd.DataFrame(rows, columns=columns).set_index("column")


def _clippers(estimator: Any) -> Iterable[OutlierClipper]:
    """Yield the fitted outlier clippers inside ``estimator``, in pipeline order."""
    if isinstance(estimator, OutlierClipper):
        if hasattr(estimator, "n_clipped_"):
            yield estimator
    elif isinstance(estimator, Pipeline):
        for _, step in estimator.steps:
            yield from _clippers(step)
    elif isinstance(estimator, ColumnTransformer):
        for _, transformer, _ in getattr(estimator, "transformers_", []):
            yield from _clippers(transformer)


def iqr_bounds(values: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Tukey bounds ``Q1 - factor * IQR`` and ``Q3 + factor * IQR`` of each column.

    Parameters
    ----------
    values : ndarray of shape (n_samples, n_features)
        Numbers; NaN is ignored.
    factor : float
        Width of the band in IQRs.

    Returns
    -------
    lower, upper : ndarray of shape (n_features,)
        ``-inf`` and ``inf`` for columns with a zero (or undefined) IQR.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        q1, q3 = np.nanpercentile(values, [25, 75], axis=0)
    iqr = q3 - q1
    usable = iqr > 0
    lower = np.where(usable, q1 - factor * iqr, -np.inf)
    upper = np.where(usable, q3 + factor * iqr, np.inf)
    return lower, upper
