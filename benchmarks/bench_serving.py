"""Benchmark: `nbtools serve` against `mlflow models serve` on the same registered models.

Run from the repository root with the venv active (the venv's bin must be on PATH, since
`mlflow models serve` execs `uvicorn` by name)::

    python benchmarks/bench_serving.py [--seconds 5] [--soak-seconds 60] [--machine quiet busy]

What it does, in one run on 127.0.0.1:

1. creates a project-like MLflow SQLite registry in a temporary folder and registers two models
   built exactly as the train stage builds them (:func:`nbtools.ml.model_choice.pipeline_factory`:
   feature creation, per-family cleaning, selection and the estimator in one scikit-learn
   Pipeline, logged by nbtools.ml.modeling.log_model): gradient boosting (the default family)
   and a logistic regression, both with the ``champion`` alias;
2. for each model starts `mlflow models serve -m models:/NAME@champion --env-manager local` and
   `nbtools serve --model models:/NAME@champion` (one worker each, nbtools with its prediction
   log on), and hits both with the same keep-alive HTTP client: 1-row and 100-row
   ``dataframe_split`` requests, 1 and 16 concurrent clients, alternating the servers in short
   slices (nbtools predicts with the engine it chooses, compiled when the model's check passes;
   the table's head says which). Each cell is measured on the quiet machine and then on a busy
   one (two CPU-bound processes alive for the whole measurement), one right after the other, so
   that whatever else runs on a shared machine weighs on both machine states and both servers
   alike;
3. soaks `nbtools serve` (gradient boosting) with 16 clients for ``--soak-seconds`` while a
   process trains the same pipeline over and over on the same machine, and counts failures;
4. measures keep-alive requests per second with ``--workers 2``, with and without nbtools'
   TCP_NODELAY fix (uvicorn's multi-worker mode leaves Nagle's algorithm on).

It prints one table (req/s, p50 and p99 latency in ms for both servers, and the ratios).
Timings on a shared machine are noisy: compare the ratios, measured side by side.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

#: The registered models: name -> the train stage's family name.
FAMILIES = {"bench-boosting": "hist_gradient_boosting", "bench-logreg": "logistic_regression"}


def churn_pipeline(family: str) -> tuple[Any, Any, Any]:
    """The unfitted pipeline of ``family`` as the train stage builds it, and its X and y."""
    from nbtools.demo import make_churn
    from nbtools.ml.cleaning import CleaningParams
    from nbtools.ml.features import FeatureParams
    from nbtools.ml.model_choice import pipeline_factory

    data = make_churn(2000, seed=0).drop(columns=["signup_date"])
    X, y = data.drop(columns=["churned"]), data["churned"]
    numeric = [c for c in X.columns if X[c].dtype.kind in "if"]
    categorical = [c for c in X.columns if c not in numeric]
    levels = {c: int(X[c].nunique()) for c in categorical}
    factory = pipeline_factory(
        CleaningParams(),
        FeatureParams(),
        numeric,
        categorical,
        task="classification",
        seed=0,
        levels=levels,
    )
    return factory(family), X, y


def build_models(folder: Path) -> tuple[str, Any]:
    """Register the benchmark models; return the tracking URI and sample rows."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from nbtools.ml import modeling
    from nbtools.ops import registry

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("bench", artifact_location=(folder / "art").as_uri())
    X = None
    for name, family in FAMILIES.items():
        pipeline, X, y = churn_pipeline(family)
        pipeline.fit(X, y)
        with mlflow.start_run(experiment_id=experiment):
            model_uri = modeling.log_model(pipeline, X, task="classification")
        version = registry.register(model_uri, name)
        MlflowClient().set_registered_model_alias(name, "champion", version)
    return uri, X


def train_forever() -> None:
    """Fit the gradient boosting pipeline on 20,000 rows over and over (the soak's trainer)."""
    from nbtools.demo import make_churn

    pipeline, _, _ = churn_pipeline("hist_gradient_boosting")
    data = make_churn(20_000, seed=1).drop(columns=["signup_date"])
    X, y = data.drop(columns=["churned"]), data["churned"]
    while True:
        pipeline.fit(X, y)


def start_hogs(count: int) -> list[subprocess.Popen]:
    """Start ``count`` CPU-bound processes (busy loops), each in its own process group."""
    return [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
        for _ in range(count)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(command: list[str], port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a server in its own process group and wait until /ping answers."""
    process = subprocess.Popen(
        command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited early; see {log}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"{command[0]} did not answer /ping within 120 s; see {log}")


def stop(process: subprocess.Popen) -> None:
    """Stop a server's process group."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def load(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict[str, float]:
    """Hit /invocations with keep-alive connections; return req/s, p50, p99 (ms), errors."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop_at = time.perf_counter() + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "application/json"}
        i = index
        while time.perf_counter() < stop_at:
            body = bodies[i % len(bodies)]
            i += 1
            started = time.perf_counter()
            try:
                connection.request("POST", "/invocations", body, headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            latencies[index].append(time.perf_counter() - started)
            errors[index] += not ok
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    return summary([np.concatenate([np.asarray(x) for x in latencies])], elapsed, sum(errors))


def summary(latencies: list[np.ndarray], elapsed: float, errors: int) -> dict[str, float]:
    """req/s, p50 and p99 latency (ms), errors and request count of one or more load slices."""
    merged = np.concatenate(latencies) * 1000
    return {
        "rps": len(merged) / elapsed,
        "p50": float(np.percentile(merged, 50)),
        "p99": float(np.percentile(merged, 99)),
        "errors": float(errors),
        "requests": float(len(merged)),
        "latencies": merged / 1000,  # type: ignore[dict-item]
        "elapsed": elapsed,
    }


def compare(
    ports: list[int], bodies: list[bytes], clients: int, seconds: float, slices: int
) -> list[dict[str, float]]:
    """Load each server in turn, in ``slices`` short alternating slices, and merge each one's.

    Other processes on a shared machine come and go; interleaving spreads their effect evenly
    over the servers compared.
    """
    parts: list[list[dict[str, float]]] = [[] for _ in ports]
    for i in range(slices):
        order = list(range(len(ports)))
        if i % 2:
            order.reverse()
        for j in order:
            parts[j].append(load(ports[j], bodies, clients, seconds / slices))
    return [
        summary(
            [p["latencies"] for p in runs],  # type: ignore[misc]
            sum(p["elapsed"] for p in runs),
            int(sum(p["errors"] for p in runs)),
        )
        for runs in parts
    ]


def payloads(X: Any, rows: int) -> list[bytes]:
    """Distinct dataframe_split bodies of ``rows`` rows each."""
    bodies = []
    for start in range(0, min(len(X), 50 * rows), rows):
        chunk = X.iloc[start : start + rows]
        data = json.loads(chunk.to_json(orient="split", index=False))
        bodies.append(json.dumps({"dataframe_split": data}).encode())
    return bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per cell and server")
    parser.add_argument("--slices", type=int, default=4, help="alternations per cell")
    parser.add_argument("--soak-seconds", type=float, default=60.0)
    parser.add_argument(
        "--machine", nargs="+", default=["quiet", "busy"], choices=["quiet", "busy"]
    )
    parser.add_argument("--models", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--rows", nargs="+", type=int, default=[1, 100])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--no-workers", action="store_true", help="skip the --workers 2 check")
    parser.add_argument("--train-forever", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_forever:
        train_forever()
        return

    bin_dir = str(Path(sys.executable).parent)
    folder = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    processes: list[subprocess.Popen] = []
    try:
        uri, X = build_models(folder)
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "MLFLOW_TRACKING_URI": uri}
        env.pop("NBTOOLS_SERVE_TOKEN", None)
        rows: list[tuple[str, str, int, int, dict[str, float], dict[str, float]]] = []
        soak: dict[str, float] = {}
        engines: dict[str, str] = {}
        for model in args.models:
            model_uri = f"models:/{model}@champion"
            p_mlflow, p_ours = free_port(), free_port()
            mlflow_cmd = [
                f"{bin_dir}/mlflow",
                "models",
                "serve",
                "-m",
                model_uri,
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(p_mlflow),
            ]
            ours_cmd = [
                f"{bin_dir}/nbtools",
                "serve",
                "--model",
                model_uri,
                "--tracking-uri",
                uri,
                "--port",
                str(p_ours),
                "--predictions",
                str(folder / f"predictions-{model}"),
            ]
            processes = [
                start(mlflow_cmd, p_mlflow, env, folder / f"mlflow-{model}.log"),
                start(ours_cmd, p_ours, env, folder / f"nbtools-{model}.log"),
            ]
            engines[model] = engine(p_ours)
            print(f"  {model}: nbtools {engines[model]}", flush=True)
            for n_rows in args.rows:
                bodies = payloads(X, n_rows)
                for clients in args.clients:
                    for machine in args.machine:
                        hogs = start_hogs(2) if machine == "busy" else []
                        try:
                            compare([p_mlflow, p_ours], bodies, clients, 1.0, 1)  # warm up
                            theirs, ours = compare(
                                [p_mlflow, p_ours], bodies, clients, args.seconds, args.slices
                            )
                        finally:
                            for hog in hogs:
                                stop(hog)
                        rows.append((model, machine, n_rows, clients, theirs, ours))
                        print(
                            f"  {model} {machine} rows={n_rows} clients={clients}: mlflow "
                            f"{theirs['rps']:.0f} req/s p99 {theirs['p99']:.0f} ms, nbtools "
                            f"{ours['rps']:.0f} req/s p99 {ours['p99']:.0f} ms",
                            flush=True,
                        )
            if model == "bench-boosting" and args.soak_seconds > 0:
                trainer = subprocess.Popen(
                    [sys.executable, __file__, "--train-forever"], start_new_session=True
                )
                try:
                    soak = load(p_ours, payloads(X, 1), 16, args.soak_seconds)
                finally:
                    stop(trainer)
            for process in processes:
                stop(process)
            processes = []

        nodelay: dict[str, dict[str, float]] = {}
        ports: list[int] = []
        fixes = () if args.no_workers else (("without fix", ["--no-tcp-nodelay"]), ("with fix", []))
        for label, extra in fixes:
            port = free_port()
            ports.append(port)
            command = [
                f"{bin_dir}/nbtools",
                "serve",
                "--model",
                "models:/bench-logreg@champion",
                "--tracking-uri",
                uri,
                "--port",
                str(port),
                "--workers",
                "2",
                "--no-prediction-log",
                *extra,
            ]
            processes.append(start(command, port, env, folder / f"workers-{label}.log"))
        if ports:
            compare(ports, payloads(X, 1), 1, 1.0, 1)
            results = compare(ports, payloads(X, 1), 1, args.seconds, args.slices)
            nodelay = dict(zip(("without fix", "with fix"), results, strict=True))
        for process in processes:
            stop(process)
        processes = []
        report(rows, soak, nodelay, engines, args)
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def engine(port: int) -> str:
    """Which engine the nbtools service on ``port`` predicts with, and why (its /metadata)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/metadata")
    runtime = json.loads(connection.getresponse().read())["runtime"]
    connection.close()
    return f"{runtime['engine']} ({runtime['engine_note']})"


def report(
    rows: list, soak: dict[str, float], nodelay: dict, engines: dict, args: argparse.Namespace
) -> None:
    """Print the comparison table."""
    print()
    print(
        f"nbtools serve vs mlflow models serve, {args.seconds:g} s per cell, 1 worker each, "
        f"{os.cpu_count()} CPUs; busy: two CPU-bound processes throughout"
    )
    for model, described in engines.items():
        print(f"  {model}: nbtools predicts {described}")
    header = (
        f"{'model':<15}{'machine':>8}{'rows':>5}{'clients':>8} | {'mlflow req/s':>12}{'p50':>8}"
        f"{'p99':>8} | {'nbtools req/s':>13}{'p50':>8}{'p99':>8} | {'x req/s':>8}{'p99 lower':>10}"
    )
    print(header)
    print("-" * len(header))
    for model, machine, n_rows, clients, theirs, ours in rows:
        ratio = ours["rps"] / theirs["rps"]
        lower = "yes" if ours["p99"] < theirs["p99"] else "NO"
        print(
            f"{model:<15}{machine:>8}{n_rows:>5}{clients:>8} | {theirs['rps']:>12.0f}"
            f"{theirs['p50']:>8.1f}{theirs['p99']:>8.1f} | {ours['rps']:>13.0f}"
            f"{ours['p50']:>8.1f}{ours['p99']:>8.1f} | {ratio:>7.2f}x{lower:>10}"
        )
        if theirs["errors"] or ours["errors"]:
            print(f"   errors: mlflow {theirs['errors']:.0f}, nbtools {ours['errors']:.0f}")
    print("(latencies in ms)")
    print()
    if soak:
        print(
            f"Soak, nbtools serve, bench-boosting, 16 clients, 1-row, {args.soak_seconds:g} s "
            f"while the same pipeline trains on 20,000 rows: {soak['requests']:.0f} requests, "
            f"{soak['errors']:.0f} failed, {soak['rps']:.0f} req/s, p99 {soak['p99']:.1f} ms"
        )
        print()
    if not nodelay:
        return
    print("Keep-alive, --workers 2, 1 client, 1-row (bench-logreg):")
    for label, result in nodelay.items():
        print(
            f"  {label:<12} {result['rps']:>7.0f} req/s   p50 {result['p50']:6.1f} ms"
            f"   p99 {result['p99']:6.1f} ms"
        )
    print(f"  ratio        {nodelay['with fix']['rps'] / nodelay['without fix']['rps']:.1f}x")


if __name__ == "__main__":
    main()
