"""``nbtools serve``: serve the project's champion model as a REST API."""

from __future__ import annotations

from pathlib import Path

import click

from nbtools.cli._errors import reports_errors
from nbtools.cli._options import project_option
from nbtools.errors import ProjectNotFoundError
from nbtools.pipeline.spec import load_pipeline
from nbtools.serving.config import ENGINES, TOKEN_ENV, ServeConfig
from nbtools.serving.launcher import serve as run_service


@click.command()
@click.option(
    "--model",
    default=None,
    help="models:/NAME@ALIAS or models:/NAME/VERSION "
    "[default: models:/<project's model_name>@champion].",
)
@project_option("Project folder: gives the registry, the model name and the prediction log folder.")
@click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    default=None,
    help="MLflow tracking/registry URI [default: the project's; env MLFLOW_TRACKING_URI].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to bind.")
@click.option("--workers", default=1, show_default=True, type=int, help="Worker processes.")
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    default=None,
    help=f"Bearer token required on /invocations and /metadata [env {TOKEN_ENV}].",
)
@click.option(
    "--max-body-bytes", default=10_000_000, show_default=True, type=int, help="Largest request."
)
@click.option(
    "--poll-seconds",
    default=5.0,
    show_default=True,
    type=float,
    help="How often the alias is looked up in the registry.",
)
@click.option(
    "--predictions",
    "predictions_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Prediction log folder [default: <project>/predictions, or ./predictions].",
)
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    type=float,
    help="Seconds a prediction may wait and run; later the request is answered 504.",
)
@click.option(
    "--max-queue",
    default=256,
    show_default=True,
    type=int,
    help="Most requests waiting for a prediction; more are answered 503 with Retry-After.",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="auto",
    show_default=True,
    help="What predicts: 'auto' serves the model compiled when it predicts as the "
    "scikit-learn pipeline on the model's stored rows, else the pipeline itself.",
)
@click.option("--no-prediction-log", is_flag=True, help="Do not log predictions.")
@click.option("--access-log", is_flag=True, help="Log every request (slower).")
@click.option("--no-tcp-nodelay", is_flag=True, hidden=True, help="Benchmarks only.")
@reports_errors
def serve(
    model: str | None,
    project_dir: Path,
    tracking_uri: str | None,
    host: str,
    port: int,
    workers: int,
    token: str | None,
    max_body_bytes: int,
    poll_seconds: float,
    predictions_dir: Path | None,
    timeout: float,
    max_queue: int,
    engine: str,
    no_prediction_log: bool,
    access_log: bool,
    no_tcp_nodelay: bool,
) -> None:
    """Serve a registered model over HTTP with MLflow's scoring protocol, following its alias."""
    try:
        pipeline = load_pipeline(project_dir)
    except ProjectNotFoundError:
        if model is None or tracking_uri is None:
            raise
        pipeline = None
    if pipeline is not None:
        model = model or f"models:/{pipeline.model_name}@champion"
        tracking_uri = tracking_uri or pipeline.tracking_uri
        predictions_dir = predictions_dir or pipeline.project_dir / "predictions"
    assert model is not None and tracking_uri is not None
    config = ServeConfig(
        model=model,
        tracking_uri=tracking_uri,
        host=host,
        port=port,
        workers=workers,
        token=token,
        max_body_bytes=max_body_bytes,
        poll_seconds=poll_seconds,
        predictions_dir=None
        if no_prediction_log
        else str((predictions_dir or Path("predictions")).resolve()),
        access_log=access_log,
        timeout=timeout,
        max_queue=max_queue,
        engine=engine,
    ).validate()
    from nbtools.serving.threads import configure_process

    configure_process()  # before anything loads OpenMP (MLflow, scikit-learn)
    # Find the version before starting workers, so a wrong name or alias is one clear error.
    # (Imported here: MLflow takes a second to import, which no other command should pay.)
    from nbtools.serving.model import ModelHolder, ModelRef

    holder = ModelHolder(ModelRef.parse(model), tracking_uri)
    version = holder.resolve()
    click.echo(
        f"Serving {model} (version {version}) on http://{host}:{port} with {workers} worker(s)."
    )
    run_service(config, nodelay=not no_tcp_nodelay)
