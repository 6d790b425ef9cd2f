"""Cron expressions and CronJob names, checked without a crontab or a cluster."""

from __future__ import annotations

import pytest

from nbtools.errors import InvalidParameterError
from nbtools.ops.scheduling.cronjob import MAX_NAME, job_name
from nbtools.ops.scheduling.schedule import check_cron_expression


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
