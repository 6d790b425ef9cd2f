"""The served model, and the holder that follows a registry alias to new versions.

:class:`ServedModel` is one loaded registry version: the scikit-learn pipeline inside the MLflow
model (predicting through it directly, without pyfunc's per-call schema enforcement, which
:class:`~nbtools.serving.schema.InputSchema` does faster), its input schema and its metadata.

:class:`ModelHolder` keeps the current :class:`ServedModel` in one attribute. With an alias
(``models:/NAME@champion``) a background thread asks the registry every ``poll_seconds`` which
version holds it; when that changes it loads the new version completely and only then replaces
the reference. A request reads the reference once and keeps that object, so requests in flight
finish on the version they started with and no request ever sees a half-loaded model.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from nbtools.errors import InvalidParameterError, ModelNotFoundError, ModelRegistryError
from nbtools.serving.schema import InputSchema

logger = logging.getLogger("nbtools.serving")

_URI = re.compile(r"^models:/(?P<name>[^@/]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class ModelRef:
    """A registry model reference: a name with either an alias or a fixed version.

    Parameters
    ----------
    name : str
        Registered model name.
    alias : str or None
        Alias to follow, such as ``champion``.
    version : str or None
        Fixed version, when there is no alias.
    """

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        """Read ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.

        Raises
        ------
        InvalidParameterError
            For any other URI: the service loads registered models only.
        """
        match = _URI.match(uri)
        if match is None:
            raise InvalidParameterError(
                "The model to serve must be a registry URI, 'models:/NAME@ALIAS' or "
                f"'models:/NAME/VERSION'. Got '{uri}' instead."
            )
        return cls(match["name"], match["alias"], match["version"])

    @property
    def uri(self) -> str:
        """The reference as a ``models:/`` URI."""
        return f"models:/{self.name}@{self.alias}" if self.alias else self.version_uri(self.version)

    def version_uri(self, version: str | None) -> str:
        """The URI of one version of the same model."""
        return f"models:/{self.name}/{version}"


@dataclass(frozen=True)
class ServedModel:
    """One loaded registry version, ready to predict.

    Parameters
    ----------
    name, version : str
        Registered model name and version.
    run_id : str or None
        MLflow run that logged it.
    estimator : object
        The fitted scikit-learn pipeline.
    schema : InputSchema
        The signature's input columns.
    signature : dict
        The MLflow signature as a dict (``inputs``, ``outputs``, ``params``).
    loaded_at : str
        When it was loaded (UTC, ISO 8601).
    task : str or None
        The task from the model's metadata.
    """

    name: str
    version: str
    run_id: str | None
    estimator: Any
    schema: InputSchema
    signature: dict[str, Any]
    loaded_at: str
    task: str | None

    @property
    def classes(self) -> list[Any] | None:
        """Class labels when the model can give probabilities, else None."""
        if not hasattr(self.estimator, "predict_proba"):
            return None
        classes = getattr(self.estimator, "classes_", None)
        return None if classes is None else np.asarray(classes).tolist()

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predict for rows already checked and converted by :attr:`schema`."""
        return np.asarray(self.estimator.predict(X))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities, one column per entry of :attr:`classes`."""
        return np.asarray(self.estimator.predict_proba(X))

    def metadata(self) -> dict[str, Any]:
        """What ``/metadata`` shows about the model."""
        return {
            "model_name": self.name,
            "model_version": self.version,
            "run_id": self.run_id,
            "task": self.task,
            "classes": self.classes,
            "loaded_at": self.loaded_at,
            "signature": self.signature,
        }


def load_version(ref: ModelRef, version: str, client: MlflowClient) -> ServedModel:
    """Load one registry version of ``ref.name`` completely.

    Raises
    ------
    ModelRegistryError
        If the version cannot be found or loaded, or is not a scikit-learn model with a
        column-based signature.
    """
    uri = ref.version_uri(version)
    try:
        details = client.get_model_version(ref.name, version)
        pyfunc = mlflow.pyfunc.load_model(uri)
        estimator = pyfunc.get_raw_model()
    except (MlflowException, OSError, NotImplementedError) as exc:
        missing = getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"
        raise (ModelNotFoundError if missing else ModelRegistryError)(
            f"Cannot load {uri} from the registry at {client.tracking_uri}: {exc}. Check the "
            "model name and version, or that the registry is the project's (--project)."
        ) from exc
    meta = pyfunc.metadata
    try:
        schema = InputSchema.from_signature(meta.signature)
    except ValueError as exc:
        raise ModelRegistryError(f"Cannot serve {uri}: {exc}") from exc
    return ServedModel(
        name=ref.name,
        version=str(version),
        run_id=details.run_id,
        estimator=estimator,
        schema=schema,
        signature={k: _json(v) for k, v in meta.signature.to_dict().items()},
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        task=(meta.metadata or {}).get("task"),
    )


class ModelHolder:
    """Holds the served model and, for an alias, follows it to new versions.

    Parameters
    ----------
    ref : ModelRef
        What to serve.
    tracking_uri : str
        The MLflow tracking (and registry) URI.
    poll_seconds : float, default=5.0
        How often the alias is looked up in the registry.
    """

    def __init__(self, ref: ModelRef, tracking_uri: str, *, poll_seconds: float = 5.0) -> None:
        self.ref = ref
        self.tracking_uri = tracking_uri
        self.poll_seconds = poll_seconds
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._current: ServedModel | None = None
        self._failed_version: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> ServedModel:
        """The model to predict with; read it once per request."""
        if self._current is None:
            raise ModelRegistryError("No model is loaded yet; call ModelHolder.load() first.")
        return self._current

    @property
    def ready(self) -> bool:
        """Whether a model is loaded."""
        return self._current is not None

    def load(self) -> ServedModel:
        """Resolve the reference and load it; the first load, before serving.

        Raises
        ------
        ModelRegistryError
            If the alias holds no version, or the version cannot be loaded.
        """
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        self._current = load_version(self.ref, self.resolve(), self._client)
        return self._current

    def refresh(self) -> bool:
        """Look the alias up once; load and switch to a new version. Return whether it switched.

        A version that fails to load is logged and skipped (the current model stays in service)
        until the alias moves again.
        """
        version = self.resolve()
        current = self._current
        if (current is not None and version == current.version) or version == self._failed_version:
            return False
        try:
            loaded = load_version(self.ref, version, self._client)
        except ModelRegistryError as exc:
            self._failed_version = version
            logger.error("Keeping version %s in service: %s", current and current.version, exc)
            return False
        self._current = loaded  # one reference assignment: atomic for readers
        self._failed_version = None
        logger.info("Now serving %s version %s.", self.ref.name, version)
        return True

    def start(self) -> None:
        """Start following the alias in a background thread (nothing to do for a fixed version)."""
        if self.ref.alias is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._follow, name="nbtools-alias", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following the alias."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_seconds + 5)
            self._thread = None

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except (MlflowException, ModelRegistryError, OSError) as exc:
                logger.warning("Cannot look up alias '%s': %s", self.ref.alias, exc)

    def resolve(self) -> str:
        """Return the version the reference points at now.

        Raises
        ------
        ModelRegistryError
            If the alias holds no version.
        """
        if self.ref.alias is None:
            assert self.ref.version is not None
            return self.ref.version
        try:
            found = self._client.get_model_version_by_alias(self.ref.name, self.ref.alias)
        except MlflowException as exc:
            raise ModelNotFoundError(
                f"Model '{self.ref.name}' has no version with the alias '{self.ref.alias}' in "
                f"the registry at {self.tracking_uri}: {exc.message}. Run the pipeline's deploy "
                "stage first, or serve a version with --model models:/NAME/VERSION."
            ) from exc
        return str(found.version)


def _json(text: Any) -> Any:
    """MLflow gives the signature's parts as JSON text; decode them for ``/metadata``."""
    return json.loads(text) if isinstance(text, str) else text
