"""Training curves in TensorBoard (``nbtools tensorboard``): the event files the runs of a project
hold, laid out under the names TensorBoard shows, and the TensorBoard program that serves them.

The train stage writes the curves of a ``torch_mlp`` network as event files into the folder
:data:`~nbtools.ml.training_curves.EVENTS_FOLDER` of its outputs. TensorBoard names a run after
its folder below ``--logdir``, so the curves are served from a folder of links,
``<logdir>/<run_id>/<stage>/``. (``--logdir_spec NAME:PATH`` would name each run ``NAME/.``, and
it keeps one name per real folder: a stage that later runs reused would show under one run only.)
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nbtools.errors import CurvesNotFoundError, TensorBoardError
from nbtools.ml.neural import INSTALL
from nbtools.ml.training_curves import EVENTS_FOLDER
from nbtools.records.runs import list_runs, load_run, output_folder

#: How TensorBoard's event files are named.
EVENT_FILES = "events.out.tfevents.*"
#: The only address TensorBoard listens on: the curves are for this machine's user.
HOST = "127.0.0.1"
#: Seconds TensorBoard has to exit once asked to stop, before it is killed.
STOP_SECONDS = 10


@dataclass(frozen=True)
class StageCurves:
    """The training curves of one stage of a run: a folder of TensorBoard event files.

    Parameters
    ----------
    run_id : str
        The run.
    stage : str
        The stage.
    folder : Path
        The folder holding the event files; for a stage the run reused, it is in the run that
        executed the stage.
    reused_from : str or None
        The run that executed the stage, when this run reused it.
    """

    run_id: str
    stage: str
    folder: Path
    reused_from: str | None = None

    @property
    def name(self) -> str:
        """The run's name in TensorBoard: ``<run_id>/<stage>``."""
        return f"{self.run_id}/{self.stage}"


def find_curves(runs_dir: Path, run_id: str | None = None) -> list[StageCurves]:
    """Return the training curves of run ``run_id`` (a unique prefix is enough), or of every run.

    Raises
    ------
    RunNotFoundError
        When no run, or more than one, matches ``run_id``.
    CurvesNotFoundError
        When no stage of the runs holds event files.
    """
    manifests = [load_run(runs_dir, run_id)] if run_id else list_runs(runs_dir)
    found = []
    for manifest in manifests:
        for stage, record in manifest["stages"].items():
            folder = output_folder(runs_dir, manifest["run_id"], record) / EVENTS_FOLDER
            if any(folder.rglob(EVENT_FILES)):
                found.append(
                    StageCurves(manifest["run_id"], stage, folder, record.get("reused_from"))
                )
    if not found:
        runs = f"Run {manifests[0]['run_id']} holds no" if run_id else f"No run in {runs_dir} holds"
        raise CurvesNotFoundError(
            f"{runs} training curves (TensorBoard event files in a stage's "
            f"'{EVENTS_FOLDER}' folder). Only the train stage's torch_mlp family writes them: "
            "train one with `nbtools run -p train.family=torch_mlp`."
        )
    return found


def link_curves(curves: Sequence[StageCurves], logdir: Path) -> Path:
    """Lay out the event files under ``logdir`` as TensorBoard names runs; return ``logdir``.

    ``<logdir>/<run_id>/<stage>/`` holds a symbolic link to each event file of the stage, so
    nothing is copied and the files of a reused stage show under every run that used them.
    """
    for stage in curves:
        for event_file in stage.folder.rglob(EVENT_FILES):
            link = logdir / stage.run_id / stage.stage / event_file.relative_to(stage.folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(event_file.resolve())
    return logdir


def free_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def tensorboard_program() -> list[str]:
    """Return the command that starts TensorBoard.

    The ``tensorboard`` program beside this Python, else the one on the PATH, else this Python
    running TensorBoard's module.

    Raises
    ------
    TensorBoardError
        When none of them is there, naming the extra that installs TensorBoard.
    """
    beside = shutil.which("tensorboard", path=str(Path(sys.executable).parent))
    program = beside or shutil.which("tensorboard")
    if program:
        return [program]
    if importlib.util.find_spec("tensorboard") is not None:
        return [sys.executable, "-m", "tensorboard.main"]
    raise TensorBoardError(
        "TensorBoard is not installed: there is no 'tensorboard' program beside "
        f"{sys.executable} or on the PATH, and no tensorboard module. Install it with: {INSTALL}"
    )


def tensorboard_command(logdir: Path, port: int) -> list[str]:
    """Return the command that serves the event files under ``logdir`` on 127.0.0.1:``port``.

    The set of files is fixed when the links are made, so TensorBoard reads them once, in its
    own process, before it answers: its first page shows every curve.

    Raises
    ------
    TensorBoardError
        When TensorBoard is not installed.
    """
    return [
        *tensorboard_program(),
        f"--logdir={logdir}",
        f"--host={HOST}",
        f"--port={port}",
        "--load_fast=false",
        "--reload_interval=0",
        "--reload_task=blocking",
    ]


def run_in_foreground(command: Sequence[str]) -> int:
    """Run ``command`` until it exits or this process is interrupted; return its exit status.

    On Ctrl-C (or SIGTERM, which the command line turns into Ctrl-C) the program gets SIGTERM,
    which TensorBoard answers by exiting, and is killed if it has not exited within
    :data:`STOP_SECONDS`. A stop on request returns 0.
    """
    process = subprocess.Popen(command)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return 0
