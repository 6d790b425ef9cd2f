"""Tests of nbtools.core.monitoring on generated data with known shifts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nbtools.core import monitoring
from nbtools.core.errors import DataSourceError, InvalidParameterError


def frame(
    n: int, *, shift: float = 0.0, weights: tuple[float, ...] = (0.5, 0.3, 0.2), seed: int = 0
) -> pd.DataFrame:
    """Two numeric columns, a 0/1 flag and a categorical column; ``shift`` moves column x."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(10.0 + shift * 2.0, 2.0, n),  # sd 2: a shift of s sd adds 2 s
            "y": rng.exponential(1.0, n),
            "flag": rng.integers(0, 2, n),
            "plan": rng.choice(["basic", "plus", "pro"], n, p=list(weights)),
        }
    )


def roundtrip(stats: dict) -> dict:
    return json.loads(json.dumps(stats, allow_nan=False))


def rows(report: monitoring.DriftReport) -> dict[str, monitoring.ColumnDrift]:
    return {c.column: c for c in report.columns}


def test_reference_is_json_serialisable_and_compact() -> None:
    data = frame(20_000)
    data.loc[::10, "y"] = np.nan
    stats = monitoring.reference_statistics(data)
    assert roundtrip(stats) == stats
    x, y, plan = stats["columns"]["x"], stats["columns"]["y"], stats["columns"]["plan"]
    assert x["kind"] == "numeric" and plan["kind"] == "categorical"
    assert len(x["sample"]) == 5000 and len(x["quantiles"]) == stats["quantile_levels"]
    assert x["mean"] == pytest.approx(10.0, abs=0.1) and x["std"] == pytest.approx(2.0, abs=0.1)
    assert sum(x["histogram"]["counts"]) == 20_000
    assert y["count"] == 18_000 and y["missing"] == 2000
    assert sum(plan["frequencies"].values()) == 20_000
    assert set(stats["columns"]["flag"]["frequencies"]) == {"0.0", "1.0"}  # tested as categorical


def test_same_distribution_flags_nothing() -> None:
    for n in (500, 20_000):
        stats = roundtrip(monitoring.reference_statistics(frame(n, seed=1)))
        report = monitoring.detect_drift(stats, frame(n, seed=2))
        assert report.drifted_columns == [], report.to_frame()
        assert report.drift_share == 0.0 and report.dataset_drift is False


def test_half_sd_shift_at_500_rows_is_flagged_by_ks() -> None:
    stats = monitoring.reference_statistics(frame(500, seed=1))
    report = monitoring.detect_drift(stats, frame(500, shift=0.5, seed=2))
    x = rows(report)["x"]
    assert x.test == "ks" and x.drift is True
    assert x.p_value_adjusted < 0.05 and x.p_value <= x.p_value_adjusted
    assert report.drifted_columns == ["x"]
    assert report.drift_share == 0.25 and report.dataset_drift is False
    assert {rows(report)[c].test for c in ("flag", "plan")} == {"chi_square"}


def test_wasserstein_at_large_samples_catches_02_sd_but_not_001_sd() -> None:
    stats = monitoring.reference_statistics(frame(50_000, seed=1))
    relevant = rows(monitoring.detect_drift(stats, frame(50_000, shift=0.2, seed=2)))["x"]
    tiny = rows(monitoring.detect_drift(stats, frame(50_000, shift=0.01, seed=2)))["x"]
    assert relevant.test == tiny.test == "wasserstein"
    assert relevant.statistic == pytest.approx(0.2, abs=0.03) and relevant.drift is True
    assert tiny.statistic < 0.05 and tiny.drift is False
    assert relevant.p_value is None and relevant.threshold == 0.1


def test_categorical_reweighting_is_flagged_at_both_sizes() -> None:
    for n, test in ((800, "chi_square"), (20_000, "jensen_shannon")):
        stats = monitoring.reference_statistics(frame(n, seed=1))
        report = monitoring.detect_drift(stats, frame(n, weights=(0.2, 0.3, 0.5), seed=2))
        plan = rows(report)["plan"]
        assert plan.test == test and plan.drift is True
        assert plan.psi > 0.2
        assert report.drifted_columns == ["plan"]


def test_new_category_counts_as_drift() -> None:
    stats = monitoring.reference_statistics(frame(500, seed=1))
    current = frame(500, seed=2)
    current.loc[:199, "plan"] = "enterprise"
    assert rows(monitoring.detect_drift(stats, current))["plan"].drift is True


def test_dataset_drift_when_half_the_columns_drift() -> None:
    stats = monitoring.reference_statistics(frame(500, seed=1))
    report = monitoring.detect_drift(stats, frame(500, shift=1.0, weights=(0.1, 0.1, 0.8), seed=2))
    assert sorted(report.drifted_columns) == ["plan", "x"]
    assert report.drift_share == 0.5 and report.dataset_drift is True


def test_benjamini_hochberg_adjusts_the_p_values() -> None:
    stats = monitoring.reference_statistics(frame(500, seed=1))
    report = monitoring.detect_drift(stats, frame(500, seed=2))
    tested = [c for c in report.columns if c.p_value is not None]
    assert len(tested) == 4
    assert all(c.p_value_adjusted >= c.p_value for c in tested)
    assert max(c.p_value_adjusted for c in tested) == pytest.approx(max(c.p_value for c in tested))


def test_too_few_values_are_not_enough_data() -> None:
    stats = monitoring.reference_statistics(frame(500, seed=1))
    current = frame(100, seed=2)
    current.loc[10:, "y"] = np.nan  # 10 values left
    report = monitoring.detect_drift(stats, current, min_rows=30)
    y = rows(report)["y"]
    assert y.test == "not_enough_data" and y.drift is None and y.statistic is None
    assert y.current_count == 10
    assert report.drift_share == 0.0  # the three columns that could be tested did not drift
    small = monitoring.detect_drift(stats, frame(20, seed=2), min_rows=30)
    assert small.drift_share is None and small.dataset_drift is None


def test_schema_problems_are_named() -> None:
    stats = monitoring.reference_statistics(frame(200))
    current = frame(200).drop(columns=["y"]).assign(customer_id=1)
    with pytest.raises(
        DataSourceError,
        match=r"missing columns \['y'\]; unexpected columns "
        r"\['customer_id'\]",
    ):
        monitoring.detect_drift(stats, current)
    wrong = frame(200).astype({"x": str})
    with pytest.raises(DataSourceError, match="column 'x' must be numeric like the reference"):
        monitoring.detect_drift(stats, wrong)


def test_empty_current_and_bad_options_are_clear_errors() -> None:
    stats = monitoring.reference_statistics(frame(200))
    with pytest.raises(DataSourceError, match="has no rows"):
        monitoring.detect_drift(stats, frame(200).iloc[:0])
    with pytest.raises(InvalidParameterError, match="'alpha' parameter of detect_drift"):
        monitoring.detect_drift(stats, frame(200), alpha=1.5)
    with pytest.raises(DataSourceError, match="not produced by nbtools"):
        monitoring.detect_drift({"columns": {}}, frame(200))
    with pytest.raises(DataSourceError, match="need rows and columns"):
        monitoring.reference_statistics(pd.DataFrame())


def test_report_dict() -> None:
    stats = roundtrip(monitoring.reference_statistics(frame(500, seed=1)))
    report = monitoring.detect_drift(stats, frame(500, shift=0.5, seed=2))
    saved = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert saved["drifted_columns"] == ["x"] and len(saved["columns"]) == 4


def test_dates_are_compared_as_time_even_when_read_back_as_text() -> None:
    rng = np.random.default_rng(0)

    def dates(start: str, n: int = 600) -> pd.DataFrame:
        days = pd.to_timedelta(rng.integers(0, 365, n), unit="D")
        return pd.DataFrame({"signup": pd.Timestamp(start) + days})

    stats = roundtrip(monitoring.reference_statistics(dates("2024-01-01")))
    assert stats["columns"]["signup"]["kind"] == "datetime"
    same = dates("2024-01-01").astype({"signup": str})  # as a CSV gives them back
    assert rows(monitoring.detect_drift(stats, same))["signup"].drift is False
    later = monitoring.detect_drift(stats, dates("2024-07-01"))
    assert rows(later)["signup"].drift is True
    with pytest.raises(DataSourceError, match="column 'signup' must be dates"):
        monitoring.detect_drift(stats, pd.DataFrame({"signup": ["soon"] * 50}))
