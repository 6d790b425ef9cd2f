"""Tests of nbtools.ops.monitoring.drift on generated data with known shifts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from sklearn.linear_model import LogisticRegression

from nbtools.errors import DataSourceError, InvalidParameterError
from nbtools.ops import monitoring


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


def rows(report: monitoring.drift.DriftReport) -> dict[str, monitoring.drift.ColumnDrift]:
    return {c.column: c for c in report.columns}


def test_reference_is_json_serialisable_and_compact() -> None:
    data = frame(20_000)
    data.loc[::10, "y"] = np.nan
    stats = monitoring.drift.reference_statistics(data)
    assert roundtrip(stats) == stats
    x, y, plan = stats["columns"]["x"], stats["columns"]["y"], stats["columns"]["plan"]
    assert x["kind"] == "numeric" and plan["kind"] == "categorical"
    assert len(x["sample"]) == 5000 and sum(x["weights"]) == 20_000
    assert x["atoms"][0] == x["min"] and x["atoms"][-1] == x["max"]  # the extremes are kept
    assert x["sketch_error"] <= 1e-3 and len(x["atoms"]) < 5000
    assert x["mean"] == pytest.approx(10.0, abs=0.1) and x["std"] == pytest.approx(2.0, abs=0.1)
    assert sum(x["histogram"]["counts"]) == 20_000
    assert y["count"] == 18_000 and y["missing"] == 2000
    assert sum(plan["frequencies"].values()) == 20_000
    assert set(stats["columns"]["flag"]["frequencies"]) == {"0.0", "1.0"}  # tested as categorical


def test_same_distribution_flags_nothing() -> None:
    for n in (500, 20_000):
        stats = roundtrip(monitoring.drift.reference_statistics(frame(n, seed=1)))
        report = monitoring.drift.detect_drift(stats, frame(n, seed=2))
        assert report.drifted_columns == [], report.to_frame()
        assert report.drift_share == 0.0 and report.dataset_drift is False


def test_half_sd_shift_at_500_rows_is_flagged_by_ks() -> None:
    stats = monitoring.drift.reference_statistics(frame(500, seed=1))
    report = monitoring.drift.detect_drift(stats, frame(500, shift=0.5, seed=2))
    x = rows(report)["x"]
    assert x.test == "ks" and x.drift is True
    assert x.p_value_adjusted < 0.05 and x.p_value <= x.p_value_adjusted
    assert report.drifted_columns == ["x"]
    assert report.drift_share == 0.25 and report.dataset_drift is False
    assert {rows(report)[c].test for c in ("flag", "plan")} == {"chi_square"}


def test_wasserstein_at_large_samples_catches_02_sd_but_not_001_sd() -> None:
    stats = monitoring.drift.reference_statistics(frame(50_000, seed=1))
    relevant = rows(monitoring.drift.detect_drift(stats, frame(50_000, shift=0.2, seed=2)))["x"]
    tiny = rows(monitoring.drift.detect_drift(stats, frame(50_000, shift=0.01, seed=2)))["x"]
    assert relevant.test == tiny.test == "wasserstein"
    assert relevant.statistic == pytest.approx(0.2, abs=0.03) and relevant.drift is True
    assert tiny.statistic < 0.05 and tiny.drift is False
    assert relevant.p_value is None and relevant.threshold == 0.1


def test_categorical_reweighting_is_flagged_at_both_sizes() -> None:
    for n, test in ((800, "chi_square"), (20_000, "jensen_shannon")):
        stats = monitoring.drift.reference_statistics(frame(n, seed=1))
        report = monitoring.drift.detect_drift(stats, frame(n, weights=(0.2, 0.3, 0.5), seed=2))
        plan = rows(report)["plan"]
        assert plan.test == test and plan.drift is True
        assert plan.psi > 0.2
        assert report.drifted_columns == ["plan"]


def test_new_category_counts_as_drift() -> None:
    stats = monitoring.drift.reference_statistics(frame(500, seed=1))
    current = frame(500, seed=2)
    current.loc[:199, "plan"] = "enterprise"
    assert rows(monitoring.drift.detect_drift(stats, current))["plan"].drift is True


def test_dataset_drift_when_half_the_columns_drift() -> None:
    stats = monitoring.drift.reference_statistics(frame(500, seed=1))
    report = monitoring.drift.detect_drift(
        stats, frame(500, shift=1.0, weights=(0.1, 0.1, 0.8), seed=2)
    )
    assert sorted(report.drifted_columns) == ["plan", "x"]
    assert report.drift_share == 0.5 and report.dataset_drift is True


def test_benjamini_hochberg_adjusts_the_p_values() -> None:
    stats = monitoring.drift.reference_statistics(frame(500, seed=1))
    report = monitoring.drift.detect_drift(stats, frame(500, seed=2))
    tested = [c for c in report.columns if c.p_value is not None]
    assert len(tested) == 4
    assert all(c.p_value_adjusted >= c.p_value for c in tested)
    assert max(c.p_value_adjusted for c in tested) == pytest.approx(max(c.p_value for c in tested))


def test_too_few_values_are_not_enough_data() -> None:
    stats = monitoring.drift.reference_statistics(frame(500, seed=1))
    current = frame(100, seed=2)
    current.loc[10:, "y"] = np.nan  # 10 values left
    report = monitoring.drift.detect_drift(stats, current, min_rows=30)
    y = rows(report)["y"]
    assert y.test == "not_enough_data" and y.distribution_drift is None and y.statistic is None
    assert y.current_count == 10
    assert y.drift is True and y.reasons == ["missing 0.0% -> 90.0%"]  # which is drift
    assert report.drift_share == 0.25  # the three columns that could be tested did not drift
    small = monitoring.drift.detect_drift(stats, frame(20, seed=2), min_rows=30)
    assert small.drift_share is None and small.dataset_drift is None


def test_schema_problems_are_named() -> None:
    stats = monitoring.drift.reference_statistics(frame(200))
    current = frame(200).drop(columns=["y"]).assign(customer_id=1)
    with pytest.raises(
        DataSourceError,
        match=r"missing columns \['y'\]; unexpected columns "
        r"\['customer_id'\]",
    ):
        monitoring.drift.detect_drift(stats, current)
    wrong = frame(200).astype({"x": str})
    with pytest.raises(DataSourceError, match="column 'x' must be numeric like the reference"):
        monitoring.drift.detect_drift(stats, wrong)


def test_empty_current_and_bad_options_are_clear_errors() -> None:
    stats = monitoring.drift.reference_statistics(frame(200))
    with pytest.raises(DataSourceError, match="has no rows"):
        monitoring.drift.detect_drift(stats, frame(200).iloc[:0])
    with pytest.raises(InvalidParameterError, match="'alpha' parameter of detect_drift"):
        monitoring.drift.detect_drift(stats, frame(200), alpha=1.5)
    with pytest.raises(DataSourceError, match="not produced by nbtools"):
        monitoring.drift.detect_drift({"columns": {}}, frame(200))
    with pytest.raises(DataSourceError, match="need rows and columns"):
        monitoring.drift.reference_statistics(pd.DataFrame())


def test_report_dict() -> None:
    stats = roundtrip(monitoring.drift.reference_statistics(frame(500, seed=1)))
    report = monitoring.drift.detect_drift(stats, frame(500, shift=0.5, seed=2))
    saved = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert saved["drifted_columns"] == ["x"] and len(saved["columns"]) == 4


def test_dates_are_compared_as_time_even_when_read_back_as_text() -> None:
    rng = np.random.default_rng(0)

    def dates(start: str, n: int = 600) -> pd.DataFrame:
        days = pd.to_timedelta(rng.integers(0, 365, n), unit="D")
        return pd.DataFrame({"signup": pd.Timestamp(start) + days})

    stats = roundtrip(monitoring.drift.reference_statistics(dates("2024-01-01")))
    assert stats["columns"]["signup"]["kind"] == "datetime"
    same = dates("2024-01-01").astype({"signup": str})  # as a CSV gives them back
    assert rows(monitoring.drift.detect_drift(stats, same))["signup"].drift is False
    later = monitoring.drift.detect_drift(stats, dates("2024-07-01"))
    assert rows(later)["signup"].drift is True
    with pytest.raises(DataSourceError, match="column 'signup' must be dates"):
        monitoring.drift.detect_drift(stats, pd.DataFrame({"signup": ["soon"] * 50}))


# --- the Wasserstein distance against scipy ------------------------------------------------

N = 20_000  # more distinct values than the reference keeps exactly: its sketch is exercised


def _moved(values: np.ndarray, share: float, by: float, seed: int) -> np.ndarray:
    out = values.copy()
    picked = np.random.default_rng(seed).choice(out.size, int(out.size * share), replace=False)
    out[picked] += by * values.std()
    return out


def _pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    normal, other = rng.standard_normal(N), rng.standard_normal(N)
    t2, cauchy = rng.standard_t(2, N), rng.standard_cauchy(N)
    return {
        "same": (normal, other),
        "shift 0.05 sd": (normal, other + 0.05),
        "shift 0.1 sd": (normal, other + 0.1),
        "shift 1 sd": (normal, other + 1.0),
        "scale x0.7": (normal, other * 0.7),
        "scale x1.5": (normal, other * 1.5),
        "heavy tails, t(2), shifted": (t2, rng.standard_t(2, N) + 0.3),
        "heavy tails, Cauchy, scaled": (cauchy, rng.standard_cauchy(N) * 2),
        "skewed, lognormal": (rng.lognormal(0, 1.5, N), rng.lognormal(0.2, 1.5, N)),
        "bimodal against unimodal": (np.concatenate([normal[::2] - 3, normal[1::2] + 3]), other),
        "rare extremes in the current data": (normal, _moved(other, 0.0005, 400, 1)),
        "rare extremes in the reference": (_moved(normal, 0.0005, 400, 2), other),
        "sentinel -999 in 0.1 % of rows": (normal, np.where(np.arange(N) % 1000 == 0, -999, other)),
        "discrete counts": (rng.poisson(4, N).astype(float), rng.poisson(4.5, N).astype(float)),
        "rounded prices": (np.round(rng.gamma(2, 30, N), 1), np.round(rng.gamma(2, 33, N), 1)),
        "small samples": (normal[:3000], other[:2000] + 0.2),
    }


@pytest.mark.parametrize("name", list(_pairs()))
def test_wasserstein_distance_matches_scipy_on_the_full_reference(name: str) -> None:
    """The normed distance equals scipy's on the full data, within the sketch's own error.

    Tolerance: the sketch's recorded Wasserstein error (at most 0.001 reference standard
    deviations; 0 when every distinct value is kept) plus 1e-9 for rounding. This bound is
    exact: the distance is a metric and the current side is used in full.
    """
    reference, current = _pairs()[name]
    stats = roundtrip(monitoring.drift.reference_statistics(pd.DataFrame({"v": reference})))
    column = rows(
        monitoring.drift.detect_drift(stats, pd.DataFrame({"v": current}), large_sample=1000)
    )
    found = column["v"]
    expected = scipy_stats.wasserstein_distance(reference, current) / reference.std()
    error = stats["columns"]["v"]["sketch_error"]
    assert found.test == "wasserstein"
    assert error <= 1e-3
    assert abs(found.statistic - expected) <= error + 1e-9, (found.statistic, expected)


def test_rare_far_values_drift_as_in_evidently() -> None:
    """0.05 % of the values moved by +400 sd: a normed distance of 0.2, which is drift."""
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"amount": rng.normal(100, 15, 200_000)})
    current = pd.DataFrame({"amount": rng.normal(100, 15, 200_000)})
    current.loc[current.sample(frac=0.0005, random_state=1).index, "amount"] += 400 * 15
    stats = monitoring.drift.reference_statistics(reference)
    amount = rows(monitoring.drift.detect_drift(stats, current))["amount"]
    assert amount.statistic == pytest.approx(0.2, abs=0.005)
    assert amount.distribution_drift is True and amount.drift is True


def test_a_reference_of_the_first_format_is_still_read() -> None:
    data = frame(20_000, seed=1)
    stats = monitoring.drift.reference_statistics(data)
    old = json.loads(json.dumps(stats))
    old["format"] = "nbtools.reference/1"
    for name, column in old["columns"].items():
        if "sketch_error" in column:  # then it kept 1,000 quantiles instead
            levels = (np.arange(1000) + 0.5) / 1000
            column["quantiles"] = np.quantile(data[name], levels).tolist()
            del column["atoms"], column["weights"], column["sketch_error"]
        column.pop("other_categories", None)
        column.pop("singletons", None)
    report = monitoring.drift.detect_drift(old, frame(20_000, shift=0.5, seed=2))
    assert report.drifted_columns == ["x"]
    assert rows(report)["plan"].new_category_drift is False  # three categories, all known


# --- missing values, new categories ----------------------------------------------------------


def test_a_surge_of_missing_values_is_drift_of_its_own() -> None:
    for n in (500, 20_000):  # the p-value tests and the distances alike miss it
        stats = monitoring.drift.reference_statistics(frame(n, seed=1))
        current = frame(n, seed=2)
        current.loc[current.sample(frac=0.1, random_state=0).index, "x"] = np.nan
        x = rows(monitoring.drift.detect_drift(stats, current))["x"]
        assert x.distribution_drift is False  # the values present did not move
        assert x.missing_reference == 0.0 and x.missing_current == pytest.approx(0.1)
        assert x.missing_drift is True and x.drift is True
        assert x.reasons == ["missing 0.0% -> 10.0%"]


def test_small_or_chance_rises_of_missing_values_are_not_drift() -> None:
    reference = frame(5000, seed=1)
    reference.loc[reference.sample(frac=0.03, random_state=0).index, "y"] = np.nan
    stats = monitoring.drift.reference_statistics(reference)
    one_percent = frame(5000, seed=2)
    one_percent.loc[one_percent.sample(frac=0.04, random_state=1).index, "y"] = np.nan
    assert rows(monitoring.drift.detect_drift(stats, one_percent))["y"].missing_drift is False
    few_rows = frame(30, seed=3)  # 3 of 30 missing: 10 %, but 3 % gives that in 6 % of windows
    few_rows.loc[:2, "y"] = np.nan
    assert rows(monitoring.drift.detect_drift(stats, few_rows))["y"].missing_drift is False


def test_a_column_that_empties_drifts_although_it_cannot_be_tested() -> None:
    stats = monitoring.drift.reference_statistics(frame(500, seed=1))
    current = frame(500, seed=2).assign(y=np.nan)
    y = rows(monitoring.drift.detect_drift(stats, current))["y"]
    assert y.test == "not_enough_data" and y.distribution_drift is None
    assert y.missing_drift is True and y.drift is True


def test_new_categories_are_flagged_with_their_names() -> None:
    stats = monitoring.drift.reference_statistics(frame(20_000, seed=1))
    current = frame(20_000, seed=2)
    current.loc[current.sample(frac=0.015, random_state=0).index, "plan"] = "enterprise"
    plan = rows(monitoring.drift.detect_drift(stats, current))["plan"]
    assert plan.distribution_drift is False  # 1.5 % moved: below the Jensen-Shannon threshold
    assert plan.new_category_drift is True and plan.new_categories == ["enterprise"]
    assert plan.new_share == pytest.approx(0.015) and plan.drift is True
    flag = frame(20_000, seed=3).assign(flag=lambda d: np.where(d.index % 20 == 0, 2, d.flag))
    flagged = rows(monitoring.drift.detect_drift(stats, flag))["flag"]  # a 0/1 column meets a 2
    assert flagged.new_category_drift is True and flagged.new_categories == ["2.0"]


def test_identifier_like_columns_meet_new_values_without_drifting() -> None:
    rng = np.random.default_rng(0)
    ids = pd.DataFrame({"customer": [f"c{i}" for i in rng.integers(0, 10**6, 5000)]})
    stats = monitoring.drift.reference_statistics(ids)
    assert stats["columns"]["customer"]["singletons"] > 4000  # most ids are seen once
    later = pd.DataFrame({"customer": [f"c{i}" for i in rng.integers(0, 10**6, 5000)]})
    customer = rows(monitoring.drift.detect_drift(stats, later))["customer"]
    assert customer.new_share > 0.9 and customer.new_category_drift is False


# --- the model's reliance ---------------------------------------------------------------------


def test_model_reliance_ranks_the_columns_the_model_uses() -> None:
    data = frame(3000, seed=1)
    target = (data["x"] + 0.1 * data["y"] > 10.2).astype(int)
    numeric = data[["x", "y", "flag"]]
    model = LogisticRegression().fit(numeric, target)
    reliance = monitoring.drift.model_reliance(model, numeric, rows=1000)
    assert sum(reliance.values()) == pytest.approx(1.0)
    assert reliance["x"] > 0.8 and reliance["x"] > reliance["y"] > reliance["flag"]
    stats = monitoring.drift.reference_statistics(numeric)
    shifted = frame(3000, shift=1.0, seed=2)[["x", "y", "flag"]].assign(
        y=lambda d: d.y + 2.0  # y moves more than x, but the model hardly uses it
    )
    report = monitoring.drift.detect_drift(stats, shifted, importance=reliance)
    assert sorted(report.drifted_columns) == ["x", "y"]
    assert report.weighted_drift_share == pytest.approx(reliance["x"] + reliance["y"])
    x, y = rows(report)["x"], rows(report)["y"]
    assert y.score > x.score and x.weighted_score > y.weighted_score
