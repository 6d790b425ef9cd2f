"""Shared plumbing of the panels: start from parameters, export them, save them, show errors.

A panel is a thin view. It holds widgets for a stage's parameters, turns their values back into
the stage's parameters (:meth:`Panel.export`), previews them by calling the same
:mod:`nbtools.ml` function as the batch stage, and writes them into ``pipeline.yaml`` with "Save to
pipeline". Bad input is shown in the panel's message area and never reaches the file.
"""

from __future__ import annotations

import html
import io
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from IPython.display import HTML, display

from nbtools.errors import NbtoolsError
from nbtools.panels.save import save_parameters
from nbtools.pipeline.spec import load_pipeline
from nbtools.runner.context import StageContext

_ERROR_STYLE = "color:#b00020;border-left:3px solid #b00020;padding:2px 8px;margin:4px 0"
_OK_STYLE = "color:#1b5e20;padding:2px 8px"
_NOTE_STYLE = "color:#555;font-style:italic"


class Panel(ABC):
    """Base of every panel: a stage name, a message area, a sample notice and a save button.

    Parameters
    ----------
    stage : str
        The stage whose parameters the panel edits.
    project_dir : str, Path or None
        The project holding ``pipeline.yaml``; without one, "Save to pipeline" is disabled.
    title : str
        Shown at the top of the panel.

    Attributes
    ----------
    message : ipywidgets.HTML
        Errors and confirmations; ``message_text`` holds the same text, plain.
    notice : ipywidgets.HTML
        Says when summaries and previews use a sample of the rows.
    save_button : ipywidgets.Button
        "Save to pipeline".
    saved : dict or None
        The parameters the last successful save wrote.
    """

    def __init__(self, stage: str, project_dir: str | Path | None, title: str) -> None:
        self.stage = stage
        self.project_dir = Path(project_dir) if project_dir is not None else None
        self.title = widgets.HTML(f"<h3 style='margin:4px 0'>{html.escape(title)}</h3>")
        self.notice = widgets.HTML()
        self.message = widgets.HTML()
        self.message_text = ""
        self.save_button = widgets.Button(
            description="Save to pipeline",
            icon="save",
            button_style="primary",
            disabled=self.project_dir is None,
            tooltip="Write these choices into the stage's parameters in pipeline.yaml",
        )
        self.save_button.on_click(lambda _button: self.save())
        self.saved: dict[str, Any] | None = None

    @abstractmethod
    def export(self) -> dict[str, Any]:
        """Return the panel's choices as the stage's parameters, validated.

        Raises
        ------
        NbtoolsError
            When a choice is invalid; the message says which and why.
        """

    @abstractmethod
    def body(self) -> list[widgets.Widget]:
        """Return the panel's own widgets, shown between the notice and the save row."""

    @property
    def widget(self) -> widgets.VBox:
        """The whole panel as one ipywidgets box."""
        save_row = widgets.HBox([self.save_button])
        return widgets.VBox([self.title, self.notice, *self.body(), self.message, save_row])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def save(self) -> Path | None:
        """Write the choices that differ from ``pipeline.yaml`` into it ("Save to pipeline").

        Returns
        -------
        pathlib.Path or None
            The path of ``pipeline.yaml``, or None when a choice is invalid (the message area
            then says why, and the file is unchanged).
        """
        if self.project_dir is None:
            self.show_error("This panel has no project to save to; pass project_dir.")
            return None
        try:
            values = self.export()
            current = load_pipeline(self.project_dir).resolve()[self.stage]
            changed = {name: value for name, value in values.items() if current[name] != value}
            path = save_parameters(self.project_dir, self.stage, changed)
        except NbtoolsError as exc:
            self.show_error(str(exc))
            return None
        self.saved = changed
        names = ", ".join(sorted(changed)) or "nothing changed"
        self.show_ok(f"Saved to {path.name} (stage '{self.stage}'): {names}.")
        return path

    def show_error(self, text: str) -> None:
        """Show ``text`` as an error in the panel's message area (plain in ``message_text``)."""
        self.message_text = text
        self.message.value = f"<div style='{_ERROR_STYLE}'>{html.escape(text)}</div>"

    def show_ok(self, text: str) -> None:
        """Show ``text`` as a confirmation in the panel's message area."""
        self.message_text = text
        self.message.value = f"<div style='{_OK_STYLE}'>{html.escape(text)}</div>"

    def clear_message(self) -> None:
        """Empty the message area."""
        self.message_text = ""
        self.message.value = ""

    def set_sample_notice(self, rows_used: int, rows_total: int) -> None:
        """Say in the panel when summaries and previews use a sample of the rows."""
        if rows_used < rows_total:
            self.notice.value = (
                f"<div style='{_NOTE_STYLE}'>Summaries and previews use a sample of "
                f"{rows_used:,} of {rows_total:,} rows; the stage applies the same parameters "
                "to every row.</div>"
            )
        else:
            self.notice.value = ""

    def summary_html(self) -> str:
        """Return the panel's choices as a static HTML table (what a batch run shows)."""
        try:
            values = self.export()
        except NbtoolsError as exc:
            return f"<p style='{_ERROR_STYLE}'>{html.escape(str(exc))}</p>"
        rows = "".join(
            f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(repr(value))}</td></tr>"
            for name, value in values.items()
        )
        return (
            f"<p><b>Parameters of stage '{html.escape(self.stage)}'</b> (from the panel's "
            f"starting values)</p><table><tr><th>parameter</th><th>value</th></tr>{rows}</table>"
        )


def show(panel: Panel, stage: StageContext) -> None:
    """Show a panel in a stage notebook.

    Working interactively, the panel itself is shown. In a batch run (the runner injected the
    stage's output folder) nobody can click: a static table of the parameters the stage runs with
    is shown, followed by the panel, whose widget state the executed notebook keeps.
    """
    if not stage.interactive:
        display(HTML(panel.summary_html()))
    display(panel.widget)


def figure_png(figure: Any) -> bytes:
    """Render a matplotlib figure as PNG bytes for an ``ipywidgets.Image``.

    Panels draw on a plain ``matplotlib.figure.Figure`` (no pyplot, whose state is not
    thread-safe) into an Image widget, which updates from any thread: the tuning panel draws
    from its search thread.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return buffer.getvalue()


def table_html(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Render rows of plain values as a compact HTML table, for the panels' read-only views."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return (
        "<table style='border-collapse:collapse;font-size:12px'>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"
    return html.escape(str(value))
