"""``nbtools check`` on a folder: run records are outputs by nature, and are not checked."""

from __future__ import annotations

from pathlib import Path

import nbformat

from nbtools.pipeline.checks import check_paths

FIXTURES = Path(__file__).parent.parent / "notebooks"


def _executed(path: Path) -> Path:
    nb = nbformat.read(FIXTURES / "produce.ipynb", as_version=4)
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text="hi")]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_a_project_s_run_records_are_left_alone_but_other_notebooks_are_checked(
    tmp_path: Path,
) -> None:
    project = tmp_path / "work" / "churn"  # a project inside the checked folder, after a run
    project.mkdir(parents=True)
    (project / "pipeline.yaml").write_text("name: p\nstages: {}\n", encoding="utf-8")
    _executed(project / "runs" / "20260101-000000-abcdef" / "01_produce" / "output.ipynb")
    _executed(project / "mlartifacts" / "0" / "artifacts" / "notebook" / "output.ipynb")
    stray = _executed(tmp_path / "runs" / "notes.ipynb")  # no project here: a notebook like any
    mistake = _executed(project / "analysis.ipynb")

    problems = check_paths([tmp_path])

    assert {p.split(":")[0] for p in problems} == {str(stray), str(mistake)}
