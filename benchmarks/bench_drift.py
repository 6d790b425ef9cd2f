"""Drift report on 1,000,000 rows x 20 columns: Evidently's DataDriftPreset against nbtools.

Run from the repository root with the nbtools environment::

    python benchmarks/bench_drift.py [--rows 1000000]

The data is generated once into a temporary folder as two Parquet files, a reference and a
current table of ``--rows`` rows each: 15 numeric columns (standard normal; in the current
table ``num_00``-``num_02`` are shifted by 0.2 standard deviations) and 5 categorical columns
of six categories (in the current table ``cat_0`` has its weights reversed).

Each tool then runs in a fresh Python process that reads both files and computes its drift
report with its default settings, and reports the columns it flags, its wall time (reading
included, interpreter start and imports excluded) and its peak resident memory:

- Evidently 0.7.23 (``DataDriftPreset``) in its own virtual environment,
  ``benchmarks/.venv-evidently``, created on first use from PyPI (Evidently needs pandas < 3);
- nbtools in this environment: reference statistics from the reference table (what the train
  stage keeps; the table is then released), and ``detect_drift`` on the current table.

With more than 1,000 rows both choose the normed Wasserstein distance for numeric columns and
the Jensen-Shannon distance for categorical ones, both with threshold 0.1, so their flagged
columns must agree. The benchmark exits with status 1 when they do not.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
EVIDENTLY_VENV = HERE / ".venv-evidently"
EVIDENTLY_REQUIREMENTS = ["evidently==0.7.23", "pandas<3", "pyarrow"]
NUMERIC = [f"num_{i:02d}" for i in range(15)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
SHIFTED = ["num_00", "num_01", "num_02"]
REWEIGHTED = "cat_0"
WEIGHTS = np.array([0.30, 0.25, 0.20, 0.10, 0.10, 0.05])

EVIDENTLY_SCRIPT = """
import json, resource, sys, time
start = time.perf_counter()
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
imported = time.perf_counter()
folder, numeric, categorical = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
reference = pd.read_parquet(f"{folder}/reference.parquet")
current = pd.read_parquet(f"{folder}/current.parquet")
definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
snapshot = Report([DataDriftPreset()]).run(
    Dataset.from_pandas(current, data_definition=definition),
    Dataset.from_pandas(reference, data_definition=definition),
)
flagged, methods = [], {}
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if config["type"].endswith("ValueDrift"):
        p_value = "p_value" in config["method"]
        value, threshold = metric["value"], config["threshold"]
        methods[config["column"]] = config["method"]
        if (value < threshold) if p_value else (value >= threshold):
            flagged.append(config["column"])
done = time.perf_counter()
print(json.dumps({
    "flagged": sorted(flagged), "methods": sorted(set(methods.values())),
    "seconds": done - imported, "import_seconds": imported - start,
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""

NBTOOLS_SCRIPT = """
import json, resource, sys, time
start = time.perf_counter()
import pandas as pd
from nbtools.core import monitoring
imported = time.perf_counter()
folder = sys.argv[1]
reference = pd.read_parquet(f"{folder}/reference.parquet")
statistics = monitoring.reference_statistics(reference)
del reference  # the train stage keeps only the statistics
current = pd.read_parquet(f"{folder}/current.parquet")
report = monitoring.detect_drift(statistics, current)
done = time.perf_counter()
print(json.dumps({
    "flagged": sorted(report.drifted_columns),
    "methods": sorted({c.test for c in report.columns}),
    "seconds": done - imported, "import_seconds": imported - start,
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def make_tables(folder: Path, rows: int) -> None:
    """Write reference.parquet and current.parquet (see the module docstring)."""
    categories = np.array([f"c{k}" for k in range(len(WEIGHTS))])
    for name, seed, drifted in (("reference", 1, False), ("current", 2, True)):
        rng = np.random.default_rng(seed)
        columns: dict[str, np.ndarray] = {}
        for column in NUMERIC:
            values = rng.standard_normal(rows)
            columns[column] = values + 0.2 if drifted and column in SHIFTED else values
        for column in CATEGORICAL:
            weights = WEIGHTS[::-1] if drifted and column == REWEIGHTED else WEIGHTS
            columns[column] = categories[rng.choice(len(categories), rows, p=weights)]
        pd.DataFrame(columns).to_parquet(folder / f"{name}.parquet", index=False)


def evidently_python() -> Path:
    """The Python of Evidently's own environment, created and filled on first use."""
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        print(f"Creating {EVIDENTLY_VENV} with {', '.join(EVIDENTLY_REQUIREMENTS)} ...")
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *EVIDENTLY_REQUIREMENTS], check=True
        )
    return python


def run_tool(python: Path, script: str, *args: str) -> dict[str, object]:
    """Run one tool in a fresh process; return what it measured, and its wall time outside."""
    started = time.perf_counter()
    completed = subprocess.run(
        [str(python), "-c", script, *args], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise SystemExit(f"{python} failed:\n{completed.stderr[-3000:]}")
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result


def main() -> None:
    """Generate the data, run both tools, print flagged columns, time and memory ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of each table")
    rows = parser.parse_args().rows
    evidently = evidently_python()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        make_tables(folder, rows)
        print(
            f"Data: reference and current, {rows:,} rows x {len(NUMERIC) + len(CATEGORICAL)} "
            f"columns each ({time.perf_counter() - started:.1f} s to generate); shifted "
            f"{', '.join(SHIFTED)} by 0.2 sd, reweighted {REWEIGHTED}."
        )
        results = {
            "evidently": run_tool(
                evidently,
                EVIDENTLY_SCRIPT,
                str(folder),
                json.dumps(NUMERIC),
                json.dumps(CATEGORICAL),
            ),
            "nbtools": run_tool(Path(sys.executable), NBTOOLS_SCRIPT, str(folder)),
        }
    expected = sorted([*SHIFTED, REWEIGHTED])
    print(f"\n{'tool':<10} {'seconds':>8} {'peak MB':>8} {'process s':>9}  flagged columns (tests)")
    for tool, result in results.items():
        print(
            f"{tool:<10} {result['seconds']:8.2f} {result['peak_mb']:8.0f} "
            f"{result['process_seconds']:9.2f}  {', '.join(result['flagged'])} "  # type: ignore[arg-type]
            f"({', '.join(result['methods'])})"  # type: ignore[arg-type]
        )
    ev, nb = results["evidently"], results["nbtools"]
    agree = ev["flagged"] == nb["flagged"]
    print(f"\nExpected drifted columns: {', '.join(expected)}")
    print(f"Flagged columns agree: {'yes' if agree else 'NO'}")
    print(
        f"Wall time ratio (Evidently / nbtools, reading included): "
        f"{ev['seconds'] / nb['seconds']:.1f}x"  # type: ignore[operator]
    )
    print(
        f"Peak memory: Evidently {ev['peak_mb']:.0f} MB, nbtools {nb['peak_mb']:.0f} MB "
        f"({ev['peak_mb'] / nb['peak_mb']:.1f}x less for nbtools)"  # type: ignore[operator]
    )
    if not agree or nb["flagged"] != expected:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
