"""A stage's parameters as its notebook's ``parameters`` cell declares them, and their validation.

Each line of the cell assigns a literal::

    test_size = 0.2          # share of rows held out for testing; range: (0, 1)
    strategy = "stratified"  # one of: random, stratified, group, time
    time_column: str | None = None

The literal gives the type (an annotation can widen it), and the comment may carry a ``range:`` or
``one of:`` hint. :func:`parse_parameters_cell` turns the cell into :class:`Parameter` objects;
:func:`resolve_parameters` applies ``pipeline.yaml``'s and the command line's values to them.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import yaml

from nbtools.errors import InvalidParameterError, PipelineSpecError

#: Names the runner injects into every stage; a user cannot set them.
RESERVED_NAMES = ("inputs", "output_dir", "mlflow_run_id", "tracking_uri")

_KINDS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (float, int),
    "str": (str,),
    "bool": (bool,),
    "list": (list, tuple),
    "dict": (dict,),
}
_ARTICLE = {
    "int": "an int",
    "float": "a float",
    "str": "a str",
    "bool": "a bool",
    "list": "a list",
    "dict": "a dict",
    "any": "any value",
}
_RANGE = re.compile(r"range:\s*([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])")
_CHOICES = re.compile(r"one of:\s*(.+)$")


@dataclass(frozen=True)
class Parameter:
    """One typed parameter of a stage.

    Parameters
    ----------
    name : str
        The variable name in the parameters cell.
    default : Any
        The literal assigned in the notebook.
    kind : str
        One of ``int``, ``float``, ``str``, ``bool``, ``list``, ``dict`` or ``any``.
    optional : bool
        Whether ``None`` is an accepted value.
    low, high : float or None
        Bounds of the accepted range, when the comment gives one.
    low_inclusive, high_inclusive : bool
        Whether each bound is part of the range.
    choices : tuple of str, or None
        The accepted values, when the comment gives ``one of:``.
    help : str
        The comment on the line, without its hints.
    """

    name: str
    default: Any
    kind: str
    optional: bool = False
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple[str, ...] | None = None
    help: str = ""

    def describe(self) -> str:
        """Say in words what this parameter accepts, as used in error messages."""
        text = _ARTICLE[self.kind]
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.low is not None or self.high is not None:
            left = "[" if self.low_inclusive else "("
            right = "]" if self.high_inclusive else ")"
            text += f" in the range {left}{_num(self.low, '-inf')}, {_num(self.high, 'inf')}{right}"
        if self.optional:
            text += " or None"
        return text

    def validate(self, value: Any, stage: str) -> Any:
        """Return ``value`` converted to this parameter's type, or raise if it does not fit.

        Raises
        ------
        InvalidParameterError
            When the value has the wrong type, lies outside the range or is not one of the choices.
        """
        if value is None and (self.optional or self.kind == "any"):
            return None
        if self.kind != "any":
            accepted = _KINDS[self.kind]
            if (isinstance(value, bool) and self.kind != "bool") or not isinstance(value, accepted):
                raise self._error(value, stage)
            if self.kind == "float":
                value = float(cast(float, value))
            elif self.kind == "list":
                value = list(cast(list[Any], value))
        if self.choices is not None and value not in self.choices:
            raise self._error(value, stage)
        if isinstance(value, int | float) and not isinstance(value, bool):
            too_low = self.low is not None and (
                value < self.low or (value == self.low and not self.low_inclusive)
            )
            too_high = self.high is not None and (
                value > self.high or (value == self.high and not self.high_inclusive)
            )
            if too_low or too_high:
                raise self._error(value, stage)
        return value

    def _error(self, value: Any, stage: str) -> InvalidParameterError:
        return InvalidParameterError(
            f"The '{self.name}' parameter of stage '{stage}' must be {self.describe()}. "
            f"Got {value!r} instead."
        )


def _num(value: float | None, fallback: str) -> str:
    if value is None:
        return fallback
    return str(int(value)) if float(value).is_integer() else str(value)


def parse_parameters_cell(source: str, stage: str) -> dict[str, Parameter]:
    """Read the typed parameters of a stage from the source of its parameters cell.

    Parameters
    ----------
    source : str
        Python source of the cell tagged ``parameters``.
    stage : str
        Stage name, for error messages.

    Returns
    -------
    dict of str to Parameter
        The declared parameters in cell order, without the runner-injected names.

    Raises
    ------
    PipelineSpecError
        When a line is not a literal assignment to a plain name.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise PipelineSpecError(
            f"The parameters cell of stage '{stage}' is not valid Python: {exc.msg} "
            f"(line {exc.lineno})."
        ) from exc
    comments = _line_comments(source)
    declared: dict[str, Parameter] = {}
    for node in tree.body:
        name, annotation, value_node = _assignment(node, stage)
        try:
            default = ast.literal_eval(value_node)
        except ValueError as exc:
            raise PipelineSpecError(
                f"The parameters cell of stage '{stage}' must assign literals; line {node.lineno} "
                f"assigns '{name}' an expression. Compute derived values in a later cell."
            ) from exc
        if name in RESERVED_NAMES:
            continue
        kind, optional = _kind(annotation, default, stage, name)
        declared[name] = _with_hints(
            Parameter(name=name, default=default, kind=kind, optional=optional),
            comments.get(node.lineno, ""),
            stage,
        )
    return declared


def _assignment(node: ast.stmt, stage: str) -> tuple[str, ast.expr | None, ast.expr]:
    if (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
    ):
        return node.targets[0].id, None, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
        return node.target.id, node.annotation, node.value
    raise PipelineSpecError(
        f"The parameters cell of stage '{stage}' may only hold assignments like "
        f"'name = value'; line {node.lineno} is something else."
    )


def _kind(annotation: ast.expr | None, default: Any, stage: str, name: str) -> tuple[str, bool]:
    if annotation is None:
        if default is None:
            return "any", True
        kind = type(default).__name__
        if kind == "tuple":
            kind = "list"
        if kind not in _KINDS:
            raise PipelineSpecError(
                f"The '{name}' parameter of stage '{stage}' has a default of type {kind}; "
                "parameters must be int, float, str, bool, list, dict or None."
            )
        return kind, False
    names = [
        n.strip() for n in ast.unparse(annotation).replace("Optional[", "").rstrip("]").split("|")
    ]
    optional = "None" in names
    kinds = [n for n in names if n != "None"]
    if len(kinds) != 1 or (kinds[0] not in _KINDS and kinds[0] != "Any"):
        raise PipelineSpecError(
            f"The '{name}' parameter of stage '{stage}' is annotated "
            f"'{ast.unparse(annotation)}'; use one of int, float, str, bool, list, dict, "
            "optionally '| None'."
        )
    return ("any" if kinds[0] == "Any" else kinds[0]), optional


def _line_comments(source: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    return comments


def _with_hints(param: Parameter, comment: str, stage: str) -> Parameter:
    fields: dict[str, Any] = {}
    help_text = comment
    if match := _RANGE.search(comment):
        fields.update(_bounds(match, param.name, stage))
        help_text = help_text.replace(match.group(0), "")
    elif match := _CHOICES.search(comment):
        fields["choices"] = tuple(c.strip() for c in match.group(1).split(",") if c.strip())
        help_text = help_text.replace(match.group(0), "")
    fields["help"] = help_text.strip(" ;,")
    result = Parameter(**{**param.__dict__, **fields})
    if result.default is not None:
        try:
            result.validate(result.default, stage)
        except InvalidParameterError as exc:
            raise PipelineSpecError(
                f"The default of parameter '{param.name}' in stage '{stage}' does not satisfy its "
                f"own hint: {exc}"
            ) from exc
    return result


def _bounds(match: re.Match[str], name: str, stage: str) -> dict[str, Any]:
    """The :class:`Parameter` fields of a matched ``range: (low, high]`` hint."""
    opening, low, high, closing = match.groups()
    try:
        return {
            "low": None if low.lstrip("-") == "inf" else float(low),
            "high": None if high.lstrip("+") == "inf" else float(high),
            "low_inclusive": opening == "[",
            "high_inclusive": closing == "]",
        }
    except ValueError as exc:
        raise PipelineSpecError(
            f"The range hint of parameter '{name}' in stage '{stage}' is not numeric: "
            f"'{match.group(0)}'."
        ) from exc


def parse_assignment(text: str) -> tuple[str, Any]:
    """Split a command-line ``NAME=VALUE`` (or ``STAGE.NAME=VALUE``) into its key and value.

    The value is read as YAML, so ``0.5`` is a float, ``true`` a bool, ``[a, b]`` a list and
    anything else a string.

    Raises
    ------
    InvalidParameterError
        When there is no ``=`` or the name is empty.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidParameterError(
            f"A parameter must be given as NAME=VALUE or STAGE.NAME=VALUE. Got {text!r} instead."
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def resolve_parameters(
    schemas: Mapping[str, Mapping[str, Parameter]],
    layers: Iterable[Mapping[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Merge parameter layers over the notebook defaults and validate every value.

    Parameters
    ----------
    schemas : mapping of stage name to its parameters
        The declared parameters of each stage, in pipeline order.
    layers : iterable of mappings
        Overrides from lowest to highest precedence (``pipeline.yaml``, a profile, the command
        line). Keys are ``NAME`` (every stage that declares it) or ``STAGE.NAME`` (one stage).

    Returns
    -------
    dict of stage name to its resolved parameters.

    Raises
    ------
    InvalidParameterError
        For an unknown stage or parameter name, or a value that does not fit its parameter.
    """
    resolved = {
        stage: {p.name: p.default for p in params.values()} for stage, params in schemas.items()
    }
    for layer in layers:
        for key, value in layer.items():
            for stage, name in _targets(schemas, key):
                resolved[stage][name] = schemas[stage][name].validate(value, stage)
    return resolved


def _targets(schemas: Mapping[str, Mapping[str, Parameter]], key: str) -> list[tuple[str, str]]:
    stage, dot, name = key.rpartition(".")
    if name in RESERVED_NAMES:
        raise InvalidParameterError(
            f"'{name}' is set by the nbtools runner for every stage and cannot be overridden."
        )
    if dot:
        if stage not in schemas:
            raise InvalidParameterError(
                f"There is no stage '{stage}' (in parameter '{key}'). Stages: {', '.join(schemas)}."
            )
        if name not in schemas[stage]:
            known = ", ".join(schemas[stage]) or "none"
            raise InvalidParameterError(
                f"Stage '{stage}' has no parameter '{name}'. Its parameters are: {known}."
            )
        return [(stage, name)]
    targets = [(s, name) for s, params in schemas.items() if name in params]
    if not targets:
        declared = sorted({n for params in schemas.values() for n in params})
        raise InvalidParameterError(
            f"No stage declares a parameter '{name}'. Declared parameters: {', '.join(declared)}."
        )
    return targets
