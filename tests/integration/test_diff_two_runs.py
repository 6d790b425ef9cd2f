"""Two real runs of a small project that differ in one parameter of its last stage, compared.

``produce`` writes values; ``plots`` draws them twice (a histogram of the values, a plot of
the values times ``factor``) and prints what every run leaves on its outputs (the time, its
output folder, its MLflow run). The second run sets ``plots.factor``: ``produce`` is reused,
``plots`` runs again, and only what depends on ``factor`` may show as changed.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.display import HTML

from nbtools import run_pipeline
from nbtools.cli import cli
from nbtools.records.run_diff import RunDiff, diff_runs, report_html

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "notebooks"
PIPELINE = """\
name: diff-fixture
tracking_uri: sqlite:///mlflow.db
stages:
  produce: {notebook: produce.ipynb, parameters: {rows: 6}}
  plots: {notebook: plots.ipynb, inputs: [produce]}
"""
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> tuple[Path, str, str]:
    """The project and its two runs: (project, first run id, second run id)."""
    root = tmp_path_factory.mktemp("diff") / "project"
    root.mkdir()
    for name in ("produce", "plots"):
        shutil.copy(FIXTURES / f"{name}.ipynb", root / f"{name}.ipynb")
    shutil.copy(migrated_db, root / "mlflow.db")
    (root / "pipeline.yaml").write_text(PIPELINE, encoding="utf-8")
    first = run_pipeline(root, jobs=1)
    second = run_pipeline(root, jobs=1, overrides={"plots.factor": 3.0})
    assert first.succeeded and second.succeeded, first.error or second.error
    assert second.reused == ["produce"] and second.executed == ["plots"]
    return root, first.run_id, second.run_id


@pytest.fixture(scope="module")
def diff(runs: tuple[Path, str, str]) -> RunDiff:
    root, first, second = runs
    return diff_runs(root / "runs", first, second)


def test_only_the_parameter_and_what_depends_on_it_differ(diff: RunDiff) -> None:
    assert [r["name"] for r in diff.parameters if r["differs"]] == ["plots.factor"]
    values = {r["name"]: r for r in diff.values}
    assert values["plots.total"]["values"] == [30.0, 45.0]  # (0+...+5) x 2, then x 3
    assert [name for name, row in values.items() if row["differs"]] == ["plots.total"]

    produce, plots = diff.stage("produce"), diff.stage("plots")
    assert produce.same_execution and not produce.changed and produce.cells is None
    assert plots.status == ("succeeded", "succeeded")
    assert plots.why[1] == "parameters changed"
    assert plots.key_changes == ["parameters"]
    assert plots.outputs_changed == ["recorded.json", "scaled.json"]


def test_notebooks_are_compared_cell_by_cell_without_what_every_run_changes(
    diff: RunDiff,
) -> None:
    plots = diff.stage("plots")
    assert plots.cells is not None
    changed = {cell.positions: cell for cell in plots.changed_cells}
    # the injected parameters (new cell id each run) and the scaled plot's cell, nothing else
    assert sorted(changed) == [(2, 2), (6, 6)]
    injected = changed[(2, 2)]
    assert [
        line for line in injected.source_diff if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ] == [
        "-factor = 2.0",
        "+factor = 3.0",
    ]
    # time, output folder and MLflow run of each run: masked, so the cell reads unchanged
    volatile = next(c for c in plots.cells if "datetime.now" in c.source)
    assert volatile.status == "unchanged"
    assert "<time of the run>" in volatile.outputs[0].text[0]
    assert "<stage folder>" in volatile.outputs[0].text[1]
    assert "<mlflow run>" in volatile.outputs[0].text[1]
    # the last expression's execution count differs; its value does not
    assert plots.cells[-1].source == "len(values)" and plots.cells[-1].status == "unchanged"

    histogram = next(c for c in plots.cells if "axes.hist" in c.source)
    assert histogram.status == "unchanged"
    assert [o.kind for o in histogram.outputs] == ["image"]

    scaled = changed[(6, 6)]
    kinds = {o.kind: o for o in scaled.outputs}
    assert kinds["image"].status == "changed"
    first_png, second_png = kinds["image"].images
    assert first_png and second_png and first_png != second_png
    assert base64.b64decode(first_png).startswith(PNG)
    assert base64.b64decode(second_png).startswith(PNG)
    text = kinds["text"].text
    assert "-1: 2.0" in text and "+1: 3.0" in text and "-0: 0.0" not in text


def test_the_report_folds_unchanged_cells_and_shows_both_images(diff: RunDiff) -> None:
    page = report_html(diff)
    plots = diff.stage("plots")
    assert plots.cells is not None
    first_png, second_png = next(
        o.images for c in plots.changed_cells for o in c.outputs if o.kind == "image"
    )

    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert f"data:image/png;base64,{first_png}" in page
    assert f"data:image/png;base64,{second_png}" in page
    assert page.count('class="nbd-cell nbd-unchanged"') == len(plots.cells) - 2
    assert page.count('class="nbd-cell nbd-changed" open') == 2
    assert "Stage plots: 2 of 8 cells changed" in page
    assert "Stage produce" not in page  # one execution: nothing to compare


def test_cli_writes_the_report_and_prints_the_summary(runs: tuple[Path, str, str]) -> None:
    root, first, second = runs
    result = CliRunner().invoke(cli, ["runs", "diff", first[:15], second, "--project", str(root)])

    assert result.exit_code == 0, result.output
    report = root / "diffs" / f"{first}_{second}.html"
    assert f"Report: {report}" in result.output
    assert "plots.factor: 2 -> 3" in result.output
    assert f"produce  same execution in both (run {first}'s execution)" in result.output
    assert "plots    re-ran in" in result.output and "2 of 8 cells changed" in result.output
    assert report.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")

    elsewhere = root / "review" / "diff.html"
    again = CliRunner().invoke(
        cli, ["runs", "diff", first, second, "--project", str(root), "--output", str(elsewhere)]
    )
    assert again.exit_code == 0 and elsewhere.is_file()


def test_cli_refuses_an_unknown_run_with_exit_status_2(runs: tuple[Path, str, str]) -> None:
    root, first, _ = runs
    result = CliRunner().invoke(cli, ["runs", "diff", first, "20990101", "--project", str(root)])

    assert result.exit_code == 2
    assert "No run in" in result.output and "match the id '20990101'" in result.output
    assert first in result.output  # the latest runs are listed
    assert not (root / "diffs" / f"{first}_20990101.html").exists()


def test_magic_shows_the_report_and_prints_the_summary(
    runs: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, first, second = runs
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "nbtools")
        shown = shell.run_line_magic("nbtools", f"diff {first} {second} --project {root}")
        printed = capsys.readouterr().out
        with pytest.raises(UsageError, match="match the id 'nope'"):
            shell.run_line_magic("nbtools", f"diff nope {second} --project {root}")
    finally:
        InteractiveShell.clear_instance()

    assert isinstance(shown, HTML)
    assert shown.data.startswith('<div class="nbd">') and "<!DOCTYPE" not in shown.data
    assert "plots.factor: 2 -> 3" in printed
