"""Options that several ``nbtools`` commands share."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from nbtools.errors import InvalidParameterError
from nbtools.params import Parameter


def project_option(
    description: str = "Project folder (holding pipeline.yaml).",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Return the ``--project DIR`` option (default: the current folder) as ``project_dir``.

    Parameters
    ----------
    description : str
        What the command takes from the project, for ``--help``.
    """
    return click.option(
        "--project",
        "project_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=".",
        show_default=True,
        help=description,
    )


def param_option(description: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Return the repeatable ``-p/--param [STAGE.]NAME=VALUE`` option, as ``params``.

    Parameters
    ----------
    description : str
        Which run the parameters apply to, for ``--help``.
    """
    return click.option(
        "-p",
        "--param",
        "params",
        multiple=True,
        metavar="[STAGE.]NAME=VALUE",
        help=description,
    )


def declared_options(
    schema: Mapping[str, Parameter], stage: str, *, skip: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Return one ``--NAME`` option per declared parameter, with its help, type and range.

    Each option defaults to None (the stage's own value applies) and refuses a value the
    parameter refuses, with the same message as a stage parameter.

    Parameters
    ----------
    schema : mapping of str to Parameter
        The declared parameters (``StageParams.SCHEMA``), in the order ``--help`` lists them.
    stage : str
        The stage whose parameters they are, for messages.
    skip : tuple of str
        Parameters that get no option.
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for parameter in reversed([p for p in schema.values() if p.name not in skip]):
            command = _declared_option(parameter, stage)(command)
        return command

    return decorate


def _declared_option(
    parameter: Parameter, stage: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def check(_ctx: click.Context, _option: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return parameter.validate(value, stage)
        except InvalidParameterError as exc:
            raise click.BadParameter(str(exc)) from exc

    kinds: dict[str, Any] = {"int": click.INT, "float": click.FLOAT, "str": click.STRING}
    kind = click.Choice(parameter.choices) if parameter.choices else kinds[parameter.kind]
    accepts = "" if parameter.kind == "str" else f"; {parameter.describe()}"
    return click.option(
        "--" + parameter.name.replace("_", "-"),
        parameter.name,
        type=kind,
        default=None,
        callback=check,
        help=f"{parameter.help[:1].upper()}{parameter.help[1:]}{accepts} "
        f"[default: the pipeline's {parameter.name}].",
    )
