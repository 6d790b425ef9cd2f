"""The run history as people look at it: one summary per run, and two runs side by side.

Plain functions over run manifests (see :mod:`nbtools.records.runs`), shared by the views that
show runs: the JupyterLab panel's REST API and the IPython magics.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

#: Recorded values whose names start with this prefix are the held-out metrics of a run.
METRIC_PREFIX = "test_"
#: The status of a run whose process is gone while its record still says "running".
INTERRUPTED = "interrupted"


def run_status(manifest: Mapping[str, Any]) -> str:
    """Return the status of a run, telling a live run from one whose process was killed.

    A record says ``running`` until its runner closes it; when that runner's process no longer
    exists on this machine, the run was killed and the status is ``"interrupted"`` (resume it
    with ``nbtools run --resume``).
    """
    status = str(manifest.get("status"))
    owner = manifest.get("process") or {}
    here = owner.get("host") == socket.gethostname()
    if status == "running" and here and not process_alive(owner.get("pid")):
        return INTERRUPTED
    return status


def process_alive(pid: Any) -> bool:
    """Return whether a process with id ``pid`` exists on this machine."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def metrics(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Return the held-out metrics (recorded values named ``test_*``) of a run."""
    found: dict[str, Any] = {}
    for stage in manifest.get("stages", {}).values():
        recorded = stage.get("recorded") or {}
        found.update({k: v for k, v in recorded.items() if k.startswith(METRIC_PREFIX)})
    return found


def summarize(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Return what a runs list shows of one run.

    Returns
    -------
    dict
        ``run_id``, ``status`` (see :func:`run_status`), ``started_at``, ``duration_s``,
        ``profile``, ``resumed_from``, ``error``, ``metrics`` and, per stage in pipeline order,
        its ``status``, ``duration_s``, ``why``, ``reused_from`` and ``started_at``.
    """
    return {
        "run_id": manifest["run_id"],
        "status": run_status(manifest),
        "started_at": manifest.get("started_at"),
        "finished_at": manifest.get("finished_at"),
        "duration_s": manifest.get("duration_s"),
        "profile": manifest.get("profile"),
        "resumed_from": manifest.get("resumed_from"),
        "error": manifest.get("error"),
        "metrics": metrics(manifest),
        "stages": {
            name: {
                "status": record.get("status"),
                "duration_s": record.get("duration_s"),
                "why": record.get("why"),
                "reused_from": record.get("reused_from"),
                "started_at": record.get("started_at"),
            }
            for name, record in manifest.get("stages", {}).items()
        },
    }


def compare_runs(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Put the parameters and recorded values of two runs side by side.

    Parameters
    ----------
    first, second : mapping
        The two runs' manifests.

    Returns
    -------
    dict
        ``runs`` (the two ids), ``parameters`` and ``values``: lists of rows ``{"name":
        "STAGE.NAME", "values": [first, second], "differs": bool}``, sorted by name. A value a
        run does not have is ``None``.
    """
    return {
        "runs": [first["run_id"], second["run_id"]],
        "parameters": _rows(_flat(first, "parameters"), _flat(second, "parameters")),
        "values": _rows(_flat(first, "recorded"), _flat(second, "recorded")),
    }


def _flat(manifest: Mapping[str, Any], part: str) -> dict[str, Any]:
    return {
        f"{stage}.{name}": value
        for stage, record in manifest.get("stages", {}).items()
        for name, value in (record.get(part) or {}).items()
    }


def _rows(first: dict[str, Any], second: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "values": [first.get(name), second.get(name)],
            "differs": first.get(name) != second.get(name),
        }
        for name in sorted({*first, *second})
    ]
