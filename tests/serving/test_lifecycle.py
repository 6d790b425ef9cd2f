"""The service over time: following the alias under load, tokens, several workers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from mlflow.tracking import MlflowClient
from servicekit import MODEL, Registry, Service

pytestmark = pytest.mark.serving


def body(registry: Registry) -> dict:
    return {"dataframe_records": json.loads(registry.X.head(3).to_json(orient="records"))}


def test_the_service_follows_the_alias_without_failing_a_request(
    own_registry: Registry, serve: Callable[..., Service]
) -> None:
    service = serve(own_registry, "--poll-seconds", "0.2")
    failures: list[str] = []
    versions: list[str] = []
    done = threading.Event()

    def stream() -> None:
        with service.client() as client:
            while not done.is_set():
                try:
                    response = client.post("/invocations", json=body(own_registry))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text}")
                versions.append(response.headers.get("X-Model-Version", "?"))

    streams = [threading.Thread(target=stream) for _ in range(3)]
    for thread in streams:
        thread.start()
    try:
        deadline = time.monotonic() + 20
        while len(versions) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        MlflowClient(tracking_uri=own_registry.uri).set_registered_model_alias(
            MODEL, "champion", "2"
        )
        shown = None
        deadline = time.monotonic() + 30
        with service.client() as client:
            while time.monotonic() < deadline:
                shown = client.get("/metadata").json()["model_version"]
                if shown == "2" and versions and versions[-1] == "2":
                    break
                time.sleep(0.1)
        count_at_switch = len(versions)
        deadline = time.monotonic() + 10
        while len(versions) < count_at_switch + 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        done.set()
        for thread in streams:
            thread.join()
    assert shown == "2"
    assert failures == []
    assert versions[0] == "1" and versions[-1] == "2"
    assert set(versions) == {"1", "2"}


def test_a_token_is_required_where_it_should_be_also_with_several_workers(
    registry: Registry, serve: Callable[..., Service]
) -> None:
    service = serve(registry, "--workers", "2", env={"NBTOOLS_SERVE_TOKEN": "s3cret"})
    with service.client() as client:
        anonymous = client.post("/invocations", json=body(registry))
        wrong = client.post(
            "/invocations", json=body(registry), headers={"Authorization": "Bearer nope"}
        )
        metadata = client.get("/metadata")
        right = client.post(
            "/invocations", json=body(registry), headers={"Authorization": "Bearer s3cret"}
        )
        ping = client.get("/ping")
        health = client.get("/health")
    assert anonymous.status_code == 401
    assert "bearer token" in anonymous.json()["message"]
    assert wrong.status_code == 401
    assert metadata.status_code == 401
    assert right.status_code == 200
    assert len(right.json()["predictions"]) == 3
    assert ping.status_code == 200 and health.status_code == 200  # probes need no token
    assert "on http://127.0.0.1:" in service.log.read_text()  # the default host
