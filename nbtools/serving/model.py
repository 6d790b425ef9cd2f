"""The served model, and the holder that follows a registry alias to new versions.

:class:`ServedModel` is one loaded registry version: the scikit-learn pipeline inside the MLflow
model (predicting through it directly, without pyfunc's per-call schema enforcement, which
:class:`~nbtools.serving.schema.InputSchema` does faster), its compiled form when that checks out
(:func:`choose_engine`), its input schema and its metadata.

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
from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from nbtools.errors import InvalidParameterError, ModelNotFoundError, ModelRegistryError
from nbtools.ml.modeling import SAMPLE_FILE
from nbtools.serving.compiled import (
    RTOL,
    CompiledPipeline,
    NotCompilable,
    compile_pipeline,
    disagreement,
)
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
    compiled : CompiledPipeline or None, default=None
        The checked compiled form that predicts instead of ``estimator`` (:func:`choose_engine`).
    engine_note : str, default=""
        Which engine predicts and why, for the log and ``/metadata``.
    """

    name: str
    version: str
    run_id: str | None
    estimator: Any
    schema: InputSchema
    signature: dict[str, Any]
    loaded_at: str
    task: str | None
    compiled: CompiledPipeline | None = None
    engine_note: str = ""

    @property
    def classes(self) -> list[Any] | None:
        """Class labels when the model can give probabilities, else None."""
        if not hasattr(self.estimator, "predict_proba"):
            return None
        classes = getattr(self.estimator, "classes_", None)
        return None if classes is None else np.asarray(classes).tolist()

    @property
    def engine(self) -> str:
        """What predicts: ``"compiled"`` (checked against the pipeline) or ``"scikit-learn"``."""
        return "scikit-learn" if self.compiled is None else "compiled"

    def predict(self, X: pd.DataFrame, proba: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Predict for rows already checked and converted by :attr:`schema`.

        Returns the predictions and, with ``proba``, the class probabilities (one column per
        entry of :attr:`classes`; the compiled form gives both from one pass), else None.
        """
        if self.compiled is not None and proba:
            return self.compiled.predict_with_proba(X)
        model = self.compiled or self.estimator
        predictions = np.asarray(model.predict(X))
        return predictions, np.asarray(model.predict_proba(X)) if proba else None

    def runtime(self) -> dict[str, str]:
        """What ``/metadata`` shows under ``runtime`` about the model: the engine and why."""
        return {"engine": self.engine, "engine_note": self.engine_note}

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


def load_version(
    ref: ModelRef, version: str, client: MlflowClient, engine: str = "auto"
) -> ServedModel:
    """Load one registry version of ``ref.name`` completely.

    With ``engine="auto"`` the model is compiled when that checks out (:func:`choose_engine`);
    with ``"scikit-learn"`` the pipeline serves as it is.

    Raises
    ------
    ModelRegistryError
        If the version cannot be found or loaded, or is not a scikit-learn model with a
        column-based signature.
    """
    uri = ref.version_uri(version)
    try:
        details = client.get_model_version(ref.name, version)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
        pyfunc = mlflow.pyfunc.load_model(str(local))
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
    if engine == "auto":
        compiled, note = choose_engine(estimator, schema, local)
    else:
        compiled, note = None, "served by scikit-learn, as --engine says"
    logger.info("%s version %s: %s", ref.name, version, note)
    return ServedModel(
        name=ref.name,
        version=str(version),
        run_id=details.run_id,
        estimator=estimator,
        schema=schema,
        signature={k: _json(v) for k, v in meta.signature.to_dict().items()},
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        task=(meta.metadata or {}).get("task"),
        compiled=compiled,
        engine_note=note,
    )


def choose_engine(
    estimator: Any, schema: InputSchema, folder: Path
) -> tuple[CompiledPipeline | None, str]:
    """Compile the model and check it, or say why scikit-learn serves it.

    The compiled form serves only when it predicts the same as the pipeline on the model's
    input example and its stored sample (:data:`~nbtools.ml.modeling.SAMPLE_FILE`), both read
    as requests are. A model without a stored sample, or that cannot be compiled, or whose
    compiled form disagrees, is served by the scikit-learn pipeline.

    Returns
    -------
    tuple
        The compiled pipeline or None, and a sentence saying which engine serves and why.
    """
    try:
        compiled = compile_pipeline(estimator)
    except NotCompilable as exc:
        return None, f"served by scikit-learn, as the model cannot be compiled: {exc}"
    except Exception as exc:  # an unforeseen model layout must never keep the model from serving
        return None, (
            f"served by scikit-learn, as compiling the model failed ({type(exc).__name__}: {exc})"
        )
    rows = _check_rows(schema, folder)
    if rows is None:
        return None, (
            f"served by scikit-learn, as the model has no stored sample ({SAMPLE_FILE}) to check "
            "its compiled form against: log it again with nbtools to serve it compiled"
        )
    try:
        problem = disagreement(compiled, estimator, rows)
    except Exception as exc:  # a compiled form that fails on real rows is not used
        problem = f"it fails on the stored rows ({type(exc).__name__}: {exc})"
    if problem is not None:
        return None, f"served by scikit-learn, as the compiled form disagrees with it: {problem}"
    return compiled, (
        f"served compiled: it predicts as the pipeline on {len(rows)} stored rows, the input "
        f"example and the sample (numbers within a relative {RTOL:g})"
    )


def _check_rows(schema: InputSchema, folder: Path) -> pd.DataFrame | None:
    """The input example and the stored sample, converted as requests are; None without one."""
    sample = folder / "extra_files" / SAMPLE_FILE
    example = folder / "input_example.json"
    if not sample.is_file():
        return None
    frames = []
    for path in (example, sample):
        if path.is_file():  # a table in pandas' "split" layout (MLflow's may hold NaN)
            table = json.loads(path.read_text())
            names, data = table["columns"], table["data"]
            columns = {name: [row[i] for row in data] for i, name in enumerate(names)}
            frames.append(schema.frame(columns, len(data)))
    return pd.concat(frames, ignore_index=True)


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
    engine : {"auto", "scikit-learn"}, default="auto"
        Passed to :func:`load_version` for every version loaded.
    """

    def __init__(
        self, ref: ModelRef, tracking_uri: str, *, poll_seconds: float = 5.0, engine: str = "auto"
    ) -> None:
        self.ref = ref
        self.tracking_uri = tracking_uri
        self.poll_seconds = poll_seconds
        self.engine = engine
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
        self._current = load_version(self.ref, self.resolve(), self._client, self.engine)
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
            loaded = load_version(self.ref, version, self._client, self.engine)
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
