"""The drift report's figures: the score of every column, and one column's two distributions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nbtools.errors import InvalidParameterError
from nbtools.ops.monitoring import _sketch, _statistics
from nbtools.ops.monitoring._inputs import reference_columns

if TYPE_CHECKING:
    from nbtools.ops.monitoring.drift import DriftReport

#: How reports name each test.
TEST_LABELS = {
    "ks": "Kolmogorov-Smirnov",
    "chi_square": "chi-square",
    "wasserstein": "Wasserstein (normed)",
    "jensen_shannon": "Jensen-Shannon",
    "not_enough_data": "not enough data",
}


def scores_figure(report: DriftReport) -> Figure:
    """Plot the drift score of every column (:attr:`ColumnDrift.score`) against the threshold.

    Parameters
    ----------
    report : DriftReport
        Output of :func:`detect_drift`.

    Returns
    -------
    matplotlib.figure.Figure
        Horizontal bars, red for drifted columns, grey for untested ones; built without pyplot.
    """
    rows = report.columns
    fig = Figure(figsize=(7, 0.3 * len(rows) + 1))
    ax = fig.subplots()
    colors = ["#999999" if r.drift is None else "#b00020" if r.drift else "#4c72b0" for r in rows]
    ax.barh([r.column for r in rows], [min(r.score, 10.0) for r in rows], color=colors)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel("drift score (1 = threshold, capped at 10)")
    return fig


def column_figure(
    report: DriftReport, reference_stats: dict[str, Any], current: pd.DataFrame, column: str
) -> Figure:
    """Plot the reference and current distributions of one column, titled with its test.

    Parameters
    ----------
    report : DriftReport
        Output of :func:`detect_drift` on ``reference_stats`` and ``current``.
    reference_stats : dict
        The reference.
    current : DataFrame
        The current data.
    column : str
        The column to plot.

    Returns
    -------
    matplotlib.figure.Figure
        Shares of values per bin (numeric: the reference sample against the current values) or
        per category (the 20 largest), built without pyplot.
    """
    rows = {c.column: c for c in report.columns}
    if column not in rows:
        raise InvalidParameterError(
            f"Column {column!r} is not in the drift report. Its columns are {list(rows)}."
        )
    row = rows[column]
    ref = reference_columns(reference_stats)[column]
    series = current[column]
    fig = Figure(figsize=(7, 2.8))
    ax = fig.subplots()
    if "frequencies" in ref:
        ref_counts, cur_counts = _statistics.paired_counts(ref, series)
        labels = [*ref["frequencies"], _statistics.OTHER]
        ref_share = ref_counts / max(ref_counts.sum(), 1)
        cur_share = cur_counts / max(cur_counts.sum(), 1)
        order = np.argsort(-(ref_share + cur_share), kind="stable")
        top = order[(ref_share + cur_share)[order] > 0][:20]
        x = np.arange(top.size)
        ax.bar(x - 0.2, ref_share[top], width=0.4, label="reference")
        ax.bar(x + 0.2, cur_share[top], width=0.4, label="current")
        ax.set_xticks(x, [labels[i][:20] for i in top], rotation=30, ha="right")
    elif ref["count"] > 0:
        values = _statistics.finite_values(series, ref["kind"])
        sample = np.asarray(ref["sample"], dtype=float)
        low, high = _sketch.weighted_quantiles(*_sketch.atoms_of(ref), np.array([0.005, 0.995]))
        if values.size:
            cur_low, cur_high = np.quantile(values, [0.005, 0.995])
            low, high = min(low, cur_low), max(high, cur_high)
        edges = np.linspace(low, high if high > low else low + 1.0, 41)
        for data, label in ((sample, "reference"), (values, "current")):
            if data.size:
                counts = np.histogram(data, edges)[0] / data.size
                ax.stairs(counts, edges, fill=True, alpha=0.5, label=label)
    if ref["kind"] == "datetime":
        ax.xaxis_date()  # the values are days since 1970, Matplotlib's date unit
    ax.set_ylabel("share of values")
    if ax.has_data():
        ax.legend(loc="upper right")
    details = f"{column}: {TEST_LABELS[row.test]}"
    if row.statistic is not None:
        details += f", statistic {row.statistic:.3g}"
    if row.p_value_adjusted is not None:
        details += f", adjusted p {row.p_value_adjusted:.3g}"
    if row.psi is not None:
        details += f", PSI {row.psi:.3g}"
    ax.set_title(details, fontsize=10)
    return fig
