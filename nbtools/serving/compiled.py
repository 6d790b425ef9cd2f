"""A compiled form of a fitted model pipeline: the same predictions for a few rows at a fraction
of scikit-learn's cost.

For one row, a scikit-learn pipeline spends its time in per-step input validation, pandas column
handling and one compiled call per tree, not in the model's arithmetic. :func:`compile_pipeline`
turns a fitted nbtools model pipeline into plain arrays:

- **Categorical columns** become a lookup table per column. The table is made by the fitted
  pipeline itself: every level the encoder knows, one unseen level and one missing value are
  sent through the real preprocessing (imputer, encoder, selection, and gradient boosting's own
  category codes), so one-hot, ordinal, native and target encodings are all exact.
- **Numeric columns** go through the same clipping, imputation and scaling, as array operations.
- **The model** predicts from the resulting matrix: tree ensembles by walking all their trees
  at once (:class:`~nbtools.serving._trees.FlatTrees`, for batches under :data:`WALK_ROWS` rows)
  or through scikit-learn's own tree predictors (larger batches), linear models and k-means by
  their coefficients and centres, a ``torch_mlp`` network by its own NumPy forward pass.

The date parts the pipeline creates are computed from the date columns as it computes them.
A pipeline whose parts the compiled form does not cover (features created by expressions, a
step it does not know, a column whose output mixes with another's) raises
:class:`NotCompilable` with the reason. :func:`disagreement` compares the compiled form with the
pipeline on given rows, so that a service only uses it after checking it predicts the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, softmax
from sklearn.cluster import KMeans
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

from nbtools.ml.cleaning import OutlierClipper
from nbtools.ml.features import DATE_PARTS
from nbtools.ml.neural import TorchMLPClassifier, TorchMLPRegressor
from nbtools.serving._trees import FlatTrees, flatten_boosting, flatten_forest

__all__ = [
    "CHUNK_ROWS",
    "RTOL",
    "WALK_ROWS",
    "CompiledPipeline",
    "NotCompilable",
    "compile_pipeline",
    "disagreement",
]

#: Relative tolerance between compiled and scikit-learn numbers (probabilities, values); class
#: labels and cluster ids must be equal. The compiled form sums the same leaf values and applies
#: the same formulas, in another order: the differences seen are rounding, below 1e-12.
RTOL = 1e-7

#: Rows predicted at once; larger batches are split.
CHUNK_ROWS = 10_000

#: Batches of fewer rows walk the flat trees (:class:`FlatTrees`); larger ones go through
#: scikit-learn's own compiled tree predictors, which are faster once the per-tree call is
#: shared by enough rows. Measured on 2 cores with gradient boosting: one row, walked, 2 ms
#: against 30 ms for the scikit-learn pipeline; 1,000 rows, walked, 92 ms against 40 ms. Both
#: ways start from the compiled preprocessing.
WALK_ROWS = 64

_BOOSTING = (HistGradientBoostingClassifier, HistGradientBoostingRegressor)
_FOREST = (RandomForestClassifier, RandomForestRegressor)
_UNSEEN = "\x00nbtools: a level never seen in training"


class NotCompilable(Exception):
    """The pipeline has a part the compiled form does not cover; the message says which."""


@dataclass(frozen=True)
class _Levels:
    """One categorical column: its levels' rows of the model matrix, on the positions it owns."""

    column: str
    rows: dict[Any, int]
    unseen: int
    missing: int
    positions: np.ndarray
    table: np.ndarray  # (levels + 2, len(positions))

    def fill(self, Z: np.ndarray, column: Callable[[str], np.ndarray]) -> None:
        values = column(self.column)
        index = np.fromiter((self.rows.get(v, self.unseen) for v in values), np.int64, len(values))
        index[pd.isna(values)] = self.missing
        Z[:, self.positions] = self.table[index]


@dataclass(frozen=True)
class _Numbers:
    """Numeric columns with one chain of steps: clip, fill missing values, scale."""

    columns: list[str]
    positions: np.ndarray
    steps: list[_Step]

    def fill(self, Z: np.ndarray, column: Callable[[str], np.ndarray]) -> None:
        values = np.empty((len(Z), len(self.columns)))
        for index, name in enumerate(self.columns):
            values[:, index] = column(name)
        Z[:, self.positions] = _apply(self.steps, values)


class _Head:
    """The model step, predicting from the matrix its preprocessing gives."""

    classes: np.ndarray | None = None

    def raw(self, Z: np.ndarray) -> np.ndarray:
        """Values for regression, probabilities for classification, cluster ids."""
        raise NotImplementedError

    def labels(self, raw: np.ndarray) -> np.ndarray:
        """Labels from :meth:`raw`'s probabilities; values and cluster ids as they are."""
        return raw if self.classes is None else self.classes[np.argmax(raw, axis=1)]

    def predict(self, Z: np.ndarray) -> np.ndarray:
        """Labels, values or cluster ids."""
        return self.labels(self.raw(Z))

    def predict_proba(self, Z: np.ndarray) -> np.ndarray:
        """Class probabilities."""
        return self.raw(Z)


class _Boosting(_Head):
    def __init__(self, model: Any) -> None:
        self.model = model
        self.trees = flatten_boosting(model)
        self.known, self.feature_map = model._bin_mapper.make_known_categories_bitsets()
        self.baseline = np.asarray(model._baseline_prediction, dtype=np.float64).ravel()
        self.loss = model._loss
        self.classes = getattr(model, "classes_", None)

    def raw(self, Z: np.ndarray) -> np.ndarray:
        per_class = len(self.baseline)
        if len(Z) < WALK_ROWS:
            values = self.trees.value[self.trees.leaves(Z)]
            raw = self.baseline + values.reshape(len(Z), -1, per_class).sum(axis=1)
        else:  # scikit-learn's own tree predictors, on the matrix already made
            raw = np.tile(self.baseline, (len(Z), 1))
            threads = _openmp_effective_n_threads()
            for iteration in self.model._predictors:
                for k, predictor in enumerate(iteration):
                    raw[:, k] += predictor.predict(Z, self.known, self.feature_map, threads)
        if self.classes is None:
            return np.asarray(self.loss.link.inverse(raw.ravel()))
        return np.asarray(self.loss.predict_proba(raw))


class _Forest(_Head):
    def __init__(self, model: Any) -> None:
        self.model = model
        self.trees: FlatTrees = flatten_forest(model.estimators_)
        self.classes = getattr(model, "classes_", None)

    def raw(self, Z: np.ndarray) -> np.ndarray:
        if len(Z) < WALK_ROWS:
            return np.asarray(self.trees.value[self.trees.leaves(Z)].mean(axis=1))
        if self.classes is None:  # scikit-learn's own trees, on the matrix already made
            return np.asarray(self.model.predict(Z))
        return np.asarray(self.model.predict_proba(Z))


class _Logistic(_Head):
    def __init__(self, model: LogisticRegression) -> None:
        self.coef, self.intercept = model.coef_, model.intercept_
        self.classes = model.classes_

    def raw(self, Z: np.ndarray) -> np.ndarray:
        decision = Z @ self.coef.T + self.intercept
        if decision.shape[1] == 1:
            positive = expit(decision[:, 0])
            return np.column_stack([1 - positive, positive])
        return np.asarray(softmax(decision, axis=1))


class _Ridge(_Head):
    def __init__(self, model: Ridge) -> None:
        if np.ndim(model.coef_) != 1:
            raise NotCompilable("the ridge model predicts several targets")
        self.coef, self.intercept = model.coef_, model.intercept_

    def raw(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(Z @ self.coef + self.intercept)


class _KMeans(_Head):
    def __init__(self, model: KMeans) -> None:
        self.centers = model.cluster_centers_

    def raw(self, Z: np.ndarray) -> np.ndarray:
        distances = ((Z[:, None, :] - self.centers[None, :, :]) ** 2).sum(axis=2)
        return np.argmin(distances, axis=1).astype(np.int32)


class _Neural(_Head):
    """A ``torch_mlp`` network: its own NumPy forward pass, over the compiled matrix."""

    def __init__(self, model: TorchMLPClassifier | TorchMLPRegressor) -> None:
        self.model = model
        self.classes = getattr(model, "classes_", None)

    def raw(self, Z: np.ndarray) -> np.ndarray:
        if isinstance(self.model, TorchMLPClassifier):
            return self.model.predict_proba(Z)
        return self.model.predict(Z)


def _head(model: Any) -> _Head:
    if isinstance(model, _BOOSTING):
        return _Boosting(model)
    if isinstance(model, _FOREST):
        return _Forest(model)
    if type(model) is LogisticRegression:
        return _Logistic(model)
    if type(model) is Ridge:
        return _Ridge(model)
    if type(model) is KMeans:
        return _KMeans(model)
    if isinstance(model, TorchMLPClassifier | TorchMLPRegressor):
        return _Neural(model)
    raise NotCompilable(f"the model {type(model).__name__} is not covered")


class CompiledPipeline:
    """A fitted nbtools model pipeline as arrays; predicts like it (see the module doc).

    Build it with :func:`compile_pipeline`.
    """

    def __init__(
        self,
        dates: dict[str, tuple[str, str]],
        base: np.ndarray,
        levels: list[_Levels],
        numbers: list[_Numbers],
        head: _Head,
    ) -> None:
        self.dates = dates
        self.base = base
        self.levels = levels
        self.numbers = numbers
        self.head = head
        self.classes_ = head.classes

    def matrix(self, X: pd.DataFrame) -> np.ndarray:
        """Return the matrix the model step sees for the rows of ``X``."""

        def column(name: str) -> np.ndarray:
            if name in self.dates:  # a date part the pipeline creates
                source, part = self.dates[name]
                return np.asarray(getattr(X[source].dt, part), dtype=np.float64)
            return X[name].to_numpy()

        Z = np.tile(self.base, (len(X), 1))
        for levels in self.levels:
            levels.fill(Z, column)
        for group in self.numbers:
            group.fill(Z, column)
        return Z

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predict labels, values or cluster ids for the rows of ``X``."""
        return self._chunked(X, self.head.predict)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities for the rows of ``X``, one column per entry of ``classes_``."""
        return self._chunked(X, self.head.predict_proba)

    def predict_with_proba(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Labels and class probabilities from one pass over the rows of ``X``."""
        probabilities = self._chunked(X, self.head.raw)
        return self.head.labels(probabilities), probabilities

    def _chunked(self, X: pd.DataFrame, method: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Apply ``method`` to the matrix of :data:`CHUNK_ROWS` rows at a time: a tree walk
        holds a node per row and tree, which for a large batch would take gigabytes at once."""
        if len(X) <= CHUNK_ROWS:
            return method(self.matrix(X))
        parts = [X.iloc[start : start + CHUNK_ROWS] for start in range(0, len(X), CHUNK_ROWS)]
        return np.concatenate([method(self.matrix(part)) for part in parts])


def compile_pipeline(pipeline: Any) -> CompiledPipeline:
    """Compile a fitted nbtools model pipeline (``create``, ``preprocess``, ``select``, ``model``).

    Raises
    ------
    NotCompilable
        With the reason, when a part of the pipeline is not covered.
    """
    if not isinstance(pipeline, Pipeline) or set(pipeline.named_steps) != {
        "create",
        "preprocess",
        "select",
        "model",
    }:
        raise NotCompilable("it is not an nbtools model pipeline")
    dates = _date_parts(pipeline.named_steps["create"])
    head = _head(pipeline.named_steps["model"])
    preprocessor = pipeline.named_steps["preprocess"]
    groups = _groups(preprocessor)
    inputs = [str(c) for c in getattr(preprocessor, "feature_names_in_", [])]
    probe = _Probe(pipeline, inputs, groups)
    numbers = [probe.numbers(columns, steps) for columns, steps in groups["numeric"]]
    levels = [probe.levels(column, known) for column, known in groups["categorical"]]
    owned = np.concatenate([g.positions for g in numbers] + [c.positions for c in levels])
    if len(np.unique(owned)) < len(owned):
        raise NotCompilable("two input columns feed the same model feature")
    base = probe.base.copy()
    base[owned] = 0.0
    return CompiledPipeline(dates, base, levels, [g for g in numbers if len(g.positions)], head)


def disagreement(compiled: CompiledPipeline, pipeline: Any, X: pd.DataFrame) -> str | None:
    """Say where the compiled form and the pipeline predict differently on ``X``; None if nowhere.

    Labels and cluster ids must be equal, numbers (values, probabilities) within :data:`RTOL`.
    The compiled form predicts ``X`` whole and in batches of a few rows, so that both ways of
    predicting trees (:data:`WALK_ROWS`) are compared.
    """
    small = [X.iloc[start : start + 8] for start in range(0, len(X), 8)]
    methods = ["predict"]
    if compiled.classes_ is not None and hasattr(pipeline, "predict_proba"):
        methods.append("predict_proba")
    for method in methods:
        theirs = np.asarray(getattr(pipeline, method)(X))
        whole = getattr(compiled, method)(X)
        batched = np.concatenate([getattr(compiled, method)(part) for part in small])
        for ours in (whole, batched):
            differ = _differ(ours, theirs)
            if differ.any():
                if method == "predict":
                    return f"predictions differ on {int(differ.sum())} of {len(X)} rows"
                worst = float(np.max(np.abs(ours - theirs)))
                return f"probabilities differ by up to {worst:.2g}"
    return None


def _differ(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """Where two predictions differ: numbers beyond :data:`RTOL`, anything else at all."""
    if ours.dtype.kind == "f" and theirs.dtype.kind == "f":
        return ~np.isclose(ours, theirs, rtol=RTOL, atol=1e-12)
    return np.asarray(ours != theirs)


def _date_parts(creator: Any) -> dict[str, tuple[str, str]]:
    """The columns the creation step adds, each as its date column and part.

    Raises
    ------
    NotCompilable
        When it creates other features (expressions).
    """
    if _identity(creator):
        return {}
    names_in = [str(c) for c in getattr(creator, "feature_names_in_", [])]
    created = [str(c) for c in getattr(creator, "feature_names_out_", [])][len(names_in) :]
    parts = {f"{name}_{part}": (name, part) for name in names_in for part in DATE_PARTS}
    if not names_in or any(name not in parts for name in created):
        raise NotCompilable("the pipeline creates features from expressions")
    return {name: parts[name] for name in created}


def _groups(preprocessor: Any) -> dict[str, list[Any]]:
    """Sort the preprocessor's columns: numeric chains, and categorical columns with levels."""
    groups: dict[str, list[Any]] = {"numeric": [], "categorical": []}
    for name, transformer, columns in getattr(preprocessor, "transformers_", []):
        if transformer == "drop" or len(columns) == 0:
            continue
        steps = _steps(transformer, name)
        encoder = steps[-1] if steps else None
        if encoder is not None and hasattr(encoder, "categories_"):
            for position, column in enumerate(columns):
                groups["categorical"].append((str(column), list(encoder.categories_[position])))
        else:
            names = [str(c) for c in columns]
            groups["numeric"].append((names, _numeric_steps(steps, name, len(names))))
    if not groups["numeric"] and not groups["categorical"]:
        raise NotCompilable("the preprocessor is not a fitted column transformer")
    return groups


def _steps(transformer: Any, group: str) -> list[Any]:
    if _identity(transformer):
        return []
    if not isinstance(transformer, Pipeline):
        raise NotCompilable(f"the preprocessing of '{group}' is a {type(transformer).__name__}")
    return [step for _, step in transformer.steps if not _identity(step)]


def _identity(step: Any) -> bool:
    """Whether a step passes its input through (a fitted column transformer's "passthrough"
    is an identity ``FunctionTransformer``)."""
    if isinstance(step, str | type(None)):
        return step in ("passthrough", None)
    return isinstance(step, FunctionTransformer) and step.func is None


@dataclass(frozen=True)
class _Step:
    """One numeric step over a group's columns, with its per-column parameters."""

    kind: str  # "clip", "fill" or "scale"
    first: np.ndarray
    second: np.ndarray | None = None

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if self.kind == "clip":
            return np.clip(values, self.first, self.second)
        if self.kind == "fill":
            return np.where(np.isnan(values), self.first, values)
        return (values - self.first) / self.second

    def subset(self, kept: list[int]) -> _Step:
        """The same step for the columns at ``kept`` only."""
        second = None if self.second is None else self.second[kept]
        return _Step(self.kind, self.first[kept], second)


def _numeric_steps(steps: list[Any], group: str, width: int) -> list[_Step]:
    chain: list[_Step] = []
    for step in steps:
        if isinstance(step, OutlierClipper):
            chain.append(_Step("clip", _wide(step.lower_, width), _wide(step.upper_, width)))
        elif isinstance(step, SimpleImputer) and not step.add_indicator:
            statistics = np.asarray(step.statistics_, dtype=np.float64)
            if len(statistics) != width or np.isnan(statistics).any():
                raise NotCompilable(f"the imputer of '{group}' drops an all-missing column")
            chain.append(_Step("fill", statistics))
        elif isinstance(step, StandardScaler):
            mean = step.mean_ if step.with_mean else 0.0
            scale = step.scale_ if step.with_std else 1.0
            chain.append(_Step("scale", _wide(mean, width), _wide(scale, width)))
        else:
            raise NotCompilable(f"the step {type(step).__name__} of '{group}' is not covered")
    return chain


def _wide(value: Any, width: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (width,)).copy()


def _apply(steps: list[_Step], values: np.ndarray) -> np.ndarray:
    for step in steps:
        values = step(values)
    return values


class _Probe:
    """Sends chosen rows through the fitted pipeline to read where each column lands."""

    def __init__(self, pipeline: Pipeline, inputs: list[str], groups: dict[str, list[Any]]):
        self.pipeline = pipeline
        self.row: dict[str, Any] = {name: np.nan for name in inputs}
        for columns, steps in groups["numeric"]:
            probes = _numeric_probes(steps, len(columns))
            for position, column in enumerate(columns):
                self.row[column] = probes[0, position]
        for column, known in groups["categorical"]:
            if not known:
                raise NotCompilable(f"column '{column}' has no known levels")
            self.row[column] = known[0]
        self.base = self.matrix(pd.DataFrame([self.row]))[0]

    def matrix(self, X: pd.DataFrame) -> np.ndarray:
        """The model step's input matrix for ``X`` (columns as the creation step gives them),
        as scikit-learn computes it."""
        Xt = self.pipeline[1:-1].transform(X)
        model = self.pipeline[-1]
        if isinstance(model, _BOOSTING):
            Xt = model._preprocess_X(Xt, reset=False)
        return np.asarray(Xt, dtype=np.float64)

    def _vary(self, column: str, values: list[Any]) -> np.ndarray:
        frame = pd.DataFrame([self.row] * len(values))
        frame[column] = pd.Series(values, dtype=object if _textual(values) else np.float64)
        return self.matrix(frame)

    def numbers(self, columns: list[str], steps: list[_Step]) -> _Numbers:
        """Find where each numeric column lands, and check the chain computes its values."""
        probes = _numeric_probes(steps, len(columns))
        expected = _apply(steps, probes)
        positions, kept = [], []
        for index, column in enumerate(columns):
            Z = self._vary(column, list(probes[:, index]))
            moved = np.flatnonzero(~np.isclose(Z[0], Z[1], equal_nan=True))
            if len(moved) > 1:
                raise NotCompilable(f"column '{column}' feeds several model features")
            if len(moved) == 0:
                continue  # not used by the model (dropped by feature selection)
            if not np.allclose(Z[:, moved[0]], expected[:, index], equal_nan=True):
                raise NotCompilable(f"the preprocessing of column '{column}' is not covered")
            positions.append(int(moved[0]))
            kept.append(index)
        kept_steps = [step.subset(kept) for step in steps]
        return _Numbers([columns[i] for i in kept], np.asarray(positions, np.int64), kept_steps)

    def levels(self, column: str, known: list[Any]) -> _Levels:
        """Tabulate one categorical column: every known level, an unseen one, a missing value."""
        textual = _textual(known)
        unseen = _UNSEEN if textual else float(np.nanmax(np.asarray(known, float))) + 1.5
        Z = self._vary(column, [*known, unseen, np.nan])
        moved = np.flatnonzero(
            (~np.isclose(Z, self.base, equal_nan=True)).any(axis=0)
            | (np.isnan(Z).any(axis=0) & ~np.isnan(self.base))
        )
        rows = {level: position for position, level in enumerate(known)}
        return _Levels(column, rows, len(known), len(known) + 1, moved, Z[:, moved])


def _textual(values: list[Any]) -> bool:
    return any(isinstance(v, str) for v in values)


def _numeric_probes(steps: list[_Step], width: int) -> np.ndarray:
    """Two rows of values whose preprocessed values differ in every column, where possible."""
    candidates = np.array([0.0, 1.0, -1.0, 10.0, -10.0, 1e3, -1e3, 0.5])
    outputs = _apply(steps, np.repeat(candidates[:, None], width, axis=1))
    first, second = np.zeros(width), np.zeros(width)
    for column in range(width):
        distinct = np.flatnonzero(~np.isclose(outputs[:, column], outputs[0, column]))
        second[column] = candidates[distinct[0]] if len(distinct) else 1.0
    return np.vstack([first, second])
