"""Options that several ``nbtools`` commands share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


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
