"""The parameters of the ingest and evaluate stages, declared once.

Each field is declared with :func:`nbtools.params.param`; the ``01_ingest`` and ``06_evaluate``
templates' parameters cells are generated from these declarations, and ``nbtools check``
fails when a cell drifts from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nbtools.params import StageParams, param

__all__ = ["EvaluateParams", "IngestParams"]


@dataclass
class IngestParams(StageParams):
    """The parameters of the ingest stage: where the data comes from and what it predicts."""

    source: str = param(
        "demo",
        help="a CSV, Parquet or JSON file (relative to the project), a SQLAlchemy URL, an "
        'http(s) URL of JSON records, or "demo"',
    )
    target: str | None = param(
        "churned",
        help="the column to predict; None for clustering without labels",
    )
    task: str = param(
        "auto",
        help="auto decides from the target column",
        choices=("auto", "classification", "regression", "clustering"),
    )
    table: str | None = param(
        None,
        help="the table to read, for a SQL source",
    )
    query: str | None = param(
        None,
        help="a SQL query to run instead of reading a whole table",
    )
    ignore_columns: list[str] = param(
        [],
        help="columns to leave out of the snapshot, e.g. empty or identifier columns",
    )

    STAGE: ClassVar[str] = "ingest"


@dataclass
class EvaluateParams(StageParams):
    """The parameters of the evaluate stage: the champion comparison, the learning curve, the
    explanations and the metrics by slice."""

    compare_champion: bool = param(
        True,
        help="also score the current champion on this test split, for comparison",
    )
    learning_curve_points: int = param(
        4,
        help="training-set sizes of the learning curve (0 skips it)",
        range="[0, 10]",
    )
    learning_curve_folds: int = param(
        3,
        help="cross-validation folds of each learning-curve point",
        range="[2, 10]",
    )
    learning_curve_rows: int = param(
        2000,
        help="at most this many training rows take part in the learning curve",
        range="[100, 1000000]",
    )
    explain_columns: list[str] = param(
        [],
        help="input columns whose partial dependence is shown; empty: the 3 most important",
    )
    importance_repeats: int = param(
        5,
        help="shuffles of each column in the permutation importance (their spread is shown)",
        range="[2, 50]",
    )
    explain_rows: int = param(
        2000,
        help="at most this many test rows (a seeded sample) take part in the permutation "
        "importance",
        range="[100, 1000000]",
    )
    slice_columns: list[str] | None = param(
        None,
        help="columns whose levels are scored separately; None: the categorical input columns "
        "with at most 20 levels; [] skips the slices",
    )
    slice_min_rows: int = param(
        30,
        help="slices with fewer test rows are flagged as small (their scores are mostly noise)",
        range="[1, 1000000]",
    )

    STAGE: ClassVar[str] = "evaluate"
