"""Tests of nbtools.ops.monitoring.decay: labels joined to predictions, metrics per window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from nbtools.errors import DataSourceError, InvalidParameterError
from nbtools.ml import evaluation
from nbtools.ops import monitoring
from nbtools.ops.predictions import read_predictions


def prediction_log(n: int = 8, rows_per_request: int = 2) -> pd.DataFrame:
    """A prediction log as read back: requests of two rows, half an hour apart."""
    times = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        np.arange(n) // rows_per_request * 30, unit="min"
    )
    return pd.DataFrame(
        {
            "timestamp": times,
            "model_name": "m",
            "model_version": "1",
            "request_id": [f"r{i // rows_per_request}" for i in range(n)],
            "request_row": np.arange(n) % rows_per_request,
            "x": np.arange(n, dtype=float),
            "prediction": ["yes", "no"] * (n // 2),
            "proba_no": [0.2, 0.7] * (n // 2),
            "proba_yes": [0.8, 0.3] * (n // 2),
        }
    )


def test_read_predictions_numbers_the_rows_of_each_request(tmp_path) -> None:
    log = prediction_log().drop(columns="request_row")
    log.iloc[:4].to_parquet(tmp_path / "part-20260101T000000000000Z-1-000001.parquet")
    log.iloc[4:].to_parquet(tmp_path / "part-20260101T010000000000Z-1-000002.parquet")
    read = read_predictions(tmp_path)
    assert read["request_row"].tolist() == [0, 1] * 4
    assert list(read.columns[:5]) == [
        "timestamp",
        "model_name",
        "model_version",
        "request_id",
        "request_row",
    ]


def test_labels_join_to_their_predictions_and_the_rest_stay_unlabelled() -> None:
    labels = pd.DataFrame(
        {"request_id": ["r1", "r0", "r3"], "request_row": [0, 1, 1], "churned": ["yes", "no", "no"]}
    )
    joined = monitoring.decay.join_labels(prediction_log(), labels, target="churned")
    assert len(joined) == 8
    labelled = joined["churned"].where(joined["churned"].notna(), "-").tolist()
    assert labelled == ["-", "no", "yes", "-", "-", "-", "-", "no"]


def test_single_row_requests_need_no_row_column() -> None:
    log = prediction_log(4, rows_per_request=1)
    labels = pd.DataFrame({"request_id": ["r2", "r0"], "churned": ["no", "yes"]})
    joined = monitoring.decay.join_labels(log, labels, target="churned")
    assert joined["churned"].where(joined["churned"].notna(), "-").tolist() == [
        "yes",
        "-",
        "no",
        "-",
    ]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (pd.DataFrame({"request_id": ["r0"], "churned": ["no"]}), "no 'request_row' column"),
        (pd.DataFrame({"request_id": ["r0"], "request_row": [0]}), r"Missing: \['churned'\]"),
        (
            pd.DataFrame({"request_id": ["r0", "r0"], "request_row": [0, 0], "churned": ["a"] * 2}),
            "1 labels repeat a prediction",
        ),
        (
            pd.DataFrame({"request_id": ["r0", "zz"], "request_row": [0, 0], "churned": ["a"] * 2}),
            r"1 of 2 labels do not match any logged prediction \(e.g. 'zz' row 0\)",
        ),
        (pd.DataFrame({"request_id": [], "request_row": [], "churned": []}), "has no rows"),
    ],
)
def test_labels_that_do_not_match_are_clear_errors(labels: pd.DataFrame, message: str) -> None:
    with pytest.raises(DataSourceError, match=message):
        monitoring.decay.join_labels(prediction_log(), labels, target="churned")


def test_labels_need_a_log() -> None:
    labels = pd.DataFrame({"request_id": ["r0"], "request_row": [0], "churned": ["no"]})
    with pytest.raises(DataSourceError, match="prediction log is empty"):
        monitoring.decay.join_labels(prediction_log().iloc[:0], labels, target="churned")


def test_windows_cut_by_time_and_skip_empty_ones() -> None:
    log = prediction_log(8)  # four requests at 00:00, 00:30, 01:00, 01:30
    log.loc[6:, "timestamp"] += pd.Timedelta(hours=2)  # the last request at 03:30
    windows = monitoring.decay.split_windows(log, "1h")
    assert [len(w.data) for w in windows] == [4, 2, 2]
    assert windows[0].start == "2026-01-01T00:00:00+00:00" and windows[-1].start.startswith(
        "2026-01-01T03:00"
    )
    assert [w.label for w in monitoring.decay.split_windows(log, None)] == ["all rows"]


def test_window_problems_are_clear_errors() -> None:
    with pytest.raises(DataSourceError, match="no rows \\(an empty window\\)"):
        monitoring.decay.split_windows(prediction_log().iloc[:0], "1D")
    with pytest.raises(InvalidParameterError, match="pandas frequency"):
        monitoring.decay.split_windows(prediction_log(), "every day")
    with pytest.raises(DataSourceError, match="need a time column 'timestamp'"):
        monitoring.decay.split_windows(prediction_log().drop(columns="timestamp"), "1D")


def test_metrics_from_logged_predictions_are_the_evaluate_stage_metrics() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    y = pd.Series(np.where(X["a"] + rng.normal(0, 1, 300) > 0, "yes", "no"))
    model = LogisticRegression().fit(X, y)
    scored = monitoring.decay.add_predictions(model, X.assign(churned=y), X)
    assert {"prediction", "proba_no", "proba_yes"} <= set(scored.columns)
    result = monitoring.decay.performance_windows(
        [monitoring.decay.Window(None, None, scored)],
        target="churned",
        task="classification",
        metric="roc_auc",
        greater_is_better=True,
        baseline=None,
        max_drop=0.05,
    )[0]
    assert result.metrics == pytest.approx(evaluation.evaluate(model, X, y, task="classification"))
    assert result.baseline == result.score and result.drop == 0.0 and result.decayed is False


def test_a_drop_beyond_the_threshold_is_flagged() -> None:
    log = prediction_log(80, rows_per_request=1)
    truth = log["prediction"].copy()
    truth.iloc[48:] = np.where(truth.iloc[48:] == "yes", "no", "yes")  # wrong on the 2nd day
    windows = monitoring.decay.split_windows(log.assign(churned=truth), "1D")
    results = monitoring.decay.performance_windows(
        windows,
        target="churned",
        task="classification",
        metric="accuracy",
        greater_is_better=True,
        baseline=0.95,
        max_drop=0.1,
        min_rows=10,
    )
    assert [r.rows for r in results] == [48, 32]
    assert [r.score for r in results] == [1.0, 0.0]
    assert [r.decayed for r in results] == [False, True]
    assert results[1].drop == pytest.approx(0.95)


def test_regression_errors_count_upwards_and_few_rows_are_untested() -> None:
    frame = pd.DataFrame({"price": [1.0, 2.0, 3.0] * 10, "prediction": [1.5, 2.5, 3.5] * 10})
    window = monitoring.decay.Window(None, None, frame)
    result = monitoring.decay.performance_windows(
        [window],
        target="price",
        task="regression",
        metric="rmse",
        greater_is_better=False,
        baseline=0.2,
        max_drop=0.1,
    )[0]
    assert result.score == pytest.approx(0.5) and result.drop == pytest.approx(0.3)
    assert result.decayed is True
    untested = monitoring.decay.performance_windows(
        [window],
        target="price",
        task="regression",
        metric="rmse",
        greater_is_better=False,
        baseline=0.2,
        max_drop=0.1,
        min_rows=31,
    )[0]
    assert untested.score is None and untested.decayed is None and untested.metrics == {}
