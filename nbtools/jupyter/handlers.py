"""The REST API of the JupyterLab panel, under ``/nbtools/api/``, behind Jupyter's authentication.

Every request names its project with ``?path=DIR``, a folder relative to the Jupyter root (the
file browser's folder); the project is the nearest folder at or above it holding
``pipeline.yaml``. Paths that leave the Jupyter root or the project are refused with 403.

==========================================  =====  =================================================
``/nbtools/api/project``                    GET    pipeline name, stages in order, their parameters
``/nbtools/api/runs``                       GET    run history, newest first (summaries)
``/nbtools/api/runs``                       POST   start a run (body: see ``run_arguments``) → 202
``/nbtools/api/runs/<id>``                  GET    one run: summary and manifest
``/nbtools/api/runs/<id>/cancel``           POST   interrupt a running run → 202
``/nbtools/api/runs/<id>/record``           GET    ``?stage=S&kind=notebook|html``: file to open
``/nbtools/api/runs/<id>/mlflow``           GET    the run's page in the MLflow UI
``/nbtools/api/diff``                       GET    ``?runs=A,B``: the runs' HTML report (text/html)
==========================================  =====  =================================================
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from nbtools.errors import (
    InvalidParameterError,
    PipelineSpecError,
    ProjectNotFoundError,
    RunNotFoundError,
)
from nbtools.jupyter.launcher import RunLauncher, RunStartError, run_arguments
from nbtools.pipeline.spec import Pipeline, find_project, load_pipeline
from nbtools.records.history import summarize
from nbtools.records.run_diff import diff_runs, report_html
from nbtools.records.runs import list_runs, load_run

#: Environment variable with the base URL of an MLflow UI (``mlflow ui`` or a tracking server).
MLFLOW_UI_VARIABLE = "NBTOOLS_MLFLOW_UI"
#: Most runs the history returns.
HISTORY_LENGTH = 50
_RECORD_KINDS = {"notebook": "executed_notebook", "html": "html"}
_STATUS = {
    InvalidParameterError: 400,
    PipelineSpecError: 400,
    RunNotFoundError: 404,
    ProjectNotFoundError: 404,
}
#: The report is style, text and embedded images only; shown in a frame of JupyterLab's page.
_REPORT_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
)
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[None]])


def _answers_errors(method: Handler) -> Handler:
    """Turn nbtools errors into 4xx replies whose message says what to do."""

    @wraps(method)
    async def wrapper(self: _Base, *args: Any, **kwargs: Any) -> None:
        try:
            await method(self, *args, **kwargs)
        except tuple(_STATUS) as exc:
            status = next(code for kind, code in _STATUS.items() if isinstance(exc, kind))
            raise web.HTTPError(status, str(exc)) from exc

    return wrapper  # type: ignore[return-value]


class _Base(APIHandler):
    """Finds the requested project inside the Jupyter root."""

    @property
    def launcher(self) -> RunLauncher:
        launcher: RunLauncher = self.settings["nbtools_launcher"]
        return launcher

    @property
    def root(self) -> Path:
        return Path(self.settings["server_root_dir"]).expanduser().resolve()

    def pipeline(self) -> Pipeline:
        """Return the pipeline of the project at or above ``?path=``, inside the Jupyter root."""
        requested = self.get_query_argument("path", "")
        folder = self.inside(self.root, self.root / requested, "the Jupyter root")
        project = find_project(folder)
        self.inside(self.root, project, "the Jupyter root")
        return load_pipeline(project)

    def inside(self, parent: Path, path: Path | str, what: str) -> Path:
        """Return ``path`` resolved, or refuse the request (403) when it is not under ``parent``."""
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(parent):
            raise web.HTTPError(
                403,
                f"The path '{path}' is outside {what} ({parent}). Only files of the project "
                "can be reached through the nbtools API.",
            )
        return resolved

    def relative(self, path: Path) -> str:
        """Return ``path`` relative to the Jupyter root, as JupyterLab's file browser names it."""
        return path.relative_to(self.root).as_posix()

    def reply(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(body, default=str))

    def run_manifest(self, pipeline: Pipeline, run_id: str) -> dict[str, Any]:
        self.launcher.reap()
        return load_run(pipeline.runs_dir, run_id)


class ProjectHandler(_Base):
    """``GET /nbtools/api/project``: the pipeline's name, folder and stages."""

    @web.authenticated
    @_answers_errors
    async def get(self) -> None:
        """Reply with the pipeline's stages in run order, their inputs and parameters."""
        pipeline = self.pipeline()
        self.reply(
            {
                "name": pipeline.name,
                "path": self.relative(pipeline.project_dir),
                "mlflow_ui": bool(os.environ.get(MLFLOW_UI_VARIABLE)),
                "stages": [
                    {
                        "name": stage.name,
                        "inputs": list(stage.inputs),
                        "parameters": [
                            {"name": p.name, "kind": p.kind, "accepts": p.describe()}
                            for p in stage.schema.values()
                        ],
                    }
                    for stage in pipeline.stages
                ],
            }
        )


class RunsHandler(_Base):
    """``GET`` the run history, ``POST`` to start a run."""

    @web.authenticated
    @_answers_errors
    async def get(self) -> None:
        """Reply with the newest runs' summaries."""
        pipeline = self.pipeline()
        self.launcher.reap()
        manifests = list_runs(pipeline.runs_dir)[:HISTORY_LENGTH]
        self.reply({"runs": [summarize(m) for m in manifests]})

    @web.authenticated
    @_answers_errors
    async def post(self) -> None:
        """Check the request against the pipeline, start ``nbtools run`` and reply 202."""
        pipeline = self.pipeline()
        try:
            request = json.loads(self.request.body or b"{}")
        except json.JSONDecodeError as exc:
            raise web.HTTPError(400, f"The request body must be JSON: {exc}.") from exc
        if not isinstance(request, dict):
            raise web.HTTPError(400, f"The request body must be a JSON object. Got {request!r}.")
        args = run_arguments(pipeline, request)
        try:
            run_id = await self.launcher.start(pipeline, args)
        except RunStartError as exc:
            raise web.HTTPError(500, str(exc)) from exc
        self.reply({"run_id": run_id}, status=202)


class RunHandler(_Base):
    """``GET /nbtools/api/runs/<id>``: one run's summary and manifest."""

    @web.authenticated
    @_answers_errors
    async def get(self, run_id: str) -> None:
        """Reply with the run's summary and whole manifest."""
        manifest = self.run_manifest(self.pipeline(), run_id)
        self.reply({**summarize(manifest), "manifest": manifest})


class CancelHandler(_Base):
    """``POST /nbtools/api/runs/<id>/cancel``: interrupt a running run."""

    @web.authenticated
    @_answers_errors
    async def post(self, run_id: str) -> None:
        """Interrupt the run's process; reply 202 (the record says ``cancelled`` once closed)."""
        manifest = self.run_manifest(self.pipeline(), run_id)
        self.launcher.cancel(manifest)
        self.reply({"run_id": manifest["run_id"], "cancelling": True}, status=202)


class RecordHandler(_Base):
    """``GET /nbtools/api/runs/<id>/record?stage=S&kind=notebook|html``: a file to open."""

    @web.authenticated
    @_answers_errors
    async def get(self, run_id: str) -> None:
        """Reply with the path (from the Jupyter root) of a stage's executed notebook or HTML."""
        pipeline = self.pipeline()
        manifest = self.run_manifest(pipeline, run_id)
        stage = self.get_query_argument("stage")
        kind = self.get_query_argument("kind", "notebook")
        if kind not in _RECORD_KINDS:
            raise web.HTTPError(
                400, f"'kind' must be one of {', '.join(_RECORD_KINDS)}. Got {kind!r} instead."
            )
        record = manifest["stages"].get(stage)
        if record is None:
            raise web.HTTPError(
                404,
                f"Run {manifest['run_id']} has no stage '{stage}'. "
                f"Stages: {', '.join(manifest['stages'])}.",
            )
        path = record.get(_RECORD_KINDS[kind])
        if not path:
            raise web.HTTPError(
                404,
                f"Stage '{stage}' of run {manifest['run_id']} has no {kind} record "
                f"(status {record['status']}).",
            )
        found = self.inside(pipeline.project_dir, pipeline.project_dir / path, "the project")
        self.reply({"path": self.relative(found), "reused_from": record.get("reused_from")})


class MlflowHandler(_Base):
    """``GET /nbtools/api/runs/<id>/mlflow``: the run's page in the configured MLflow UI."""

    @web.authenticated
    @_answers_errors
    async def get(self, run_id: str) -> None:
        """Reply with the URL of the run's parent MLflow run in the UI."""
        base = os.environ.get(MLFLOW_UI_VARIABLE)
        if not base:
            raise web.HTTPError(
                404,
                f"No MLflow UI is configured. Set {MLFLOW_UI_VARIABLE} to its URL (for example "
                "http://127.0.0.1:5000 for `mlflow ui`) before starting JupyterLab.",
            )
        pipeline = self.pipeline()
        manifest = self.run_manifest(pipeline, run_id)
        parent = manifest["mlflow"].get("parent_run_id")
        if not parent:
            raise web.HTTPError(
                404, f"Run {manifest['run_id']} logged nothing to MLflow: every stage was reused."
            )
        experiment = await asyncio.to_thread(_experiment_id, pipeline.tracking_uri, parent)
        url = f"{base.rstrip('/')}/#/experiments/{quote(experiment)}/runs/{quote(parent)}"
        self.reply({"url": url})


def _experiment_id(tracking_uri: str, run_id: str) -> str:
    from mlflow.tracking import MlflowClient

    return str(MlflowClient(tracking_uri=tracking_uri).get_run(run_id).info.experiment_id)


class DiffHandler(_Base):
    """``GET /nbtools/api/diff?runs=A,B``: two runs' report, as ``nbtools runs diff`` writes it."""

    @web.authenticated
    @_answers_errors
    async def get(self) -> None:
        """Reply with the runs' self-contained HTML report (:mod:`nbtools.records.run_diff`)."""
        pipeline = self.pipeline()
        ids = [i for i in self.get_query_argument("runs", "").split(",") if i]
        if len(ids) != 2:
            raise web.HTTPError(400, f"'runs' must name two runs, A,B. Got {len(ids)} instead.")
        self.launcher.reap()
        diff = await asyncio.to_thread(diff_runs, pipeline.runs_dir, *ids)
        page = await asyncio.to_thread(report_html, diff)
        # the page has no script and loads nothing: forbid both wherever it is opened
        self.set_header("Content-Security-Policy", _REPORT_POLICY)
        self.finish(page, set_content_type="text/html; charset=UTF-8")


def setup_handlers(web_app: web.Application) -> None:
    """Add the nbtools API handlers to the Jupyter server's Tornado application."""
    web_app.settings["nbtools_launcher"] = RunLauncher()
    base = url_path_join(web_app.settings["base_url"], "nbtools", "api")
    run = r"/runs/(?P<run_id>[\w-]+)"  # run ids (or their prefixes): no dots, no slashes
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "project"), ProjectHandler),
            (url_path_join(base, "runs"), RunsHandler),
            (url_path_join(base, run), RunHandler),
            (url_path_join(base, run, "cancel"), CancelHandler),
            (url_path_join(base, run, "record"), RecordHandler),
            (url_path_join(base, run, "mlflow"), MlflowHandler),
            (url_path_join(base, "diff"), DiffHandler),
        ],
    )
