"""Pipeline runs started from JupyterLab: checked requests, ``nbtools run`` processes, cancelling.

A run started from the panel is the command line's run: ``python -m nbtools run ...`` in a
process of its own session, so it keeps going when the browser tab closes or the Jupyter server
stops, and it writes the same record and MLflow runs. The server keeps a handle on the processes
it started (to reap them); everything else it knows about a run comes from the run record.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtools.errors import InvalidParameterError, RunNotFoundError, RunStartError
from nbtools.pipeline.spec import Pipeline
from nbtools.pipeline.stage_selection import select_stages
from nbtools.records.history import process_alive, run_status
from nbtools.records.runs import list_runs, load_run

#: What a request may ask for: the whole pipeline, one stage, a stage and what follows it.
MODES = ("all", "stage", "from")
#: Seconds a cancelled run has to close its record before its processes are killed.
CANCEL_GRACE_SECONDS = 20.0
#: Seconds a new run process has to write its first manifest.
START_SECONDS = 60.0
_JOBS_DIR = Path(".nbtools") / "jobs"
_REQUEST_KEYS = {"mode", "stage", "parameters", "profile", "resume"}


def run_arguments(pipeline: Pipeline, request: Mapping[str, Any]) -> list[str]:
    """Check a run request against the project's pipeline and return its ``nbtools`` arguments.

    Parameters
    ----------
    pipeline : Pipeline
        The project's pipeline.
    request : mapping
        ``mode`` (one of :data:`MODES`, default ``"all"``), ``stage`` (for ``stage`` and
        ``from``), ``parameters`` (``NAME`` or ``STAGE.NAME`` to a JSON value), ``profile``;
        or ``resume`` with a run id alone.

    Raises
    ------
    InvalidParameterError
        For an unknown key or mode, a parameter the pipeline does not declare or a value
        that does not fit it, an unknown profile.
    PipelineSpecError
        For a stage the pipeline does not have.
    RunNotFoundError
        When ``resume`` names no run, or a run that is still running.
    """
    unknown = sorted(set(request) - _REQUEST_KEYS)
    if unknown:
        raise InvalidParameterError(
            f"A run request takes the keys {', '.join(sorted(_REQUEST_KEYS))}. "
            f"Got unknown key(s) {', '.join(unknown)} instead."
        )
    base = ["run", "--project", str(pipeline.project_dir)]
    if request.get("resume") is not None:
        if set(request) - {"resume"}:
            raise InvalidParameterError(
                "A resumed run keeps its own stages and parameters: send 'resume' alone. "
                f"Got also {', '.join(sorted(set(request) - {'resume'}))}."
            )
        manifest = load_run(pipeline.runs_dir, str(request["resume"]))
        if run_status(manifest) == "running":
            raise RunNotFoundError(
                f"Run {manifest['run_id']} is still running. Cancel it or wait for it to end "
                "before resuming it."
            )
        return [*base, "--resume", manifest["run_id"]]
    mode = request.get("mode", "all")
    if mode not in MODES:
        raise InvalidParameterError(
            f"The run mode must be one of {', '.join(MODES)}. Got {mode!r} instead."
        )
    args = list(base)
    stage = request.get("stage")
    if mode != "all":
        if not isinstance(stage, str):
            raise InvalidParameterError(
                f"A run in mode {mode!r} needs the name of a stage. Got {stage!r} instead."
            )
        stage = pipeline.stage(stage).name
        args += ["--only" if mode == "stage" else "--from", stage]
        select_stages(
            pipeline,
            only=[stage] if mode == "stage" else None,
            start=stage if mode == "from" else None,
        )
    parameters = request.get("parameters") or {}
    profile = request.get("profile")
    if not isinstance(parameters, dict) or not all(isinstance(k, str) for k in parameters):
        raise InvalidParameterError(
            "'parameters' must map parameter names (NAME or STAGE.NAME) to values. "
            f"Got {parameters!r} instead."
        )
    if profile is not None and not isinstance(profile, str):
        raise InvalidParameterError(f"'profile' must be a profile name. Got {profile!r} instead.")
    pipeline.resolve(profile, parameters)  # the same check `nbtools run -p` makes
    if profile is not None:
        args += ["--profile", profile]
    for key, value in parameters.items():
        args += ["-p", f"{key}={json.dumps(value)}"]  # JSON is YAML: `-p` reads it back as is
    return args


@dataclass
class RunLauncher:
    """Starts ``nbtools run`` processes and cancels runs, keeping a handle on what it started."""

    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    async def start(self, pipeline: Pipeline, args: list[str]) -> str:
        """Start ``nbtools`` with ``args`` for ``pipeline`` and return the new run's id.

        Raises
        ------
        RunStartError
            When the process ends before its run record appears, or the record does not
            appear within :data:`START_SECONDS`.
        """
        log_dir = pipeline.project_dir / _JOBS_DIR
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "nbtools", *args],
                cwd=pipeline.project_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[process.pid] = process
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            for manifest in list_runs(pipeline.runs_dir)[:5]:
                if manifest.get("process", {}).get("pid") == process.pid:
                    return str(manifest["run_id"])
            if process.poll() is not None:
                break
            await asyncio.sleep(0.2)  # polling interval while waiting for the record
        output = log_path.read_text(encoding="utf-8", errors="replace").strip()
        raise RunStartError(
            f"The run process (`nbtools {' '.join(args)}`) wrote no run record"
            f" (exit status {process.poll()}). Its output:\n{output[-2000:] or '(none)'}"
        )

    def reap(self) -> None:
        """Collect the exit status of every finished run process started here."""
        for pid, process in list(self.processes.items()):
            if process.poll() is not None:
                del self.processes[pid]

    def cancel(self, manifest: Mapping[str, Any]) -> None:
        """Stop a running run; kill its processes if it has not stopped after a grace time.

        The run process gets SIGTERM, which ``nbtools run`` treats as Ctrl-C: it marks the run
        ``cancelled``, the stage it was executing failed, keeps every stage that finished, and
        stops its kernels. (SIGINT would do the same, but a Jupyter server started in the
        background of a script passes SIGINT on ignored.)

        Raises
        ------
        RunNotFoundError
            When the run is not running on this machine.
        """
        owner = manifest.get("process") or {}
        pid = owner.get("pid")
        if (
            run_status(manifest) != "running"
            or owner.get("host") != socket.gethostname()
            or not isinstance(pid, int)
            or not _is_nbtools_run(pid)
        ):
            raise RunNotFoundError(
                f"Run {manifest['run_id']} is not running here (status "
                f"{run_status(manifest)}); only a running run can be cancelled."
            )
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        asyncio.get_running_loop().call_later(CANCEL_GRACE_SECONDS, self._kill, pid)

    def _kill(self, pid: int) -> None:
        if process_alive(pid) and _is_nbtools_run(pid):
            _signal(pid, signal.SIGKILL)
        self.reap()


def _signal(pid: int, signum: int) -> None:
    """Send ``signum`` to the run's process group when it leads one, else to the process."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _is_nbtools_run(pid: int) -> bool:
    """Whether ``pid`` is an ``nbtools run`` process (a pid from a record may have been reused)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return process_alive(pid)
    return b"run" in command and any(b"nbtools" in part for part in command)
