"""Writing the prediction log off the request path.

A request hands its inputs and outputs to :meth:`PredictionLog.append`, which only puts one tuple
on a bounded queue and never blocks: when the queue is full the record is dropped and counted.
A background thread drains the queue every ``flush_seconds`` (or sooner when ``batch_size``
records are waiting), builds one table from the batch and writes it as one Parquet part-file.
The table is built column by column with NumPy and pyarrow, never one pandas frame per request:
the writer shares the GIL with the event loop, and pandas work there showed up as tail latency.
When the folder grows past ``max_bytes`` the oldest part-files are deleted. :meth:`close`
drains and writes what is left, at shutdown.

The file layout and the reading side are in :mod:`nbtools.ops.predictions`.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nbtools.ops.predictions import (
    META_COLUMNS,
    PREDICTION_COLUMN,
    PROBA_PREFIX,
    part_files,
)

logger = logging.getLogger("nbtools.serving")


@dataclass(frozen=True)
class _Record:
    time: datetime
    model_name: str
    model_version: str
    request_id: str
    inputs: Mapping[str, Any]
    predictions: np.ndarray
    probabilities: np.ndarray | None
    classes: list[Any] | None


class PredictionLog:
    """A bounded, batched prediction log writer.

    Parameters
    ----------
    directory : str or Path
        Folder of the part-files; created when missing.
    queue_size : int, default=10000
        Requests that may wait to be written; more are dropped and counted in :attr:`dropped`.
    batch_size : int, default=1000
        Requests written together at most, in one part-file.
    flush_seconds : float, default=1.0
        Longest time a request waits to be written.
    max_bytes : int, default=1_000_000_000
        Size of the folder beyond which the oldest part-files are deleted.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        queue_size: int = 10_000,
        batch_size: int = 1000,
        flush_seconds: float = 1.0,
        max_bytes: int = 1_000_000_000,
    ) -> None:
        self.directory = Path(directory)
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.max_bytes = max_bytes
        self.written = 0
        self.dropped = 0
        self._queue: queue.Queue[_Record | None] = queue.Queue(maxsize=queue_size)
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Create the folder and start the writer thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._drain, name="nbtools-predlog", daemon=True)
        self._thread.start()

    def append(
        self,
        *,
        model_name: str,
        model_version: str,
        request_id: str,
        inputs: Mapping[str, Any],
        predictions: np.ndarray,
        probabilities: np.ndarray | None = None,
        classes: list[Any] | None = None,
    ) -> bool:
        """Queue one request's rows for writing; return False when it was dropped (queue full).

        ``inputs`` maps each input column to its values (arrays of the request's length, as
        :meth:`nbtools.serving.schema.InputSchema.convert` gives them); they are not copied.
        """
        record = _Record(
            datetime.now(UTC),
            model_name,
            model_version,
            request_id,
            inputs,
            predictions,
            probabilities,
            classes,
        )
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def stats(self) -> dict[str, Any]:
        """Counts for ``/metadata``: folder, rows written, requests dropped and waiting."""
        return {
            "directory": str(self.directory),
            "rows_written": self.written,
            "requests_dropped": self.dropped,
            "requests_waiting": self._queue.qsize(),
        }

    def close(self) -> None:
        """Write everything queued, then stop the writer thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    def _drain(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            # Gather for up to flush_seconds after the first record: one part-file per batch.
            deadline = time.monotonic() + self.flush_seconds
            while len(batch) < self.batch_size:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                self._write(batch)
            except Exception:  # a full disk must not stop the service, only the log
                logger.exception("Cannot write %d prediction records", len(batch))

    def _write(self, batch: list[_Record]) -> None:
        groups: dict[tuple[str, ...], list[_Record]] = {}
        for record in batch:  # requests to different versions may have different columns
            groups.setdefault(tuple(record.inputs), []).append(record)
        for records in groups.values():
            table = _table(records)
            stamp = records[0].time.strftime("%Y%m%dT%H%M%S%fZ")
            name = f"part-{stamp}-{os.getpid()}-{next(self._sequence):06d}.parquet"
            temporary = self.directory / f".{name}.tmp"
            pq.write_table(table, temporary)
            temporary.replace(self.directory / name)
            self.written += table.num_rows
        self._bound()

    def _bound(self) -> None:
        parts = part_files(self.directory)
        sizes = [p.stat().st_size for p in parts]
        total = sum(sizes)
        for part, size in zip(parts, sizes, strict=True):
            if total <= self.max_bytes:
                break
            part.unlink(missing_ok=True)
            total -= size


def _table(batch: list[_Record]) -> pa.Table:
    """One Arrow table for requests with the same input columns, built column-wise."""
    counts = [len(r.predictions) for r in batch]
    times = np.array([np.datetime64(r.time.replace(tzinfo=None), "us") for r in batch])
    columns: dict[str, pa.Array] = {
        META_COLUMNS[0]: pa.array(np.repeat(times, counts), type=pa.timestamp("us", tz="UTC")),
        META_COLUMNS[1]: pa.array(np.repeat([r.model_name for r in batch], counts)),
        META_COLUMNS[2]: pa.array(np.repeat([r.model_version for r in batch], counts)),
        META_COLUMNS[3]: pa.array(np.repeat([r.request_id for r in batch], counts)),
    }
    for name in batch[0].inputs:
        values = np.concatenate([np.asarray(r.inputs[name]) for r in batch])
        columns[name] = pa.array(values, from_pandas=True)
    predictions = np.concatenate([r.predictions for r in batch])
    columns[PREDICTION_COLUMN] = pa.array(predictions, from_pandas=True)
    labels = next((r.classes for r in batch if r.probabilities is not None), None)
    if labels is not None:
        width = len(labels)
        stacked = np.concatenate(
            [
                r.probabilities
                if r.probabilities is not None and r.probabilities.shape[1] == width
                else np.full((len(r.predictions), width), np.nan)
                for r in batch
            ]
        )
        for i, label in enumerate(labels):
            columns[f"{PROBA_PREFIX}{label}"] = pa.array(stacked[:, i], from_pandas=True)
    return pa.table(columns)
