"""The command lines that the tasks of an exported pipeline run.

One run of the pipeline is one orchestrator run: ``nbtools task start`` creates its record, one
``nbtools task stage`` per stage executes (or reuses) the stage inside it, and
``nbtools task finish`` closes it. All three name the run by the orchestrator's own run
identifier (``--key``), so a retried task finds the run it belongs to. The monitor check is
``nbtools monitor``, whose exit status 6 says that retraining is due.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtools.params import parse_assignment
from nbtools.pipeline.spec import Pipeline

#: ``nbtools monitor``'s exit status on a breach of the retraining rule.
EXIT_BREACH = 6


@dataclass(frozen=True)
class TaskCommands:
    """Builds the argument lists of an exported pipeline's tasks.

    Parameters
    ----------
    nbtools : str
        The ``nbtools`` executable as the task's machine or container finds it.
    project : str
        The project folder as the task sees it (a mounted volume in a container).
    profile : str or None
        The parameter profile every run uses.
    params : mapping
        Parameter overrides every run uses, keyed ``NAME`` or ``STAGE.NAME``.
    """

    nbtools: str
    project: str
    profile: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def start(self, key: str) -> list[str]:
        """Create (or find, when retried) the run named ``key``."""
        return [*self._base("task", "start"), "--key", key, *self._run_options()]

    def stage(self, stage: str, key: str) -> list[str]:
        """Execute (or reuse) ``stage`` inside the run named ``key``."""
        return [*self._base("task", "stage"), stage, "--key", key]

    def finish(self, key: str) -> list[str]:
        """Close the run named ``key``: exit 1 when a stage failed."""
        return [*self._base("task", "finish"), "--key", key]

    def monitor(self, current: str, *, retrain: bool) -> list[str]:
        """Check ``current`` against the champion; exit :data:`EXIT_BREACH` when retraining is
        due (``retrain=False``), or check and retrain on a breach (``retrain=True``) with the
        run's profile and parameters."""
        command = [*self._base("monitor"), "--current", current]
        if retrain:
            return [*command, "--retrain", "--fail-on", "none", *self._run_options()]
        return [*command, "--fail-on", "breach"]

    def run(self) -> list[str]:
        """Run the whole pipeline in one process, as ``nbtools run`` (a schedule of its own)."""
        return [*self._base("run"), *self._run_options()]

    def _base(self, *words: str) -> list[str]:
        return [self.nbtools, *words, "--project", self.project]

    def _run_options(self) -> list[str]:
        """The profile and parameter overrides of a run (also of a retraining run)."""
        options = [] if self.profile is None else ["--profile", self.profile]
        for name, value in self.params.items():
            options += ["-p", f"{name}={value}"]
        return options


def parameters_as_typed(
    params: Iterable[str], *, pipeline: Pipeline | None = None, profile: str | None = None
) -> dict[str, str]:
    """Return ``NAME=VALUE`` options as NAME to the value as typed, for the tasks' command lines.

    The tasks pass the text on to ``nbtools``, which parses it again. Given ``pipeline``, the
    values and ``profile`` are checked against it first, so a bad one fails at export time
    rather than in a task.

    Raises
    ------
    InvalidParameterError
        For an option without ``=VALUE``, or (with ``pipeline``) an unknown profile or a
        parameter the pipeline refuses.
    """
    overrides, as_typed = {}, {}
    for text in params:
        key, overrides[key] = parse_assignment(text)
        as_typed[key] = text.partition("=")[2].strip()
    if pipeline is not None:
        pipeline.resolve(profile, overrides)
    return as_typed


def shell(command: list[str]) -> str:
    """Return ``command`` as one shell-quoted line (for a Bash task or a crontab entry)."""
    return shlex.join(command)


def default_nbtools() -> str:
    """Return the ``nbtools`` executable of this environment, by absolute path.

    A task started by a scheduler has a bare ``PATH``; the export names the executable that
    installed it, which the same machine's tasks can run.
    """
    import shutil
    import sys

    beside = Path(sys.executable).parent / "nbtools"
    return str(beside) if beside.is_file() else shutil.which("nbtools") or "nbtools"
