"""A parameter form generated from any stage's parameters cell.

The built-in stages' cells are generated from their Python declarations
(:func:`nbtools.params.param`), and their dedicated panels build the same widgets from those
declarations' ``SCHEMA``, help text included.

Every :class:`~nbtools.params.Parameter` becomes a widget chosen by its type and hints: a
checkbox for a bool, a dropdown for ``one of:``, a number box for an int or a float (its
``range:`` is checked), a text box for a str, and a YAML text box for lists, dicts and optional
values. The form starts from the values ``pipeline.yaml`` resolves and saves back to it, so a
stage with no dedicated panel is still editable in one.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import yaml

from nbtools.errors import InvalidParameterError
from nbtools.panels._base import Panel
from nbtools.params import Parameter
from nbtools.pipeline.spec import load_pipeline

_WIDE = widgets.Layout(width="420px")
_STYLE = {"description_width": "170px"}


def parameter_widget(parameter: Parameter, value: Any) -> widgets.Widget:
    """Return an input widget for one parameter, holding ``value``.

    Parameters
    ----------
    parameter : Parameter
        The declared parameter (type, range, choices, help).
    value : Any
        The value to start from.

    Returns
    -------
    ipywidgets.Widget
        A Checkbox, Dropdown, IntText, FloatText or Text; read it back with :func:`read_widget`.
    """
    common: dict[str, Any] = {
        "description": parameter.name,
        "description_allow_html": False,
        "tooltip": f"{parameter.help} ({parameter.describe()})".strip(),
        "style": _STYLE,
        "layout": _WIDE,
    }
    if parameter.choices is not None and value in parameter.choices:
        return widgets.Dropdown(options=list(parameter.choices), value=value, **common)
    if parameter.kind == "bool" and isinstance(value, bool):
        return widgets.Checkbox(value=value, indent=False, **common)
    if parameter.kind == "int" and isinstance(value, int) and not parameter.optional:
        return widgets.IntText(value=value, **common)
    if parameter.kind == "float" and isinstance(value, int | float) and not parameter.optional:
        return widgets.FloatText(value=value, **common)
    if parameter.kind == "str" and isinstance(value, str):
        return widgets.Text(value=value, **common)
    return widgets.Text(value=_yaml(value), placeholder="YAML, e.g. [a, b] or null", **common)


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...")


def read_widget(parameter: Parameter, widget: widgets.Widget, stage: str) -> Any:
    """Return the widget's value as a valid value of ``parameter``.

    Raises
    ------
    InvalidParameterError
        When the text is not valid YAML, or the value does not fit the parameter (type, range,
        choices); the message names the stage and the parameter.
    """
    value = widget.value
    if isinstance(widget, widgets.Text) and not (
        parameter.kind == "str" and not parameter.optional and parameter.choices is None
    ):
        try:
            value = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as exc:
            raise InvalidParameterError(
                f"The '{parameter.name}' parameter of stage '{stage}' must be written as YAML "
                f"(for example [a, b] or {{name: value}}). Got {widget.value!r}, which does not "
                f"parse: {str(exc).splitlines()[0]}."
            ) from exc
    return parameter.validate(value, stage)


class ParameterForm(Panel):
    """A form for every parameter of one stage, generated from its parameters cell.

    Parameters
    ----------
    stage : str
        The stage name in ``pipeline.yaml``.
    project_dir : str or Path
        The project folder.
    values : mapping, optional
        Values to start from; by default those ``pipeline.yaml`` resolves for the stage.

    Attributes
    ----------
    inputs : dict of str to ipywidgets.Widget
        One input widget per parameter, by name.
    """

    def __init__(
        self, stage: str, project_dir: str | Path, *, values: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(stage, project_dir, f"Parameters of stage '{stage}'")
        pipeline = load_pipeline(project_dir)
        self.schema = pipeline.stage(stage).schema
        start = dict(values) if values is not None else pipeline.resolve()[stage]
        self.inputs = {
            name: parameter_widget(parameter, start.get(name, parameter.default))
            for name, parameter in self.schema.items()
        }
        self.help = widgets.HTML(
            "<br>".join(
                f"<code>{html.escape(name)}</code>: {html.escape(p.help)} "
                f"<i>({html.escape(p.describe())})</i>"
                for name, p in self.schema.items()
            )
        )

    def body(self) -> list[widgets.Widget]:
        """The input widgets, then a short help text per parameter."""
        return [*self.inputs.values(), widgets.Accordion([self.help], titles=("Help",))]

    def export(self) -> dict[str, Any]:
        """Return every parameter's value, validated against the parameters cell.

        Raises
        ------
        InvalidParameterError
            For the first value that does not fit its parameter.
        """
        return {
            name: read_widget(parameter, self.inputs[name], self.stage)
            for name, parameter in self.schema.items()
        }


def parameter_form(stage: str, project_dir: str | Path = ".") -> ParameterForm:
    """Return a :class:`ParameterForm` for ``stage`` of the project in ``project_dir``."""
    return ParameterForm(stage, project_dir)
