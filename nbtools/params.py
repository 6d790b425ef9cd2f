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

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import io
import json
import re
import tokenize
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self, cast

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


_METADATA_KEY = "nbtools.parameter"
_ANNOTATION_KINDS = {"int", "float", "str", "bool", "list", "dict", "tuple", "Any"}
_RUNNER_NOTE = "# Filled in by the nbtools runner; leave as None when working interactively."


@dataclass(frozen=True)
class _Declaration:
    """What :func:`param` knows of a field before its class gives it a name and a type."""

    default: Any
    help: str
    bounds: str | None
    choices: tuple[str, ...] | None
    in_cell: bool

    def field(self) -> Any:
        """A dataclass field with this default (copied for each instance) and declaration."""
        metadata = {_METADATA_KEY: self}
        if isinstance(self.default, list | dict):
            default = self.default
            return dataclasses.field(
                default_factory=lambda: copy.deepcopy(default), metadata=metadata
            )
        return dataclasses.field(default=self.default, metadata=metadata)


def param(
    default: Any,
    *,
    help: str,
    range: str | None = None,
    choices: Iterable[str] | None = None,
    in_cell: bool = True,
) -> Any:
    """Declare one parameter of a :class:`StageParams` dataclass, as a field.

    The field's annotation gives the type (``str | None`` for an optional value); everything
    else a parameter has is given here, once.

    Parameters
    ----------
    default : Any
        The default value; a list or dict is copied for every instance.
    help : str
        One line saying what the parameter does, as the parameters cell, the command line and
        the panels show it.
    range : str, optional
        The accepted numbers, written as in the parameters cell: ``"(0, 1]"``, ``"[2, inf)"``.
    choices : iterable of str, optional
        The accepted values.
    in_cell : bool, default=True
        Whether the stage's parameters cell declares it (False for a setting taken from
        another stage, such as the deploy stage's ``margin`` in the monitoring policy).

    Returns
    -------
    dataclasses.Field
        A field whose metadata holds the declaration.
    """
    choices = None if choices is None else tuple(choices)
    return _Declaration(default, help, range, choices, in_cell).field()


def same_as(owner: type[StageParams], name: str) -> Any:
    """Declare a field as the parameter ``name`` of another stage's declaration ``owner``.

    The field takes that parameter's default, range or choices and help, and is left out of
    this stage's parameters cell (the value comes from the other stage).

    Returns
    -------
    dataclasses.Field
        A field whose metadata holds the other stage's declaration.
    """
    found = {f.name: f for f in dataclasses.fields(cast(Any, owner))}[name]
    declared: _Declaration = found.metadata[_METADATA_KEY]
    return dataclasses.replace(declared, in_cell=False).field()


def _annotation_kind(annotation: Any, name: str, owner: str) -> tuple[str, bool]:
    """Read ``int``, ``str | None``, ``list[str]``, ``dict[str, Any]`` as a kind and optionality."""
    if isinstance(annotation, str):
        text = annotation
    elif isinstance(annotation, type):
        text = annotation.__name__
    else:  # a union or a generic alias, outside ``from __future__ import annotations``
        text = str(annotation).replace("typing.", "")
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        tree = None
    members: list[ast.expr] = []
    while isinstance(tree, ast.BinOp) and isinstance(tree.op, ast.BitOr):
        members.append(tree.right)
        tree = tree.left
    if tree is not None:
        members.append(tree)
    names = [ast.unparse(m.value if isinstance(m, ast.Subscript) else m) for m in members]
    optional = "None" in names
    kinds = [n for n in names if n != "None"]
    if len(kinds) != 1 or kinds[0] not in _ANNOTATION_KINDS:
        raise TypeError(
            f"The parameter '{name}' of {owner} is annotated {text!r}; a parameter's type must "
            "be one of int, float, str, bool, list, dict or Any, optionally '| None'."
        )
    kind = {"tuple": "list", "Any": "any"}.get(kinds[0], kinds[0])
    return kind, optional


def _declared_parameter(name: str, annotation: Any, found: _Declaration, owner: str) -> Parameter:
    kind, optional = _annotation_kind(annotation, name, owner)
    fields: dict[str, Any] = {"choices": found.choices, "help": found.help}
    if found.bounds is not None:
        match = _RANGE.fullmatch("range: " + found.bounds.strip())
        if match is None:
            raise TypeError(
                f"The range of parameter '{name}' of {owner} must read like '(0, 1]' or "
                f"'[2, inf)'. Got {found.bounds!r} instead."
            )
        fields.update(_bounds(match, name, owner))
    parameter = Parameter(name, found.default, kind, optional, **fields)
    if found.default is not None:
        parameter.validate(found.default, owner)
    return parameter


def render_parameters_cell(*declarations: type[StageParams]) -> str:
    """Return the source of the parameters cell that declares the parameters of ``declarations``.

    Each parameter becomes one line assigning its default, with its help and its ``range:`` or
    ``one of:`` hint in the comment, so that :func:`parse_parameters_cell` reads back exactly the
    declared :class:`Parameter`; the runner-injected names follow.

    Parameters
    ----------
    *declarations : StageParams subclasses
        The classes whose parameters the cell declares, in order (the monitor stage's cell joins
        its data inputs and its policy).
    """
    lines = [_cell_line(cls.SCHEMA[name]) for cls in declarations for name in cls.CELL_PARAMETERS]
    lines += ["", _RUNNER_NOTE, *(f"{name} = None" for name in RESERVED_NAMES)]
    return "\n".join(lines)


def _cell_line(parameter: Parameter) -> str:
    default = parameter.default
    inferred = "any" if default is None else _kind(None, default, "", parameter.name)[0]
    annotation = ""
    if parameter.kind != "any" and (parameter.optional or inferred != parameter.kind):
        annotation = f": {parameter.kind} | None" if parameter.optional else f": {parameter.kind}"
    if parameter.kind == "float" and default is not None:
        default = float(default)
    hints = [parameter.help] if parameter.help else []
    if parameter.choices is not None:
        hints.append("one of: " + ", ".join(parameter.choices))
    elif parameter.low is not None or parameter.high is not None:
        left = "[" if parameter.low_inclusive else "("
        right = "]" if parameter.high_inclusive else ")"
        low, high = _num(parameter.low, "-inf"), _num(parameter.high, "inf")
        hints.append(f"range: {left}{low}, {high}{right}")
    comment = f"  # {'; '.join(hints)}" if hints else ""
    return f"{parameter.name}{annotation} = {_literal(default)}{comment}"


def _literal(value: Any) -> str:
    """Python source of a literal, with strings in double quotes as the templates write them."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _parameter_list(schema: Mapping[str, Parameter]) -> str:
    """A NumPy-style ``Parameters`` section generated from a schema, for the class docstring."""
    lines = ["Parameters", "----------"]
    for parameter in schema.values():
        lines.append(f"{parameter.name} : {parameter.describe()}, default={parameter.default!r}")
        lines.append(f"    {parameter.help[:1].upper()}{parameter.help[1:]}.")
    return "\n".join(lines)


class StageParams:
    """Base of the typed parameter objects that a stage applies and a panel edits.

    A subclass is a dataclass whose fields are the stage's parameters, each declared with
    :func:`param`. It names its stage in ``STAGE``, lists in ``HANDOVER_KEYS`` what its hand-over
    JSON adds beside the parameters, and may override :meth:`check` for rules that involve
    several fields. ``SCHEMA`` (each field's :class:`Parameter`), ``CELL_PARAMETERS`` (those its
    parameters cell declares) and the ``Parameters`` section of its docstring are derived from
    the fields when the subclass is defined.
    """

    STAGE: ClassVar[str]
    SCHEMA: ClassVar[Mapping[str, Parameter]] = {}
    CELL_PARAMETERS: ClassVar[tuple[str, ...]] = ()
    HANDOVER_KEYS: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        owner = f"{cls.__module__}.{cls.__qualname__}"
        schema = dict(cls.SCHEMA)
        cell = list(cls.CELL_PARAMETERS)
        for name, annotation in inspect.get_annotations(cls).items():
            found = cls.__dict__.get(name)
            if not isinstance(found, dataclasses.Field) or _METADATA_KEY not in found.metadata:
                continue
            declaration = found.metadata[_METADATA_KEY]
            schema[name] = _declared_parameter(name, annotation, declaration, owner)
            if declaration.in_cell and name not in cell:
                cell.append(name)
        cls.SCHEMA = schema
        cls.CELL_PARAMETERS = tuple(cell)
        if schema and cls.__doc__:
            cls.__doc__ = inspect.cleandoc(cls.__doc__) + "\n\n" + _parameter_list(schema)

    def validate(self) -> Self:
        """Check every value, then the rules across fields.

        Returns ``self``, so that ``params = CleaningParams(...).validate()`` reads naturally.

        Raises
        ------
        InvalidParameterError
            Naming the stage, the parameter, what it accepts and the value found.
        """
        for name, parameter in self.SCHEMA.items():
            parameter.validate(getattr(self, name), self.STAGE)
        self.check()
        return self

    def check(self) -> None:
        """Check the rules that involve several fields; none unless a subclass adds them."""

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters as a plain JSON-serialisable dict."""
        return dataclasses.asdict(cast(Any, self))

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> Self:
        """Build validated parameters from the variables of a notebook (``globals()``).

        Each declared parameter takes the value of the variable of its name; other variables are
        ignored, and a parameter without a variable keeps its default.

        Raises
        ------
        InvalidParameterError
            Naming the stage, the parameter, what it accepts and the value found.
        """
        return cls(**{k: namespace[k] for k in cls.SCHEMA if k in namespace}).validate()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build validated parameters from a dict such as :meth:`to_dict` or a hand-over file holds.

        Raises
        ------
        InvalidParameterError
            When a key is neither a parameter nor one of ``HANDOVER_KEYS``, or a value is invalid.
        """
        known = [f.name for f in dataclasses.fields(cast(Any, cls))]
        unknown = sorted(set(data) - set(known) - set(cls.HANDOVER_KEYS))
        if unknown:
            raise InvalidParameterError(
                f"Stage '{cls.STAGE}' has no parameter {unknown[0]!r}. "
                f"Its parameters are: {', '.join(known)}."
            )
        return cls(**{k: v for k, v in data.items() if k in known}).validate()
