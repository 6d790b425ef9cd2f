"""Run records: one folder per pipeline run, never overwritten, with an atomic ``manifest.json``.

::

    runs/<run_id>/
      manifest.json        what ran, with which parameters, how it went, what it produced
      <nn>_<stage>/        output.ipynb, output.html and the stage's own outputs

The manifest is rewritten atomically after every stage, so a run killed at any moment leaves a
readable record.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nbtools.errors import RunNotFoundError, StageFailedError

MANIFEST = "manifest.json"
EXECUTED_NOTEBOOK = "output.ipynb"
HTML_RECORD = "output.html"
RECORDED_VALUES = "recorded.json"
#: The recorded value listing what a stage warns about (``StageContext.warn``): the runner
#: prints it, the manifest and MLflow keep it with the other recorded values.
WARNINGS = "warnings"


#: The lock file that keeps two processes from writing one project's records at once.
_LOCK_FILE = Path(".nbtools") / "lock"


@contextmanager
def project_lock(project_dir: Path, name: str = _LOCK_FILE.name) -> Iterator[None]:
    """Hold an exclusive lock on the project across processes (two runs at once stay apart).

    ``name`` picks another lock of the project, for a shorter critical section that may be
    entered while the project lock is held (the lock is not reentrant).
    """
    path = project_dir / _LOCK_FILE.parent / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def now() -> str:
    """Return the current UTC time as an ISO 8601 string, as stored in manifests."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    """Return a fresh run id that sorts by start time: ``YYYYmmdd-HHMMSS-xxxxxx``."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def stage_dir_name(index: int, stage: str) -> str:
    """Return the folder name of a stage inside a run record, such as ``05_train``."""
    return f"{index:02d}_{stage}"


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically: to a temporary file first, then renamed over the old one.

    Returns
    -------
    Path
        The manifest's path.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / MANIFEST
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".manifest-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """Read the manifest of the run record in ``run_dir``.

    Raises
    ------
    RunNotFoundError
        When the folder holds no manifest.
    """
    path = run_dir / MANIFEST
    if not path.is_file():
        raise RunNotFoundError(f"No run record at {run_dir} (missing {MANIFEST}).")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Return the manifests of every run under ``runs_dir``, newest first."""
    if not runs_dir.is_dir():
        return []
    folders = sorted((p for p in runs_dir.iterdir() if (p / MANIFEST).is_file()), reverse=True)
    return [read_manifest(p) for p in folders]


def load_run(runs_dir: Path, run_id: str) -> dict[str, Any]:
    """Return the manifest of run ``run_id``; a unique prefix of the id is enough.

    Raises
    ------
    RunNotFoundError
        When no run, or more than one, matches.
    """
    matches = [p for p in runs_dir.glob(f"{run_id}*") if (p / MANIFEST).is_file()]
    if len(matches) != 1:
        known = ", ".join(m["run_id"] for m in list_runs(runs_dir)[:5]) or "none yet"
        problem = "No run" if not matches else f"{len(matches)} runs"
        raise RunNotFoundError(
            f"{problem} in {runs_dir} match the id '{run_id}'. Latest runs: {known}."
        )
    return read_manifest(matches[0])


def output_folder(runs_dir: Path, run_id: str, record: dict[str, Any]) -> Path:
    """Return the output folder of a stage's ``record`` in run ``run_id``.

    That is the folder of the run that executed the stage: for a stage the run reused, an
    earlier run's.
    """
    return Path(record.get("output_dir") or runs_dir / run_id / record["dir"])


def latest_outputs(runs_dir: Path, stages: tuple[str, ...]) -> dict[str, Path] | None:
    """Return the output folders of ``stages`` in the newest run where all of them succeeded.

    Taking every input from one run keeps them consistent with one another; a stage the run
    reused counts with the folder it reused. Returns ``None``
    when no run has them all.
    """
    for manifest in list_runs(runs_dir):
        records = [manifest.get("stages", {}).get(stage) for stage in stages]
        if all(r and r.get("status") in ("succeeded", "reused") for r in records):
            folders = {
                s: output_folder(runs_dir, manifest["run_id"], r)
                for s, r in zip(stages, records, strict=True)
                if r
            }
            if all(folder.is_dir() for folder in folders.values()):
                return folders
    return None


def read_recorded(stage_dir: Path) -> dict[str, Any]:
    """Return the named values a stage recorded with ``stage.record``."""
    path = stage_dir / RECORDED_VALUES
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def stage_warnings(recorded: dict[str, Any]) -> list[str]:
    """Return the warnings among a stage's recorded values, oldest first."""
    found = recorded.get(WARNINGS) or []
    return [str(message) for message in found] if isinstance(found, list) else [str(found)]


def hash_outputs(stage_dir: Path) -> dict[str, str]:
    """Return the SHA-256 of every output file of a stage, by path relative to its folder.

    The executed notebook and its HTML render are left out: they hold timings and change on
    every run, while the outputs proper are reproducible.
    """
    skip = {EXECUTED_NOTEBOOK, HTML_RECORD}
    hashes: dict[str, str] = {}
    for path in sorted(stage_dir.rglob("*")):
        if path.is_file() and path.name not in skip:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            hashes[path.relative_to(stage_dir).as_posix()] = "sha256:" + digest.hexdigest()
    return hashes


@dataclass(frozen=True)
class RunResult:
    """The outcome of a pipeline run.

    Parameters
    ----------
    run_id : str
        The run's id, also the name of its record folder.
    run_dir : Path
        The run record folder.
    mlflow_run_id : str or None
        Id of the parent MLflow run; ``None`` when every stage was reused and nothing was logged.
    manifest : dict
        The final manifest.
    error : StageFailedError or None
        The first failure of the run, if any.
    """

    run_id: str
    run_dir: Path
    mlflow_run_id: str | None
    manifest: dict[str, Any]
    error: StageFailedError | None = None

    @property
    def succeeded(self) -> bool:
        """Whether every stage of the run succeeded or was reused."""
        return self.error is None

    @property
    def executed(self) -> list[str]:
        """Names of the stages that were executed in this run (successfully or not)."""
        return [
            name
            for name, record in self.manifest["stages"].items()
            if record["status"] in ("succeeded", "failed")
        ]

    @property
    def reused(self) -> list[str]:
        """Names of the stages whose earlier outputs were reused."""
        return [n for n, r in self.manifest["stages"].items() if r["status"] == "reused"]
