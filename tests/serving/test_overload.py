"""Overload against the real service: a full queue, the timeout, shutdown, timings and metrics."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd
import pytest
from servicekit import MODEL, Registry, Service

pytestmark = pytest.mark.serving


def split_body(registry: Registry, rows: int) -> dict:
    frame = pd.concat([registry.X] * (rows // len(registry.X) + 1), ignore_index=True).head(rows)
    return {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}


def metric(service: Service, name: str) -> float:
    with service.client() as client:
        text = client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics:\n{text}")


def test_a_full_queue_is_answered_503_with_retry_after_and_the_rest_is_served(
    registry: Registry, serve: Callable[..., Service]
) -> None:
    # scikit-learn predicts slowly enough for 16 clients to fill the queue reliably
    service = serve(registry, "--max-queue", "1", "--engine", "scikit-learn", "--no-prediction-log")
    body = split_body(registry, 1)
    statuses: list[int] = []
    refusals: list[httpx.Response] = []
    refused = threading.Event()

    def client() -> None:
        with service.client() as http:
            for _ in range(300):  # until some request finds the queue full
                if refused.is_set():
                    return
                response = http.post("/invocations", json=body)
                statuses.append(response.status_code)
                if response.status_code == 503:
                    refusals.append(response)
                    refused.set()

    clients = [threading.Thread(target=client) for _ in range(16)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()

    assert refusals, "16 clients never filled a queue of one request"
    assert set(statuses) == {200, 503}
    refusal = refusals[0]
    assert int(refusal.headers["Retry-After"]) >= 1
    assert refusal.json()["error_code"] == "OVERLOADED"
    assert "--max-queue" in refusal.json()["message"]
    assert metric(service, "nbtools_serve_rejected_total") == statuses.count(503)


def test_a_request_over_the_timeout_is_answered_504_and_the_service_stays_up(
    registry: Registry, serve: Callable[..., Service]
) -> None:
    service = serve(registry, "--timeout", "0.001", "--no-prediction-log")
    with service.client() as client:
        response = client.post("/invocations", json=split_body(registry, 2000))
        health = client.get("/health")
    assert response.status_code == 504
    assert response.json()["error_code"] == "TIMED_OUT"
    assert "0.001 s (the service's --timeout)" in response.json()["message"]
    assert health.status_code == 200
    assert metric(service, "nbtools_serve_timeouts_total") == 1


def send_volley(service: Service, body: dict, outcomes: list[str]) -> list[threading.Thread]:
    """Post ``body`` from eight threads at once; each appends its status code to ``outcomes``."""

    def client() -> None:
        try:
            with httpx.Client(base_url=service.url, timeout=60) as http:
                outcomes.append(str(http.post("/invocations", json=body).status_code))
        except httpx.HTTPError as exc:
            outcomes.append(repr(exc))

    clients = [threading.Thread(target=client) for _ in range(8)]
    for thread in clients:
        thread.start()
    return clients


def test_shutdown_finishes_the_requests_in_flight(
    registry: Registry, serve: Callable[..., Service]
) -> None:
    # The forest (version 2) through scikit-learn, on 2000 rows a request, keeps a queue
    # building up behind it.
    service = serve(
        registry, "--model", f"models:/{MODEL}/2", "--engine", "scikit-learn", "--no-prediction-log"
    )
    body = split_body(registry, 2000)
    # /metrics is answered only between predict calls, so on a busy machine a whole volley can
    # be answered before a poll sees a request in flight: such a volley is sent again.
    for _ in range(5):
        outcomes: list[str] = []
        clients = send_volley(service, body, outcomes)
        deadline = time.monotonic() + 60
        while len(outcomes) < 8 and metric(service, "nbtools_serve_in_flight") < 1:
            assert time.monotonic() < deadline, "the eight requests never reached the service"
            time.sleep(0.01)  # polling interval
        if len(outcomes) < 8:
            break
        for thread in clients:
            thread.join()
    else:
        pytest.fail("five volleys were each answered before a poll saw a request in flight")
    os.kill(service.process.pid, signal.SIGTERM)
    for thread in clients:
        thread.join()
    service.process.wait(timeout=60)  # uvicorn re-raises SIGTERM once it has shut down
    assert outcomes == ["200"] * 8
    # Whether uvicorn still saw an open connection when the signal arrived ("Waiting for
    # connections to close") depends on the machine's speed; every answer being 200 is the point.
    assert "Application shutdown complete" in service.log.read_text()


def test_every_answer_carries_its_phases_and_metrics_sum_them(
    registry: Registry, serve: Callable[..., Service]
) -> None:
    service = serve(registry, "--no-prediction-log")
    with service.client() as client:
        responses = [client.post("/invocations", json=split_body(registry, 5)) for _ in range(3)]
        text = client.get("/metrics").text
    for response in responses:
        assert response.status_code == 200
        phases = [part.split(";")[0] for part in response.headers["Server-Timing"].split(", ")]
        assert phases == ["parse", "queue", "predict", "respond"]
    for phase in ("parse", "queue", "predict", "respond"):
        assert f'nbtools_serve_phase_seconds_count{{phase="{phase}"}} 3' in text
    assert 'nbtools_serve_responses_total{status="200"} 3' in text
    assert 'nbtools_serve_request_seconds_bucket{le="+Inf"} 3' in text


def test_the_service_predicts_with_sleeping_openmp_threads(
    registry: Registry, serve: Callable[..., Service]
) -> None:
    service = serve(registry, "--no-prediction-log")
    with service.client() as client:
        runtime = client.get("/metadata").json()["runtime"]
    assert runtime["engine"] == "compiled"
    assert runtime["omp_wait_policy"] == "PASSIVE"
    assert runtime["compute_threads"]["small_batches"] == 1
    assert "OpenMP was loaded before" not in service.log.read_text()


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [("--timeout", "0", "a number of seconds > 0"), ("--max-queue", "0", "an integer >= 1")],
)
def test_a_timeout_or_queue_out_of_range_is_refused_with_a_clear_message(
    tmp_path: Path, option: str, value: str, expected: str
) -> None:
    from click.testing import CliRunner

    from nbtools.cli import cli

    model = ["--model", f"models:/{MODEL}@champion", "--tracking-uri", "sqlite:///x.db"]
    result = CliRunner().invoke(cli, ["serve", *model, "--project", str(tmp_path), option, value])
    assert result.exit_code != 0
    setting = option.removeprefix("--").replace("-", "_")
    assert f"The '{setting}' setting of nbtools serve must be {expected}" in result.output
