"""``nbtools check``: check stage notebooks against the stage contract before committing them."""

from __future__ import annotations

from pathlib import Path

import click

from nbtools.cli._errors import reports_errors


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@reports_errors
def check(paths: tuple[Path, ...]) -> None:
    """Check the notebooks in PATHS (default: the current folder).

    Stage notebooks need one typed parameters cell and a stage context; no notebook may be
    stored with outputs.
    """
    # Imported here: nbformat's schema validator costs every other command about a second.
    from nbtools.pipeline.checks import check_paths

    problems = check_paths(list(paths) or [Path(".")])
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise SystemExit(1)
    click.echo("All notebooks pass.")
