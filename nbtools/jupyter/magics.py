"""The ``%nbtools`` line magic: drive the pipeline from any notebook.

``%load_ext nbtools`` registers it. The magic speaks the command line's language, so what works
in a terminal works in a cell::

    %nbtools run --profile smoke          # the pipeline, with progress lines
    %nbtools run --only train -p C=0.5    # one stage (--from STAGE: it and what follows)
    %nbtools runs list                    # the run history
    %nbtools runs show 20261126-0930      # one run, stage by stage
    %nbtools form train                   # the parameter form of a stage (a widget)
    %nbtools compare RUN_A RUN_B          # two runs' parameters and values (a DataFrame)
    %nbtools diff RUN_A RUN_B             # two runs' report: stages, notebooks cell by cell

``form``, ``compare`` and ``diff`` return objects the notebook displays (``diff`` also prints
its summary); everything else runs the ``nbtools`` command in the kernel and prints its output.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from nbtools.errors import NbtoolsError


@magics_class
class NbtoolsMagics(Magics):
    """The ``%nbtools`` magic (see the module docstring for its commands)."""

    @line_magic
    def nbtools(self, line: str) -> Any:
        """Run an ``nbtools`` command (``run``, ``runs list``, ``runs show ID``, ...) or
        show a stage's parameter form (``form STAGE``), two runs side by side (``compare A B``)
        or their report (``diff A B [--output FILE]``). Each takes ``--project DIR`` (default:
        the notebook's folder)."""
        args = shlex.split(line)
        if not args:
            raise UsageError(
                "Usage: %nbtools COMMAND [ARGS]; commands: run, runs list, runs show RUN_ID, "
                "form STAGE, compare RUN_A RUN_B, diff RUN_A RUN_B, and every other `nbtools` "
                "command."
            )
        try:
            if args[0] == "form":
                return _form(args[1:])
            if args[0] == "compare":
                return _compare(args[1:])
            if args[0] == "diff":
                return _diff(args[1:])
        except NbtoolsError as exc:
            raise UsageError(str(exc)) from exc
        return _command(args)


def _parser(command: str, *arguments: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"%nbtools {command}", exit_on_error=False)
    for name in arguments:
        parser.add_argument(name)
    parser.add_argument("--project", default=".", help="Project folder (holding pipeline.yaml).")
    return parser


def _parse(parser: argparse.ArgumentParser, args: list[str]) -> argparse.Namespace:
    try:
        return parser.parse_args(args)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise UsageError(f"{exc}. Usage: {parser.format_usage().strip()}") from None


def _form(args: list[str]) -> Any:
    from nbtools.panels.form import parameter_form

    options = _parse(_parser("form", "stage"), args)
    return parameter_form(options.stage, options.project)


def _compare(args: list[str]) -> Any:
    import pandas as pd

    from nbtools.pipeline.spec import find_project
    from nbtools.records.history import compare_runs
    from nbtools.records.runs import load_run

    options = _parse(_parser("compare", "first", "second"), args)
    runs_dir = find_project(options.project) / "runs"
    first, second = load_run(runs_dir, options.first), load_run(runs_dir, options.second)
    table = compare_runs(first, second)
    rows = [
        {
            "kind": kind,
            "name": row["name"],
            **dict(zip(table["runs"], row["values"], strict=True)),
            "differs": row["differs"],
        }
        for kind in ("parameters", "values")
        for row in table[kind]
    ]
    columns = ["kind", "name", *table["runs"], "differs"]
    return pd.DataFrame(rows, columns=columns).set_index(["kind", "name"])


def _diff(args: list[str]) -> Any:
    """Print the summary of two runs' comparison and return its report for the notebook."""
    from pathlib import Path

    from IPython.display import HTML

    from nbtools.pipeline.spec import find_project
    from nbtools.records.run_diff import diff_runs, report_html, summary_text, write_report

    parser = _parser("diff", "first", "second")
    parser.add_argument("--output", default=None, help="Also write the HTML report here.")
    options = _parse(parser, args)
    diff = diff_runs(find_project(options.project) / "runs", options.first, options.second)
    written = write_report(diff, Path(options.output)) if options.output else None
    print(summary_text(diff, report=written))
    return HTML(report_html(diff, standalone=False))


def _command(args: list[str]) -> None:
    """Run the ``nbtools`` command line in this process; a failure fails the cell."""
    import click

    from nbtools.cli import cli

    try:
        cli.main(args, prog_name="nbtools", standalone_mode=False)
    except click.ClickException as exc:
        raise UsageError(exc.format_message()) from None
    except SystemExit as exc:
        if exc.code not in (0, None):
            reason = exc.__cause__ or f"exit status {exc.code}"
            raise UsageError(f"`nbtools {shlex.join(args)}` failed: {reason}") from None


def register(ipython: Any) -> None:
    """Register the ``%nbtools`` magic with an IPython shell."""
    ipython.register_magics(NbtoolsMagics)
