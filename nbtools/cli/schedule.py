"""``nbtools schedule``: run the pipeline or the monitor check on a schedule, without an
orchestrator: an entry in your crontab, or a Kubernetes CronJob."""

from __future__ import annotations

import getpass
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nbtools.cli._errors import reports_errors
from nbtools.cli._options import param_option, project_option
from nbtools.ops.exports.commands import parameters_as_typed
from nbtools.pipeline.spec import Pipeline, find_project, load_pipeline

if TYPE_CHECKING:
    from nbtools.ops.scheduling.schedule import Schedule

_COMMAND_HELP = (
    "run: the whole pipeline, reusing unchanged stages. monitor: `nbtools monitor --current "
    "SOURCE` (with --retrain, a retraining run on a breach)."
)


def _schedule_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options saying what a schedule runs, shared by ``cron`` and ``kubernetes``."""
    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        click.argument("expression", metavar="CRON_EXPRESSION"),
        click.option(
            "--command",
            type=click.Choice(["run", "monitor"]),
            default="run",
            show_default=True,
            help=_COMMAND_HELP,
        ),
        click.option("--profile", default=None, help="A named parameter set of the run."),
        param_option("A parameter of the run, NAME or STAGE.NAME (repeatable)."),
        click.option(
            "--current",
            default=None,
            help="monitor: the new data each check reads (a file, or the prediction log "
            "folder), relative to the project.",
        ),
        click.option(
            "--retrain", is_flag=True, help="monitor: start a retraining run on a breach."
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _schedule(
    pipeline: Pipeline,
    expression: str,
    command: str,
    profile: str | None,
    params: tuple[str, ...],
    current: str | None,
    retrain: bool,
) -> Schedule:
    from nbtools.ops.scheduling.schedule import Schedule

    values = parameters_as_typed(params)  # Schedule.check checks them against the pipeline
    return Schedule(expression, command, profile, values, current, retrain).check(pipeline)


@click.group()
def schedule() -> None:
    """Run the pipeline or the monitor check on a schedule: a crontab entry or a Kubernetes
    CronJob.

    CRON_EXPRESSION has five fields, minute hour day-of-month month day-of-week ('0 3 * * *'
    is 03:00 every day, '*/15 * * * 1-5' every quarter hour on weekdays), or is a shorthand
    such as @daily. Quote it.
    """


@schedule.command()
@_schedule_options
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A file of NAME=value lines that the entry reads before each run: the values of "
    "the pipeline's secrets and webhook variable. Keep it outside the project, readable only "
    "by you (chmod 600).",
)
@click.option("--print", "show", is_flag=True, help="Show the entry; do not install it.")
@project_option()
@reports_errors
def cron(
    expression: str,
    command: str,
    profile: str | None,
    params: tuple[str, ...],
    current: str | None,
    retrain: bool,
    env_file: Path | None,
    show: bool,
    project_dir: Path,
) -> None:
    """Install a crontab entry running the command in the project on CRON_EXPRESSION.

    The entry goes into your crontab (through the `crontab` command), in place of the one
    nbtools installed before for the same project and command; every other line stays. It
    runs the nbtools of this environment by absolute path, in the project folder, and appends
    its output to .nbtools/schedule/COMMAND.log there.

    Secrets are never written into the crontab. The variables that pipeline.yaml's secrets
    and notify.webhook name must be in cron's environment: either keep them in a file only
    you can read and name it with --env-file (the entry reads it at each run), or add
    NAME=value lines above the entry with `crontab -e`. The command lists the variables.
    """
    from nbtools.ops.exports.commands import default_nbtools
    from nbtools.ops.scheduling import crontab
    from nbtools.ops.scheduling.schedule import required_variables

    project = find_project(project_dir)
    pipeline = load_pipeline(project)
    planned = _schedule(pipeline, expression, command, profile, params, current, retrain)
    env = env_file.resolve() if env_file is not None else None
    needed = required_variables(pipeline)
    found = crontab.env_file_variables(env) if env is not None else set()
    line = crontab.entry_line(planned, project, nbtools=default_nbtools(), env_file=env)
    if show:
        click.echo(line)
    else:
        replaced = crontab.install(line)
        verb = "Replaced the entry" if replaced else "Installed an entry"
        click.echo(f"{verb} in the crontab of {getpass.getuser()}:\n  {line}")
        click.echo(f"Log: {crontab.log_file(project, command)}")
        if crontab.cron_daemon_running() is False:
            click.echo(
                "Warning: no cron daemon runs on this machine, so the entry will not run "
                "until one does (on Debian or Ubuntu: 'service cron start' as root).",
                err=True,
            )
    if env is not None:
        _check_env_file(env, needed, found)
    elif needed:
        click.echo(
            f"The command needs {', '.join(needed)} in its environment, which the entry does "
            "not hold. Add NAME=value lines for them above the entry (crontab -e), or keep "
            "them in a file only you can read and schedule again with --env-file FILE."
        )


def _check_env_file(env: Path, needed: list[str], found: set[str]) -> None:
    present = [name for name in needed if name in found]
    missing = [name for name in needed if name not in found]
    if present:
        click.echo(f"Read from {env} at each run: {', '.join(present)}.")
    if missing:
        click.echo(
            f"Warning: {env} does not set {', '.join(missing)}, which the pipeline needs; "
            "add a NAME=value line for each.",
            err=True,
        )
    if env.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        click.echo(
            f"Warning: others can read {env}; make it yours alone with 'chmod 600 {env}'.",
            err=True,
        )


@schedule.command(name="list")
@reports_errors
def list_entries() -> None:
    """List nbtools' entries in your crontab: schedule, command, project."""
    from nbtools.ops.scheduling import crontab

    entries = crontab.installed()
    if not entries:
        click.echo("No nbtools entries in the crontab.")
        return
    width = max(len(e.expression) for e in entries)
    for entry in entries:
        click.echo(f"{entry.expression:<{width}}  {entry.command:<7}  {entry.project}")


@schedule.command()
@click.option(
    "--command",
    type=click.Choice(["run", "monitor"]),
    default=None,
    help="Remove only this command's entry [default: both].",
)
@project_option()
@reports_errors
def remove(command: str | None, project_dir: Path) -> None:
    """Remove the project's crontab entries; every other line stays."""
    from nbtools.ops.scheduling import crontab

    project = find_project(project_dir)
    removed = crontab.remove(project, (command,) if command else ("run", "monitor"))
    for entry in removed:
        click.echo(f"Removed: {entry.line}")
    if not removed:
        click.echo(f"No nbtools entry for {project} in the crontab.")


@schedule.command()
@_schedule_options
@click.option("--image", required=True, help="Container image with nbtools and the stack.")
@click.option(
    "--volume",
    metavar="PVC",
    default=None,
    help="The PersistentVolumeClaim holding the project folder "
    "[default: nbtools-<pipeline name>-project].",
)
@click.option(
    "--project-path",
    default="/project",
    show_default=True,
    help="Where the claim is mounted in the container.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=None,
    help="File to write, or - for standard output "
    "[default: deployment/k8s/cronjob-COMMAND.yaml in the project].",
)
@project_option("Project folder: its pipeline.yaml (secrets, stage resources).")
@reports_errors
def kubernetes(
    expression: str,
    command: str,
    profile: str | None,
    params: tuple[str, ...],
    current: str | None,
    retrain: bool,
    image: str,
    volume: str | None,
    project_path: str,
    output: Path | None,
    project_dir: Path,
) -> None:
    """Write a Kubernetes CronJob running the command on CRON_EXPRESSION.

    The project folder lives on a PersistentVolumeClaim (its runs, cache and MLflow store
    carry over from one run to the next); runs never overlap (concurrencyPolicy: Forbid).
    Each secret of pipeline.yaml comes from the Kubernetes secret it names (secrets: NAME:
    {kubernetes: SECRET}); a secret without one is an error. The pod requests, and is
    limited to, the largest resources any stage declares. Apply with `kubectl apply -f FILE`.
    """
    from nbtools.ops.scheduling import cronjob

    project = find_project(project_dir)
    pipeline = load_pipeline(project)
    planned = _schedule(pipeline, expression, command, profile, params, current, retrain)
    claim = volume or cronjob.job_name(pipeline.name, "project")
    manifest = cronjob.cronjob_manifest(
        pipeline, planned, image=image, volume=claim, project_path=project_path
    )
    text = cronjob.render(manifest)
    if str(output) == "-":
        click.echo(text, nl=False)
    else:
        path = output or project / "deployment" / "k8s" / f"cronjob-{command}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        click.echo(f"Wrote {path}: CronJob {manifest['metadata']['name']} on {claim}.")
    warning = cronjob.webhook_warning(pipeline)
    if warning:
        click.echo(f"Warning: {warning}", err=True)
