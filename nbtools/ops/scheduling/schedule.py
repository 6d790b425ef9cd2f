"""What a schedule runs and when: the command, its options and a checked cron expression.

A schedule runs one of two commands: ``nbtools run`` (the whole pipeline, reusing unchanged
stages) or ``nbtools monitor --current SOURCE`` (a check of new data; with ``retrain``, a
retraining run on a breach). Its time is a standard five-field cron expression
(``minute hour day-of-month month day-of-week``) or one of cron's ``@`` shorthands.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nbtools.errors import InvalidParameterError
from nbtools.ops.exports.commands import TaskCommands
from nbtools.pipeline.spec import Pipeline
from nbtools.runner.sweep import parse_overrides

#: The commands a schedule can run.
COMMANDS = ("run", "monitor")
#: Cron's shorthands that both cron and Kubernetes accept.
SHORTHANDS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
#: Each field of a cron expression: its name, its range and the names it accepts.
FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    (
        "month",
        1,
        12,
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    ),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_ITEM = re.compile(r"^(?P<range>\*|[a-z0-9]+(-[a-z0-9]+)?)(/(?P<step>\d+))?$")


def check_cron_expression(expression: str) -> str:
    """Return ``expression`` normalised to single spaces, after checking every field.

    Parameters
    ----------
    expression : str
        Five fields (``minute hour day-of-month month day-of-week``), each ``*``, a number, a
        range ``A-B``, a step ``*/N`` or ``A-B/N``, or a comma-separated list of those; months
        and days of the week may be named (``jan``, ``mon``). Or a shorthand such as ``@daily``.

    Raises
    ------
    InvalidParameterError
        Naming the field, what it accepts and what was found.
    """
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() not in SHORTHANDS:
            raise InvalidParameterError(
                f"The cron expression {expression!r} uses an unknown shorthand. Expected one of "
                f"{', '.join(SHORTHANDS)}, or five fields such as '0 3 * * *'."
            )
        return text.lower()
    fields = text.split(" ")
    if len(fields) != len(FIELDS):
        raise InvalidParameterError(
            f"A cron expression has five fields (minute hour day-of-month month day-of-week), "
            f"such as '0 3 * * *' for 03:00 every day. Got {len(fields)} in {expression!r} "
            "instead; quote the expression so that the shell passes it as one argument."
        )
    for value, spec in zip(fields, FIELDS, strict=True):
        for item in value.lower().split(","):
            _check_item(item, spec, expression)
    return text


def _check_item(item: str, spec: tuple[str, int, int, tuple[str, ...]], expression: str) -> None:
    name, low, high, names = spec
    accepted = f"*, a number in [{low}, {high}], a range A-B, a step */N or A-B/N" + (
        f", or a name ({names[0]}-{names[-1]})" if names else ""
    )
    problem = f"The {name} field of the cron expression {expression!r} must be {accepted}"
    match = _ITEM.match(item)
    if match is None:
        raise InvalidParameterError(f"{problem}. Got {item!r} instead.")
    if match["step"] is not None and int(match["step"]) < 1:
        raise InvalidParameterError(f"{problem}; a step is at least 1. Got {item!r} instead.")
    if match["range"] == "*":
        return
    bounds = [_value(part, names) for part in match["range"].split("-")]
    if any(b is None or not low <= b <= high for b in bounds):
        raise InvalidParameterError(f"{problem}. Got {item!r} instead.")
    if len(bounds) == 2 and bounds[0] > bounds[1]:  # type: ignore[operator]
        raise InvalidParameterError(
            f"{problem}; a range runs from low to high. Got {item!r} instead."
        )


def _value(part: str, names: tuple[str, ...]) -> int | None:
    if part.isdigit():
        return int(part)
    if part in names:
        return names.index(part) + (1 if len(names) == 12 else 0)
    return None


@dataclass(frozen=True)
class Schedule:
    """One scheduled command of a project.

    Parameters
    ----------
    expression : str
        When it runs: a cron expression (see :func:`check_cron_expression`).
    command : str
        ``"run"`` or ``"monitor"`` (:data:`COMMANDS`).
    profile : str or None
        The parameter profile of the run (of the retraining run, for ``monitor``).
    params : mapping
        Parameter overrides, keyed ``NAME`` or ``STAGE.NAME``, as ``-p`` takes them.
    current : str or None
        The new data ``monitor`` checks (a file or the prediction log folder); only for
        ``monitor``, which needs it.
    retrain : bool
        Whether ``monitor`` starts a retraining run on a breach.
    """

    expression: str
    command: str = "run"
    profile: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    current: str | None = None
    retrain: bool = False

    def check(self, pipeline: Pipeline) -> Schedule:
        """Return the schedule with its expression normalised, once everything is checked.

        A scheduled command that would fail every time on bad input is refused now, when the
        user is watching, rather than at each run into a log.

        Raises
        ------
        InvalidParameterError
            For a bad cron expression, command, profile or parameter, ``current`` missing for
            ``monitor`` or given for ``run``, a profile or parameters of a check that does not
            retrain.
        """
        expression = check_cron_expression(self.expression)
        if self.command not in COMMANDS:
            raise InvalidParameterError(
                f"A schedule runs one of {', '.join(COMMANDS)}. Got {self.command!r} instead."
            )
        if self.command == "monitor" and not self.current:
            raise InvalidParameterError(
                "A scheduled monitor check needs the new data it checks, such as "
                "'data/latest.csv' or 'predictions' (the prediction log folder)."
            )
        if self.command == "run" and (self.current or self.retrain):
            raise InvalidParameterError(
                "The new data to check and retraining belong to a scheduled monitor check; "
                "a scheduled run takes a profile and parameters only."
            )
        if self.command == "monitor" and not self.retrain and (self.profile or self.params):
            raise InvalidParameterError(
                "A profile and parameters of a scheduled monitor check apply to its "
                "retraining run; schedule the check with retraining, or drop them."
            )
        assignments = [f"{name}={value}" for name, value in self.params.items()]
        overrides, swept = parse_overrides(pipeline, assignments)
        pipeline.resolve(self.profile, overrides)
        for key, values in swept.items():
            for value in values:
                pipeline.resolve(self.profile, {**overrides, key: value})
        return Schedule(
            expression, self.command, self.profile, self.params, self.current, self.retrain
        )

    def argv(self, nbtools: str, project: str) -> list[str]:
        """Return the command line, with ``nbtools`` as the executable and ``project`` as the
        project folder the command sees."""
        commands = TaskCommands(nbtools, project, self.profile, self.params)
        if self.command == "monitor":
            assert self.current is not None  # checked
            return commands.monitor(self.current, retrain=self.retrain)
        return commands.run()


def required_variables(pipeline: Pipeline) -> list[str]:
    """Return the environment variables a scheduled command needs: the pipeline's secrets and
    the variable that holds the notification webhook's URL, in declaration order."""
    names = list(pipeline.secrets)
    if pipeline.notify is not None and pipeline.notify.webhook not in names:
        names.append(pipeline.notify.webhook)
    return names
