"""Webhook notifications: a run failed, data drifted, a model decayed, the gate decided.

``pipeline.yaml`` names the environment variable that holds the webhook's URL, never the URL
(it carries a token), and the events that post::

    notify:
      webhook: NBTOOLS_WEBHOOK_URL
      on: [run-failed, drift, decay, promoted, rejected]

Each message is a JSON object that a Slack incoming webhook (and anything that accepts the same
shape: Mattermost, Rocket.Chat, most chat bridges) shows as is: ``text`` says what happened and
names the run, the stage and the record; ``nbtools`` holds the same facts for a program::

    {"text": "...", "nbtools": {"event": "run-failed", "pipeline": "churn", "run_id": "...",
                                "stage": "train", "record": ".../manifest.json", "details": {}}}

A notification never fails what it reports on: an unset variable, a refused connection, an
answer other than 2xx or no answer within :data:`TIMEOUT_S` becomes one warning naming the
variable and the problem, never the URL.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nbtools.pipeline.spec import Pipeline
from nbtools.records.runs import MANIFEST

__all__ = ["TIMEOUT_S", "notify_run_failed", "post_event"]

#: Seconds to wait for the webhook's answer before giving up with a warning.
TIMEOUT_S = 10.0
#: Characters of a refusing webhook's answer quoted in the warning (Slack says why in it).
_QUOTED = 200

logger = logging.getLogger("nbtools.notify")

Warn = Callable[[str], None]


def post_event(
    pipeline: Pipeline,
    event: str,
    text: str,
    *,
    run_id: str | None = None,
    stage: str | None = None,
    record: str | Path | None = None,
    warn: Warn | None = None,
    **details: Any,
) -> bool:
    """Post ``event`` to the pipeline's webhook, when ``notify.on`` lists it.

    Parameters
    ----------
    pipeline : Pipeline
        The pipeline; its ``notify`` section says where and when to post.
    event : str
        One of :data:`~nbtools.pipeline.deployment.NOTIFY_EVENTS`.
    text : str
        What happened, in a sentence or two. The run, the stage and the record given below are
        added on a line of their own.
    run_id : str, optional
        The pipeline run it is about.
    stage : str, optional
        The stage it is about.
    record : str or Path, optional
        Where to read more: the run's manifest, a check's report.
    warn : callable, optional
        Called with the warning when the message cannot be posted; by default the warning goes
        to the ``nbtools.notify`` logger (shown on stderr when logging is not configured).
    **details
        More facts for the message's ``nbtools.details`` (JSON-serialisable, or turned into
        text).

    Returns
    -------
    bool
        Whether the webhook accepted the message. False also when nothing was due (no
        ``notify`` section, or an event it does not list).
    """
    notify = pipeline.notify
    if notify is None or event not in notify.on:
        return False
    say = warn or logger.warning
    url = os.environ.get(notify.webhook, "").strip()
    if not url:
        say(
            f"The '{event}' notification was not posted: notify.webhook in pipeline.yaml names "
            f"the environment variable {notify.webhook}, which is not set. Set it to the "
            "webhook's URL where nbtools runs."
        )
        return False
    where = [f"run {run_id}" if run_id else "", f"stage {stage}" if stage else ""]
    where.append(f"record {record}" if record else "")
    message = {
        "text": f"[nbtools · {pipeline.name}] {text}"
        + ("\n" + " · ".join(w for w in where if w) if any(where) else ""),
        "nbtools": {
            "event": event,
            "pipeline": pipeline.name,
            "project": str(pipeline.project_dir),
            "run_id": run_id,
            "stage": stage,
            "record": None if record is None else str(record),
            "details": details,
        },
    }
    problem = _post(url, json.dumps(message, default=str).encode("utf-8"))
    if problem is not None:
        say(
            f"The '{event}' notification was not posted to the webhook in "
            f"${notify.webhook}: {_without(problem, url)}. What it reports on is not affected."
        )
    return problem is None


def notify_run_failed(
    pipeline: Pipeline, manifest: Mapping[str, Any], *, warn: Warn | None = None
) -> bool:
    """Post ``run-failed`` for a run whose record says it failed or was cancelled.

    The message names the run, its status, its first failed stage with the error message and
    the executed notebook, the MLflow parent run, and the path of the run's manifest. Call it
    once the run is closed (its manifest final); a run that succeeded posts nothing.

    Parameters
    ----------
    pipeline : Pipeline
        The pipeline the run belongs to (its ``notify`` section and runs folder).
    manifest : mapping
        The run's manifest, as ``manifest.json`` holds it
        (:func:`~nbtools.records.runs.read_manifest`, or ``RunResult.manifest``).
    warn : callable, optional
        Called with the warning when the message cannot be posted; see :func:`post_event`.

    Returns
    -------
    bool
        Whether the webhook accepted the message.
    """
    if manifest.get("status") == "succeeded":
        return False
    run_id = str(manifest["run_id"])
    failed = next(
        (
            (name, entry)
            for name, entry in manifest.get("stages", {}).items()
            if entry.get("status") == "failed"
        ),
        None,
    )
    status = "was cancelled" if manifest.get("status") == "cancelled" else "failed"
    stage, error, notebook = None, manifest.get("error"), None
    if failed is not None:
        stage, entry = failed
        summary = entry.get("error") or {}
        error = summary.get("message") or error
        notebook = summary.get("notebook") or entry.get("executed_notebook")
    text = f"Run {run_id} {status}" + (f" in stage '{stage}'" if stage else "")
    text += f": {error}" if error else "."
    if notebook:
        text += f"\nExecuted notebook: {notebook}"
    return post_event(
        pipeline,
        "run-failed",
        text,
        run_id=run_id,
        stage=stage,
        record=pipeline.runs_dir / run_id / MANIFEST,
        warn=warn,
        status=manifest.get("status"),
        error=error,
        executed_notebook=notebook,
        mlflow_run_id=(manifest.get("mlflow") or {}).get("parent_run_id"),
    )


def _post(url: str, body: bytes) -> str | None:
    """POST ``body`` as JSON to ``url``; return what went wrong, or None when it was accepted."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return "the variable does not hold an http:// or https:// URL"
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            status = answer.status
            if 200 <= status < 300:
                return None
            return f"the webhook answered HTTP {status}"
    except urllib.error.HTTPError as exc:
        quoted = exc.read(_QUOTED).decode("utf-8", "replace").strip()
        return f"the webhook answered HTTP {exc.code} {exc.reason}" + (
            f" ({quoted})" if quoted else ""
        )
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return f"no answer within {TIMEOUT_S:g} s"
        if isinstance(reason, OSError) and reason.strerror:
            return f"cannot reach the webhook ({reason.strerror.lower()})"
        return f"cannot reach the webhook ({reason})"
    except TimeoutError:
        return f"no answer within {TIMEOUT_S:g} s"
    except ValueError:  # a malformed URL; its text would hold the URL
        return "the variable does not hold a valid URL"
    except OSError as exc:
        return f"the connection failed ({exc.strerror or type(exc).__name__})"


def _without(problem: str, url: str) -> str:
    """Remove the URL and the parts of it that could carry a token from ``problem``."""
    parts = urllib.parse.urlsplit(url)
    secrets = [url, parts.netloc, parts.path, parts.query, parts.password or ""]
    for secret in sorted((s for s in secrets if len(s) > 1), key=len, reverse=True):
        problem = problem.replace(secret, "…")
    return problem
