"""``%load_ext nbtools`` in a real IPython shell: the ``%nbtools`` magic drives the pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbtools.panels.form import ParameterForm

pytestmark = pytest.mark.integration


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbtools")
    yield shell
    InteractiveShell.clear_instance()


@pytest.fixture
def project(make_project) -> Path:
    return make_project(
        """
        produce: {notebook: produce.ipynb}
        consume: {notebook: consume.ipynb, inputs: [produce]}
        """
    )


def test_magics_run_list_show_compare_and_form(
    shell: InteractiveShell, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.run_line_magic("nbtools", f"run --project {project} -j 1 -p rows=3")
    shell.run_line_magic("nbtools", f"run --project {project} -j 1 --only produce -p rows=5")
    printed = capsys.readouterr().out
    shell.run_line_magic("nbtools", f"runs list --project {project}")
    listed = capsys.readouterr().out
    first, second = sorted(p.name for p in (project / "runs").iterdir())
    shell.run_line_magic("nbtools", f"runs show {first} --project {project}")
    shown = capsys.readouterr().out

    table = shell.run_line_magic("nbtools", f"compare {first} {second} --project {project}")
    form = shell.run_line_magic("nbtools", f"form produce --project {project}")

    assert "All stages succeeded: 2 executed, 0 reused." in printed
    assert first in listed and second in listed
    assert "total = 6" in shown
    assert table.loc[("parameters", "produce.rows")].tolist() == [3, 5, True]
    assert isinstance(form, ParameterForm)
    assert form.stage == "produce"


def test_magic_errors_fail_the_cell_with_the_message(
    shell: InteractiveShell, project: Path
) -> None:
    with pytest.raises(UsageError, match="has no stage 'nope'"):
        shell.run_line_magic("nbtools", f"run --project {project} --only nope")
    with pytest.raises(UsageError, match="has no stage 'nope'"):
        shell.run_line_magic("nbtools", f"form nope --project {project}")
    with pytest.raises(UsageError, match="Usage: %nbtools COMMAND"):
        shell.run_line_magic("nbtools", "")
