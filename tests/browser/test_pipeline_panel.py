"""The nbtools sidebar in a real JupyterLab: open it, start runs, watch them finish, open a
stage's record and open the diff report of two runs. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
FIXTURES = Path(__file__).resolve().parents[1] / "notebooks"
RUN_SECONDS = 120
PIPELINE = """\
name: lab-browser
tracking_uri: sqlite:///mlflow.db
stages:
  produce: {notebook: produce.ipynb}
  consume: {notebook: consume.ipynb, inputs: [produce]}
"""


@pytest.fixture(scope="module")
def pipe(lab_project: Path, migrated_db: Path) -> Path:
    """A two-stage project in the folder ``pipe`` of the JupyterLab root."""
    root = lab_project / "pipe"
    root.mkdir()
    for name in ("produce", "consume"):
        shutil.copy(FIXTURES / f"{name}.ipynb", root / f"{name}.ipynb")
    shutil.copy(migrated_db, root / "mlflow.db")
    (root / "pipeline.yaml").write_text(PIPELINE, encoding="utf-8")
    return root


@pytest.fixture
def sidebar(browser, lab_url: str, pipe: Path) -> Iterator:
    """JupyterLab opened on the project's folder, with the nbtools sidebar shown."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(RUN_SECONDS * 1000)
    page.goto(f"{lab_url}/lab/tree/{pipe.name}")
    try:
        page.locator('.lm-TabBar-tab[data-id="nbtools-pipeline"]').click()
        page.locator("#nbtools-pipeline h2", has_text="Pipeline lab-browser").wait_for()
        yield page
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "pipeline_panel_last.png"))
        context.close()


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def _finished_runs(page, count: int) -> list[str]:
    """Wait until ``count`` runs are listed and none is running; return their statuses."""
    rows = page.locator("#nbtools-pipeline tr.nbtools-run")
    rows.nth(count - 1).wait_for()
    page.locator("#nbtools-pipeline tr.nbtools-status-running").first.wait_for(state="detached")
    return [rows.nth(i).locator(".nbtools-run-status").inner_text() for i in range(count)]


def test_run_watch_open_record_and_compare_from_the_panel(sidebar, pipe: Path) -> None:
    page = sidebar
    panel = page.locator("#nbtools-pipeline")
    stages = panel.locator(".nbtools-stages tr[data-stage]")
    assert [stages.nth(i).get_attribute("data-stage") for i in range(2)] == ["produce", "consume"]

    panel.locator(".nbtools-run-all").click()
    assert _finished_runs(page, 1) == ["succeeded"]
    statuses = panel.locator(".nbtools-stages .nbtools-stage-status").all_inner_texts()
    assert statuses == ["succeeded", "succeeded"]
    _shot(page, "pipeline_panel_run_finished")

    panel.locator('tr[data-stage="consume"] .nbtools-open-html').click()
    page.locator(".lm-TabBar-tab", has_text="output.html").wait_for()
    record = page.frame_locator(".jp-HTMLViewer iframe").locator("body")
    record.get_by_text("stage.record('total'", exact=False).first.wait_for()
    _shot(page, "pipeline_panel_html_record")

    panel.locator(".nbtools-parameters").fill("produce.rows=5")
    panel.locator(".nbtools-run-all").click()
    assert _finished_runs(page, 2) == ["succeeded", "succeeded"]
    run_ids = sorted(p.name for p in (pipe / "runs").iterdir())
    assert len(run_ids) == 2

    for run_id in run_ids:
        panel.locator(f'tr[data-run-id="{run_id}"] input[type="checkbox"]').check()
    panel.locator(".nbtools-compare").click()
    first, second = run_ids  # ids sort by start time: the older run is the first side
    page.locator(".lm-TabBar-tab", has_text=f"Diff {first[-6:]} / {second[-6:]}").wait_for()
    report = page.frame_locator(".nbtools-diff iframe")
    report.locator("h1", has_text=f"Run {first} → run {second}").wait_for()
    differs = report.locator("tr.nbd-differs", has_text="produce.rows").first
    assert differs.locator("td").all_inner_texts() == ["produce.rows", "10", "5"]
    # both stages ran again; their notebooks are compared cell by cell, unchanged cells folded
    assert report.locator("h3", has_text="Stage consume:").count() == 1
    folded = report.locator("details.nbd-unchanged").first
    assert folded.get_attribute("open") is None
    changed = report.locator("details.nbd-changed", has_text="injected-parameters").first
    assert changed.get_attribute("open") == ""
    assert "+rows = 5" in changed.inner_text()
    _shot(page, "pipeline_panel_diff")
