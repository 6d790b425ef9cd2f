"""The schedule's entry in the current user's crontab.

An entry is one crontab line that works in cron's bare environment (``PATH=/usr/bin:/bin``,
no virtual environment activated): it changes into the project folder, names the ``nbtools``
executable by its absolute path, appends the command's output to
``.nbtools/schedule/<command>.log`` in the project, and ends with a marker comment::

    0 3 * * * cd /home/ana/churn && mkdir -p .nbtools/schedule && /home/ana/.venv/bin/nbtools
    run --project /home/ana/churn >> .nbtools/schedule/run.log 2>&1 # nbtools: /home/ana/churn run

(one line). The marker names the project and the command, so installing again replaces the
entry in place, and every other line of the crontab stays as it was. The entry never holds a
secret: the variables that ``secrets:`` and ``notify.webhook`` name come from cron's environment
(``NAME=value`` lines the user adds to the crontab) or from an environment file the entry reads
at each run (``set -a; . FILE``), which the user keeps readable only by themselves.
The crontab is read and written with the ``crontab`` command, as ``crontab -e`` does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from nbtools.errors import InvalidParameterError, SchedulerError
from nbtools.ops.exports.commands import shell
from nbtools.ops.scheduling.schedule import COMMANDS, Schedule

#: The folder of the project, where each scheduled command's log is appended to.
LOG_DIR = Path(".nbtools") / "schedule"
#: How to install the ``crontab`` command where it is missing.
INSTALL_HINT = (
    "The 'crontab' command was not found: the cron scheduler is not installed. On Debian or "
    "Ubuntu install it with 'apt-get install -y cron' (as root), on Fedora or RHEL with "
    "'dnf install cronie', then try again."
)
_MARKER = re.compile(r" # nbtools: (?P<project>.+) (?P<command>" + "|".join(COMMANDS) + r")$")
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", re.MULTILINE)


@dataclass(frozen=True)
class CronEntry:
    """An entry that nbtools installed in the crontab.

    Parameters
    ----------
    project : str
        The project folder it runs in.
    command : str
        ``"run"`` or ``"monitor"``.
    line : str
        The crontab line as installed.
    """

    project: str
    command: str
    line: str

    @property
    def expression(self) -> str:
        """The cron expression (the line's five time fields, or its ``@`` shorthand)."""
        fields = self.line.split()
        return fields[0] if fields[0].startswith("@") else " ".join(fields[:5])

    @classmethod
    def parse(cls, line: str) -> CronEntry | None:
        """Return the entry a crontab line holds, or None when nbtools did not install it."""
        match = _MARKER.search(line.rstrip("\n"))
        if match is None or line.lstrip().startswith("#"):
            return None
        return cls(_unescape(match["project"]), match["command"], line.rstrip("\n"))


def log_file(project: Path, command: str) -> Path:
    """Return the file that a scheduled ``command``'s output is appended to."""
    return project / LOG_DIR / f"{command}.log"


def entry_line(
    schedule: Schedule, project: Path, *, nbtools: str, env_file: Path | None = None
) -> str:
    """Return the crontab line that runs ``schedule`` in ``project``.

    Parameters
    ----------
    schedule : Schedule
        A checked schedule (:meth:`Schedule.check`).
    project : Path
        The project folder, absolute.
    nbtools : str
        The ``nbtools`` executable, by absolute path.
    env_file : Path or None
        A file of ``NAME=value`` lines the entry reads before the command, absolute.

    Raises
    ------
    InvalidParameterError
        When a path or a parameter value holds a line break, which no crontab line can.
    """
    log = LOG_DIR / f"{schedule.command}.log"
    command = shell(schedule.argv(nbtools, str(project)))
    if env_file is not None:
        command = f"{{ set -a && . {shell([str(env_file)])} && set +a && {command}; }}"
    steps = [shell(["cd", str(project)]), shell(["mkdir", "-p", str(LOG_DIR)])]
    body = " && ".join([*steps, f"{command} >> {shell([str(log)])} 2>&1"])
    marker = f" # nbtools: {project} {schedule.command}"
    line = f"{schedule.expression} {_escape(body)}{_escape(marker)}"
    if "\n" in line or "\r" in line:
        raise InvalidParameterError(
            "A crontab entry is one line, but a path or a parameter value of this schedule "
            f"holds a line break: {line!r}. Rename the path, or set the value in pipeline.yaml."
        )
    return line


def read_crontab() -> str:
    """Return the current user's crontab (an empty string when they have none).

    Raises
    ------
    SchedulerError
        When ``crontab`` is missing or fails.
    """
    done = _crontab("-l")
    if done.returncode != 0:
        if "no crontab" in done.stderr.lower():
            return ""
        raise SchedulerError(f"'crontab -l' failed: {done.stderr.strip()}")
    return done.stdout


def write_crontab(lines: list[str]) -> None:
    """Replace the current user's crontab with ``lines``.

    Raises
    ------
    SchedulerError
        When ``crontab`` is missing or refuses the lines (its message says why).
    """
    text = "".join(f"{line}\n" for line in lines)  # cron ignores a last line without one
    done = _crontab("-", text=text)
    if done.returncode != 0:
        raise SchedulerError(f"'crontab -' refused the new crontab: {done.stderr.strip()}")


def installed() -> list[CronEntry]:
    """Return the entries nbtools installed in the current user's crontab, in their order."""
    found = (CronEntry.parse(line) for line in read_crontab().splitlines())
    return [entry for entry in found if entry is not None]


def install(line: str) -> CronEntry | None:
    """Put ``line`` into the crontab, in place of the entry for the same project and command.

    Every other line stays as it was; a new entry goes at the end.

    Returns
    -------
    CronEntry or None
        The entry it replaced, if any.
    """
    new = CronEntry.parse(line)
    assert new is not None  # lines come from entry_line
    lines, replaced = [], None
    for old in read_crontab().splitlines():
        entry = CronEntry.parse(old)
        if entry is None or (entry.project, entry.command) != (new.project, new.command):
            lines.append(old)
        elif replaced is None:
            lines.append(line)
            replaced = entry
        # else: a second copy (an edit by hand) goes, so one entry remains
    if replaced is None:
        lines.append(line)
    write_crontab(lines)
    return replaced


def remove(project: Path, commands: tuple[str, ...] = COMMANDS) -> list[CronEntry]:
    """Take the entries of ``project`` running ``commands`` out of the crontab.

    Returns
    -------
    list of CronEntry
        The entries removed (none when there were none).
    """
    kept, removed = [], []
    for line in read_crontab().splitlines():
        entry = CronEntry.parse(line)
        if entry is not None and entry.project == str(project) and entry.command in commands:
            removed.append(entry)
        else:
            kept.append(line)
    if removed:
        write_crontab(kept)
    return removed


def env_file_variables(path: Path) -> set[str]:
    """Return the variables an environment file sets (``NAME=value`` or ``export NAME=...``).

    Raises
    ------
    InvalidParameterError
        When the file does not exist.
    """
    if not path.is_file():
        raise InvalidParameterError(
            f"The environment file {path} does not exist. Create it with one NAME=value line "
            "per variable, readable only by you (chmod 600)."
        )
    return set(_ASSIGNMENT.findall(path.read_text(encoding="utf-8")))


def cron_daemon_running() -> bool | None:
    """Return whether a cron daemon runs on this machine (None where that cannot be seen)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for comm in proc.glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in {"cron", "crond"}:
                return True
        except OSError:
            continue
    return False


def _crontab(*args: str, text: str | None = None) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("crontab")
    if executable is None:
        raise SchedulerError(INSTALL_HINT)
    return subprocess.run(
        [executable, *args], input=text, capture_output=True, text=True, check=False
    )


def _escape(text: str) -> str:
    # cron turns an unescaped % into a line break (the rest becomes the command's input)
    return text.replace("%", r"\%")


def _unescape(text: str) -> str:
    return text.replace(r"\%", "%")
