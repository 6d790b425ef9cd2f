"""Categorical encodings that suit each kind of model.

The clean stage's ``encoding="auto"`` leaves the choice to the model that the train stage fits
(:func:`nbtools.ml.cleaning.build_preprocessor` calls :func:`auto_encoding` per column):

==========  ==========================  ===================================================
model       few levels                  many levels (more than the limit)
==========  ==========================  ===================================================
boosting    native categories (<= 255)  target mean, cross-fitted (``TargetEncoder``)
neural      native categories (<= 255)  target mean, cross-fitted
forest      ordinal codes               target mean, cross-fitted
linear      one-hot                     target mean, cross-fitted
==========  ==========================  ===================================================

A neural network (``torch_mlp``) learns an embedding per level from native categories: a few
numbers per level instead of a one-hot column per level.

Histogram gradient boosting splits on a category directly (it groups levels by their gradient
statistics), which needs no encoding at all, but it takes at most 255 levels per column. A
one-hot column per level suits linear models; an integer code per column suits forests. A
column with hundreds or thousands of levels (a zip code, a product id) would become hundreds of
sparse columns, or one arbitrary ordering, and lose its signal; its target mean per level keeps
it. scikit-learn's ``TargetEncoder`` learns those means inside the model pipeline, on the
training split only, and cross-fits them there (each training row gets the mean learned on the
other folds), so the model does not learn from its own target through the encoding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import TargetEncoder
from sklearn.utils.validation import check_is_fitted

from nbtools.errors import InvalidParameterError

__all__ = [
    "MODEL_KINDS",
    "NATIVE_MAX_LEVELS",
    "TARGET_TYPES",
    "NativeCategories",
    "auto_encoding",
    "target_encoder",
]

#: The kinds of model a preprocessor can be built for.
MODEL_KINDS = ("linear", "forest", "boosting", "neural")

#: The most levels histogram gradient boosting splits on natively (its ``max_bins``).
NATIVE_MAX_LEVELS = 255

#: ``TargetEncoder``'s ``target_type`` per task; clustering has no target to encode with.
TARGET_TYPES = {"classification": "auto", "regression": "continuous"}

_FOLDS = 5


def auto_encoding(
    model: str, levels: int | None, *, max_categories: int, target_type: str | None
) -> str:
    """Return the encoding ``encoding="auto"`` gives a categorical column.

    Parameters
    ----------
    model : {"linear", "forest", "boosting", "neural"}
        The kind of model the preprocessor feeds.
    levels : int or None
        Distinct values of the column in the training split; None when unknown.
    max_categories : int
        The most levels one-hot (linear) and ordinal (forest) columns take.
    target_type : str or None
        ``TargetEncoder``'s target type; None when there is no target (clustering), in which
        case one-hot or ordinal encoding groups the rarest levels instead.

    Returns
    -------
    str
        ``"native"``, ``"onehot"``, ``"ordinal"`` or ``"target"``.
    """
    if model not in MODEL_KINDS:
        choices = ", ".join(repr(k) for k in MODEL_KINDS)
        raise InvalidParameterError(f"The model kind must be one of {choices}. Got {model!r}.")
    native = model in ("boosting", "neural")
    limit = NATIVE_MAX_LEVELS if native else max_categories
    if levels is not None and levels > limit and target_type is not None:
        return "target"
    return "native" if native else {"forest": "ordinal", "linear": "onehot"}[model]


def target_encoder(target_type: str | None, seed: int = 0) -> TargetEncoder:
    """Return a ``TargetEncoder`` with seeded folds for its cross-fitting.

    Raises
    ------
    InvalidParameterError
        When there is no target (``target_type`` is None: a clustering task).
    """
    if target_type is None:
        raise InvalidParameterError(
            "The 'encoding' 'target' of stage 'clean' needs a target to average, and a "
            "clustering task has none. Choose 'onehot' or 'ordinal' instead."
        )
    folds = KFold if target_type == "continuous" else StratifiedKFold
    return TargetEncoder(target_type=target_type, cv=folds(_FOLDS, shuffle=True, random_state=seed))


class NativeCategories(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Turn each column into a pandas categorical, for models that split on categories natively.

    The levels are learned in :meth:`fit` (on the training split, inside the model pipeline)
    and coded 0, 1, ... in order of first appearance; :meth:`transform` returns a DataFrame of
    ``category`` columns, which ``HistGradientBoosting*`` with
    ``categorical_features="from_dtype"`` treats as categorical. Missing values and levels not
    seen in fit become missing, which the model handles natively.

    Attributes
    ----------
    categories_ : list of pandas.Index
        The learned levels of each column.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame.
    """

    def fit(self, X: Any, y: Any = None) -> NativeCategories:
        """Learn the levels of every column of ``X``; ``y`` is ignored."""
        frame = _frame(X)
        self.n_features_in_ = frame.shape[1]
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.categories_ = [pd.Index(frame[c].dropna().unique()) for c in frame.columns]
        too_many = [len(c) for c in self.categories_ if len(c) > NATIVE_MAX_LEVELS]
        if too_many:
            raise InvalidParameterError(
                f"NativeCategories takes at most {NATIVE_MAX_LEVELS} levels per column (the "
                f"limit of gradient boosting's native categories); a column has {too_many[0]}. "
                "Encode it with encoding='target' instead."
            )
        return self

    def transform(self, X: Any) -> pd.DataFrame:
        """Return ``X`` as categorical columns of integer codes (missing when unseen)."""
        check_is_fitted(self)
        frame = _frame(X)
        if frame.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {frame.shape[1]} features, but NativeCategories is expecting "
                f"{self.n_features_in_} features as input."
            )
        columns = {}
        for position, (name, levels) in enumerate(
            zip(frame.columns, self.categories_, strict=True)
        ):
            codes = levels.get_indexer(frame[name])
            key = self.feature_names_in_[position] if hasattr(self, "feature_names_in_") else name
            columns[key] = pd.Categorical.from_codes(codes, categories=range(len(levels)))
        return pd.DataFrame(columns, index=frame.index)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        return tags


def _frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X.reset_index(drop=True) if not X.index.is_unique else X
    return pd.DataFrame(np.asarray(X, dtype=object))
