"""``nbtools deploy``: write the Dockerfile and Kubernetes manifests that run the model service."""

from __future__ import annotations

from pathlib import Path

import click

from nbtools.cli._errors import reports_errors
from nbtools.cli._options import project_option
from nbtools.pipeline.spec import load_pipeline


@click.command()
@project_option("Project folder (holding pipeline.yaml): gives the model name and registry.")
@click.option(
    "--output",
    "output_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write into [default: <project>/deployment].",
)
@click.option("--model-name", default=None, help="Registered model [default: the project's].")
@click.option(
    "--tracking-uri",
    default=None,
    help="Registry URI the container reads from [default: the project's; use an mlflow server].",
)
@click.option("--alias", default="champion", show_default=True, help="Alias to serve.")
@click.option("--image", default=None, help="Container image [default: <name>-serve:latest].")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--replicas", default=2, show_default=True, type=int)
@click.option("--min-replicas", default=2, show_default=True, type=int)
@click.option("--max-replicas", default=10, show_default=True, type=int)
@click.option("--cpu-request", default="500m", show_default=True)
@click.option("--cpu-limit", default="2", show_default=True)
@click.option("--memory-request", default="512Mi", show_default=True)
@click.option("--memory-limit", default="2Gi", show_default=True)
@reports_errors
def deploy(
    project_dir: Path,
    output_dir: Path | None,
    model_name: str | None,
    tracking_uri: str | None,
    **options: object,
) -> None:
    """Write a Dockerfile and Kubernetes manifests (Deployment, Service, autoscaler)."""
    # Imported here: it pins the model's requirements from nbtools.ml.modeling, which imports
    # scikit-learn and MLflow, a second that no other command should pay.
    from nbtools.ops.shipping import ShippingParams, write_deployment_files

    pipeline = load_pipeline(project_dir)
    params = ShippingParams(
        model_name=model_name or pipeline.model_name,
        tracking_uri=tracking_uri or pipeline.tracking_uri,
        **options,  # type: ignore[arg-type]
    )
    folder = output_dir or pipeline.project_dir / "deployment"
    for path in write_deployment_files(params, folder):
        click.echo(f"Wrote {path}")
    if params.tracking_uri.startswith("sqlite:"):
        click.echo(
            "Note: the registry is a local SQLite file, which a container cannot reach. "
            "Pass --tracking-uri with an mlflow server's address for a real deployment."
        )
