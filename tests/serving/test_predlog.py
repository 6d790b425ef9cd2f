"""Unit tests of the prediction log writer and reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nbtools.ops.predictions import input_columns, part_files, read_predictions
from nbtools.serving.predlog import PredictionLog


def append(log: PredictionLog, request_id: str, n: int, version: str = "1") -> bool:
    return log.append(
        model_name="m",
        model_version=version,
        request_id=request_id,
        inputs={"x": np.arange(n, dtype=float), "c": np.array(["a"] * n, dtype=object)},
        predictions=np.array(["yes"] * n, dtype=object),
        probabilities=np.tile([0.25, 0.75], (n, 1)),
        classes=["no", "yes"],
    )


def test_records_are_written_in_batches_and_read_back(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "p", flush_seconds=60)
    log.start()
    for i in range(5):
        append(log, f"r{i}", 2, version=str(1 + i % 2))
    log.close()  # flushes what is queued, well before flush_seconds
    assert len(part_files(tmp_path / "p")) == 1
    table = read_predictions(tmp_path / "p")
    assert len(table) == 10
    assert table["request_id"].tolist() == [f"r{i}" for i in range(5) for _ in range(2)]
    assert input_columns(table) == ["x", "c"]
    assert table["proba_yes"].tolist() == [0.75] * 10
    assert len(read_predictions(tmp_path / "p", model_version="2")) == 4
    assert log.stats()["rows_written"] == 10


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "p", queue_size=3)  # not started: nothing drains
    results = [append(log, f"r{i}", 1) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert log.stats()["requests_dropped"] == 2


def test_the_folder_is_bounded_by_deleting_the_oldest_parts(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "p", batch_size=1, flush_seconds=0.01, max_bytes=12_000)
    log.start()
    for i in range(30):
        append(log, f"r{i:02d}", 20)
    log.close()
    parts = part_files(tmp_path / "p")
    assert 0 < len(parts) < 30
    assert sum(p.stat().st_size for p in parts) <= 12_000
    assert read_predictions(tmp_path / "p")["request_id"].iloc[-1] == "r29"  # newest kept


def test_an_empty_or_missing_log_reads_as_an_empty_frame(tmp_path: Path) -> None:
    assert read_predictions(tmp_path / "nothing").empty
