"""The feature-selection panel: relevance and redundancy of every feature, choose which to keep.

Each candidate feature is shown with its relevance to the target (mutual information, and the
correlation with the target) and its redundancy (its strongest correlation with another feature).
Features are kept by hand or by an automatic rule (top k, minimum relevance, drop highly
correlated); the features left out become the features stage's ``exclude_columns``. The panel also
edits the selection the model pipeline learns (``selection``, ``k``, ``drop_correlated``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nbtools.errors import NbtoolsError
from nbtools.ml import features
from nbtools.ml.cleaning import column_types
from nbtools.ml.exploration import (
    RULES,
    SAMPLE_ROWS,
    choose_features,
    redundancy,
    sample_rows,
)
from nbtools.panels._base import Panel, figure_png, table_html
from nbtools.panels.form import parameter_widget, read_widget

_PIPELINE = ("selection", "k", "drop_correlated")

#: Rows the mutual-information estimate looks at: its nearest-neighbour search costs about a
#: second per 5,000 rows of 50 columns, and the ranking of features is stable well before that.
RELEVANCE_ROWS = 5_000


def feature_scores(
    data: pd.DataFrame,
    target: str | None,
    task: str,
    *,
    seed: int = 0,
    relevance_rows: int = RELEVANCE_ROWS,
) -> pd.DataFrame:
    """Relevance and redundancy of every candidate feature (the panel's table).

    Parameters
    ----------
    data : pandas.DataFrame
        Features and target (a sample is plenty).
    target : str or None
        The target; without one (clustering) relevance is missing.
    task : str
        ``"classification"``, ``"regression"`` or ``"clustering"``.
    seed : int, default=0
        Seed of the row sample and of the mutual-information estimate.
    relevance_rows : int, default=5,000
        Relevance is estimated on a seeded sample of at most this many rows; redundancy on all
        rows of ``data``.

    Returns
    -------
    pandas.DataFrame
        Indexed by feature (in table order), with ``kind``, ``mutual_info``, ``correlation``,
        ``max_correlation`` and ``most_correlated_with``.
    """
    numeric, categorical = column_types(data, target)
    candidates = [c for c in data.columns if c in set(numeric) | set(categorical)]
    if target is not None and task != "clustering":
        scored = sample_rows(data, relevance_rows, seed=seed)
        relevant = features.relevance(scored, target, task, seed=seed)
    else:
        relevant = pd.DataFrame(
            {
                "kind": ["numeric" if c in numeric else "categorical" for c in candidates],
                "mutual_info": np.nan,
                "correlation": np.nan,
            },
            index=candidates,
        )
    return relevant.reindex(candidates).join(redundancy(data, candidates))


class FeatureSelectionPanel(Panel):
    """Choose the features stage's selection by looking at relevance and redundancy.

    Parameters
    ----------
    data : pandas.DataFrame
        The table after feature creation (cleaned columns and created features, and the target).
    params : FeatureParams
        The stage's current parameters, which the panel starts from.
    target : str or None
        The target column.
    task : str
        ``"classification"``, ``"regression"`` or ``"clustering"``.
    project_dir : str, Path or None
        The project whose ``pipeline.yaml`` "Save to pipeline" writes to.
    sample_size : int, default=50,000
        Larger tables are scored on a seeded sample of this many rows.
    seed : int, default=0
        Seed of the sample and of the relevance estimate.

    Attributes
    ----------
    kept : ipywidgets.SelectMultiple
        The features the model uses; the others become ``exclude_columns``.
    rule, rule_value, apply_rule : ipywidgets.Dropdown, FloatText, Button
        The automatic rule, its number, and the button applying it to ``kept``.
    scores : pandas.DataFrame
        From :func:`feature_scores`.
    """

    def __init__(
        self,
        data: pd.DataFrame,
        params: features.FeatureParams,
        *,
        target: str | None,
        task: str,
        project_dir: str | Path | None = None,
        sample_size: int = SAMPLE_ROWS,
        seed: int = 0,
    ) -> None:
        super().__init__("features", project_dir, "Feature selection")
        self.start = params
        self.target = target
        self.sample = sample_rows(data, sample_size, seed=seed)
        self.set_sample_notice(len(self.sample), len(data))
        if len(data) > RELEVANCE_ROWS:
            self.notice.value += (
                f"<div style='color:#555;font-style:italic'>Mutual information is estimated on "
                f"{RELEVANCE_ROWS:,} sampled rows, correlations on {len(self.sample):,}.</div>"
            )
        self.scores = feature_scores(self.sample, target, task, seed=seed)
        candidates = list(self.scores.index)
        self.kept = widgets.SelectMultiple(
            options=candidates,
            value=[c for c in candidates if c not in params.exclude_columns],
            description="keep",
            rows=min(12, max(len(candidates), 2)),
        )
        self.rule = widgets.Dropdown(options=list(RULES), value="top_k", description="rule")
        self.rule_value = widgets.FloatText(value=10.0, description="value")
        self.apply_rule = widgets.Button(description="Apply rule", icon="filter")
        self.apply_rule.on_click(lambda _button: self.use_rule())
        schema = features.FeatureParams.SCHEMA
        start = params.to_dict()
        self.inputs = {name: parameter_widget(schema[name], start[name]) for name in _PIPELINE}
        self.table = widgets.HTML()
        self.plot = widgets.Image(format="png", layout=widgets.Layout(max_width="720px"))
        self.kept.observe(lambda _change: self.refresh(), names="value")
        self.refresh()

    def body(self) -> list[widgets.Widget]:
        """Scores table and plot, the choice of features, the rule and the pipeline selection."""
        rule_row = widgets.HBox([self.rule, self.rule_value, self.apply_rule])
        return [
            widgets.HBox([self.table, self.plot]),
            self.kept,
            rule_row,
            widgets.HTML("<b>Selection learned in the model pipeline</b>"),
            *self.inputs.values(),
        ]

    def use_rule(self) -> None:
        """Apply the chosen automatic rule to the kept features (or say why it cannot)."""
        try:
            self.kept.value = choose_features(self.scores, self.rule.value, self.rule_value.value)
        except NbtoolsError as exc:
            self.show_error(str(exc))

    def params(self) -> features.FeatureParams:
        """Return the choices as validated :class:`FeatureParams`, checked against the data.

        Raises
        ------
        InvalidParameterError
            When a value does not fit its parameter, or no feature is kept.
        """
        values: dict[str, Any] = self.start.to_dict()
        for name, widget in self.inputs.items():
            values[name] = read_widget(features.FeatureParams.SCHEMA[name], widget, self.stage)
        kept = set(self.kept.value)
        values["exclude_columns"] = [c for c in self.scores.index if c not in kept]
        params = features.FeatureParams(**values).validate()
        features.model_columns(self.sample, params, target=self.target)
        return params

    def export(self) -> dict[str, Any]:
        """Return the choices as the features stage's parameters (see :meth:`params`)."""
        return self.params().to_dict()

    def refresh(self) -> None:
        """Redraw the table and the relevance plot for the current choice of features."""
        kept = set(self.kept.value)
        rows = [
            {"feature": name, **row.to_dict(), "kept": "✓" if name in kept else ""}
            for name, row in self.scores.iterrows()
        ]
        columns = ["feature", "kind", "mutual_info", "correlation", "max_correlation"]
        self.table.value = table_html(rows, [*columns, "most_correlated_with", "kept"])
        if kept:
            self.clear_message()
        else:
            self.show_error(
                "No feature is kept: the model needs at least one. Select features to keep."
            )
        relevance = self.scores["mutual_info"].fillna(0.0).iloc[::-1]
        fig = Figure(figsize=(4, 0.25 * len(relevance) + 1))
        ax = fig.subplots()
        colours = ["tab:green" if name in kept else "lightgrey" for name in relevance.index]
        ax.barh(relevance.index.astype(str), relevance.to_numpy(), color=colours)
        ax.set_xlabel("mutual information with the target")
        ax.set_title("Relevance (grey: left out)")
        self.plot.value = figure_png(fig)


def feature_selection_panel(
    data: pd.DataFrame,
    params: features.FeatureParams,
    *,
    target: str | None,
    task: str,
    project_dir: str | Path | None = None,
    seed: int = 0,
) -> FeatureSelectionPanel:
    """Return a :class:`FeatureSelectionPanel` (see there for the parameters)."""
    return FeatureSelectionPanel(
        data, params, target=target, task=task, project_dir=project_dir, seed=seed
    )
