"""The monitoring report: one self-contained HTML page with its plots embedded.

It shows the decision first (breach or not, and why), then a table of the windows with their
drift share and performance, the drift share and the deciding metric over time, and the drift
detail of the newest window: scores per column, the tests, and per column the reference and
current distributions. Every plot is a matplotlib figure embedded as a base64 PNG, so the page
can be attached to an MLflow run or an e-mail and opened anywhere.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nbtools.ops import monitoring
from nbtools.ops.monitoring.check import CheckResult

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:90%}td,th{padding:3px 8px;border-bottom:1px solid"
    " #ddd;text-align:right}td:first-child,th:first-child{text-align:left}"
    ".drift{color:#b00020}.no-drift{color:#1b5e20}.not-enough-data{color:#777}"
    ".verdict{font-size:120%}h3 span{font-size:70%;font-weight:normal}img{max-width:100%}"
)
_FLAGS = {True: "drift", False: "no drift", None: "not enough data"}


def report_html(result: CheckResult, decisions: Sequence[dict[str, Any]] = ()) -> str:
    """Render a monitoring check as a self-contained HTML page.

    Parameters
    ----------
    result : CheckResult
        Output of :func:`nbtools.ops.monitoring.check.run_check`.
    decisions : sequence of dict, optional
        What was decided after the check (``decision`` and ``reason`` keys, plus numbers),
        listed as they happened.

    Returns
    -------
    str
        An HTML document.
    """
    parts = _opening(result, decisions)
    parts += ["<h2>Windows</h2>", _windows_table(result)]
    if len(result.windows) > 1:
        parts.append(_img(drift_share_figure(result)))
    scored = [w.performance for w in result.windows if w.performance is not None]
    if scored:
        parts += [
            "<h2>Performance</h2>",
            _img(monitoring.decay.performance_figure(scored, result.policy.max_drop)),
        ]
    parts += _newest_window(result)
    parts.append("</body></html>")
    return "\n".join(parts)


def _opening(result: CheckResult, decisions: Sequence[dict[str, Any]]) -> list[str]:
    """The page's head, the reference, the verdict and the decisions taken."""
    breach = result.breach
    verdict = (
        f"<b class='drift'>BREACH ({breach.kind})</b> in window {html.escape(breach.window)}: "
        f"{html.escape(breach.reason)}"
        if breach
        else "<b class='no-drift'>no breach</b>: no retraining is due."
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Monitoring report</title>",
        f"<style>{_CSS}</style></head><body><h1>Monitoring report</h1>",
        f"<p>Reference: {html.escape(result.reference.label)}.</p>",
        f"<p class='verdict'>{verdict}</p>",
    ]
    if decisions:
        items = "".join(
            f"<li><b>{html.escape(str(d['decision']))}</b>: {html.escape(str(d.get('reason', '')))}"
            "</li>"
            for d in decisions
        )
        parts.append(f"<h2>Decisions</h2><ul>{items}</ul>")
    return parts


def _newest_window(result: CheckResult) -> list[str]:
    """The drift of the newest window: how it is tested, the table, and a figure per column."""
    latest, data = result.windows[-1], result.windows_data[-1]
    report = latest.drift
    parts = [
        f"<h2>Drift in the newest window ({html.escape(latest.label)})</h2>",
        f"<p>Reference: {report.reference_rows:,} rows. Current: {report.current_rows:,} rows. "
        f"P-value tests (Kolmogorov-Smirnov, chi-square) control the false discovery rate at "
        f"{report.alpha:g} (Benjamini-Hochberg); distance tests (Wasserstein in reference "
        "standard deviations, Jensen-Shannon) drift at their threshold. Dataset drift when at "
        f"least {report.share_threshold:.0%} of the tested columns drift. PSI is for "
        "information (above 0.2 is usually read as a significant shift). Score 1 is the "
        "threshold: the distance over its threshold, or log(adjusted p) / log(alpha). A column "
        f"also drifts when its missing share rises by {result.policy.missing_threshold:g} or "
        "more, or its values fall into categories never seen in training (beyond the share "
        f"the training data predicts, by {result.policy.new_category_threshold:g}). Reliance "
        "is the model's: how much its predictions move when the column is shuffled, as a share "
        "of all columns; the table lists the columns by score times reliance.</p>",
        _reliance(result, report),
        _img(monitoring.drift.scores_figure(report)),
        _drift_table(report),
        "<h2>Columns</h2>",
    ]
    for row in report.columns:
        flag = _FLAGS[row.drift]
        parts.append(
            f"<h3>{html.escape(row.column)} <span class='{flag.replace(' ', '-')}'>"
            f"{flag}</span></h3>"
        )
        parts.append(
            _img(
                monitoring.drift.column_figure(
                    report, result.reference.statistics, data, row.column
                )
            )
        )
    return parts


def drift_share_figure(result: CheckResult) -> Figure:
    """Plot the share of drifted columns per window against the dataset-drift threshold.

    Parameters
    ----------
    result : CheckResult
        A check with one or more windows.

    Returns
    -------
    matplotlib.figure.Figure
        Bars per window, red where the dataset drifted; built without pyplot.
    """
    fig = Figure(figsize=(7, 2.8))
    ax = fig.subplots()
    shares = [w.drift.drift_share or 0.0 for w in result.windows]
    colors = ["#b00020" if w.drift.dataset_drift else "#4c72b0" for w in result.windows]
    x = np.arange(len(shares))
    ax.bar(x, shares, color=colors)
    ax.axhline(result.policy.share_threshold, color="black", linestyle="--", linewidth=1)
    ax.set_xticks(x, [(w.start or "all")[:16] for w in result.windows], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of drifted columns")
    ax.set_title("Drift over time", fontsize=10)
    return fig


def _img(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt='plot' src='data:image/png;base64,{data}'>"


def _num(value: float | None) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.4g}"


def _windows_table(result: CheckResult) -> str:
    head = (
        "<tr><th>window</th><th>rows</th><th>drift share</th><th>dataset</th>"
        "<th>drifted columns</th><th>metric</th><th>score</th><th>baseline</th><th>drop</th></tr>"
    )
    body = []
    for w in result.windows:
        flag = _FLAGS[w.drift.dataset_drift]
        perf = w.performance
        decayed = perf is not None and perf.decayed
        body.append(
            f"<tr><td>{html.escape(w.label)}</td><td>{w.rows:,}</td>"
            f"<td>{_num(w.drift.drift_share)}</td>"
            f"<td class='{flag.replace(' ', '-')}'>{flag}</td>"
            f"<td>{html.escape(', '.join(w.drift.drifted_columns))}</td>"
            f"<td>{'' if perf is None else perf.metric}</td>"
            f"<td>{'' if perf is None else _num(perf.score)}</td>"
            f"<td>{'' if perf is None else _num(perf.baseline)}</td>"
            f"<td class='{'drift' if decayed else ''}'>{'' if perf is None else _num(perf.drop)}"
            "</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _reliance(result: CheckResult, report: monitoring.drift.DriftReport) -> str:
    if result.importance_note:
        return f"<p>{html.escape(result.importance_note)}</p>"
    if report.weighted_drift_share is None:
        return ""
    return (
        f"<p class='verdict'>The drifted columns carry {report.weighted_drift_share:.0%} of the "
        "model's reliance on its inputs.</p>"
    )


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _drift_table(report: monitoring.drift.DriftReport) -> str:
    head = (
        "<tr><th>column</th><th>kind</th><th>test</th><th>statistic</th><th>p-value</th>"
        "<th>adjusted p</th><th>threshold</th><th>PSI</th><th>values (ref / cur)</th>"
        "<th>missing (ref / cur)</th><th>unseen categories</th><th>reliance</th>"
        "<th>drift</th></tr>"
    )
    body = []
    ranked = sorted(report.columns, key=lambda r: (r.weighted_score or 0.0, r.score), reverse=True)
    for r in ranked:
        flag = _FLAGS[r.drift]
        why = "; ".join(r.reasons)
        unseen = _share(r.new_share)
        if r.new_categories:
            unseen += " (" + ", ".join(r.new_categories[:3]) + ")"
        body.append(
            f"<tr><td>{html.escape(r.column)}</td><td>{r.kind}</td>"
            f"<td>{monitoring.drift.TEST_LABELS[r.test]}</td>"
            f"<td>{_num(r.statistic)}</td><td>{_num(r.p_value)}</td>"
            f"<td>{_num(r.p_value_adjusted)}</td><td>{_num(r.threshold)}</td><td>{_num(r.psi)}</td>"
            f"<td>{r.reference_count:,} / {r.current_count:,}</td>"
            f"<td>{_share(r.missing_reference)} / {_share(r.missing_current)}</td>"
            f"<td>{html.escape(unseen)}</td><td>{_share(r.importance)}</td>"
            f"<td class='{flag.replace(' ', '-')}' title='{html.escape(why)}'>{flag}"
            f"{'<br>' + html.escape(why) if why else ''}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"
