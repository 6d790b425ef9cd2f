"""The monitoring history (``monitoring/history.jsonl``, one line per checked window or retraining)
and the retraining rule applied to it: when a breach makes retraining due.

:mod:`nbtools.ops.monitoring.check` re-exports everything public here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbtools.ops.monitoring.check import MonitorPolicy

HISTORY_FILE = Path("monitoring") / "history.jsonl"


@dataclass(frozen=True)
class Breach:
    """Why retraining is due.

    Parameters
    ----------
    kind : {"drift", "performance"}
        Which rule fired.
    window : str
        The window where it fired.
    reason : str
        One sentence with the numbers that led to it.
    """

    kind: str
    window: str
    reason: str


def find_breach(
    history: list[Mapping[str, Any]], entries: list[Mapping[str, Any]], policy: MonitorPolicy
) -> Breach | None:
    """Apply the retraining rule to new windows, in order, after the earlier history.

    Parameters
    ----------
    history : list of dict
        Earlier history lines of the same reference, oldest first; a ``retrain`` event starts
        the count of consecutive drifted windows again.
    entries : list of dict
        The new windows' entries (:meth:`WindowCheck.entry`), oldest first.
    policy : MonitorPolicy
        ``drift_windows`` and ``max_drop``.

    Returns
    -------
    Breach or None
        The first window where the rule fires.
    """
    streak: list[Mapping[str, Any]] = []
    for line in history:
        if line.get("event") == "retrain":
            streak = []
        elif line.get("dataset_drift"):
            streak.append(line)
        else:
            streak = []
    for entry in entries:
        window = "all rows" if entry["start"] is None else f"{entry['start']} .. {entry['end']}"
        if entry.get("decayed"):
            better = "higher" if entry.get("drop", 0) < 0 else "lower"
            return Breach(
                "performance",
                window,
                f"{entry['metric']} {entry['score']:.4f} is {abs(entry['drop']):.4f} {better} "
                f"than the baseline {entry['baseline']:.4f}, beyond the allowed drop "
                f"{policy.max_drop:g}.",
            )
        streak = [*streak, entry] if entry.get("dataset_drift") else []
        if len(streak) >= policy.drift_windows:
            shares = ", ".join(f"{e['drift_share']:.0%}" for e in streak[-policy.drift_windows :])
            columns = sorted(
                {c for e in streak[-policy.drift_windows :] for c in e["drifted_columns"]}
            )
            return Breach(
                "drift",
                window,
                f"Dataset drift in {policy.drift_windows} consecutive window(s) (drift shares "
                f"{shares}; columns {', '.join(columns)}).",
            )
    return None


def read_history(project_dir: Path, reference_key: str | None = None) -> list[dict[str, Any]]:
    """Read the project's monitoring history, oldest first, optionally for one reference."""
    path = project_dir / HISTORY_FILE
    if not path.is_file():
        return []
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    if reference_key is None:
        return lines
    return [line for line in lines if line.get("reference") == reference_key]


def append_history(project_dir: Path, lines: Iterable[Mapping[str, Any]]) -> Path:
    """Append lines to the project's monitoring history (``monitoring/history.jsonl``)."""
    path = project_dir / HISTORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line, default=str) + "\n")
    return path
