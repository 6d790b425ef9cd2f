"""How commands that run a pipeline (``run``, ``monitor --retrain``) stop when asked to."""

from __future__ import annotations

import signal


def cancel_on_sigterm() -> None:
    """Stop on SIGTERM as on Ctrl-C: a run is recorded ``cancelled`` and keeps what finished.

    SIGTERM is how schedulers, ``kill`` and the JupyterLab sidebar's cancel stop a job. Unlike
    SIGINT, a process started in the background of a script never inherits it ignored. A
    SIGTERM the parent chose to ignore stays ignored.
    """
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
