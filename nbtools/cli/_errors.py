"""Turning nbtools errors into a one-line message and an exit status, for every command."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from nbtools.errors import NbtoolsError

F = TypeVar("F", bound=Callable[..., Any])

#: Exit status for bad input found before any work started (click uses it for usage errors too).
EXIT_BAD_INPUT = 2


def reports_errors(command: F) -> F:
    """Let a command's :class:`NbtoolsError` end it with its message and its kind's exit status.

    Bad input (a parameter, pipeline file, data source, run id or project) ends with 2, as
    click's usage errors do; work that failed (the cluster, the registry) with 1.
    """

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NbtoolsError as exc:
            click.echo(f"Error: {exc}", err=True)
            raise SystemExit(exc.exit_status) from exc

    return wrapper  # type: ignore[return-value]
