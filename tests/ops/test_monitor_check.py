"""Tests of nbtools.ops.monitoring.check and the report: windows, the breach rule, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbtools.errors import DataSourceError, InvalidParameterError
from nbtools.ops import monitoring
from nbtools.ops.monitoring.check import (
    MonitorPolicy,
    Reference,
    append_history,
    as_trained,
    find_breach,
    read_history,
    run_check,
)
from nbtools.ops.monitoring.report import report_html


def customers(n: int, *, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Model inputs: ``spend`` (sd 10) moves by ``shift`` sd, ``plan`` reweights with it."""
    rng = np.random.default_rng(seed)
    share = min(0.3 + shift, 0.9)
    return pd.DataFrame(
        {
            "spend": rng.normal(50 + 10 * shift, 10, n),
            "plan": rng.choice(["basic", "pro"], n, p=[1 - share, share]),
        }
    )


def stream(shifts: list[float], rows: int = 300) -> pd.DataFrame:
    """One day of ``rows`` rows per shift, with a ``timestamp`` column."""
    days = []
    for day, shift in enumerate(shifts):
        batch = customers(rows, shift=shift, seed=20 + day)
        times = pd.Timestamp("2026-03-01", tz="UTC") + pd.Timedelta(days=day)
        days.append(batch.assign(timestamp=times + pd.to_timedelta(np.arange(rows), unit="min")))
    return pd.concat(days, ignore_index=True)


@pytest.fixture(scope="module")
def reference() -> Reference:
    statistics = monitoring.drift.reference_statistics(
        customers(2000), target="bought", task="classification"
    )
    return Reference(
        statistics, "unused", "models:/shop/1", "shop version 1", "accuracy", True, 0.9
    )


def test_no_drift_means_no_breach(reference: Reference) -> None:
    result = run_check(reference, stream([0, 0, 0]), MonitorPolicy(every="1D"))
    assert [w.drift.dataset_drift for w in result.windows] == [False] * 3
    assert result.breach is None and not result.drift_found
    assert all(w.performance is None for w in result.windows)  # no labels, nothing to score


def test_gradual_drift_breaches_at_the_second_consecutive_drifted_window(
    reference: Reference,
) -> None:
    policy = MonitorPolicy(every="1D", drift_windows=2)
    shifts = [0.0, 0.02, 1.0, 0.0, 1.0, 1.2, 1.5]
    result = run_check(reference, stream(shifts), policy)
    drifted = [w.drift.dataset_drift for w in result.windows]
    assert drifted == [False, False, True, False, True, True, True]
    assert result.breach is not None and result.breach.kind == "drift"
    assert result.breach.window.startswith("2026-03-06")  # day 6: the 2nd drifted day in a row
    assert "2 consecutive window(s)" in result.breach.reason and "spend" in result.breach.reason
    one_day_early = run_check(reference, stream(shifts[:5]), policy)
    assert one_day_early.breach is None and one_day_early.drift_found


def test_consecutive_windows_span_checks_through_the_history(
    reference: Reference, tmp_path
) -> None:
    policy = MonitorPolicy(every="1D")
    first = run_check(reference, stream([1.0]), policy, history=read_history(tmp_path))
    assert first.breach is None
    append_history(tmp_path, [w.entry(reference) for w in first.windows])
    again = stream([1.0]).assign(timestamp=lambda f: f["timestamp"] + pd.Timedelta(days=1))
    second = run_check(reference, again, policy, history=read_history(tmp_path, reference.key))
    assert second.breach is not None and second.breach.kind == "drift"
    assert read_history(tmp_path, "models:/shop/2") == []  # another model starts afresh
    append_history(tmp_path, [{"event": "retrain", "reference": reference.key}])
    after = run_check(reference, again, policy, history=read_history(tmp_path, reference.key))
    assert after.breach is None  # a retraining run starts the count again


def test_a_performance_drop_breaches_at_once(reference: Reference) -> None:
    data = stream([0, 0]).assign(prediction="yes")
    data["bought"] = np.where(data.index < 300, "yes", "no")  # right on day 1, wrong on day 2
    result = run_check(reference, data, MonitorPolicy(every="1D", max_drop=0.1))
    scores = [w.performance.score for w in result.windows]
    assert scores == [1.0, 0.0]
    assert result.breach is not None and result.breach.kind == "performance"
    assert result.breach.window.startswith("2026-03-02")
    assert "accuracy 0.0000 is 0.9000 lower than the baseline 0.9000" in result.breach.reason
    assert result.decay_found and not result.drift_found


def test_breach_rule_on_plain_entries() -> None:
    policy = MonitorPolicy(drift_windows=3)
    drifted = {"start": None, "dataset_drift": True, "drift_share": 1.0, "drifted_columns": ["a"]}
    calm = {**drifted, "dataset_drift": False}
    assert find_breach([drifted], [drifted, calm, drifted, drifted], policy) is None
    assert find_breach([drifted, drifted], [drifted], policy) is not None


def test_text_dates_and_flags_are_read_as_in_training() -> None:
    train = pd.DataFrame(
        {"when": pd.date_range("2025-01-01", periods=50), "paperless": [True, False] * 25}
    )
    ref = Reference(monitoring.drift.reference_statistics(train), "unused", "k", "label")
    raw = pd.DataFrame({"when": ["2025-01-02"] * 50, "paperless": ["Yes", "no"] * 25})
    converted = as_trained(raw, ref)
    assert pd.api.types.is_datetime64_any_dtype(converted["when"])
    assert converted["paperless"].tolist() == [True, False] * 25


@pytest.mark.parametrize(
    ("current", "message"),
    [
        (customers(100).drop(columns="plan"), r"missing columns \['plan'\]"),
        (customers(100).assign(customer_id=1), r"unexpected columns \['customer_id'\]"),
        (customers(100).astype({"spend": str}), "column 'spend' must be numeric"),
        (customers(100).iloc[:0], "no rows"),
    ],
)
def test_bad_current_data_is_a_clear_error(
    reference: Reference, current: pd.DataFrame, message: str
) -> None:
    with pytest.raises(DataSourceError, match=message):
        run_check(reference, current, MonitorPolicy())


def test_labels_need_the_prediction_log(reference: Reference) -> None:
    labels = pd.DataFrame({"request_id": ["a"], "request_row": [0], "bought": ["yes"]})
    with pytest.raises(DataSourceError, match="not a prediction log"):
        run_check(reference, customers(100), MonitorPolicy(), labels=labels)


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(InvalidParameterError, match="'drift_windows' parameter of stage 'monitor'"):
        MonitorPolicy(drift_windows=0).validate()
    with pytest.raises(InvalidParameterError, match="'retrain_data' parameter of stage 'monitor'"):
        MonitorPolicy.from_parameters({"retrain_data": "everything", "current": "x.csv"})
    assert MonitorPolicy().updated(alpha=0.01, every=None).alpha == 0.01


def test_report_shows_the_decision_windows_and_plots(reference: Reference) -> None:
    data = stream([0, 1.0, 1.2]).assign(prediction="yes", bought="yes")
    result = run_check(reference, data, MonitorPolicy(every="1D"))
    decisions = [{"decision": "retraining due", "reason": result.breach.reason}]
    page = report_html(result, decisions)
    assert page.startswith("<!DOCTYPE html>")
    assert "BREACH (drift)" in page and "retraining due" in page
    # drift over time, performance over time, scores, and one plot per column
    assert page.count("data:image/png;base64,") == 5
    assert result.to_dict()["windows"][1]["dataset_drift"] is True


def test_findings_name_column_drift_below_the_dataset_share(reference: Reference) -> None:
    data = stream([0.0, 0.0])
    data.loc[data.index % 5 == 0, "spend"] = np.nan  # 20 % missing, the values unchanged
    policy = MonitorPolicy(every="1D", importance_rows=0, share_threshold=0.75)
    result = run_check(reference, data, policy)
    assert [w.drift.drifted_columns for w in result.windows] == [["spend"], ["spend"]]
    assert not result.drift_found and result.breach is None  # 1 of 2 columns, below 75 %
    assert result.findings == ["column-drift"]
    assert result.to_dict()["findings"] == result.findings


def test_drift_is_weighted_by_what_the_model_relies_on(reference: Reference) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    train = customers(2000)
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["plan"]), remainder="passthrough"),
        LogisticRegression(),
    ).fit(train, train["spend"] > 55)  # the model looks at spend only
    result = run_check(reference, stream([1.0]), MonitorPolicy(), model=model)
    assert result.importance is not None and result.importance["spend"] > 0.9
    report = result.windows[0].drift
    assert report.dataset_drift and report.weighted_drift_share == pytest.approx(1.0)
    page = report_html(result)
    assert "carry 100% of the model's reliance" in page
    unloadable = run_check(reference, stream([0.0]), MonitorPolicy())  # its model_uri is "unused"
    assert unloadable.importance is None and "did not load" in unloadable.importance_note
    assert unloadable.windows[0].drift.weighted_drift_share is None
