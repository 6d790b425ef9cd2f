"""The cleaning panel: look at every column, choose how to clean, preview the result.

It shows one row per column (type, missing share, distinct values, outliers and a small
histogram), lets the user drop columns, mark columns whose negative values are invalid, set a
column's type, imputation, outlier handling and encoding, choose the table-wide duplicate
handling, type fixing, imputation, outlier handling, encoding and scaling, and previews
the cleaned table with its row and column counts. The preview is ``cleaning.apply`` on the same
:class:`~nbtools.ml.cleaning.CleaningParams` the clean stage applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd

from nbtools.errors import NbtoolsError
from nbtools.ml import cleaning
from nbtools.ml.exploration import SAMPLE_ROWS, column_histogram, sample_rows
from nbtools.panels._base import Panel, table_html
from nbtools.panels.form import parameter_widget, read_widget

_BLOCKS = " ▁▂▃▄▅▆▇█"
_GLOBAL = (
    "drop_duplicates",
    "fix_types",
    "numeric_imputation",
    "numeric_fill_value",
    "categorical_imputation",
    "categorical_fill_value",
    "outliers",
    "iqr_factor",
    "encoding",
    "max_categories",
    "scaling",
)
_PREVIEW_ROWS = 5


def sparkline(counts: list[int]) -> str:
    """Draw counts as a row of block characters (a histogram one line high)."""
    if not counts or max(counts) == 0:
        return ""
    top = max(counts)
    return "".join(_BLOCKS[round(c / top * (len(_BLOCKS) - 1))] for c in counts)


class CleaningPanel(Panel):
    """Choose the clean stage's parameters by looking at the data.

    Parameters
    ----------
    data : pandas.DataFrame
        The ingested table (the clean stage's input).
    params : CleaningParams
        The stage's current parameters, which the panel starts from.
    target : str or None
        The target column (never dropped).
    project_dir : str, Path or None
        The project whose ``pipeline.yaml`` "Save to pipeline" writes to.
    sample_size : int, default=50,000
        Larger tables are summarised and previewed on a seeded sample of this many rows.
    seed : int, default=0
        Seed of the sample.

    Attributes
    ----------
    drop_columns, non_negative_columns : ipywidgets.SelectMultiple
        The per-column choices.
    column : ipywidgets.Dropdown
        The column whose own choices ``column_inputs`` show and edit.
    column_inputs : dict of str to ipywidgets.Dropdown
        ``type``, ``imputation``, ``outliers`` and ``encoding`` of ``column``; the empty value
        means the table-wide choice (or, for ``type``, the type as it is).
    inputs : dict of str to ipywidgets.Widget
        One widget per table-wide parameter (``drop_duplicates``, ``outliers``...).
    preview : ipywidgets.HTML
        Before/after row and column counts and the first cleaned rows.
    """

    def __init__(
        self,
        data: pd.DataFrame,
        params: cleaning.CleaningParams,
        *,
        target: str | None,
        project_dir: str | Path | None = None,
        sample_size: int = SAMPLE_ROWS,
        seed: int = 0,
    ) -> None:
        super().__init__("clean", project_dir, "Cleaning")
        self.data = data
        self.target = target
        self.sample = sample_rows(data, sample_size, seed=seed)
        self.set_sample_notice(len(self.sample), len(data))
        start = params.to_dict()
        columns = [str(c) for c in data.columns]
        features = [c for c in columns if c != target]
        self.drop_columns = widgets.SelectMultiple(
            options=features,
            value=[c for c in start["drop_columns"] if c in features],
            description="drop columns",
            style={"description_width": "100px"},
            rows=min(8, max(len(features), 2)),
        )
        self.non_negative_columns = widgets.SelectMultiple(
            options=features,
            value=[c for c in start["non_negative_columns"] if c in features],
            description="non-negative",
            style={"description_width": "100px"},
            tooltip="Rows with a negative value in these columns are dropped as invalid",
            rows=min(8, max(len(features), 2)),
        )
        self.column_choices = {c: dict(v) for c, v in start["column_choices"].items()}
        self.column = widgets.Dropdown(options=features, description="column")
        self.column_inputs = {
            key: widgets.Dropdown(
                options=[
                    ("(as is)" if key == "type" else "(table-wide)", ""),
                    *((value, value) for value in values),
                ],
                description=key,
            )
            for key, values in cleaning.CHOICES.items()
        }
        self._loading = False
        self._load_column()
        self.column.observe(lambda _change: self._load_column(), names="value")
        for key, widget in self.column_inputs.items():
            widget.observe(lambda change, key=key: self._set_choice(key, change["new"]), "value")
        schema = cleaning.CleaningParams.SCHEMA
        self.inputs = {name: parameter_widget(schema[name], start[name]) for name in _GLOBAL}
        self.columns_view = widgets.HTML(self._columns_html())
        self.preview = widgets.HTML()
        for widget in [self.drop_columns, self.non_negative_columns, *self.inputs.values()]:
            widget.observe(lambda _change: self.refresh(), names="value")
        self.refresh()

    def _load_column(self) -> None:
        """Show the chosen column's own choices without refreshing the preview meanwhile."""
        chosen = self.column_choices.get(self.column.value, {})
        self._loading = True
        for key, widget in self.column_inputs.items():
            widget.value = chosen.get(key, "")
        self._loading = False

    def _set_choice(self, key: str, value: str) -> None:
        if self._loading:
            return
        chosen = self.column_choices.setdefault(self.column.value, {})
        if value:
            chosen[key] = value
        else:
            chosen.pop(key, None)
        if not chosen:
            del self.column_choices[self.column.value]
        self.refresh()

    def _columns_html(self) -> str:
        summary = cleaning.summarize(self.sample)
        rows = []
        for name, row in summary.iterrows():
            rows.append(
                {
                    "column": name,
                    "type": row["dtype"],
                    "missing": f"{row['missing_share']:.1%}",
                    "distinct": int(row["distinct"]),
                    "outliers": "" if pd.isna(row["outliers"]) else int(row["outliers"]),
                    "histogram": sparkline(column_histogram(self.sample[name])),
                }
            )
        columns = ["column", "type", "missing", "distinct", "outliers", "histogram"]
        return table_html(rows, columns)

    def body(self) -> list[widgets.Widget]:
        """Column summary, per-column choices, table-wide choices and the preview."""
        per_column = widgets.HBox([self.drop_columns, self.non_negative_columns])
        one_column = widgets.HBox([self.column, widgets.VBox(list(self.column_inputs.values()))])
        table_wide = widgets.VBox(list(self.inputs.values()))
        return [
            widgets.Accordion([self.columns_view], titles=("Columns",), selected_index=0),
            per_column,
            widgets.HTML("<b>One column's choices</b>"),
            one_column,
            widgets.HTML("<b>Table-wide choices</b>"),
            table_wide,
            self.preview,
        ]

    def params(self) -> cleaning.CleaningParams:
        """Return the panel's choices as validated :class:`CleaningParams`.

        Raises
        ------
        InvalidParameterError
            When a value does not fit its parameter.
        """
        values: dict[str, Any] = {
            name: read_widget(cleaning.CleaningParams.SCHEMA[name], widget, self.stage)
            for name, widget in self.inputs.items()
        }
        values["drop_columns"] = list(self.drop_columns.value)
        values["non_negative_columns"] = list(self.non_negative_columns.value)
        values["column_choices"] = {c: dict(v) for c, v in self.column_choices.items()}
        return cleaning.CleaningParams(**values).validate()

    def export(self) -> dict[str, Any]:
        """Return the choices as the clean stage's parameters, checked against the data.

        Raises
        ------
        InvalidParameterError
            When a value does not fit its parameter or does not suit its column (a column
            marked non-negative that is not numeric, median imputation of a category...).
        """
        params = self.params()
        cleaned, _ = cleaning.apply(self.sample, params, target=self.target)
        cleaning.build_preprocessor(params, *cleaning.column_types(cleaned, self.target))
        return params.to_dict()

    def apply(self, *, full: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Clean the whole table (or the sample) exactly as the clean stage will."""
        return cleaning.apply(self.data if full else self.sample, self.params(), target=self.target)

    def refresh(self) -> None:
        """Recompute the before/after preview on the sample; show an error if a choice is bad."""
        try:
            cleaned, report = cleaning.apply(self.sample, self.params(), target=self.target)
        except NbtoolsError as exc:
            self.show_error(str(exc))
            self.preview.value = ""
            return
        self.clear_message()
        before = f"{len(self.sample):,} rows x {self.sample.shape[1]} columns"
        after = f"{len(cleaned):,} rows x {cleaned.shape[1]} columns"
        dropped = (
            f"without target {report['missing_target_dropped']:,}, invalid "
            f"{sum(report['invalid_rows_dropped'].values()):,}, duplicates "
            f"{report['duplicates_dropped']:,} of {report['duplicates']:,}"
        )
        fixes = ", ".join(f"{c}: {change}" for c, change in report["type_fixes"].items())
        own = "; ".join(
            f"{c}: " + ", ".join(f"{k} {v}" for k, v in choices.items())
            for c, choices in self.column_choices.items()
        )
        head = cleaned.head(_PREVIEW_ROWS).to_html(index=False, border=0, max_cols=20)
        self.preview.value = (
            f"<p><b>Before</b> {before} &rarr; <b>after</b> {after} (rows dropped: {dropped})"
            f"{'<br>Types fixed: ' + fixes if fixes else ''}"
            f"{'<br>Per-column choices: ' + own if own else ''}</p>"
            f"<div style='font-size:12px;overflow-x:auto'>{head}</div>"
        )


def cleaning_panel(
    data: pd.DataFrame,
    params: cleaning.CleaningParams,
    *,
    target: str | None,
    project_dir: str | Path | None = None,
    seed: int = 0,
) -> CleaningPanel:
    """Return a :class:`CleaningPanel` (see there for the parameters)."""
    return CleaningPanel(data, params, target=target, project_dir=project_dir, seed=seed)
