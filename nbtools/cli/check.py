"""``nbtools check``: check stage notebooks against the stage contract before committing them."""

from __future__ import annotations

from pathlib import Path

import click

from nbtools.cli._errors import reports_errors
from nbtools.pipeline.project import templates_dir


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--write-parameters",
    is_flag=True,
    help="First rewrite the built-in templates' parameters cells from their Python declarations.",
)
@reports_errors
def check(paths: tuple[Path, ...], write_parameters: bool) -> None:
    """Check the notebooks in PATHS (default: the current folder).

    Stage notebooks need one typed parameters cell and a stage context; no notebook may be
    stored with outputs. The built-in templates whose parameters are declared in Python must
    hold the parameters cell that the declaration renders.
    """
    # Imported here: nbformat's schema validator costs every other command about a second.
    from nbtools.pipeline.checks import check_paths

    targets = list(paths) or [Path(".")]
    declared = {}
    if write_parameters or any(_covers(p, templates_dir()) for p in targets):
        # Imported here: the declarations import the ML library, which only this check needs.
        from nbtools.cli._declared import declared_cells, write_declared_cells

        if write_parameters:
            for written in write_declared_cells():
                click.echo(f"Rewrote the parameters cell of {written}")
        declared = declared_cells()
    problems = check_paths(targets, declared)
    for problem in problems:
        click.echo(problem, err=True)
    if any("differs from its declaration" in p for p in problems):
        click.echo("Run `nbtools check --write-parameters` to regenerate those cells.", err=True)
    if problems:
        raise SystemExit(1)
    click.echo("All notebooks pass.")


def _covers(path: Path, folder: Path) -> bool:
    """Whether checking ``path`` checks a notebook in ``folder``."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents or path in folder.parents
