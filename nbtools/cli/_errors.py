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
    """Let a command's :class:`NbtoolsError` end it with its message and exit status 2."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NbtoolsError as exc:
            click.echo(f"Error: {exc}", err=True)
            raise SystemExit(EXIT_BAD_INPUT) from exc

    return wrapper  # type: ignore[return-value]
