"""Cron expressions, crontab lines and CronJob names, without a crontab or a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbtools.errors import InvalidParameterError
from nbtools.ops.scheduling.cronjob import MAX_NAME, job_name
from nbtools.ops.scheduling.crontab import CronEntry, entry_line
from nbtools.ops.scheduling.schedule import Schedule, check_cron_expression


@pytest.mark.parametrize(
    ("expression", "normalised"),
    [
        ("0 3 * * *", "0 3 * * *"),
        ("  */15  8-18 * * mon-fri ", "*/15 8-18 * * mon-fri"),
        ("0,30 0-23/2 1,15 JAN-jun 0-7", "0,30 0-23/2 1,15 JAN-jun 0-7"),
        ("@Daily", "@daily"),
    ],
)
def test_valid_cron_expressions_are_kept(expression: str, normalised: str) -> None:
    assert check_cron_expression(expression) == normalised


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 3 * *", "five fields"),
        ("0 3 * * * *", "Got 6"),
        ("60 * * * *", "minute field"),
        ("* 24 * * *", "hour field"),
        ("* * 0 * *", "day of month field"),
        ("* * * 13 *", "month field"),
        ("* * * * 8", "day of week field"),
        ("* * * * mon-sun", "runs from low to high"),
        ("*/0 * * * *", "a step is at least 1"),
        ("* * * foo *", "Got 'foo'"),
        ("1-2-3 * * * *", "Got '1-2-3'"),
        ("@reboot", "unknown shorthand"),
    ],
)
def test_bad_cron_expressions_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        check_cron_expression(expression)


def test_job_names_follow_kubernetes_rules() -> None:
    name = job_name("Churn Model (EU)_" + "x" * 80, "monitor")
    assert name.startswith("nbtools-churn-model-eu-x") and name.endswith("-monitor")
    assert len(name) <= MAX_NAME


def test_a_percent_sign_is_escaped_for_cron_and_the_entry_reads_back(tmp_path: Path) -> None:
    project = tmp_path / "at 100% share"
    line = entry_line(Schedule("@daily"), project, nbtools="/venv/bin/nbtools")
    assert "%" not in line.replace(r"\%", "")  # cron would cut the command at a bare %
    entry = CronEntry.parse(line)
    assert entry is not None
    assert (entry.project, entry.command, entry.expression) == (str(project), "run", "@daily")
    assert CronEntry.parse("# " + line) is None  # an entry commented out is not one


def test_a_line_break_cannot_go_into_an_entry(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="one line"):
        entry_line(Schedule("@daily", params={"label": "x\ny"}), tmp_path, nbtools="nbtools")
