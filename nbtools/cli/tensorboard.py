"""``nbtools tensorboard``: the training curves of one run, or of all runs, in TensorBoard."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from nbtools.cli._errors import reports_errors
from nbtools.cli._options import project_option
from nbtools.cli._signals import cancel_on_sigterm
from nbtools.pipeline.spec import find_project


@click.command()
@click.argument("run_id", required=False)
@project_option()
@click.option(
    "--port",
    default=6006,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port on 127.0.0.1 to serve on; 0 picks a free one.",
)
@reports_errors
def tensorboard(run_id: str | None, project_dir: Path, port: int) -> None:
    """Show the training curves of run RUN_ID (a unique prefix is enough), or of every run.

    Starts TensorBoard on 127.0.0.1 in the foreground, one TensorBoard run per stage that
    wrote curves, named RUN_ID/STAGE; Ctrl-C stops it. Only the train stage's torch_mlp
    family writes curves.
    """
    # Imported here: the ML library takes a second to import, which no other command should pay.
    from nbtools.ops.tensorboard import (
        HOST,
        find_curves,
        free_port,
        link_curves,
        run_in_foreground,
        tensorboard_command,
    )

    curves = find_curves(find_project(project_dir) / "runs", run_id)
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="nbtools-tensorboard-") as logdir:
        command = tensorboard_command(link_curves(curves, Path(logdir)), port)
        click.echo(f"Training curves of {len(curves)} stage(s):")
        for stage in curves:
            reused = f" (reused from run {stage.reused_from})" if stage.reused_from else ""
            click.echo(f"  {stage.name}{reused}: {stage.folder}")
        click.echo(f"TensorBoard: http://{HOST}:{port}/ (Ctrl-C stops it)")
        cancel_on_sigterm()
        status = run_in_foreground(command)
    if status:
        raise SystemExit(status)
