"""The checks of the drift test's inputs: its options, the reference's format, and the current
data's columns and kinds against the reference's."""

from __future__ import annotations

from typing import Any

import pandas as pd

from nbtools.errors import DataSourceError, InvalidParameterError
from nbtools.ops.monitoring import _statistics

#: The format :func:`~nbtools.ops.monitoring.drift.reference_statistics` writes.
FORMAT = "nbtools.reference/2"
#: Formats :func:`~nbtools.ops.monitoring.drift.detect_drift` reads: /1 kept a 1,000-quantile
#: sketch without exact tails.
READABLE_FORMATS = ("nbtools.reference/1", FORMAT)


def check_options(
    alpha: float,
    min_rows: int,
    large_sample: int,
    wasserstein_threshold: float,
    js_threshold: float,
    share_threshold: float,
    missing_threshold: float,
    new_category_threshold: float,
) -> None:
    """Refuse an option of :func:`~nbtools.ops.monitoring.drift.detect_drift` out of its range."""
    checks = [
        ("alpha", alpha, 0 < alpha < 1, "a float in the range (0, 1)"),
        (
            "min_rows",
            min_rows,
            isinstance(min_rows, int) and min_rows >= 2,
            "an int in the range [2, inf)",
        ),
        (
            "large_sample",
            large_sample,
            isinstance(large_sample, int) and large_sample >= 1,
            "an int in the range [1, inf)",
        ),
        (
            "wasserstein_threshold",
            wasserstein_threshold,
            wasserstein_threshold > 0,
            "a float in the range (0, inf)",
        ),
        ("js_threshold", js_threshold, 0 < js_threshold <= 1, "a float in the range (0, 1]"),
        (
            "share_threshold",
            share_threshold,
            0 < share_threshold <= 1,
            "a float in the range (0, 1]",
        ),
        (
            "missing_threshold",
            missing_threshold,
            0 < missing_threshold <= 1,
            "a float in the range (0, 1]",
        ),
        (
            "new_category_threshold",
            new_category_threshold,
            0 < new_category_threshold <= 1,
            "a float in the range (0, 1]",
        ),
    ]
    for name, value, ok, expected in checks:
        if not ok:
            raise InvalidParameterError(
                f"The '{name}' parameter of detect_drift must be {expected}. Got {value!r} instead."
            )


def reference_columns(reference_stats: Any) -> dict[str, dict[str, Any]]:
    """Return the columns of a reference, or refuse one nbtools did not write."""
    if (
        not isinstance(reference_stats, dict)
        or reference_stats.get("format") not in READABLE_FORMATS
    ):
        raise DataSourceError(
            "The reference statistics were not produced by nbtools' reference_statistics "
            f"(expected 'format': '{FORMAT}'). Recompute them from the training features."
        )
    return reference_stats["columns"]


def check_current(references: dict[str, dict[str, Any]], current: Any) -> None:
    """Refuse current data without rows or whose columns or kinds differ from the reference's."""
    if not isinstance(current, pd.DataFrame):
        raise DataSourceError(
            f"The current data must be a pandas DataFrame. Got {type(current).__name__}."
        )
    if current.shape[0] == 0:
        raise DataSourceError("The current data has no rows: there is nothing to test for drift.")
    names = [str(c) for c in current.columns]
    problems = []
    missing = [c for c in references if c not in names]
    extra = [c for c in names if c not in references]
    if missing:
        problems.append(f"missing columns {missing}")
    if extra:
        problems.append(f"unexpected columns {extra}")
    for name, ref in references.items():
        if name in missing or current[name].notna().sum() == 0:
            continue
        if not _kind_matches(ref["kind"], current[name]):
            expected = _EXPECTED_KIND[ref["kind"]]
            problems.append(
                f"column '{name}' must be {expected} like the reference "
                f"({ref['dtype']}), got {current[name].dtype}"
            )
    if problems:
        raise DataSourceError(
            "The current data does not match the reference: "
            + "; ".join(problems)
            + ". Pass the model's input columns, with the types they had in training."
        )


_EXPECTED_KIND = {
    "numeric": "numeric",
    "datetime": "dates (or text holding dates)",
    "categorical": "categorical (not numeric)",
}


def _kind_matches(kind: str, series: pd.Series) -> bool:
    found = _statistics.column_kind(series)
    if kind == "datetime" and found == "categorical":  # dates read back from CSV as text
        return _statistics.finite_values(series.dropna().head(1000), "datetime").size > 0
    if kind == "categorical":
        return found != "numeric"
    return found == kind
