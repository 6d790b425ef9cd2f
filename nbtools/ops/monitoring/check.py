"""One monitoring check: drift and performance of new data, window by window, and the breach rule.

A check compares new data with the **reference** of a model: the statistics its train stage
captured (``reference.json``, logged with the model's MLflow run), its deciding metric and its
score when it was deployed. :func:`resolve_reference` finds them from a registry URI
(``models:/NAME@champion``, the default) or a pipeline run id. :func:`run_check` cuts the new
data into time windows and, per window, tests drift
(:func:`nbtools.ops.monitoring.drift.detect_drift`) and, where labels exist, measures
performance (:mod:`nbtools.ops.monitoring.decay`).

:func:`find_breach` applies the retraining rule to the windows in order, after the earlier
windows of the same reference kept in the project's monitoring history: a **breach** is dataset
drift in ``drift_windows`` consecutive windows, or a window whose deciding metric fell more than
``max_drop`` below the baseline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

import pandas as pd

from nbtools.errors import DataSourceError
from nbtools.ops import monitoring
from nbtools.ops.deploying import DeployParams
from nbtools.ops.monitoring._history import HISTORY_FILE as HISTORY_FILE
from nbtools.ops.monitoring._history import Breach, find_breach
from nbtools.ops.monitoring._history import append_history as append_history
from nbtools.ops.monitoring._history import read_history as read_history
from nbtools.ops.monitoring._reference import Reference
from nbtools.ops.monitoring._reference import resolve_reference as resolve_reference
from nbtools.ops.predictions import META_COLUMNS, PREDICTION_COLUMN, PROBA_PREFIX, ROW_COLUMN
from nbtools.params import StageParams, param, same_as

#: What a retraining run learns from: the pipeline's data plus the new rows, or the new rows.
RETRAIN_DATA = ("reference+current", "current")
#: What a check can find, from the least to the most serious: a drifted column, dataset drift
#: (at least ``share_threshold`` of the columns), performance decay, a retraining-rule breach.
FINDINGS = ("column-drift", "dataset-drift", "performance", "breach")


@dataclass(frozen=True)
class MonitorInputs(StageParams):
    """The data a monitor stage checks: its parameters beside the :class:`MonitorPolicy`.

    Each field is declared once with :func:`nbtools.params.param`; the monitor template's
    parameters cell declares these, then the policy's.
    """

    current: str | None = param(
        None,
        help="new data: a CSV or Parquet file, or the prediction log folder (predictions), "
        "relative to the project; None: the test split stands in",
    )
    labels: str | None = param(
        None,
        help="late labels of logged predictions: request_id, request_row and the target column "
        "(CSV or Parquet)",
    )

    STAGE: ClassVar[str] = "monitor"


@dataclass(frozen=True)
class MonitorPolicy(StageParams):
    """The settings of a check and of the retraining rule (the monitor stage's parameters).

    Each field is declared once with :func:`nbtools.params.param`; the monitor template's
    parameters cell, the options of ``nbtools monitor`` and the ``Parameters`` list of this
    docstring are generated from the declarations. The drift settings (``alpha`` to
    ``new_category_threshold``) go to :func:`nbtools.ops.monitoring.drift.detect_drift`;
    ``margin`` is the deploy stage's, which the retraining loop's gate applies.
    """

    every: str | None = param(
        None,
        help="window length as a pandas frequency, e.g. 1D or 6h; None: all rows in one window",
    )
    alpha: float = param(0.05, help="false discovery rate of the p-value tests", range="(0, 1)")
    min_rows: int = param(
        30,
        help="fewest values a column (and labelled rows a window) needs to be tested",
        range="[2, 1000000]",
    )
    share_threshold: float = param(
        0.5,
        help="dataset drift when at least this share of the tested columns drift",
        range="(0, 1]",
    )
    large_sample: int = param(
        1000,
        help="above this many values on both sides, distances replace the p-value tests",
        range="[1, 1000000000]",
    )
    wasserstein_threshold: float = param(
        0.1,
        help="drift when the Wasserstein distance reaches this many reference standard deviations",
        range="(0, 100)",
    )
    js_threshold: float = param(
        0.1, help="drift when the Jensen-Shannon distance reaches this", range="(0, 1]"
    )
    missing_threshold: float = param(
        0.05,
        help="drift when a column's share of missing values rises by this much (beyond chance)",
        range="(0, 1]",
    )
    new_category_threshold: float = param(
        0.01,
        help="drift when values in unseen categories exceed their expected share by this much",
        range="(0, 1]",
    )
    importance_rows: int = param(
        2000,
        help="new rows on which the model's reliance on each column is measured; 0 skips it",
        range="[0, 1000000]",
    )
    max_drop: float = param(
        0.05,
        help="a window whose deciding metric falls more than this below the deployed score is "
        "a breach",
        range="[0, 1000000]",
    )
    drift_windows: int = param(
        2,
        help="dataset drift in this many consecutive windows is a breach",
        range="[1, 1000]",
    )
    retrain_data: str = param(
        "reference+current",
        help="what a retraining run learns from",
        choices=RETRAIN_DATA,
    )
    holdout: float = param(
        0.3,
        help="share of the newest labelled rows a retraining run keeps out of training, for "
        "the gate",
        range="(0, 1)",
    )
    margin: float = same_as(DeployParams, "margin")

    STAGE: ClassVar[str] = "monitor"

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> MonitorPolicy:
        """Build a policy from stage parameters, ignoring names that are not settings."""
        return cls.from_namespace(parameters)

    def updated(self, **changes: Any) -> MonitorPolicy:
        """Return a copy with the given settings changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None}).validate()

    def drift_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`detect_drift`."""
        names = (
            "alpha",
            "min_rows",
            "large_sample",
            "wasserstein_threshold",
            "js_threshold",
            "share_threshold",
            "missing_threshold",
            "new_category_threshold",
        )
        return {n: getattr(self, n) for n in names}


@dataclass(frozen=True)
class WindowCheck:
    """Drift and performance of one window."""

    start: str | None
    end: str | None
    rows: int
    drift: monitoring.drift.DriftReport
    performance: monitoring.decay.PerformanceWindow | None

    @property
    def label(self) -> str:
        """The window as people read it."""
        return "all rows" if self.start is None else f"{self.start} .. {self.end}"

    def entry(self, reference: Reference) -> dict[str, Any]:
        """The window's line in the monitoring history."""
        perf = self.performance
        return {
            "reference": reference.key,
            "start": self.start,
            "end": self.end,
            "rows": self.rows,
            "drift_share": self.drift.drift_share,
            "dataset_drift": self.drift.dataset_drift,
            "drifted_columns": self.drift.drifted_columns,
            "metric": None if perf is None else perf.metric,
            "score": None if perf is None else perf.score,
            "baseline": None if perf is None else perf.baseline,
            "drop": None if perf is None else perf.drop,
            "decayed": None if perf is None else perf.decayed,
        }


@dataclass(frozen=True)
class CheckResult:
    """The outcome of :func:`run_check`."""

    reference: Reference
    windows: list[WindowCheck]
    windows_data: list[pd.DataFrame]
    breach: Breach | None
    policy: MonitorPolicy
    importance: dict[str, float] | None = None
    importance_note: str | None = None

    @property
    def drift_found(self) -> bool:
        """Whether any window drifted as a dataset."""
        return any(w.drift.dataset_drift for w in self.windows)

    @property
    def column_drift_found(self) -> bool:
        """Whether any column of any window drifted."""
        return any(w.drift.drifted_columns for w in self.windows)

    @property
    def findings(self) -> list[str]:
        """What the check found, from the least to the most serious (:data:`FINDINGS`)."""
        found = {
            "column-drift": self.column_drift_found,
            "dataset-drift": self.drift_found,
            "performance": self.decay_found,
            "breach": self.breach is not None,
        }
        return [name for name in FINDINGS if found[name]]

    @property
    def decay_found(self) -> bool:
        """Whether any window's performance dropped beyond the allowed drop."""
        return any(w.performance is not None and w.performance.decayed for w in self.windows)

    def to_dict(self) -> dict[str, Any]:
        """The check as a JSON-serialisable dict (without the reference statistics)."""
        return {
            "reference": {
                "key": self.reference.key,
                "label": self.reference.label,
                "metric": self.reference.metric,
                "baseline": self.reference.baseline,
            },
            "policy": asdict(self.policy),
            "findings": self.findings,
            "importance": self.importance,
            "importance_note": self.importance_note,
            "breach": None if self.breach is None else asdict(self.breach),
            "windows": [
                {
                    **w.entry(self.reference),
                    "drift": w.drift.to_dict(),
                    "performance": None if w.performance is None else w.performance.to_dict(),
                }
                for w in self.windows
            ],
        }


def run_check(
    reference: Reference,
    current: pd.DataFrame,
    policy: MonitorPolicy,
    *,
    labels: pd.DataFrame | None = None,
    history: Iterable[Mapping[str, Any]] = (),
    model: Any | None = None,
) -> CheckResult:
    """Check new data against a reference, window by window, and apply the breach rule.

    Parameters
    ----------
    reference : Reference
        From :func:`resolve_reference`.
    current : DataFrame
        New data: the prediction log (:func:`~nbtools.ops.predictions.read_predictions`), or
        rows with the model's input columns and, optionally, the target.
    policy : MonitorPolicy
        Drift settings, window length and the breach rule.
    labels : DataFrame, optional
        Late labels of logged predictions (``request_id``, ``request_row``, target).
    history : iterable of dict
        Earlier windows' history entries (:func:`read_history`).
    model : estimator, optional
        The model, to score labelled rows that have no logged predictions and to measure its
        reliance on each column; loaded from ``reference.model_uri`` when needed. When it
        cannot be loaded only for the reliance, the check goes on without it and says so
        (:attr:`CheckResult.importance_note`).

    Raises
    ------
    DataSourceError
        For an empty window, missing or extra columns, wrong types, or labels that do not match.
    """
    target, task = reference.target, reference.task
    if labels is not None:
        current = _join_labels(current, labels, target)
    if current.empty:
        monitoring.decay.split_windows(current, None)  # raises the empty-window error
    current = as_trained(current, reference)
    X = _features(current, target)
    monitoring.drift.detect_drift(
        reference.statistics, X.head(1), min_rows=2
    )  # schema errors first
    labelled = target is not None and target in current.columns and task != "clustering"
    if labelled and PREDICTION_COLUMN not in current.columns:
        if model is None:
            model = reference.load_model()
        current = monitoring.decay.add_predictions(model, current, X)
    importance, note = None, None
    if policy.importance_rows > 0:
        importance, note = _reliance(reference, model, X, policy.importance_rows)
    windows = monitoring.decay.split_windows(current, policy.every)
    checks: list[WindowCheck] = []
    for window in windows:
        drift = monitoring.drift.detect_drift(
            reference.statistics,
            _features(window.data, target),
            importance=importance,
            **policy.drift_options(),
        )
        perf = None
        if labelled:
            assert target is not None and task is not None
            first = checks[0].performance if checks else None
            perf = _performance(reference, window, policy, target, task, first)
        checks.append(WindowCheck(window.start, window.end, len(window.data), drift, perf))
    breach = find_breach([*history], [c.entry(reference) for c in checks], policy)
    return CheckResult(
        reference, checks, [w.data for w in windows], breach, policy, importance, note
    )


def _join_labels(current: pd.DataFrame, labels: pd.DataFrame, target: str | None) -> pd.DataFrame:
    """Join late labels to a prediction log, refusing data that is not one."""
    if not {"request_id", PREDICTION_COLUMN} <= set(current.columns):
        raise DataSourceError(
            "Labels are joined to logged predictions, but the current data is not a "
            "prediction log (no 'request_id' and 'prediction' columns). Pass the prediction "
            "log folder as the current data, or put the labels in a target column."
        )
    if target is None:
        raise DataSourceError("The model has no target column, so labels cannot be used.")
    return monitoring.decay.join_labels(current, labels, target=target)


def _reliance(
    reference: Reference, model: Any | None, X: pd.DataFrame, rows: int
) -> tuple[dict[str, float] | None, str | None]:
    """The model's reliance on each column, or None and a note that says why it is unknown."""
    step = "did not load"
    try:
        model = reference.load_model() if model is None else model
        step = "could not score the new rows"
        return monitoring.drift.model_reliance(model, X, rows=rows), None
    except Exception as exc:  # drift stands without the weights; the note says why
        note = f"The model's reliance on each column is unknown: {reference.model_uri} "
        note += f"{step} ({type(exc).__name__}: {str(exc)[:200]})."
        return None, note


def _performance(
    reference: Reference,
    window: monitoring.decay.Window,
    policy: MonitorPolicy,
    target: str,
    task: str,
    first: monitoring.decay.PerformanceWindow | None,
) -> monitoring.decay.PerformanceWindow:
    """The model's score on one labelled window, against the deployed score (or, without one,
    the first window's baseline)."""
    metric, greater = _deciding_metric(reference, task, window.data[target])
    baseline = reference.baseline
    if baseline is None and first is not None:
        baseline = first.baseline
    return monitoring.decay.performance_windows(
        [window],
        target=target,
        task=task,
        metric=metric,
        greater_is_better=greater,
        baseline=baseline,
        max_drop=policy.max_drop,
        min_rows=policy.min_rows,
    )[0]


_TRUE, _FALSE = {"yes", "y", "true"}, {"no", "n", "false"}


def as_trained(current: pd.DataFrame, reference: Reference) -> pd.DataFrame:
    """New data with the types the model was trained with, where text stands in for them.

    Raw exports hold dates and yes/no flags as text, which the clean stage turned into dates and
    booleans before training: the same happens here (row by row, learning nothing), so that
    drift compares like with like and the model can score the rows.
    """
    changed = {}
    for name, col in reference.statistics["columns"].items():
        if name not in current.columns:
            continue
        values = current[name]
        if col["kind"] == "datetime" and not pd.api.types.is_datetime64_any_dtype(values):
            parsed = pd.to_datetime(values, errors="coerce", format="mixed")
            if parsed.notna().sum() == values.notna().sum():
                changed[name] = parsed
        elif col["dtype"] == "bool" and not pd.api.types.is_bool_dtype(values):
            text = values.astype("string").str.strip().str.lower()
            if text.dropna().isin(_TRUE | _FALSE).all():
                changed[name] = text.isin(_TRUE).where(values.notna())
    return current.assign(**changed) if changed else current


def _features(data: pd.DataFrame, target: str | None) -> pd.DataFrame:
    """The model-input part of new data: log metadata, outputs and the target set aside."""
    aside = {*META_COLUMNS, ROW_COLUMN, PREDICTION_COLUMN, target}
    keep = [c for c in data.columns if c not in aside and not str(c).startswith(PROBA_PREFIX)]
    return data[keep]


def _deciding_metric(reference: Reference, task: str, labels: pd.Series) -> tuple[str, bool]:
    if reference.metric is not None:
        return reference.metric, reference.greater_is_better
    from nbtools.ml.evaluation import primary_metric

    return primary_metric(task, binary=labels.nunique() == 2)
