"""Where the seconds of a cold pipeline run go, stage by stage.

Run with ``python benchmarks/profile_engine.py [--rows N] [--jobs J]``. It builds the toy
project of ``bench_engine.py`` (four stages on ``N`` rows), runs it once in this process with
timers around the runner's steps (MLflow calls, kernels taken or started, Papermill, the HTML
render, output hashing, manifest writes), and prints the totals next to each stage's own cell
times from its executed notebook: the parameters cell, the ``stage_context`` cell (imports and
MLflow run start in the kernel) and the stage's work.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import bench_engine  # noqa: E402
from engine_workload import make_data  # noqa: E402

import nbtools.records.tracking as tracking  # noqa: E402
import nbtools.runner.executor as executor  # noqa: E402
import nbtools.runner.graph as rungraph  # noqa: E402
import nbtools.runner.kernels as kernels  # noqa: E402
import nbtools.runner.scheduler as scheduler  # noqa: E402
from nbtools.runner.run import run_pipeline  # noqa: E402

SECONDS: dict[str, float] = defaultdict(float)
TIMED = [
    (tracking.Tracker, "__init__", "MLflow: open the store (a new database is migrated)"),
    (tracking.Tracker, "start_run", "MLflow: create the stage runs"),
    (tracking.Tracker, "log_stage", "MLflow: log parameters, values, record files"),
    (tracking.Tracker, "finish", "MLflow: close the runs"),
    (kernels.KernelPool, "take", "kernels: wait for one started ahead"),
    (kernels.KernelPool, "start", "kernels: start one on the spot"),
    (kernels.KernelPool, "stop", "kernels: stop after the stage"),
    (executor.papermill, "execute_notebook", "Papermill: execute (cells included)"),
    (scheduler, "_render", "nbconvert: render the HTML record"),
    (rungraph, "hash_outputs", "cache: hash the stage outputs"),
    (rungraph, "code_hash", "cache: hash the notebook code"),
    (rungraph, "write_manifest", "records: write the manifest"),
]


def _timed(owner: Any, name: str, label: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            SECONDS[label] += time.perf_counter() - started

    setattr(owner, name, timed)


def _cell_seconds(notebook: str) -> list[float]:
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    return [
        float(c["metadata"].get("papermill", {}).get("duration") or 0.0)
        for c in cells
        if c["cell_type"] == "code"
    ]


def main() -> None:
    """Run the toy pipeline once with timers and print where its seconds went."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    for owner, name, label in TIMED:
        _timed(owner, name, label)
    with tempfile.TemporaryDirectory(prefix="nbtools-profile-") as tmp:
        stages = ["ingest", "split", "train", "evaluate"]
        project = bench_engine._project(Path(tmp) / "p", bench_engine.LINEAR, stages)
        make_data(args.rows, project / "data.parquet")
        started = time.perf_counter()
        result = run_pipeline(project, jobs=args.jobs)
        total = time.perf_counter() - started
        print(f"run_pipeline, {args.rows:,} rows, --jobs {args.jobs}: {total:.2f} s")
        for label, seconds in sorted(SECONDS.items(), key=lambda item: -item[1]):
            print(f"  {label:<52} {seconds:6.2f} s")
        print(f"  {'stage':<9} {'wall':>6} {'params':>7} {'context':>8} {'work':>6}  (s)")
        for name, record in result.manifest["stages"].items():
            cells = _cell_seconds(record["executed_notebook"])
            print(
                f"  {name:<9} {record['duration_s']:6.2f} {cells[0]:7.2f} "
                f"{cells[-2]:8.2f} {cells[-1]:6.2f}"
            )
        shutil.rmtree(project / "runs", ignore_errors=True)


if __name__ == "__main__":
    main()
