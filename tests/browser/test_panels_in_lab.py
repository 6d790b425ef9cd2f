"""Each panel renders in JupyterLab, a changed control is saved into pipeline.yaml on disk."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

RENDER_SECONDS = 40
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


@pytest.fixture(scope="module")
def page(browser, lab_url: str) -> Iterator:
    """The panels notebook opened in JupyterLab with every cell run."""
    context = browser.new_context(viewport={"width": 1400, "height": 2200})
    page = context.new_page()
    page.set_default_timeout(RENDER_SECONDS * 1000)
    page.goto(f"{lab_url}/lab/tree/panels.ipynb")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle")).first.wait_for()
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    news = page.get_by_role("button", name="No", exact=True)
    if news.count():
        news.first.click()  # JupyterLab asks once whether to fetch its news
    saves = page.get_by_role("button", name="Save to pipeline")
    try:
        saves.nth(3).wait_for()
    except Exception:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "failed_to_render.png"), full_page=True)
        raise
    yield page
    context.close()


def _wait_for_text(path: Path, text: str) -> str:
    deadline = time.monotonic() + 20
    while True:
        content = path.read_text(encoding="utf-8")
        if text in content or time.monotonic() > deadline:
            return content
        time.sleep(0.1)  # polling interval while waiting on the deadline


def _panel(page, title: str):
    return page.locator(".widget-vbox", has=page.locator("h3", has_text=title)).last


def _shot(page, panel, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def _select(panel, label: str, value: str, *, last: bool = False) -> None:
    dropdowns = panel.locator(".widget-dropdown", has=panel.page.get_by_text(label, exact=True))
    dropdown = dropdowns.last if last else dropdowns.first
    dropdown.locator("select").select_option(value)


def test_the_cleaning_panel_saves_a_changed_choice(page, lab_project: Path) -> None:
    panel = _panel(page, "Cleaning")
    panel.get_by_text("rows x", exact=False).first.wait_for()
    _select(panel, "outliers", "clip", last=True)  # the table-wide choice
    _select(panel, "column", "age")
    _select(panel, "imputation", "mean")  # the column's own choice
    panel.get_by_text("age: imputation mean").wait_for()
    panel.get_by_role("button", name="Save to pipeline").click()
    text = _wait_for_text(lab_project / "pipeline.yaml", "column_choices:")
    assert "outliers: clip" in text
    assert "column_choices: {age: {imputation: mean}}" in text
    assert "# others are invalid" in text
    _shot(page, panel, "cleaning_panel")


def test_the_feature_selection_panel_saves_a_rule(page, lab_project: Path) -> None:
    panel = _panel(page, "Feature selection")
    panel.get_by_role("button", name="Apply rule").click()
    panel.get_by_role("button", name="Save to pipeline").click()
    text = _wait_for_text(lab_project / "pipeline.yaml", "exclude_columns:")
    assert "exclude_columns: [" in text
    _shot(page, panel, "feature_selection_panel")


def test_the_tuning_panel_runs_a_search_and_saves_the_settings(page, lab_project: Path) -> None:
    panel = _panel(page, "Tuning")
    panel.get_by_role("button", name="Run search").click()
    panel.get_by_text("Done: 3 candidate(s).").wait_for()
    _select(panel, "search", "grid")
    panel.get_by_role("button", name="Save to pipeline").click()
    text = _wait_for_text(lab_project / "pipeline.yaml", "search: grid")
    assert "search: grid" in text
    _shot(page, panel, "tuning_panel")


def test_the_generated_form_saves_a_number(page, lab_project: Path) -> None:
    panel = _panel(page, "Parameters of stage 'split'")
    box = panel.locator(".widget-text", has=page.get_by_text("test_size", exact=True))
    field = box.locator("input").first
    field.fill("0.3")
    field.press("Enter")
    panel.get_by_role("button", name="Save to pipeline").click()
    text = _wait_for_text(lab_project / "pipeline.yaml", "test_size: 0.3")
    assert "test_size: 0.3" in text
    _shot(page, panel, "parameter_form")
