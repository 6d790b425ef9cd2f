"""The panel's REST API on a real Jupyter server: runs started through it, and what it refuses."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.jupyter
PROJECT = {"path": "proj"}


def wait_for(api: httpx.Client, run_id: str, until: str = "finished") -> dict[str, Any]:
    """Poll a run until it no longer runs (or until one of its stages runs); return it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = api.get(f"/runs/{run_id}", params=PROJECT).json()
        running = [s for s in run["stages"].values() if s["status"] == "running"]
        if (until == "finished" and run["status"] != "running") or (until == "stage" and running):
            return run
        time.sleep(0.3)  # polling interval while waiting on the deadline
    raise AssertionError(f"Run {run_id} did not reach '{until}' in time: {run}")


def start(api: httpx.Client, body: dict[str, Any]) -> str:
    reply = api.post("/runs", params=PROJECT, json=body)
    assert reply.status_code == 202, reply.text
    return str(reply.json()["run_id"])


def test_project_shows_the_stages_in_pipeline_order(api: httpx.Client) -> None:
    reply = api.get("/project", params={"path": "proj/runs"})  # any folder inside the project

    assert reply.status_code == 200
    project = reply.json()
    assert project["name"] == "lab-fixture"
    assert project["path"] == "proj"
    assert project["mlflow_ui"] is True
    assert [s["name"] for s in project["stages"]] == ["produce", "consume", "sleeps"]
    rows = next(s for s in project["stages"] if s["name"] == "produce")["parameters"]
    assert {"name": "rows", "kind": "int", "accepts": "an int in the range [1, 1000]"} in rows


def test_a_run_started_through_the_api_is_a_full_run_record(
    api: httpx.Client, jupyter_root: Path
) -> None:
    first = wait_for(api, start(api, {"parameters": {"produce.rows": 4}}))
    second = wait_for(api, start(api, {"mode": "stage", "stage": "consume"}))

    assert first["status"] == "succeeded"
    assert {n: s["status"] for n, s in first["stages"].items()} == dict.fromkeys(
        ["produce", "consume", "sleeps"], "succeeded"
    )
    assert first["metrics"] == {}
    manifest = first["manifest"]
    assert manifest["overrides"] == {"produce.rows": 4}
    assert manifest["stages"]["consume"]["recorded"] == {"total": 12.0}
    assert manifest["mlflow"]["parent_run_id"]
    assert second["status"] == "succeeded"
    assert second["stages"]["consume"]["status"] == "reused"  # unchanged: taken from the cache
    history = api.get("/runs", params=PROJECT).json()["runs"]
    assert [r["run_id"] for r in history[:2]] == [second["run_id"], first["run_id"]]

    record = api.get(
        f"/runs/{first['run_id']}/record", params={**PROJECT, "stage": "consume", "kind": "html"}
    ).json()
    assert record["path"] == f"proj/runs/{first['run_id']}/02_consume/output.html"
    assert "total" in (jupyter_root / record["path"]).read_text(encoding="utf-8")

    mlflow = api.get(f"/runs/{first['run_id']}/mlflow", params=PROJECT).json()
    experiment = (
        MlflowClient(f"sqlite:///{jupyter_root / 'proj' / 'mlflow.db'}")
        .get_run(manifest["mlflow"]["parent_run_id"])
        .info.experiment_id
    )
    assert mlflow["url"] == (
        f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{manifest['mlflow']['parent_run_id']}"
    )

    report = api.get("/diff", params={**PROJECT, "runs": f"{first['run_id']},{second['run_id']}"})
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in report.headers["content-security-policy"]
    page = report.text
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert f"Run {first['run_id']} → run {second['run_id']}" in page
    assert "produce.rows" in page


def test_cancelling_a_run_keeps_what_finished_and_never_claims_success(api: httpx.Client) -> None:
    run_id = start(api, {"mode": "stage", "stage": "sleeps", "parameters": {"sleeps.seconds": 120}})
    wait_for(api, run_id, until="stage")

    reply = api.post(f"/runs/{run_id}/cancel", params=PROJECT)
    run = wait_for(api, run_id)

    assert reply.status_code == 202
    assert run["status"] == "cancelled"
    assert run["stages"]["sleeps"]["status"] == "failed"
    assert "cancelled" in run["error"]
    again = api.post(f"/runs/{run_id}/cancel", params=PROJECT)
    assert again.status_code == 404
    assert "only a running run can be cancelled" in again.json()["message"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"mode": "stage", "stage": "nope"}, "has no stage 'nope'"),
        ({"mode": "from", "stage": "../produce"}, "has no stage '../produce'"),
        ({"mode": "stage"}, "needs the name of a stage"),
        ({"parameters": {"produce.rowz": 3}}, "rowz"),
        ({"parameters": {"produce.rows": 5000}}, "in the range [1, 1000]. Got 5000"),
        ({"profile": "full"}, "has no profile 'full'"),
        ({"notebook": "/etc/passwd"}, "unknown key(s) notebook"),
        ({"resume": "nothing-like-this"}, "match the id 'nothing-like-this'"),
    ],
)
def test_a_run_request_must_name_what_the_project_declares(
    api: httpx.Client, body: dict[str, Any], expected: str
) -> None:
    before = api.get("/runs", params=PROJECT).json()["runs"]

    reply = api.post("/runs", params=PROJECT, json=body)

    assert reply.status_code in (400, 404)
    assert expected in reply.json()["message"]
    assert api.get("/runs", params=PROJECT).json()["runs"] == before  # nothing started


@pytest.mark.parametrize("path", ["..", "../..", "/etc", "proj/../.."])
def test_paths_outside_the_jupyter_root_are_refused(api: httpx.Client, path: str) -> None:
    reply = api.get("/project", params={"path": path})

    assert reply.status_code == 403
    assert "is outside the Jupyter root" in reply.json()["message"]


def test_a_record_pointing_outside_the_project_is_refused(
    api: httpx.Client, jupyter_root: Path
) -> None:
    run_id = wait_for(api, start(api, {"mode": "stage", "stage": "produce"}))["run_id"]
    manifest_path = jupyter_root / "proj" / "runs" / run_id / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["stages"]["produce"]["html"] = str(jupyter_root / "secret.txt")
    manifest["stages"]["produce"]["executed_notebook"] = "../secret.txt"
    manifest_path.write_text(json.dumps(manifest))

    replies = [
        api.get(f"/runs/{run_id}/record", params={**PROJECT, "stage": "produce", "kind": kind})
        for kind in ("html", "notebook")
    ]
    unknown = api.get(f"/runs/{run_id}/record", params={**PROJECT, "stage": "nope"})

    for reply in replies:
        assert reply.status_code == 403
        assert "is outside the project" in reply.json()["message"]
    assert unknown.status_code == 404
    assert "has no stage 'nope'" in unknown.json()["message"]


def test_requests_without_the_token_are_refused(api: httpx.Client) -> None:
    base = str(api.base_url).rstrip("/")
    reply = httpx.get(f"{base}/project", params=PROJECT)
    start_run = httpx.post(f"{base}/runs", params=PROJECT, json={})

    assert reply.status_code == 403
    assert start_run.status_code == 403


def test_a_folder_without_a_project_and_an_unknown_run_are_not_found(
    api: httpx.Client, jupyter_root: Path
) -> None:
    (jupyter_root / "empty").mkdir(exist_ok=True)

    project = api.get("/project", params={"path": "empty"})
    run = api.get("/runs/20990101-000000-abcdef", params=PROJECT)
    diff = api.get("/diff", params={**PROJECT, "runs": "20990101-000000-abcdef,2099"})
    one_run = api.get("/diff", params={**PROJECT, "runs": "20990101-000000-abcdef"})

    assert project.status_code == 404
    assert "No pipeline.yaml" in project.json()["message"]
    assert run.status_code == 404
    assert "match the id" in run.json()["message"]
    assert diff.status_code == 404
    assert "match the id '20990101-000000-abcdef'" in diff.json()["message"]
    assert one_run.status_code == 400
    assert "must name two runs" in one_run.json()["message"]


def test_a_run_outlives_the_server_that_started_it(
    jupyter_server, jupyter_root: Path, tmp_path: Path
) -> None:
    body = {"mode": "stage", "stage": "sleeps", "parameters": {"sleeps.seconds": 4}}
    with jupyter_server(jupyter_root, tmp_path / "first") as first:
        run_id = start(first, body)
        assert wait_for(first, run_id, until="stage")["status"] == "running"

    with jupyter_server(jupyter_root, tmp_path / "second") as second:
        run = wait_for(second, run_id)

    assert run["status"] == "succeeded"
    assert run["stages"]["sleeps"]["status"] == "succeeded"
