"""Typed stage parameters: declared once, read from a notebook's ``parameters`` cell, validated.

A stage notebook declares its parameters in its ``parameters`` cell. Each line assigns a literal::

    test_size = 0.2          # share of rows held out for testing; range: (0, 1)
    strategy = "stratified"  # one of: random, stratified, group, time
    time_column: str | None = None

The literal gives the type (an annotation can widen it), and the comment may carry a ``range:`` or
``one of:`` hint. The same :class:`Parameter` objects drive Papermill injection, command-line
validation and the "parameters used" of every run record.

The built-in stages declare their parameters once, in Python, as the fields of a
:class:`StageParams` dataclass made with :func:`param`. Their schema, their template's parameters
cell (:func:`render_parameters_cell`), their docstring's parameter list and the command-line
options and panel widgets that edit them are all derived from those fields.
"""

from nbtools.params.cell import (
    RESERVED_NAMES,
    Parameter,
    parse_assignment,
    parse_parameters_cell,
    resolve_parameters,
)
from nbtools.params.declared import StageParams, param, render_parameters_cell, same_as

__all__ = [
    "RESERVED_NAMES",
    "Parameter",
    "StageParams",
    "param",
    "parse_assignment",
    "parse_parameters_cell",
    "render_parameters_cell",
    "resolve_parameters",
    "same_as",
]
