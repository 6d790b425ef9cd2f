"""The model card: what a deployed model version is, what it was trained on, how well it does,
on what it relies, why it was (not) promoted and what it cannot be trusted with.

:func:`model_card` writes it as Markdown from the hand-over files of the stages (the ingest
stage's ``dataset.json``, the train stage's ``model.json``, the evaluate stage's
``metrics.json``, the deploy stage's decision), :func:`write_model_card` saves it with its HTML
render, and :func:`log_model_card` logs both to the MLflow run that registered the version and
points a tag of the version (``nbtools.model_card``) at them.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import mistune
import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

__all__ = ["CARD_TAG", "log_model_card", "model_card", "time_span", "write_model_card"]

#: The model version tag that holds the card's artifact URI.
CARD_TAG = "nbtools.model_card"
_STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
)
#: Markdown to HTML, escaping any HTML in the data (column names, levels) rather than running it.
_render = mistune.create_markdown(escape=True, plugins=["table"])
_SHOWN_SLICES = 10
_SHOWN_COLUMNS = 10


def time_span(frame: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """The first and last value of each date column of ``frame``, as ISO text."""
    span = {}
    for name, column in frame.items():
        if pd.api.types.is_datetime64_any_dtype(column.dtype) and column.notna().any():
            span[str(name)] = (column.min().isoformat(), column.max().isoformat())
    return span


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "n/a" if value != value else f"{value:.4f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def model_card(
    *,
    model_name: str,
    version: str,
    dataset: Mapping[str, Any],
    trained: Mapping[str, Any],
    evaluated: Mapping[str, Any],
    deployment: Mapping[str, Any],
    environment: Sequence[str],
    span: Mapping[str, tuple[str, str]] | None = None,
) -> str:
    """Write the model card of one registered model version as Markdown.

    Parameters
    ----------
    model_name, version : str
        The registered model and its version.
    dataset, trained, evaluated : mapping
        The ingest stage's ``dataset.json``, the train stage's ``model.json`` and the evaluate
        stage's ``metrics.json``.
    deployment : mapping
        The deploy stage's ``deployment.json`` (the gate's decision and the aliases).
    environment : sequence of str
        The pinned requirements the model is served with (``requirements.txt``).
    span : mapping, optional
        First and last date of each date column of the data (:func:`time_span`).
    """
    metric = evaluated.get("primary_metric", deployment.get("metric"))
    data = [
        f"- source: `{dataset.get('source')}`",
        f"- snapshot hash: `{dataset.get('content_hash')}`",
        f"- rows: {dataset.get('rows', 0):,} in the snapshot, "
        f"{len(dataset.get('columns', {}))} columns; {evaluated.get('rows', 0):,} test rows",
    ]
    data += [f"- time span ({c}): {first} to {last}" for c, (first, last) in (span or {}).items()]
    if not span:
        data.append("- time span: the data has no date column")
    parts = [
        f"# Model card: {model_name} version {version}",
        f"Written by the deploy stage on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
        f"Aliases: {', '.join(deployment.get('aliases') or []) or 'none'}.",
        "## Model",
        f"- family: {trained.get('family')}, chosen by cross-validated {trained.get('scoring')} "
        f"{trained.get('cv_score', float('nan')):.4f}\n"
        f"- logged as `{trained.get('model_uri')}`",
        "## Data",
        "\n".join(data),
    ]
    parts += [
        "## Task and target",
        f"{dataset.get('task')}, predicting `{dataset.get('target')}`"
        + (
            f" (positive class {evaluated['positive_label']!r})"
            if evaluated.get("positive_label") is not None
            else ""
        )
        + f"; deciding metric: {metric}.",
    ]
    parts += _metrics_section(evaluated)
    parts += _importance_section(evaluated)
    parts += [
        "## Gate decision against the champion",
        f"{'Promoted to champion' if deployment.get('promoted') else 'Not promoted'}. "
        f"{deployment.get('reason', '')}",
        f"Previous champion: version {deployment.get('previous_champion') or 'none'}.",
        "## Environment",
        f"Python {platform.python_version()}; the service pins:",
        "\n".join(f"- `{line}`" for line in environment) or "- (no pinned requirements found)",
    ]
    parts += _limitations(evaluated, span)
    return "\n\n".join(parts) + "\n"


def _metrics_section(evaluated: Mapping[str, Any]) -> list[str]:
    metrics = evaluated.get("metrics") or {}
    dummy = evaluated.get("dummy") or {}
    rows = [{"metric": k, "test": v, "dummy baseline": dummy.get(k)} for k, v in metrics.items()]
    parts = [
        "## Metrics",
        f"On the {evaluated.get('rows', 0):,} test rows, which no model was fitted on:",
        _table(rows, ["metric", "test", "dummy baseline"]),
    ]
    slices = evaluated.get("slices")
    if slices:
        metric = slices["metric"]
        shown = slices["rows"][:_SHOWN_SLICES]
        parts += [
            "### By slice",
            f"Slices of {', '.join(slices['columns'])}, the furthest below the overall {metric} "
            f"({slices['overall']:.4f}) first; `drop` is how far below; `small` slices have "
            f"fewer than {slices['min_rows']} test rows. {len(shown)} of "
            f"{len(slices['rows'])} shown.",
            _table(shown, ["column", "level", "rows", metric, "drop", "small"]),
        ]
    return parts


def _importance_section(evaluated: Mapping[str, Any]) -> list[str]:
    importance = evaluated.get("importance")
    if not importance:
        return ["## What the model relies on", "Not measured (no target to explain)."]
    return [
        "## What the model relies on",
        importance["summary"],
        f"Permutation importance: drop in {importance['metric']} when a column is shuffled, "
        f"over {importance['repeats']} shuffles of {importance['rows']:,} test rows.",
        _table(
            importance["columns"][:_SHOWN_COLUMNS],
            ["column", "importance", "std", "above_noise"],
        ),
    ]


def _limitations(
    evaluated: Mapping[str, Any], span: Mapping[str, tuple[str, str]] | None
) -> list[str]:
    items = [
        f"The scores come from {evaluated.get('rows', 0):,} test rows; with that many rows they "
        "move by a few hundredths by chance."
    ]
    slices = evaluated.get("slices")
    if slices:
        small = [
            f"{r['column']} = {r['level']!r} ({r['rows']})" for r in slices["rows"] if r["small"]
        ]
        if small:
            items.append(
                "Too few test rows to say how the model does on: " + ", ".join(small) + "."
            )
        weak = [
            r
            for r in slices["rows"]
            if not r["small"] and r.get("drop") is not None and r["drop"] > 0.05
        ]
        if weak:
            listed = ", ".join(
                f"{r['column']} = {r['level']!r} ({slices['metric']} {r[slices['metric']]:.3f})"
                for r in weak[:5]
            )
            items.append(
                f"It serves some groups clearly worse than average (more than 0.05 below the "
                f"overall {slices['metric']}): {listed}."
            )
    if span:
        ranges = "; ".join(f"{c} from {a[:10]} to {b[:10]}" for c, (a, b) in span.items())
        items.append(f"It learned from data with {ranges}; it was not tested on later data.")
    items.append(
        "Drift is not known at deployment: the monitor stage compares new data with the "
        "training data and names the drifted columns; read its latest report before trusting "
        "the scores above on today's data."
    )
    importance = evaluated.get("importance")
    if importance:
        quiet = [c["column"] for c in importance["columns"] if not c["above_noise"]]
        if quiet:
            items.append(
                "Within the noise of permutation importance: "
                + ", ".join(quiet)
                + ". Importance is not causation, and correlated columns share it."
            )
    return ["## Limitations", "\n".join(f"- {item}" for item in items)]


def write_model_card(directory: str | Path, text: str) -> tuple[Path, Path]:
    """Save the card as ``model_card.md`` and ``model_card.html`` in ``directory``."""
    folder = Path(directory)
    markdown = folder / "model_card.md"
    markdown.write_text(text, encoding="utf-8")
    title = text.splitlines()[0].lstrip("# ")
    html = folder / "model_card.html"
    html.write_text(
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>\n{_render(text)}\n</body></html>\n",
        encoding="utf-8",
    )
    return markdown, html


def log_model_card(model_name: str, version: str, paths: Sequence[Path]) -> str:
    """Log the card files to the active MLflow run (the one that registered the version) and
    tag the version with their location; return that location (``runs:/<id>/model_card``)."""
    for path in paths:
        mlflow.log_artifact(str(path), artifact_path="model_card")
    run = mlflow.active_run()
    location = f"runs:/{run.info.run_id}/model_card" if run else "model_card"
    MlflowClient().set_model_version_tag(model_name, str(version), CARD_TAG, location)
    return location
