"""The tuning panel: choose a model family, its hyperparameter ranges and the search; run it.

The search runs in a background thread through ``modeling.search``, the function the train stage
calls, with a callback after each candidate that moves a progress bar; Cancel stops it after the
current candidate. The results are a sortable table and a plot of the score against each
hyperparameter. Picking a candidate sets the train stage's parameters to a grid search over exactly
that candidate, so a batch run refits it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd
import yaml
from matplotlib.figure import Figure
from sklearn.model_selection import ParameterGrid
from sklearn.pipeline import Pipeline

from nbtools.errors import InvalidParameterError, NbtoolsError, SearchCancelledError
from nbtools.ml import modeling
from nbtools.ml.tuning import Candidate, candidate_space, candidates_table
from nbtools.panels._base import Panel, figure_png, table_html
from nbtools.panels.form import parameter_widget, read_widget

_SEARCH = ("search", "n_iter", "cv_folds", "scoring")


class TuningPanel(Panel):
    """Tune the train stage's model by cross-validated search, then pick a candidate.

    Parameters
    ----------
    X, y : pandas.DataFrame, pandas.Series or None
        The training split (``y`` is None for clustering).
    params : TrainParams
        The stage's current parameters, which the panel starts from.
    make_pipeline : callable
        ``make_pipeline(family)`` returns the unfitted model pipeline for a family name, as the
        train stage builds it.
    task : str
        ``"classification"``, ``"regression"`` or ``"clustering"``.
    project_dir : str, Path or None
        The project whose ``pipeline.yaml`` "Save to pipeline" writes to.
    seed : int, default=0
        The pipeline's seed (folds and candidate draws).
    cv, groups : optional
        The train stage's folds and row groups (``model_choice.cv_splitter`` and
        ``split_groups``), so that the panel's scores follow a group or time split too.

    Attributes
    ----------
    family : ipywidgets.Dropdown
        The model family.
    ranges : dict of str to ipywidgets.Text
        Per hyperparameter of the family: empty for the built-in values, a YAML list of values,
        or a range ``{low: 0.01, high: 100, log: true}``.
    run_button, cancel_button, progress : ipywidgets.Button, Button, IntProgress
    candidates : list of Candidate
        The candidates evaluated by the last run, in order.
    """

    def __init__(
        self,
        X: pd.DataFrame,
        y: pd.Series | None,
        params: modeling.TrainParams,
        *,
        make_pipeline: Callable[[str], Pipeline],
        task: str,
        project_dir: str | Path | None = None,
        seed: int = 0,
        cv: Any = None,
        groups: Any = None,
    ) -> None:
        super().__init__("train", project_dir, "Tuning")
        self.X, self.y, self.task, self.seed = X, y, task, seed
        self.cv, self.groups = cv, groups
        self.start, self.make_pipeline = params, make_pipeline
        self.family = _family_dropdown(task, params.family)
        schema = modeling.TrainParams.SCHEMA
        start = params.to_dict()
        self.inputs = {name: parameter_widget(schema[name], start[name]) for name in _SEARCH}
        self.ranges: dict[str, widgets.Text] = {}
        self.ranges_box = widgets.VBox()
        self.family.observe(lambda _change: self._build_ranges({}), names="value")
        self._build_ranges(params.space)
        self.run_button = widgets.Button(description="Run search", icon="play")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="candidates")
        self.status = widgets.HTML()
        self._results = results = _Results()
        self.sort_by, self.descending, self.pick = results.sort_by, results.descending, results.pick
        self.results, self.plot = results.html, results.plot
        self.pick_button = widgets.Button(description="Use candidate", icon="check")
        self.candidates: list[Candidate] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.run_button.on_click(lambda _button: self.run())
        self.cancel_button.on_click(lambda _button: self._stop.set())
        self.pick_button.on_click(lambda _button: self.use_candidate(self.pick.value))
        for control in (self.sort_by, self.descending):
            control.observe(lambda _change: self._show_table(), names="value")

    def _build_ranges(self, space: dict[str, Any]) -> None:
        self.ranges = _range_boxes(modeling.get_family(self.family.value, self.task), space)
        self.ranges_box.children = list(self.ranges.values())

    def body(self) -> list[widgets.Widget]:
        """Family, ranges and search settings; run controls; results, plot and pick."""
        return [
            self.family,
            widgets.HTML("<b>Hyperparameter ranges</b> (empty: the family's built-in values)"),
            self.ranges_box,
            *self.inputs.values(),
            widgets.HBox([self.run_button, self.cancel_button, self.progress]),
            self.status,
            widgets.HBox([self.sort_by, self.descending]),
            self.results,
            self.plot,
            widgets.HBox([self.pick, self.pick_button]),
        ]

    def params(self) -> modeling.TrainParams:
        """Return the choices as :class:`TrainParams`, validated for the task.

        Raises
        ------
        InvalidParameterError
            When a value does not fit, a range is impossible (low >= high) or malformed, or a
            hyperparameter does not suit the family.
        """
        values: dict[str, Any] = self.start.to_dict()
        values["family"] = self.family.value
        schema = modeling.TrainParams.SCHEMA
        for name, widget in self.inputs.items():
            values[name] = read_widget(schema[name], widget, self.stage)
        values["space"] = _read_space(self.ranges)
        return modeling.TrainParams(**values).validate(self.task)

    def export(self) -> dict[str, Any]:
        """Return the choices as the train stage's parameters (see :meth:`params`)."""
        return self.params().to_dict()

    def run(self) -> None:
        """Start the search in a background thread (or show why the settings are invalid)."""
        if self._thread is not None and self._thread.is_alive():
            return
        try:
            params = self.params()
        except NbtoolsError as exc:
            self.show_error(str(exc))
            return
        self.clear_message()
        self.candidates = []
        self._stop.clear()
        self.progress.value = 0
        self.progress.max = _planned(params, self.task, len(self.X))
        self.run_button.disabled, self.cancel_button.disabled = True, False
        self.status.value = "Searching..."
        self._thread = threading.Thread(target=self._search, args=(params,), daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running search ends (for scripts and tests)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _search(self, params: modeling.TrainParams) -> None:
        family = modeling.get_family(params.family, self.task)
        try:
            modeling.search(
                self.make_pipeline(family.name),
                self.X,
                self.y,
                params,
                task=self.task,
                seed=self.seed,
                cv=self.cv,
                groups=self.groups,
                on_candidate=self._on_candidate,
                should_stop=self._stop.is_set,
                refit=False,
            )
            done = f"Done: {len(self.candidates)} candidate(s)."
        except SearchCancelledError:
            done = f"Cancelled after {len(self.candidates)} candidate(s)."
        except NbtoolsError as exc:
            done = ""
            self.show_error(str(exc))
        except Exception as exc:  # a failing fit must reach the user, not die in the thread
            done = ""
            self.show_error(f"The search failed: {type(exc).__name__}: {exc}")
        self.status.value = done
        self.run_button.disabled, self.cancel_button.disabled = False, True
        self._show_table()

    def _on_candidate(self, candidate: Candidate) -> None:
        self.candidates.append(candidate)
        self.progress.max = max(self.progress.max, candidate.number)
        self.progress.value = candidate.number
        self.status.value = f"Candidate {candidate.number}: score {candidate.mean_score:.4f}"

    def table(self) -> pd.DataFrame:
        """The evaluated candidates, sorted as the "sort by" controls say."""
        return self._results.table(self.candidates)

    def _show_table(self) -> None:
        self._results.show(self.candidates)

    def use_candidate(self, number: int | None) -> None:
        """Set the panel (and so the exported parameters) to exactly candidate ``number``.

        The search becomes a grid over that one candidate, so a batch run refits it.
        """
        chosen = [c for c in self.candidates if c.number == number]
        if not chosen:
            self.show_error("Run the search, then choose a candidate from the results.")
            return
        space = candidate_space(chosen[0])
        # "auto" compares families in a batch run; a candidate belongs to one family
        self.family.value = modeling.get_family(self.family.value, self.task).name
        self._build_ranges(space)
        self.inputs["search"].value = "grid"
        self.show_ok(f"Candidate #{number} chosen: {chosen[0].params}. Save to keep it.")


class _Results:
    """A search's results: a sortable table, a score plot per hyperparameter, the picker."""

    def __init__(self) -> None:
        self.sort_by = widgets.Dropdown(options=["mean_score"], description="sort by")
        self.descending = widgets.Checkbox(value=True, description="descending", indent=False)
        self.html = widgets.HTML()
        self.plot = widgets.Image(format="png", layout=widgets.Layout(max_width="720px"))
        self.pick = widgets.Dropdown(options=[], description="candidate")

    def table(self, candidates: list[Candidate]) -> pd.DataFrame:
        """The candidates as a table, sorted as the "sort by" controls say."""
        table = candidates_table(candidates)
        if table.empty:
            return table
        key = self.sort_by.value if self.sort_by.value in table.columns else "mean_score"
        return table.sort_values(key, ascending=not self.descending.value, kind="stable")

    def show(self, candidates: list[Candidate]) -> None:
        """Render the table, the picker's options and the plot for ``candidates``."""
        table = self.table(candidates)
        if table.empty:
            self.html.value = ""
            return
        options = list(table.columns)
        if list(self.sort_by.options) != options:
            key = self.sort_by.value
            self.sort_by.options = options
            self.sort_by.value = key if key in options else "mean_score"
            table = self.table(candidates)
        self.pick.options = [(f"#{n}", int(n)) for n in table["candidate"]]
        self.pick.value = int(table["candidate"].iloc[0])
        rows = table.astype(object).where(table.notna(), None).to_dict("records")
        self.html.value = table_html(rows, [str(c) for c in table.columns])
        self._plot(table, list(candidates[0].params) if candidates else [])

    def _plot(self, table: pd.DataFrame, names: list[str]) -> None:
        if not names:
            return
        fig = Figure(figsize=(3 * len(names), 2.6))
        axes = fig.subplots(1, len(names), squeeze=False)
        for ax, name in zip(axes[0], names, strict=True):
            values = table[name]
            numeric = pd.api.types.is_numeric_dtype(values)
            x = values if numeric else values.astype(str)
            ax.scatter(x, table["mean_score"], color="tab:blue")
            ax.set_xlabel(name)
            if numeric and values.min() > 0 and values.max() / values.min() > 50:
                ax.set_xscale("log")
        axes[0][0].set_ylabel("mean CV score")
        self.plot.value = figure_png(fig)


def _family_dropdown(task: str, family: str) -> widgets.Dropdown:
    """The family choice for ``task``, starting at ``family`` ("auto" when it does not fit)."""
    families = ["auto", *modeling.FAMILIES[task]]
    value = family if family in families else "auto"
    return widgets.Dropdown(options=families, value=value, description="family")


def _range_boxes(family: modeling.ModelFamily, space: dict[str, Any]) -> dict[str, widgets.Text]:
    """One text box per hyperparameter of ``family`` (and of ``space``), filled from ``space``."""
    names = list(dict.fromkeys([*family.grid, *family.distributions, *space]))
    return {
        name: widgets.Text(
            value=_yaml(space[name]) if name in space else "",
            description=name,
            placeholder="built-in; or [values] or {low: a, high: b, log: true}",
            style={"description_width": "150px"},
            layout=widgets.Layout(width="520px"),
        )
        for name in names
    }


def _read_space(ranges: dict[str, widgets.Text]) -> dict[str, Any]:
    """The search space the range boxes spell; empty boxes are left to the family."""
    space: dict[str, Any] = {}
    for name, box in ranges.items():
        if box.value.strip():
            try:
                space[name] = yaml.safe_load(box.value)
            except yaml.YAMLError as exc:
                raise InvalidParameterError(
                    f"The range of hyperparameter '{name}' must be YAML: a list [a, b] or "
                    f"{{low: a, high: b}}. Got {box.value!r} instead."
                ) from exc
    return space


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()


def _planned(params: modeling.TrainParams, task: str, n_rows: int) -> int:
    """How many candidates the search will evaluate (for halving, at most)."""
    search = modeling.resolve_search(params.search, n_rows)
    if search == "grid":
        space = modeling.get_family(params.family, task).search_space("grid", params.space)
        return len(ParameterGrid(space))
    if search in ("random", "none"):
        return params.n_iter
    total, remaining = 0, params.n_iter
    while remaining > 1:
        total += remaining
        remaining = math.ceil(remaining / 3)
    return total + 1


def tuning_panel(
    X: pd.DataFrame,
    y: pd.Series | None,
    params: modeling.TrainParams,
    *,
    make_pipeline: Callable[[str], Pipeline],
    task: str,
    project_dir: str | Path | None = None,
    seed: int = 0,
    cv: Any = None,
    groups: Any = None,
) -> TuningPanel:
    """Return a :class:`TuningPanel` (see there for the parameters)."""
    return TuningPanel(
        X,
        y,
        params,
        make_pipeline=make_pipeline,
        task=task,
        project_dir=project_dir,
        seed=seed,
        cv=cv,
        groups=groups,
    )
