"""The FastAPI app: MLflow's scoring protocol, health and metadata endpoints.

==================  ======  =====  ========================================================
path                method  token  answer
==================  ======  =====  ========================================================
``/invocations``    POST    yes    ``{"predictions": [...]}`` (MLflow's scoring protocol)
``/metadata``       GET     yes    model name, version, run id, signature, when loaded, runtime
``/ping``           GET     no     200 when a model is loaded (MLflow's liveness check)
``/health``         GET     no     200 and the version in service, when a model is loaded
``/version``        GET     no     the MLflow version, as ``mlflow models serve`` answers
``/metrics``        GET     no     per-phase timings, statuses, queue (Prometheus text format)
==================  ======  =====  ========================================================

Probabilities: a classifier adds ``"probabilities"`` (one ``{class: probability}`` object per
row) when the request has ``"params": {"predict_proba": true}`` or the query
``?predict_proba=true``.

The request path is kept short on purpose: no pydantic body model and no middleware; the body is
parsed with orjson and checked by :class:`~nbtools.serving.schema.InputSchema`, and the model
predicts directly in a worker thread, with concurrent requests batched into one call
(:mod:`nbtools.serving.batching`). The model predicts in its compiled form
(:mod:`nbtools.serving.compiled`) when that was checked at load time to predict as the
scikit-learn pipeline does; ``/metadata``'s ``runtime.engine`` says which serves, and
``runtime.engine_note`` why. Every bad request gets a 4xx whose message names
the column or field; nothing a client sends makes the service answer 500. A full queue is
answered 503 with ``Retry-After``, a request over the ``--timeout`` 504. Every answer to
``/invocations`` carries its phases in a ``Server-Timing`` header
(:mod:`nbtools.serving.timings`).
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import mlflow
import orjson
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import Response
from uvicorn.logging import DefaultFormatter

from nbtools.errors import InvalidInputError
from nbtools.serving import payload, threads
from nbtools.serving.batching import Batcher, Overloaded
from nbtools.serving.config import ServeConfig
from nbtools.serving.model import ModelHolder, ModelRef
from nbtools.serving.predlog import PredictionLog
from nbtools.serving.timings import PhaseStats, Timing

logger = logging.getLogger("nbtools.serving")

_JSON = "application/json"


def create_app(config: ServeConfig) -> FastAPI:
    """Build the service for ``config``: load the model, then wire the endpoints.

    Parameters
    ----------
    config : ServeConfig
        The service settings.

    Returns
    -------
    FastAPI
        The app; following the alias and the prediction log start with its lifespan.

    Raises
    ------
    ModelRegistryError
        If the model cannot be found or loaded.
    """
    holder = ModelHolder(
        ModelRef.parse(config.model),
        config.tracking_uri,
        poll_seconds=config.poll_seconds,
        engine=config.engine,
    )
    holder.load()
    folder = config.predictions_path()
    service = _Service(
        config=config,
        holder=holder,
        log=None if folder is None else PredictionLog(folder),
        batcher=Batcher(max_queue=config.max_queue, timeout=config.timeout),
        stats=PhaseStats(),
    )
    app = FastAPI(
        title="nbtools model service",
        lifespan=_lifespan(service),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.holder = service.holder
    app.state.prediction_log = service.log
    app.state.batcher = service.batcher
    _add_predict(app, service)
    _add_info(app, service)
    _add_metrics(app, service)
    return app


@dataclass(frozen=True)
class _Service:
    """What the endpoints share: the settings, the model, the log, the batcher and the stats."""

    config: ServeConfig
    holder: ModelHolder
    log: PredictionLog | None
    batcher: Batcher
    stats: PhaseStats

    def denied(self, request: Request) -> Response | None:
        """The 401 answer when a token is configured and the request lacks it, else None."""
        if self.config.token is None:
            return None
        expected = f"Bearer {self.config.token}".encode()
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, expected):
            return None
        return _error(401, "A valid bearer token is required: 'Authorization: Bearer <token>'.")


def _lifespan(service: _Service) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.holder.start()
        if service.log is not None:
            service.log.start()
        try:
            yield
        finally:  # uvicorn has let the requests in flight finish
            service.batcher.close()
            service.holder.stop()
            if service.log is not None:
                service.log.close()

    return lifespan


def _add_predict(app: FastAPI, service: _Service) -> None:
    stats = service.stats

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        refusal = service.denied(request)
        if refusal is not None:
            stats.status(refusal.status_code)
            return refusal
        started = time.perf_counter()
        stats.in_flight += 1
        try:
            return await _answer(service, request, started)
        finally:
            stats.in_flight -= 1


async def _answer(service: _Service, request: Request, started: float) -> Response:
    model = service.holder.current  # this request keeps this version, even if the alias moves
    request_id = request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
    timing = Timing()
    try:
        body = await _body(request, service.config.max_body_bytes)
        parsed = payload.parse(body, request.headers.get("content-type"), model.schema.names)
        columns = model.schema.convert(parsed.columns, parsed.n_rows)
        X = pd.DataFrame(columns, copy=False)
        proba = parsed.params.get("predict_proba", False) or _flag(request)
        timing.parse = time.perf_counter() - started
        outcome = await service.batcher.predict(model, X, proba)
    except InvalidInputError as exc:
        service.stats.status(exc.status)
        if isinstance(exc, Overloaded):
            return _error(503, str(exc), retry_after=exc.retry_after, code="OVERLOADED")
        return _error(exc.status, str(exc))
    answered = time.perf_counter()
    predictions, probabilities = outcome.predictions, outcome.probabilities
    if service.log is not None:
        service.log.append(
            model_name=model.name,
            model_version=model.version,
            request_id=request_id,
            inputs=columns,
            predictions=predictions,
            probabilities=probabilities,
            classes=model.classes,
        )
    result: dict[str, Any] = {"predictions": predictions.tolist()}
    if probabilities is not None:
        labels = [str(c) for c in model.classes or []]
        result["probabilities"] = [
            dict(zip(labels, row, strict=True)) for row in probabilities.tolist()
        ]
    content = orjson.dumps(result)
    timing.queue, timing.predict = outcome.queue_seconds, outcome.predict_seconds
    timing.respond = time.perf_counter() - answered
    service.stats.status(200)
    service.stats.add(timing, request_id, len(X))
    return Response(
        content,
        media_type=_JSON,
        headers={
            "X-Request-ID": request_id,
            "X-Model-Version": model.version,
            "Server-Timing": timing.header(),
        },
    )


def _add_info(app: FastAPI, service: _Service) -> None:
    holder, log = service.holder, service.log

    @app.get("/metadata")
    async def metadata(request: Request) -> Response:
        refusal = service.denied(request)
        if refusal is not None:
            return refusal
        model = holder.current
        body = model.metadata()
        body["model_uri"] = holder.ref.uri
        body["input_columns"] = model.schema.to_dict()
        body["prediction_log"] = None if log is None else log.stats()
        body["runtime"] = model.runtime() | threads.describe()
        return Response(orjson.dumps(body), media_type=_JSON)

    @app.get("/ping")
    async def ping() -> Response:
        return Response("\n", status_code=200 if holder.ready else 503, media_type=_JSON)

    @app.get("/health")
    async def health() -> Response:
        if not holder.ready:
            return _error(503, "No model is loaded.")
        body = {"status": "ok", "model_version": holder.current.version}
        return Response(orjson.dumps(body), media_type=_JSON)

    @app.get("/version")
    async def version() -> Response:
        return Response(mlflow.__version__, media_type=_JSON)


def _add_metrics(app: FastAPI, service: _Service) -> None:
    batcher, stats = service.batcher, service.stats

    @app.get("/metrics")
    async def metrics() -> Response:
        others: dict[str, tuple[str, str, float]] = {
            "nbtools_serve_queue_waiting": (
                "Requests waiting for a prediction.",
                "gauge",
                batcher.waiting,
            ),
            "nbtools_serve_in_flight": (
                "Prediction requests being answered.",
                "gauge",
                stats.in_flight,
            ),
            "nbtools_serve_queue_limit": (
                "The service's --max-queue.",
                "gauge",
                service.config.max_queue,
            ),
            "nbtools_serve_batches_total": ("Predict calls.", "counter", batcher.batches),
            "nbtools_serve_rejected_total": (
                "Requests refused with 503 because the queue was full.",
                "counter",
                batcher.rejected,
            ),
            "nbtools_serve_timeouts_total": (
                "Requests answered 504 after the --timeout.",
                "counter",
                batcher.timed_out,
            ),
        }
        return Response(stats.prometheus(others), media_type="text/plain; version=0.0.4")


def app_from_environment() -> FastAPI:
    """Build the app from the settings the launcher left in the environment (one per worker).

    The service's own log lines (which engine serves a model, a new version in service, a slow
    request) are shown as uvicorn shows its own.
    """
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return create_app(ServeConfig.from_environment())


def _flag(request: Request) -> bool:
    value = request.query_params.get("predict_proba")
    if value is None:
        return False
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise InvalidInputError(f"The query 'predict_proba' must be true or false. Got '{value}'.")


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidInputError(f"Content-Length must be a number. Got '{declared}'.")
        if int(declared) > limit:
            raise InvalidInputError(_too_large(int(declared), limit), status=413)
        return await request.body()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidInputError(_too_large(size, limit), status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> str:
    return (
        f"The request body must be at most {limit:,} bytes (the service's --max-body-bytes). "
        f"Got {size:,} bytes or more; split the batch into smaller requests."
    )


def _error(
    status: int, message: str, *, retry_after: int | None = None, code: str | None = None
) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return Response(
        orjson.dumps({"error_code": code or _code(status), "message": message}),
        status_code=status,
        media_type=_JSON,
        headers=headers,
    )


def _code(status: int) -> str:
    return {
        401: "UNAUTHENTICATED",
        413: "REQUEST_TOO_LARGE",
        415: "UNSUPPORTED_MEDIA_TYPE",
        503: "NOT_READY",
        504: "TIMED_OUT",
    }.get(status, "BAD_REQUEST")
