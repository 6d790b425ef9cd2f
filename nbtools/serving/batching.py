"""Adaptive micro-batching off the event loop, with a bounded queue and per-request deadlines.

A scikit-learn pipeline has a large fixed cost per call (column selection, validation, one
transformer after the other): predicting 100 rows takes about as long as predicting one. So
:class:`Batcher` runs one prediction at a time, and the requests that arrive meanwhile wait and
are then predicted together, in one call on the concatenated rows. A lone request never waits
for a timer; under load, the batch grows by itself.

The prediction runs in one dedicated worker thread, never on the event loop: while a batch is
predicted, the loop keeps reading requests, answering probes and rejecting what does not fit the
queue. The worker's compute threads fit the batch (:mod:`nbtools.serving.threads`): one thread
for small batches, where an OpenMP team only costs barrier waits, and every core only for batches
of :data:`~nbtools.serving.threads.PARALLEL_ROWS` rows or more.

Overload: at most ``max_queue`` requests wait; one more is refused at once
(:class:`Overloaded`, answered 503 with ``Retry-After``). A request still waiting or predicting
when its ``timeout`` runs out is answered 504 (:class:`TimedOut`); one that times out before its
batch starts is dropped from the queue and never predicted.

Rows are predicted independently by a fitted pipeline, so each request gets exactly the
predictions it would have got alone. Requests are only batched with others for the same model
object (the same registry version); a request keeps the version it started with.
"""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nbtools.errors import InvalidInputError
from nbtools.serving import threads
from nbtools.serving.model import ServedModel

#: Most rows predicted in one call; a request larger than this is predicted on its own.
MAX_BATCH_ROWS = 2000


class Overloaded(InvalidInputError):
    """The queue is full: the request is refused at once (503, ``Retry-After``)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, status=503)
        self.retry_after = retry_after


class TimedOut(InvalidInputError):
    """The request waited and predicted longer than the service's timeout (504)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=504)


@dataclass
class Result:
    """What one request gets back: predictions, probabilities, and its queue and predict time."""

    predictions: np.ndarray
    probabilities: np.ndarray | None
    queue_seconds: float = 0.0
    predict_seconds: float = 0.0


@dataclass
class _Item:
    model: ServedModel
    X: pd.DataFrame
    proba: bool
    future: asyncio.Future[Result] = field(repr=False)
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    """Predicts queued requests together, one batch at a time, in a worker thread.

    Parameters
    ----------
    max_rows : int, default=MAX_BATCH_ROWS
        Most rows in one predict call.
    max_queue : int, default=256
        Most requests waiting for a prediction; one more gets :class:`Overloaded`.
    timeout : float, default=30.0
        Seconds a request may wait and predict before :class:`TimedOut`.
    """

    def __init__(
        self, max_rows: int = MAX_BATCH_ROWS, *, max_queue: int = 256, timeout: float = 30.0
    ) -> None:
        self.max_rows = max_rows
        self.max_queue = max_queue
        self.timeout = timeout
        self._pending: list[_Item] = []
        self._running = False
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps only weak references
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="nbtools-predict", initializer=threads.one_thread
        )
        self._last_batch_seconds = 0.0
        self.batches = 0
        self.requests = 0
        self.rejected = 0
        self.timed_out = 0

    @property
    def waiting(self) -> int:
        """Requests in the queue, not yet in a batch."""
        return len(self._pending)

    async def predict(self, model: ServedModel, X: pd.DataFrame, proba: bool) -> Result:
        """Return the predictions (and probabilities if asked) for ``X``, batched with others.

        Raises
        ------
        InvalidInputError
            If probabilities are asked of a model without them (400), or the model fails on
            rows that fit its signature (422).
        Overloaded
            If ``max_queue`` requests are waiting already (503).
        TimedOut
            If the answer is not there within ``timeout`` seconds (504).
        """
        if proba and model.classes is None:
            raise InvalidInputError(
                f"'predict_proba' was requested, but model '{model.name}' version "
                f"{model.version} gives no probabilities (it is not a classifier)."
            )
        if len(self._pending) >= self.max_queue:
            self.rejected += 1
            retry = max(1, math.ceil(self._last_batch_seconds * 2))
            raise Overloaded(
                f"The service is overloaded: {len(self._pending)} requests are waiting already "
                f"(its --max-queue). Retry after {retry} s, or send fewer requests at once.",
                retry,
            )
        loop = asyncio.get_running_loop()
        item = _Item(model, X, proba, loop.create_future())
        self._pending.append(item)
        if not self._running:
            self._running = True
            self._task = loop.create_task(self._run())
        try:
            return await asyncio.wait_for(asyncio.shield(item.future), self.timeout)
        except TimeoutError:
            self.timed_out += 1
            item.future.cancel()  # a batch not yet started leaves it out
            raise TimedOut(
                f"No prediction within {self.timeout:g} s (the service's --timeout): the service "
                "is busy or the batch is too large. Retry later, or send fewer rows at once."
            ) from None

    def close(self) -> None:
        """Wait for the batch being predicted, then stop the worker thread."""
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        # Scheduled as a task, this starts after every request parsed in the same loop turn has
        # joined the queue; requests arriving during a prediction form the next batch.
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._take()
                if not batch:
                    continue
                self.batches += 1
                self.requests += len(batch)
                started = time.perf_counter()
                try:
                    results = await loop.run_in_executor(self._executor, _predict_batch, batch)
                except InvalidInputError as exc:
                    if len(batch) == 1:
                        _settle(batch[0].future, exc)
                    else:  # find the request at fault: predict each on its own
                        for item in batch:
                            try:
                                single = await loop.run_in_executor(
                                    self._executor, _predict_batch, [item]
                                )
                                _settle(item.future, single[0])
                            except InvalidInputError as error:
                                _settle(item.future, error)
                    continue
                self._last_batch_seconds = time.perf_counter() - started
                for item, result in zip(batch, results, strict=True):
                    result.queue_seconds = started - item.queued_at
                    _settle(item.future, result)
        finally:
            self._running = False

    def _take(self) -> list[_Item]:
        live = [item for item in self._pending if not item.future.done()]
        if not live:
            self._pending = []
            return []
        first = live[0]
        batch: list[_Item] = []
        rest: list[_Item] = []
        rows = 0
        for item in live:
            fits = rows + len(item.X) <= self.max_rows or not batch
            if item.model is first.model and fits:
                batch.append(item)
                rows += len(item.X)
            else:
                rest.append(item)
        self._pending = rest
        return batch


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # timed out, or the client went away
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _predict_batch(batch: list[_Item]) -> list[Result]:
    """Predict one batch; runs in the worker thread."""
    model = batch[0].model
    X = batch[0].X if len(batch) == 1 else pd.concat([i.X for i in batch], ignore_index=True)
    proba = any(i.proba for i in batch)
    started = time.perf_counter()
    try:
        with threads.for_rows(len(X)):
            predictions, probabilities = model.predict(X, proba)
    except Exception as exc:  # the rows fit the signature, but the model cannot use them
        raise InvalidInputError(
            "The model cannot predict these rows, though they fit its signature: "
            f"{type(exc).__name__}: {exc}",
            status=422,
        ) from exc
    seconds = time.perf_counter() - started
    results = []
    start = 0
    for item in batch:
        stop = start + len(item.X)
        rows_proba = None if probabilities is None or not item.proba else probabilities[start:stop]
        results.append(Result(predictions[start:stop], rows_proba, predict_seconds=seconds))
        start = stop
    return results
