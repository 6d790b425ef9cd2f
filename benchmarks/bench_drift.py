"""Drift on a varied set of changes: Evidently's DataDriftPreset against nbtools, column by column.

Run from the repository root with the nbtools environment::

    python benchmarks/bench_drift.py [--rows 1000000]

Two Parquet tables of ``--rows`` rows, a reference and a current one, hold one column per kind of
change (see ``CHANGES``): none, shifts just below and just above the threshold of 0.1 standard
deviations, scale changes on both sides of it, 0.05 % and 0.01 % of the values moved by 400
standard deviations, heavy tails, a discrete count, a missing-value surge, categorical
reweightings just below and just above the Jensen-Shannon threshold, 2 % of the values in a
new category, and a column of 5,000 categories left alone or reweighted.

Each tool runs in a fresh Python process and reports, per column, its method, its value and its
decision, and its times, reading the Parquet files apart from computing the drift:

- Evidently 0.7.23 (``DataDriftPreset``) in its own virtual environment,
  ``benchmarks/.venv-evidently``, created on first use (Evidently needs pandas < 3);
- nbtools in this environment (pandas 3): the reference statistics from the reference table
  (the train stage's work, timed on its own), then ``detect_drift`` on the current table.

With more than 1,000 rows both use the normed Wasserstein distance and the Jensen-Shannon
distance, threshold 0.1, so their distribution decisions should agree on every column. Each
disagreement is listed with both values. nbtools' own checks (missing values, new categories)
are listed apart: Evidently has no equivalent, so they are expected to differ there. The exit
status is 1 when a distribution decision disagrees, or a column's expected decision is missed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

HERE = Path(__file__).resolve().parent
EVIDENTLY_VENV = HERE / ".venv-evidently"
EVIDENTLY_REQUIREMENTS = ["evidently==0.7.23", "pandas<3", "pyarrow"]
WEIGHTS = np.array([0.30, 0.25, 0.20, 0.10, 0.10, 0.05])
CATEGORIES = np.array([f"c{k}" for k in range(WEIGHTS.size)])
MANY = 5000  # categories of the high-cardinality columns

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
read = time.perf_counter()
definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
snapshot = Report([DataDriftPreset()]).run(
    Dataset.from_pandas(current, data_definition=definition),
    Dataset.from_pandas(reference, data_definition=definition),
)
computed = time.perf_counter()
columns = {}
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if config["type"].endswith("ValueDrift"):
        value, threshold = float(metric["value"]), config["threshold"]
        drift = value < threshold if "p_value" in config["method"] else value >= threshold
        columns[config["column"]] = {"method": config["method"], "value": value, "drift": drift}
print(json.dumps({
    "columns": columns, "pandas": pd.__version__,
    "read_seconds": read - imported, "drift_seconds": computed - read,
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""

NBTOOLS_SCRIPT = """
import json, resource, sys, time
start = time.perf_counter()
import pandas as pd
from nbtools.ops import monitoring
imported = time.perf_counter()
folder = sys.argv[1]
reference = pd.read_parquet(f"{folder}/reference.parquet")
read_reference = time.perf_counter()
statistics = monitoring.drift.reference_statistics(reference)
summarised = time.perf_counter()
del reference  # the train stage keeps only the statistics
current = pd.read_parquet(f"{folder}/current.parquet")
read_current = time.perf_counter()
report = monitoring.drift.detect_drift(statistics, current)
computed = time.perf_counter()
columns = {
    c.column: {
        "method": c.test, "value": c.statistic, "drift": c.distribution_drift,
        "overall": c.drift, "reasons": c.reasons,
    }
    for c in report.columns
}
print(json.dumps({
    "columns": columns, "pandas": pd.__version__,
    "read_seconds": (read_reference - imported) + (read_current - summarised),
    "reference_seconds": summarised - read_reference, "drift_seconds": computed - read_current,
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


@dataclass(frozen=True)
class Change:
    """One column: how its reference and current values are drawn, and the expected decisions."""

    name: str
    kind: str  # "numeric" or "categorical"
    what: str
    make: Callable[[np.random.Generator, int, bool], np.ndarray]
    drift: bool  # the distribution decision both tools should reach
    nbtools_only: bool = False  # flagged by nbtools' own checks (missing, new categories)


def normal(shift: float = 0.0, scale: float = 1.0) -> Callable[..., np.ndarray]:
    def make(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
        values = rng.standard_normal(n)
        return values * scale + shift if current else values

    return make


def moved(share: float, by: float) -> Callable[..., np.ndarray]:
    def make(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
        values = rng.standard_normal(n)
        if current:
            values[rng.choice(n, int(n * share), replace=False)] += by
        return values

    return make


def student(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    values = rng.standard_t(3, n)  # sd sqrt(3): a shift of 0.3 is 0.17 sd
    return values + 0.3 if current else values


def counts(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    return rng.poisson(3.3 if current else 3.0, n).astype(float)  # 0.3 / sqrt(3) = 0.17 sd


def gaps(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    values = rng.standard_normal(n)
    if current:
        values[rng.random(n) < 0.10] = np.nan
    return values


def mix_for(distance: float) -> float:
    """The share t of reversed weights in (1 - t) w + t w[::-1] at a Jensen-Shannon distance."""
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        found = jensenshannon(WEIGHTS, (1 - mid) * WEIGHTS + mid * WEIGHTS[::-1])
        low, high = (mid, high) if found < distance else (low, mid)
    return low


def categorical(mix: float = 0.0, new_share: float = 0.0) -> Callable[..., np.ndarray]:
    def make(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
        weights = (1 - mix) * WEIGHTS + mix * WEIGHTS[::-1] if current else WEIGHTS
        values = CATEGORIES[rng.choice(WEIGHTS.size, n, p=weights)].astype(object)
        if current and new_share:
            values[rng.random(n) < new_share] = "c_new"
        return values

    return make


def many(moved_share: float = 0.0) -> Callable[..., np.ndarray]:
    ranks = np.arange(1, MANY + 1)
    zipf = (1 / ranks) / (1 / ranks).sum()
    names = np.array([f"k{k:04d}" for k in range(MANY)], dtype=object)

    def make(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
        weights = zipf
        if current and moved_share:  # move mass from the top categories to ranks 50-99
            weights = zipf * (1 - moved_share)
            weights[50:100] += moved_share / 50
        return names[rng.choice(MANY, n, p=weights / weights.sum())]

    return make


CHANGES = [
    Change("num_same", "numeric", "no change", normal(), False),
    Change("num_shift_0.09", "numeric", "shift 0.09 sd", normal(0.09), False),
    Change("num_shift_0.11", "numeric", "shift 0.11 sd", normal(0.11), True),
    Change("num_scale_1.1", "numeric", "scale x1.1 (0.08 sd)", normal(scale=1.1), False),
    Change("num_scale_1.2", "numeric", "scale x1.2 (0.16 sd)", normal(scale=1.2), True),
    Change("num_rare_400sd", "numeric", "0.05 % moved +400 sd", moved(0.0005, 400), True),
    Change("num_rare_small", "numeric", "0.01 % moved +400 sd", moved(0.0001, 400), False),
    Change("num_heavy_tail", "numeric", "t(3) shifted 0.17 sd", student, True),
    Change("num_counts", "numeric", "Poisson 3 -> 3.3", counts, True),
    Change("num_missing", "numeric", "0 % -> 10 % missing", gaps, False, nbtools_only=True),
    Change("cat_same", "categorical", "no change", categorical(), False),
    Change("cat_js_0.09", "categorical", "reweighted, JS 0.09", categorical(mix_for(0.09)), False),
    Change("cat_js_0.11", "categorical", "reweighted, JS 0.11", categorical(mix_for(0.11)), True),
    Change("cat_reversed", "categorical", "weights reversed", categorical(1.0), True),
    Change(
        "cat_new_2pct", "categorical", "2 % new category", categorical(new_share=0.02), False, True
    ),
    Change("cat_many_same", "categorical", f"{MANY:,} categories, no change", many(), False),
    Change("cat_many_moved", "categorical", f"{MANY:,} categories, 30 % moved", many(0.3), True),
]


def make_tables(folder: Path, rows: int) -> None:
    """Write reference.parquet and current.parquet, one column per change."""
    for name, seed, current in (("reference", 1, False), ("current", 2, True)):
        rng = np.random.default_rng(seed)
        table = {c.name: c.make(rng, rows, current) for c in CHANGES}
        pd.DataFrame(table).to_parquet(folder / f"{name}.parquet", index=False)


def evidently_python() -> Path:
    """The Python of Evidently's own environment, created and filled on first use."""
    python = EVIDENTLY_VENV / "bin" / "python"
    if not (EVIDENTLY_VENV / ".ready").exists():
        print(f"Creating {EVIDENTLY_VENV} with {', '.join(EVIDENTLY_REQUIREMENTS)} ...")
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *EVIDENTLY_REQUIREMENTS], check=True
        )
        (EVIDENTLY_VENV / ".ready").touch()
    return python


def run_tool(python: Path, script: str, *args: str) -> dict[str, object]:
    """Run one tool in a fresh process; return what it measured."""
    completed = subprocess.run(
        [str(python), "-c", script, *args], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise SystemExit(f"{python} failed:\n{completed.stderr[-3000:]}")
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def _value(column: dict[str, object]) -> str:
    value = column["value"]
    return "n/a" if value is None else f"{value:.4f}"  # type: ignore[str-format]


def main() -> None:
    """Generate the data, run both tools, compare their decisions column by column."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of each table")
    rows = parser.parse_args().rows
    evidently = evidently_python()
    numeric = [c.name for c in CHANGES if c.kind == "numeric"]
    categorical_columns = [c.name for c in CHANGES if c.kind == "categorical"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        make_tables(folder, rows)
        print(
            f"Data: reference and current, {rows:,} rows x {len(CHANGES)} columns each "
            f"({time.perf_counter() - started:.1f} s to generate)."
        )
        ev = run_tool(
            evidently,
            EVIDENTLY_SCRIPT,
            str(folder),
            json.dumps(numeric),
            json.dumps(categorical_columns),
        )
        nb = run_tool(Path(sys.executable), NBTOOLS_SCRIPT, str(folder))
    ev_cols: dict[str, dict[str, object]] = ev["columns"]  # type: ignore[assignment]
    nb_cols: dict[str, dict[str, object]] = nb["columns"]  # type: ignore[assignment]
    print(
        f"\n{'column':<16} {'change':<30} {'expected':>8}  {'Evidently':>18}  {'nbtools':>18}"
        "  agree  nbtools' own checks"
    )
    disagreements, missed = [], []
    for change in CHANGES:
        e, n = ev_cols[change.name], nb_cols[change.name]
        agree = bool(e["drift"]) == bool(n["drift"])
        if not agree:
            disagreements.append(change.name)
        if bool(n["drift"]) != change.drift or (change.nbtools_only and not n["overall"]):
            missed.append(change.name)
        own = [r for r in n["reasons"] if not r.startswith("distribution")]  # type: ignore[attr-defined]
        print(
            f"{change.name:<16} {change.what:<30} {'drift' if change.drift else '-':>8}  "
            f"{_value(e):>9} {'drift' if e['drift'] else '-':>8}  "
            f"{_value(n):>9} {'drift' if n['drift'] else '-':>8}  "
            f"{'yes' if agree else 'NO':>5}  {'; '.join(own) or '-'}"
        )
    print(
        f"\nMethods: Evidently {sorted({str(c['method']) for c in ev_cols.values()})}, "
        f"nbtools {sorted({str(c['method']) for c in nb_cols.values()})}"
    )
    if disagreements:
        print("Disagreements on the distribution decision:")
        for name in disagreements:
            e, n = ev_cols[name], nb_cols[name]
            print(
                f"  {name}: Evidently {e['method']} {_value(e)} "
                f"({'drift' if e['drift'] else 'no drift'}), nbtools {n['method']} "
                f"{_value(n)} ({'drift' if n['drift'] else 'no drift'})"
            )
    else:
        print(f"Distribution decisions agree on all {len(CHANGES)} columns.")
    print(f"Expected decisions missed by nbtools: {', '.join(missed) or 'none'}")
    print(
        f"\n{'':<10} {'pandas':>8} {'read s':>7} {'reference s':>11} {'drift s':>8} {'peak MB':>8}"
    )
    print(
        f"{'Evidently':<10} {ev['pandas']:>8} {ev['read_seconds']:7.2f} {'-':>11} "
        f"{ev['drift_seconds']:8.2f} {ev['peak_mb']:8.0f}"
    )
    print(
        f"{'nbtools':<10} {nb['pandas']:>8} {nb['read_seconds']:7.2f} "
        f"{nb['reference_seconds']:11.2f} {nb['drift_seconds']:8.2f} {nb['peak_mb']:8.0f}"
    )
    ev_s, nb_s = float(ev["drift_seconds"]), float(nb["drift_seconds"])  # type: ignore[arg-type]
    ref_s = float(nb["reference_seconds"])  # type: ignore[arg-type]
    print(
        "\nDrift computation, reading excluded: Evidently / nbtools "
        f"{ev_s / nb_s:.1f}x for the check alone; {ev_s / (ref_s + nb_s):.1f}x counting the "
        "reference statistics that nbtools computes once, at training time."
    )
    print(
        "Reading is timed apart because each side reads with its own pandas "
        f"(Evidently {ev['pandas']}, nbtools {nb['pandas']}); Evidently reads both tables, "
        "nbtools both, one after the other."
    )
    if disagreements or missed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
