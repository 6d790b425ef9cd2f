"""Data drift between the training reference and new data.

:func:`reference_statistics` summarises the training features once, at training time, into a
small JSON-serialisable dict: enough to test drift later without the raw training data. For a
numeric column it keeps its distinct values with their counts, or a sketch that keeps the tails
(:mod:`nbtools.ops.monitoring._sketch`), a histogram on fixed (decile) bin edges, a sample of up
to 5,000 values, the mean and the standard deviation; for a categorical column the category
frequencies and names; for every column its count of missing values.

:func:`detect_drift` compares new data with that reference column by column. The test follows
Evidently's defaults, chosen by sample size (the smaller of the reference and current counts):

============  ======================================  =========================================
column        at most ``large_sample`` values          more values
============  ======================================  =========================================
numeric       two-sample Kolmogorov-Smirnov test       Wasserstein distance / reference std
categorical   chi-square test of homogeneity           Jensen-Shannon distance (natural log)
============  ======================================  =========================================

Dates are tested like numbers, in days since 1970. A numeric column with at most 5 distinct
reference values is tested as categorical. P-values are adjusted with the Benjamini-Hochberg
procedure across the columns tested with a p-value; a distance drifts when it reaches its
threshold. The Wasserstein distance is exact on the current values and within the sketch's
recorded error of the distance to the full reference. The population stability index (PSI) is
reported for information. A column with fewer than ``min_rows`` values on either side is "not
enough data" for the test.

Two more checks, which Evidently does not make, flag a column on their own: a surge of missing
values, and values in categories the reference never saw. The dataset drifts when the share of
drifted columns reaches ``share_threshold``. :func:`model_reliance` measures how much a model
relies on each column, so that a report can weight drift by it.

:func:`scores_figure` and :func:`column_figure` plot a report; :mod:`nbtools.ops.monitoring.report`
renders it, with the performance over time, as one self-contained HTML page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from nbtools.errors import DataSourceError
from nbtools.ops.monitoring import _statistics
from nbtools.ops.monitoring._figures import TEST_LABELS as TEST_LABELS
from nbtools.ops.monitoring._figures import column_figure as column_figure
from nbtools.ops.monitoring._figures import scores_figure as scores_figure
from nbtools.ops.monitoring._inputs import FORMAT as FORMAT
from nbtools.ops.monitoring._inputs import READABLE_FORMATS as READABLE_FORMATS
from nbtools.ops.monitoring._inputs import check_current, check_options, reference_columns


@dataclass(frozen=True)
class ColumnDrift:
    """The drift checks of one column: its distribution, its missing values, its categories.

    Parameters
    ----------
    column : str
        Column name.
    kind : str
        ``"numeric"``, ``"datetime"`` or ``"categorical"``, as in the reference.
    test : str
        ``"ks"``, ``"chi_square"``, ``"wasserstein"``, ``"jensen_shannon"`` or
        ``"not_enough_data"``.
    statistic : float or None
        The test statistic, or the distance for the distance tests.
    p_value : float or None
        Raw p-value of the p-value tests.
    p_value_adjusted : float or None
        Benjamini-Hochberg adjusted p-value, compared with ``threshold``.
    threshold : float
        ``alpha`` for the p-value tests, the distance threshold for the distance tests.
    distribution_drift : bool or None
        The test's decision (what Evidently decides); None when there was not enough data.
    psi : float or None
        Population stability index, for information.
    reference_count, current_count : int
        Non-missing values of the column on each side.
    missing_reference, missing_current : float
        Share of missing (or infinite) values on each side.
    missing_drift : bool or None
        Whether the missing share rose by at least ``missing_threshold``, beyond chance.
    new_share : float or None
        Share of the current values in categories the reference never saw (categorical and
        discrete columns; None when unchecked).
    new_categories : list of str
        The ten most frequent of those categories.
    new_category_drift : bool or None
        Whether ``new_share`` exceeds the reference's own expected share of unseen values
        (Good-Turing) by at least ``new_category_threshold``, beyond chance.
    drift : bool or None
        Whether the column drifted in any of the three ways; None when none could be checked.
    importance : float or None
        The model's reliance on the column, as a share of all columns (:func:`model_reliance`).
    """

    column: str
    kind: str
    test: str
    statistic: float | None
    p_value: float | None
    p_value_adjusted: float | None
    threshold: float
    distribution_drift: bool | None
    psi: float | None
    reference_count: int
    current_count: int
    missing_reference: float
    missing_current: float
    missing_drift: bool | None
    new_share: float | None
    new_categories: list[str]
    new_category_drift: bool | None
    drift: bool | None
    importance: float | None = None

    @property
    def reasons(self) -> list[str]:
        """How the column drifted, as people read it (empty when it did not)."""
        out = []
        if self.distribution_drift:
            value = self.statistic if self.p_value_adjusted is None else self.p_value_adjusted
            kind = "" if self.p_value_adjusted is None else "adjusted p "
            out.append(f"distribution ({TEST_LABELS[self.test]} {kind}{value:.3g})")
        if self.missing_drift:
            out.append(f"missing {self.missing_reference:.1%} -> {self.missing_current:.1%}")
        if self.new_category_drift:
            shown = ", ".join(self.new_categories[:3])
            out.append(f"new categories {self.new_share:.1%} ({shown})")
        return out

    @property
    def weighted_score(self) -> float | None:
        """:attr:`score` times :attr:`importance`: drift in what the model relies on ranks first."""
        return None if self.importance is None else self.score * self.importance

    @property
    def score(self) -> float:
        """Drift score on one scale for every test: 1 is the threshold, above 1 is drift.

        The distance over its threshold, or log(adjusted p) / log(alpha); 0 when untested.
        A column flagged only for missing values or new categories scores at least 1.
        """
        if self.statistic is None:
            distribution = 0.0
        elif self.p_value_adjusted is None:
            distribution = self.statistic / self.threshold
        else:
            distribution = math.log(max(self.p_value_adjusted, 1e-300)) / math.log(self.threshold)
        return max(distribution, 1.0) if self.drift else distribution


@dataclass(frozen=True)
class DriftReport:
    """The result of :func:`detect_drift`.

    Parameters
    ----------
    columns : list of ColumnDrift
        One row per reference column, in the reference's order.
    drift_share : float or None
        Share of drifted columns among those tested; None when no column could be tested.
    dataset_drift : bool or None
        Whether ``drift_share`` reaches ``share_threshold``; None when no column could be tested.
    alpha, share_threshold : float
        The settings the decisions used.
    reference_rows, current_rows : int
        Rows on each side.
    weighted_drift_share : float or None
        The model's reliance on the drifted columns, as a share of its reliance on the tested
        ones; None without importances.
    """

    columns: list[ColumnDrift]
    drift_share: float | None
    dataset_drift: bool | None
    alpha: float
    share_threshold: float
    reference_rows: int
    current_rows: int
    weighted_drift_share: float | None = None

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the columns that drifted."""
        return [c.column for c in self.columns if c.drift]

    def to_frame(self) -> pd.DataFrame:
        """Return one row per column, as a DataFrame indexed by column name."""
        return pd.DataFrame([asdict(c) for c in self.columns]).set_index("column")

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-serialisable dict (the content of ``drift.json``)."""
        out = asdict(self)
        out["drifted_columns"] = self.drifted_columns
        return out


def reference_statistics(
    X: pd.DataFrame,
    *,
    sample_size: int = 5000,
    seed: int = 0,
    target: str | None = None,
    task: str | None = None,
) -> dict[str, Any]:
    """Summarise training features into the reference that drift is measured against.

    Parameters
    ----------
    X : DataFrame
        The training features (without the target). Numbers (not booleans) are numeric columns,
        dates are datetime columns (tested like numbers, in days since 1970), and everything
        else, booleans included, is categorical.
    sample_size : int, default=5000
        Numeric values kept per column for the Kolmogorov-Smirnov test.
    seed : int, default=0
        Seed of the sample, so the same data gives the same reference.
    target, task : str, optional
        The model's target column and task, kept so that monitoring knows which column of
        labelled new data holds the labels and which metrics to compute.

    Returns
    -------
    dict
        JSON-serialisable: ``{"format", "rows", "target", "task", "columns": {name: stats}}``.
        A numeric column keeps ``atoms`` and ``weights`` (every distinct value with its count, or
        a sketch within 0.001 standard deviations of the data in Wasserstein distance that keeps
        the minimum, the maximum and any far-out values exactly; ``sketch_error`` says how far),
        a decile ``histogram``, a ``sample``, ``mean``, ``std``, ``min``, ``max`` and the counts of
        values and of ``missing`` ones; a categorical column its ``frequencies`` (the 100 most
        frequent categories), the ``other`` count and names of the rest, and ``singletons``.

    Raises
    ------
    DataSourceError
        If ``X`` is not a DataFrame or has no rows or no columns.
    """
    if not isinstance(X, pd.DataFrame):
        raise DataSourceError(
            f"Reference statistics need a pandas DataFrame. Got {type(X).__name__}."
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataSourceError(
            f"Reference statistics need rows and columns. Got a frame of shape {X.shape}."
        )
    rng = np.random.default_rng(seed)
    columns = {}
    for name in X.columns:
        series = X[name]
        kind = _statistics.column_kind(series)
        if kind == "categorical":
            columns[str(name)] = _statistics.categorical_reference(series)
        else:
            columns[str(name)] = _statistics.numeric_reference(series, sample_size, rng, kind)
    return {
        "format": FORMAT,
        "rows": int(X.shape[0]),
        "target": target,
        "task": task,
        "columns": columns,
    }


def detect_drift(
    reference_stats: dict[str, Any],
    current: pd.DataFrame,
    *,
    alpha: float = 0.05,
    min_rows: int = 30,
    large_sample: int = 1000,
    wasserstein_threshold: float = 0.1,
    js_threshold: float = 0.1,
    share_threshold: float = 0.5,
    missing_threshold: float = 0.05,
    new_category_threshold: float = 0.01,
    importance: Mapping[str, float] | None = None,
) -> DriftReport:
    """Test every reference column of ``current`` for drift.

    Parameters
    ----------
    reference_stats : dict
        Output of :func:`reference_statistics` (as read back from JSON).
    current : DataFrame
        New data with exactly the reference's columns.
    alpha : float, default=0.05
        False discovery rate of the p-value tests (Benjamini-Hochberg).
    min_rows : int, default=30
        Fewest non-missing values, on each side, to test a column.
    large_sample : int, default=1000
        Above this many values on both sides, distances replace p-value tests (which flag
        tiny, irrelevant shifts at large sample sizes).
    wasserstein_threshold : float, default=0.1
        Drift when the Wasserstein distance, in reference standard deviations, reaches this.
    js_threshold : float, default=0.1
        Drift when the Jensen-Shannon distance reaches this.
    share_threshold : float, default=0.5
        Dataset drift when at least this share of the tested columns drift.
    missing_threshold : float, default=0.05
        A column drifts when its share of missing values rises by at least this much (0.05: from
        0 % to 5 %), and more than chance explains (one-sided binomial test at ``alpha``).
    new_category_threshold : float, default=0.01
        A categorical column drifts when the share of its values in categories never seen in
        training exceeds by at least this much the share of unseen values the training data
        predicts (the Good-Turing estimate: its share of categories seen once), beyond chance.
    importance : mapping of str to float, optional
        The model's reliance on each column (:func:`model_reliance`), shown beside the drift and
        summed over the drifted columns in :attr:`DriftReport.weighted_drift_share`.

    Returns
    -------
    DriftReport

    Raises
    ------
    InvalidParameterError
        If an option is out of range.
    DataSourceError
        If the reference is malformed, or ``current`` is empty, lacks reference columns, has
        extra ones, or has a column of another kind than the reference's (text where numbers
        were, numbers where categories were, text that holds no dates where dates were).
    """
    check_options(
        alpha,
        min_rows,
        large_sample,
        wasserstein_threshold,
        js_threshold,
        share_threshold,
        missing_threshold,
        new_category_threshold,
    )
    references = reference_columns(reference_stats)
    check_current(references, current)

    raw = [
        _statistics.test_column(
            name,
            ref,
            current[name],
            alpha=alpha,
            min_rows=min_rows,
            large_sample=large_sample,
            wasserstein_threshold=wasserstein_threshold,
            js_threshold=js_threshold,
            missing_threshold=missing_threshold,
            new_category_threshold=new_category_threshold,
        )
        for name, ref in references.items()
    ]
    columns = _verdicts(raw, alpha=alpha, importance=importance)
    tested = [c for c in columns if c.drift is not None]
    share = sum(bool(c.drift) for c in tested) / len(tested) if tested else None
    weighted = None
    reliance = sum(c.importance or 0.0 for c in tested)
    if importance is not None and reliance > 0:
        weighted = sum(c.importance or 0.0 for c in tested if c.drift) / reliance
    return DriftReport(
        columns=columns,
        drift_share=share,
        dataset_drift=None if share is None else share >= share_threshold,
        alpha=alpha,
        share_threshold=share_threshold,
        reference_rows=int(reference_stats.get("rows", 0)),
        current_rows=int(current.shape[0]),
        weighted_drift_share=weighted,
    )


def _verdicts(
    raw: list[dict[str, Any]], *, alpha: float, importance: Mapping[str, float] | None
) -> list[ColumnDrift]:
    """Decide each column's drift from its tests: p-values adjusted together (Benjamini-Hochberg),
    distances against their thresholds, and the missing-value and new-category checks."""
    p_values = [r["p_value"] for r in raw if r["p_value"] is not None]
    adjusted = iter(stats.false_discovery_control(p_values, method="bh") if p_values else [])
    columns = []
    for r in raw:
        r["distribution_drift"] = None
        if r["p_value"] is not None:
            r["p_value_adjusted"] = float(next(adjusted))
            r["distribution_drift"] = r["p_value_adjusted"] <= alpha
        elif r["statistic"] is not None:
            r["distribution_drift"] = r["statistic"] >= r["threshold"]
        flags = [r["distribution_drift"], r["missing_drift"], r["new_category_drift"]]
        r["drift"] = True if any(flags) else None if all(f is None for f in flags) else False
        r["importance"] = None if importance is None else importance.get(r["column"])
        columns.append(ColumnDrift(**r))
    return columns


def model_reliance(
    model: Any, X: pd.DataFrame, *, rows: int = 2000, seed: int = 0
) -> dict[str, float]:
    """How much a model's output relies on each input column, without labels.

    Each column in turn is shuffled among ``rows`` sampled rows, and the model's output is
    compared with its output on the intact rows: for a classifier with probabilities the mean
    total-variation distance between the two probability vectors, otherwise the mean absolute
    change of the prediction in standard deviations of the predictions (a regressor), or the
    share of changed predictions (labels of a clusterer). This is permutation importance with
    the model's own output in place of the labels, so it works on the unlabelled new data that
    drift is measured on: a column the model ignores gets 0, whatever its drift.

    Parameters
    ----------
    model : estimator
        The fitted model pipeline, taking ``X``'s columns.
    X : DataFrame
        Rows to measure on (the current data).
    rows : int, default=2000
        Rows sampled from ``X``.
    seed : int, default=0
        Seed of the sample and the shuffles.

    Returns
    -------
    dict
        Column name to its share of the total reliance (the shares sum to 1; all 0 when the
        output changes with no column).
    """
    rng = np.random.default_rng(seed)
    if len(X) > rows:
        X = X.iloc[np.sort(rng.choice(len(X), size=rows, replace=False))]
    X = X.reset_index(drop=True)
    proba = hasattr(model, "predict_proba")

    def output(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict_proba(frame) if proba else model.predict(frame))

    base = output(X)
    numeric = not proba and np.issubdtype(base.dtype, np.number) and np.unique(base).size > 20
    scale = float(np.std(base)) if numeric else 1.0
    changes = {}
    for name in X.columns:
        shuffled = X.assign(**{name: X[name].to_numpy()[rng.permutation(len(X))]})
        moved = output(shuffled)
        if proba:
            change = 0.5 * np.abs(moved - base).sum(axis=1).mean()
        elif numeric:
            change = np.abs(moved - base).mean() / max(scale, 1e-12)
        else:
            change = np.mean(moved != base)
        changes[str(name)] = float(change)
    total = sum(changes.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in changes.items()}
