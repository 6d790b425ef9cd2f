"""Webhook notifications against a real HTTP server on 127.0.0.1: what is posted, when, and
what a user sees when the webhook cannot be reached (never its URL)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from nbtools.pipeline.deployment import Notify
from nbtools.pipeline.spec import Pipeline
from nbtools.records import notify
from nbtools.records.notify import notify_run_failed, post_event

VARIABLE = "NBTOOLS_TEST_WEBHOOK"  # set by the webhook fixture


def pipeline(tmp_path: Path, *on: str) -> Pipeline:
    return Pipeline(
        name="churn",
        project_dir=tmp_path,
        stages=(),
        model_name="churn-model",
        tracking_uri="sqlite:///mlflow.db",
        notify=Notify(VARIABLE, on) if on else Notify(VARIABLE),
    )


def warned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "nbtools.notify"]


def test_the_message_names_the_run_the_stage_and_the_record(tmp_path: Path, webhook) -> None:
    record = tmp_path / "runs" / "20260301-000000-abcdef" / "manifest.json"
    posted = post_event(
        pipeline(tmp_path),
        "drift",
        "Dataset drift in check 42.",
        run_id="20260301-000000-abcdef",
        stage="monitor",
        record=record,
        drift_share=0.5,
        columns=["age"],
    )

    assert posted
    [message] = webhook.messages
    assert message["text"].startswith("[nbtools · churn] Dataset drift in check 42.\n")
    assert f"run 20260301-000000-abcdef · stage monitor · record {record}" in message["text"]
    assert message["nbtools"] == {
        "event": "drift",
        "pipeline": "churn",
        "project": str(tmp_path),
        "run_id": "20260301-000000-abcdef",
        "stage": "monitor",
        "record": str(record),
        "details": {"drift_share": 0.5, "columns": ["age"]},
    }
    assert webhook.headers[0]["Content-Type"] == "application/json"


def test_only_the_events_notify_lists_are_posted(tmp_path: Path, webhook) -> None:
    only_drift = pipeline(tmp_path, "drift")
    assert not post_event(only_drift, "promoted", "Version 2 is the champion now.")
    assert post_event(only_drift, "drift", "Drift.")
    silent = Pipeline("churn", tmp_path, (), "m", "sqlite:///mlflow.db", notify=None)
    assert not post_event(silent, "drift", "Drift.")
    assert [m["nbtools"]["event"] for m in webhook.messages] == ["drift"]


def test_an_unset_variable_is_a_warning_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    with caplog.at_level(logging.WARNING):
        assert not post_event(pipeline(tmp_path), "run-failed", "Run 1 failed.")
    [message] = warned(caplog)
    assert "'run-failed' notification was not posted" in message
    assert f"environment variable {VARIABLE}, which is not set" in message


def test_a_refused_connection_is_a_warning_without_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/T0/B0/s3cr3t-t0ken"
    monkeypatch.setenv(VARIABLE, url)
    with caplog.at_level(logging.WARNING):
        assert not post_event(pipeline(tmp_path), "decay", "ROC AUC fell.")
    [message] = warned(caplog)
    assert f"not posted to the webhook in ${VARIABLE}: cannot reach the webhook" in message
    assert "refused" in message
    assert "s3cr3t" not in message and str(port) not in message


def test_a_refusing_webhook_is_a_warning_with_its_answer_but_not_the_url(
    tmp_path: Path, webhook, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.answer = (403, f"invalid_token for {webhook.url}")
    with caplog.at_level(logging.WARNING):
        assert not post_event(pipeline(tmp_path), "rejected", "Version 2 was not promoted.")
    [message] = warned(caplog)
    assert "answered HTTP 403 Forbidden (invalid_token for" in message
    assert "s3cr3t" not in message and "127.0.0.1" not in message
    assert len(webhook.messages) == 1  # it was sent, and refused


def test_a_webhook_that_does_not_answer_in_time_is_a_warning(
    tmp_path: Path, webhook, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(notify, "TIMEOUT_S", 0.3)  # the test waits 0.3 s, not 10
    webhook.hang = True
    with caplog.at_level(logging.WARNING):
        assert not post_event(pipeline(tmp_path), "drift", "Drift.")
    [message] = warned(caplog)
    assert "no answer within 0.3 s" in message and "s3cr3t" not in message


def test_a_value_that_is_not_an_http_url_is_a_warning_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLE, "hooks.example/s3cr3t-t0ken")
    seen: list[str] = []
    assert not post_event(pipeline(tmp_path), "drift", "Drift.", warn=seen.append)
    assert len(seen) == 1 and "does not hold an http:// or https:// URL" in seen[0]
    assert "s3cr3t" not in seen[0]


def test_a_failed_run_names_its_first_failed_stage_error_and_notebook(
    tmp_path: Path, webhook
) -> None:
    notebook = str(tmp_path / "runs" / "R1" / "05_train" / "output.ipynb")
    manifest = {
        "run_id": "R1",
        "status": "failed",
        "error": "Stage 'train' failed ...",
        "mlflow": {"parent_run_id": "abc123"},
        "stages": {
            "ingest": {"status": "succeeded", "error": None},
            "train": {
                "status": "failed",
                "error": {"message": "ValueError: boom", "cell_index": 3, "notebook": notebook},
            },
            "evaluate": {"status": "not run", "error": None},
        },
    }
    assert notify_run_failed(pipeline(tmp_path), manifest)
    assert not notify_run_failed(pipeline(tmp_path), {**manifest, "status": "succeeded"})

    [message] = webhook.messages
    record = tmp_path / "runs" / "R1" / "manifest.json"
    assert message["text"] == (
        "[nbtools · churn] Run R1 failed in stage 'train': ValueError: boom\n"
        f"Executed notebook: {notebook}\n"
        f"run R1 · stage train · record {record}"
    )
    assert message["nbtools"]["details"] == {
        "status": "failed",
        "error": "ValueError: boom",
        "executed_notebook": notebook,
        "mlflow_run_id": "abc123",
    }


def test_a_cancelled_run_says_so(tmp_path: Path, webhook) -> None:
    manifest = {
        "run_id": "R2",
        "status": "cancelled",
        "error": "The run was cancelled.",
        "stages": {},
    }
    assert notify_run_failed(pipeline(tmp_path, "run-failed"), manifest)
    assert webhook.messages[0]["text"].startswith(
        "[nbtools · churn] Run R2 was cancelled: The run was cancelled.\n"
    )
