"""Parameters declared once, in Python: the fields of a :class:`StageParams` dataclass.

A built-in stage declares each parameter with :func:`param` (type from the annotation, default,
range or choices, help). Its schema, its template's parameters cell
(:func:`render_parameters_cell`), its docstring's parameter list, and the command-line options
and panel widgets that edit it are all derived from those fields.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self, cast

from nbtools.errors import InvalidParameterError
from nbtools.params.cell import (
    _RANGE,
    RESERVED_NAMES,
    Parameter,
    _bounds,
    _kind,
    _num,
)

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
