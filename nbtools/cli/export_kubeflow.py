"""``nbtools export kubeflow``: write the pipeline as a Kubeflow Pipelines v2 pipeline."""

from __future__ import annotations

from pathlib import Path

import click

from nbtools.cli._errors import reports_errors
from nbtools.cli._options import param_option, project_option
from nbtools.ops.exports.kubeflow import KubeflowTarget, export_kubeflow


@click.command("kubeflow")
@click.argument("out_dir", metavar="[DIR]", required=False, type=click.Path(path_type=Path))
@project_option()
@click.option(
    "--image", required=True, help="Container image holding nbtools and the project's packages."
)
@click.option(
    "--volume",
    required=True,
    metavar="PVC",
    help="PersistentVolumeClaim holding the project folder (its runs, cache and MLflow "
    "store), shared by every task's pod.",
)
@click.option(
    "--project-path",
    default="/project",
    show_default=True,
    help="Where the volume is mounted in the pods.",
)
@click.option("--profile", default=None, help="A named parameter set every run uses.")
@param_option("Parameter override every run uses (repeatable).")
@click.option(
    "--kfp-python",
    envvar="NBTOOLS_KFP_PYTHON",
    default=None,
    metavar="PYTHON",
    help="A Python with kfp and kfp-kubernetes that compiles the pipeline [default: this one; "
    "env NBTOOLS_KFP_PYTHON].",
)
@reports_errors
def kubeflow(
    out_dir: Path | None,
    project_dir: Path,
    image: str,
    volume: str,
    project_path: str,
    profile: str | None,
    params: tuple[str, ...],
    kfp_python: str | None,
) -> None:
    """Write the pipeline as a Kubeflow Pipelines v2 program and its compiled IR YAML.

    DIR defaults to export/kubeflow in the project. Upload pipeline.yaml to Kubeflow; each
    stage runs `nbtools task stage` in IMAGE with the project mounted from PVC.
    """
    target = KubeflowTarget(image=image, volume=volume, project_path=project_path)
    written = export_kubeflow(
        project_dir, out_dir, target, profile=profile, params=params, python=kfp_python
    )
    for path in written:
        click.echo(f"Wrote {path}")
