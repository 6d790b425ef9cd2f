"""The settings of one ``nbtools serve`` service, shared by the launcher and every worker.

Several uvicorn workers are separate processes that each build the app from an import string;
they receive the settings as JSON in the environment variable :data:`CONFIG_ENV`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from nbtools.errors import InvalidParameterError

#: Environment variable carrying the settings to the worker processes.
CONFIG_ENV = "NBTOOLS_SERVE_CONFIG"

#: Environment variable holding the bearer token, when not given with ``--token``.
TOKEN_ENV = "NBTOOLS_SERVE_TOKEN"

#: The ``--engine`` choices.
ENGINES = ("auto", "scikit-learn")


@dataclass(frozen=True)
class ServeConfig:
    """Settings of a model service.

    Parameters
    ----------
    model : str
        ``models:/NAME@ALIAS`` (followed when the alias moves) or ``models:/NAME/VERSION``.
    tracking_uri : str
        MLflow tracking and registry URI.
    host : str, default="127.0.0.1"
        Address to bind; only this machine can connect unless told otherwise.
    port : int, default=8000
        Port to bind.
    workers : int, default=1
        Worker processes.
    token : str or None, default=None
        Bearer token required on ``/invocations`` and ``/metadata``; None: no token.
    max_body_bytes : int, default=10_000_000
        Largest request body accepted; larger ones get 413.
    poll_seconds : float, default=5.0
        How often the alias is looked up in the registry.
    predictions_dir : str or None, default=None
        Folder of the prediction log; None: no prediction log.
    access_log : bool, default=False
        Whether uvicorn logs every request.
    timeout : float, default=30.0
        Seconds a prediction request may wait and predict; later it is answered 504.
    max_queue : int, default=256
        Most requests waiting for a prediction; one more is answered 503 with ``Retry-After``.
    engine : {"auto", "scikit-learn"}, default="auto"
        What predicts: with ``"auto"`` the compiled form of the model when it checks out
        (:func:`nbtools.serving.model.choose_engine`), else the scikit-learn pipeline.
    """

    model: str
    tracking_uri: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    token: str | None = None
    max_body_bytes: int = 10_000_000
    poll_seconds: float = 5.0
    predictions_dir: str | None = None
    access_log: bool = False
    timeout: float = 30.0
    max_queue: int = 256
    engine: str = "auto"

    def validate(self) -> ServeConfig:
        """Check the values; return self.

        Raises
        ------
        InvalidParameterError
            For a port, worker count, body size, poll interval, timeout or queue size out
            of range, an unknown engine, or an empty token.
        """
        checks = [
            ("port", 0 <= self.port <= 65535, "an integer in the range [0, 65535]"),
            ("workers", self.workers >= 1, "an integer >= 1"),
            ("max_body_bytes", self.max_body_bytes >= 1, "an integer >= 1"),
            ("poll_seconds", self.poll_seconds > 0, "a number > 0"),
            ("timeout", self.timeout > 0, "a number of seconds > 0"),
            ("max_queue", self.max_queue >= 1, "an integer >= 1"),
            ("engine", self.engine in ENGINES, " or ".join(repr(e) for e in ENGINES)),
            ("token", self.token is None or self.token.strip() != "", "a non-empty string"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise InvalidParameterError(
                    f"The '{name}' setting of nbtools serve must be {expected}. "
                    f"Got {getattr(self, name)!r} instead."
                )
        return self

    def to_environment(self) -> None:
        """Put the settings where worker processes find them (:data:`CONFIG_ENV`)."""
        os.environ[CONFIG_ENV] = json.dumps(asdict(self))

    @classmethod
    def from_environment(cls) -> ServeConfig:
        """Read the settings written by :meth:`to_environment`.

        Raises
        ------
        InvalidParameterError
            If the variable is not set.
        """
        raw = os.environ.get(CONFIG_ENV)
        if raw is None:
            raise InvalidParameterError(
                f"{CONFIG_ENV} is not set: start the service with `nbtools serve`."
            )
        return cls(**json.loads(raw))

    def predictions_path(self) -> Path | None:
        """The prediction log folder as a path, or None."""
        return None if self.predictions_dir is None else Path(self.predictions_dir)
