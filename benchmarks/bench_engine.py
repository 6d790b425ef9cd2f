"""The pipeline engine against one plain Python script doing the same work, side by side.

Run with ``python benchmarks/bench_engine.py`` (``--rows 10000`` and ``--real-rows 10000`` skip
the large size). Two workloads, each at 10,000 and 1,000,000 rows:

- a toy of four small stages (ingest, split, train a logistic regression, evaluate) whose
  whole work takes a few seconds, so it shows the engine's fixed cost per stage. For each size
  it prints the plain script's time and the cold ``nbtools run`` time (both as fresh processes,
  the pipeline handing data over as Parquet between four stage kernels), then an unchanged
  re-run (seconds, kernels started) and which stages execute after one training parameter
  changes;
- the real stages of ``nbtools new`` (ingest, clean, features, split, train, evaluate with
  the ``smoke`` profile) on the synthetic churn table: the pipeline against one plain script
  made of the same notebooks' code cells, run top to bottom in one process with the same
  parameters and an MLflow run of its own.

Last, the speed-up of two independent branch stages on two jobs over one (next to the speed-up
of the same work as two plain processes, which shows what the cores free at that moment allow).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import yaml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from engine_workload import make_data  # noqa: E402

from nbtools.demo import make_churn  # noqa: E402
from nbtools.pipeline.spec import load_pipeline  # noqa: E402

NBTOOLS = str(Path(sys.executable).parent / "nbtools")
PARAMETERS_TAIL = "inputs = None\noutput_dir = None\nmlflow_run_id = None\ntracking_uri = None"
STAGES = {
    "ingest": (
        'source = "data.parquet"',
        "stage.record('rows', W.ingest(source, stage.output_dir))",
    ),
    "split": ("", "W.split(stage.input('ingest'), stage.output_dir, stage.seed)"),
    "train": ("C = 1.0", "W.train(stage.input('split'), stage.output_dir, C)"),
    "evaluate": (
        "",
        "stage.record('test_accuracy', W.evaluate(stage.input('split'), stage.input('train')))",
    ),
    "left": ("rounds = 1", "stage.record('checksum', W.branch_work(1, rounds))"),
    "right": ("rounds = 1", "stage.record('checksum', W.branch_work(2, rounds))"),
}
LINEAR = """\
name: bench
tracking_uri: sqlite:///mlflow.db
stages:
  ingest: {notebook: ingest.ipynb}
  split: {notebook: split.ipynb, inputs: [ingest]}
  train: {notebook: train.ipynb, inputs: [split]}
  evaluate: {notebook: evaluate.ipynb, inputs: [split, train]}
"""
BRANCHES = """\
name: branches
tracking_uri: sqlite:///mlflow.db
stages:
  left: {notebook: left.ipynb}
  right: {notebook: right.ipynb}
"""
SCRIPT = """\
import sys, time
from pathlib import Path
sys.path.insert(0, {here!r})
import engine_workload as W
out = Path({out!r})
for name in ("ingest", "split", "train"):
    (out / name).mkdir(parents=True, exist_ok=True)
W.ingest({data!r}, out / "ingest")
W.split(out / "ingest", out / "split", 42)
W.train(out / "split", out / "train", 1.0)
print(W.evaluate(out / "split", out / "train"))
"""


def _notebook(stage: str, folder: Path) -> None:
    parameters, body = STAGES[stage]
    cell = nbformat.v4.new_code_cell(f"{parameters}\n{PARAMETERS_TAIL}".strip())
    cell.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        cell,
        nbformat.v4.new_code_cell(
            f"import engine_workload as W\nimport nbtools\n"
            f"stage = nbtools.stage_context({stage!r}, globals())"
        ),
        nbformat.v4.new_code_cell(body),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, folder / f"{stage}.ipynb")


def _project(folder: Path, spec: str, stages: list[str]) -> Path:
    folder.mkdir(parents=True)
    for stage in stages:
        _notebook(stage, folder)
    shutil.copy(HERE / "engine_workload.py", folder)
    (folder / "pipeline.yaml").write_text(spec, encoding="utf-8")
    return folder


def _timed(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def _executed(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines() if line.strip().endswith(" s")]


def _size(rows: int, work: Path) -> None:
    data = make_data(rows, work / f"data-{rows}.parquet")
    project = _project(work / f"linear-{rows}", LINEAR, ["ingest", "split", "train", "evaluate"])
    shutil.copy(data, project / "data.parquet")
    script = SCRIPT.format(here=str(HERE), out=str(work / f"script-{rows}"), data=str(data))
    plain, _ = _timed([sys.executable, "-c", script])
    cold, _ = _timed([NBTOOLS, "run", "--project", str(project), "-j", "1"])
    print(f"\n== {rows:,} rows ==")
    print(f"plain script (one process)          {plain:7.2f} s")
    print(f"nbtools run, cold (4 stage kernels) {cold:7.2f} s   ratio {cold / plain:5.2f}x")
    print(f"  fixed overhead per stage          {(cold - plain) / 4:7.2f} s")
    again, output = _timed([NBTOOLS, "run", "--project", str(project)])
    in_run = _run_seconds(project)
    print(
        f"re-run, nothing changed             {again:7.2f} s wall ({in_run:.2f} s in the runner), "
        f"kernels started: {len(_executed(output))}"
    )
    _, output = _timed([NBTOOLS, "run", "--project", str(project), "-p", "train.C=0.5", "-j", "1"])
    print(f"re-run after train.C=0.5 executed   {', '.join(_executed(output))}")


def _run_seconds(project: Path) -> float:
    newest = sorted((project / "runs").iterdir())[-1]
    return float(json.loads((newest / "manifest.json").read_text())["duration_s"])


def _branches(work: Path, rounds: int) -> None:
    project = _project(work / "branches", BRANCHES, ["left", "right"])
    common = [NBTOOLS, "run", "--project", str(project), "--force", "-p", f"rounds={rounds}"]
    _timed([*common, "-j", "1"])  # warm the database and the file cache for both timings
    one, _ = _timed([*common, "-j", "1"])
    two, _ = _timed([*common, "-j", "2"])
    work = [
        sys.executable,
        "-c",
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import engine_workload as W; "
        f"W.branch_work(0, {rounds})",
    ]
    started = time.perf_counter()
    for _ in range(2):
        subprocess.run(work, check=True)
    serial = time.perf_counter() - started
    started = time.perf_counter()
    for process in [subprocess.Popen(work) for _ in range(2)]:
        process.wait()
    parallel = time.perf_counter() - started
    print("\n== two independent branch stages ==")
    print(f"--jobs 1  {one:6.2f} s   --jobs 2  {two:6.2f} s   speed-up {one / two:4.2f}x")
    print(
        f"the same work as two plain processes: one after the other {serial:6.2f} s, "
        f"at once {parallel:6.2f} s, speed-up {serial / parallel:4.2f}x (what the machine allows)"
    )


TEMPLATES = HERE.parent / "templates"
REAL_STAGES = ("ingest", "clean", "features", "split", "train", "evaluate")
REAL_PROFILE = "smoke"
PLAIN_HEADER = """\
import matplotlib
matplotlib.use("Agg")
import mlflow
from IPython.display import display
mlflow.set_tracking_uri({uri!r})
mlflow.set_experiment("plain")
mlflow.start_run()
"""


def _real_project(folder: Path, rows: int) -> Path:
    """A project of the real stages (deploy and monitor left out) on ``rows`` churn rows."""
    folder.mkdir(parents=True)
    make_churn(rows, seed=0).to_parquet(folder / "churn.parquet")
    spec = yaml.safe_load((TEMPLATES / "pipeline.yaml").read_text(encoding="utf-8"))
    spec["stages"] = {k: v for k, v in spec["stages"].items() if k in REAL_STAGES}
    spec["stages"]["ingest"]["parameters"]["source"] = "churn.parquet"
    for stage in spec["stages"].values():
        shutil.copy(TEMPLATES / stage["notebook"], folder / stage["notebook"])
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder


def _plain_script(project: Path, out: Path) -> str:
    """The stage notebooks' code cells as one script, with what the runner would inject."""
    pipeline = load_pipeline(project)
    parameters = pipeline.resolve(REAL_PROFILE)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    lines = [PLAIN_HEADER.format(uri=uri)]
    for stage in pipeline.stages:
        nb = nbformat.read(stage.notebook, as_version=4)
        cells = [cell.source for cell in nb.cells if cell.cell_type == "code"]
        injected = {
            **parameters[stage.name],
            "inputs": {name: str(out / name) for name in stage.inputs},
            "output_dir": str(out / stage.name),
            "mlflow_run_id": None,
            "tracking_uri": uri,
        }
        lines += [f"# ---- {stage.name}", cells[0]]
        lines += [f"{name} = {value!r}" for name, value in injected.items()]
        lines += cells[1:]
    return "\n".join(lines) + "\n"


def _real(rows: int, work: Path) -> None:
    project = _real_project(work / f"real-{rows}", rows)
    out = work / f"real-plain-{rows}"
    out.mkdir()
    script = out / "pipeline_as_script.py"
    script.write_text(_plain_script(project, out), encoding="utf-8")
    started = time.perf_counter()
    subprocess.run([sys.executable, str(script)], cwd=project, capture_output=True, check=True)
    plain = time.perf_counter() - started
    cold, _ = _timed(
        [NBTOOLS, "run", "--project", str(project), "--profile", REAL_PROFILE, "-j", "1"]
    )
    stages = len(REAL_STAGES)
    print(f"\n== real stages ({stages}, profile {REAL_PROFILE}), {rows:,} churn rows ==")
    print(f"plain script (the same code cells)  {plain:7.2f} s")
    print(f"nbtools run, cold ({stages} stage kernels) {cold:7.2f} s   ratio {cold / plain:5.2f}x")
    print(f"  fixed overhead per stage          {(cold - plain) / stages:7.2f} s")


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--real-rows", type=int, nargs="*", default=[10_000, 1_000_000])
    parser.add_argument("--branch-rounds", type=int, default=100_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nbtools-bench-") as tmp:
        for rows in args.rows:
            _size(rows, Path(tmp))
        for rows in args.real_rows:
            _real(rows, Path(tmp))
        _branches(Path(tmp), args.branch_rounds)


if __name__ == "__main__":
    main()
