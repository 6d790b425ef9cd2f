"""The parameters of the deploy stage, declared once.

Each field is declared with :func:`nbtools.params.param`; the ``07_deploy`` template's parameters
cell is generated from these declarations, and the monitoring policy takes its ``margin`` from
here (:class:`nbtools.ops.monitoring.check.MonitorPolicy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nbtools.params import StageParams, param


@dataclass
class DeployParams(StageParams):
    """The parameters of the deploy stage: the gate against the champion and what is shipped."""

    margin: float = param(
        0.0,
        help="smallest gain worth a swap, in the metric's units: the gain's lower confidence "
        "bound must exceed it",
        range="[0, 1]",
    )
    confidence: float = param(
        0.95,
        help="level of the one-sided lower bound of the gain (paired bootstrap on the gate rows)",
        range="(0.5, 1)",
    )
    resamples: int = param(
        1000,
        help="bootstrap resamples of the gate rows",
        range="[100, 100000]",
    )
    promote: bool = param(
        True,
        help="move the champion alias when the gate passes; False only registers a challenger",
    )
    replace_broken_champion: bool = param(
        False,
        help="let the new model replace a champion that cannot be loaded or scored",
    )
    serving_tracking_uri: str | None = param(
        None,
        help="registry the shipped service reads (an mlflow server URL); None: this project's",
    )
    metric: str | None = param(
        None,
        help="deciding metric (roc_auc, f1, accuracy, rmse, mae, r2, silhouette); None: the "
        "task's primary metric",
    )
    gate_data: str | None = param(
        None,
        help="labelled rows (CSV or Parquet) to gate on instead of the test split; the "
        "retraining loop passes recent rows it held out",
    )
    max_slice_drop: float | None = param(
        None,
        help="refuse a challenger scoring this much below the champion on any slice of the "
        "evaluate stage's slice_columns (metric's units); None: slices are reported, not checked",
        range="[0, inf)",
    )

    STAGE: ClassVar[str] = "deploy"
