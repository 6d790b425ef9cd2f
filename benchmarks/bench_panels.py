"""How long each panel interaction blocks the kernel on 1,000,000 rows x 50 columns.

Each panel interaction (building the panel, changing a choice and refreshing the preview, applying
a selection rule, saving, starting a search) is timed against what a user would run by hand for
the same view: pandas ``describe``/``value_counts``/``nunique`` for the column summary, a clean
for the preview, scikit-learn's mutual information and a correlation matrix for relevance and
redundancy.

Like with like: the panels look at a seeded sample of 50,000 rows (mutual information at 5,000 of
them), so the by-hand work runs on exactly the same sample (``sample_rows``, same seed), and the
ratio "panel / by hand" compares the same work on the same rows. What sampling itself saves is a
separate column: the same by-hand work on all rows against on the sample. Everything runs here,
in one process, so the ratios are fair even on a busy machine.

Run: ``python benchmarks/bench_panels.py [--rows 1000000]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_selection import mutual_info_classif

from nbtools.ml import cleaning, features, modeling
from nbtools.ml.exploration import SAMPLE_ROWS, sample_rows
from nbtools.panels import CleaningPanel, FeatureSelectionPanel, TuningPanel
from nbtools.panels.selection import RELEVANCE_ROWS
from nbtools.pipeline.project import create_project

#: An interaction: its name, the panel's seconds, by hand on the panel's sample and on all rows.
Result = tuple[str, float, float | None, float | None]


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """30 float, 10 int and 9 text columns with missing values and outliers, plus a target."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    signal = rng.normal(size=rows)
    for i in range(30):
        values = rng.normal(size=rows) + (signal if i < 5 else 0.0)
        values[rng.random(rows) < 0.03] = np.nan
        values[rng.random(rows) < 0.001] *= 50
        columns[f"num_{i}"] = values
    for i in range(10):
        columns[f"int_{i}"] = rng.integers(0, 100, size=rows)
    levels = np.array(["alpha", "beta", "gamma", "delta", "epsilon"])
    for i in range(9):
        text = levels[rng.integers(0, len(levels), size=rows)].astype(object)
        text[rng.random(rows) < 0.02] = None
        columns[f"cat_{i}"] = pd.array(text, dtype="str")
    columns["target"] = np.where(signal + rng.normal(size=rows) > 0, "yes", "no")
    return pd.DataFrame(columns)


def timed(action: Callable[[], Any]) -> float:
    """Seconds ``action`` takes (one call: the interactions are not repeated by users either)."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def naive_summary(df: pd.DataFrame) -> None:
    """What a user runs by hand to see the columns: describe, missing share, distinct, counts."""
    df.describe(include="all")
    df.isna().mean()
    df.nunique()
    for name in df.columns:
        if not pd.api.types.is_numeric_dtype(df[name]):
            df[name].value_counts()


def naive_preview(df: pd.DataFrame, drop: str) -> None:
    """A hand-written clean of the full frame for a before/after view."""
    out = df.drop(columns=[drop]).dropna(subset=["target"]).drop_duplicates()
    out.head()
    out.shape  # noqa: B018  (a user looks at it)


def naive_relevance(df: pd.DataFrame, scored: pd.DataFrame) -> None:
    """Mutual information of every feature with the target on ``scored`` rows, and the
    correlation matrix on ``df``'s rows."""
    df.drop(columns="target").select_dtypes("number").corr()
    X = scored.drop(columns="target")
    encoded = pd.DataFrame(
        {
            name: (
                X[name].fillna(X[name].median())
                if pd.api.types.is_numeric_dtype(X[name])
                else pd.Series(pd.factorize(X[name])[0], index=X.index)
            )
            for name in X.columns
        }
    )
    discrete = [not pd.api.types.is_numeric_dtype(X[name]) for name in X.columns]
    mutual_info_classif(encoded, scored["target"], discrete_features=discrete, random_state=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    df = make_frame(rows)
    sample = sample_rows(df, SAMPLE_ROWS, seed=0)  # exactly the rows the panels look at
    scored = sample_rows(sample, RELEVANCE_ROWS, seed=0)  # and mutual information's rows
    print(
        f"Frame: {len(df):,} rows x {df.shape[1]} columns; the panels' sample: {len(sample):,} "
        f"rows (mutual information: {len(scored):,})"
    )
    project = Path(tempfile.mkdtemp()) / "bench"
    create_project(project)
    results: list[Result] = []
    try:
        panel: dict[str, Any] = {}

        def build_cleaning() -> None:
            panel["clean"] = CleaningPanel(
                df, cleaning.CleaningParams(), target="target", project_dir=project
            )

        results.append(
            (
                "cleaning: build panel",
                timed(build_cleaning),
                timed(lambda: naive_summary(sample)),
                timed(lambda: naive_summary(df)),
            )
        )
        clean = panel["clean"]
        results.append(
            (
                "cleaning: drop a column, refresh preview",
                timed(lambda: setattr(clean.drop_columns, "value", ("cat_8",))),
                timed(lambda: naive_preview(sample, "cat_8")),
                timed(lambda: naive_preview(df, "cat_8")),
            )
        )
        clean.column.value = "num_3"
        results.append(
            (
                "cleaning: set one column's imputation",
                timed(lambda: setattr(clean.column_inputs["imputation"], "value", "mean")),
                None,
                None,
            )
        )
        results.append(
            (
                "cleaning: change outlier handling",
                timed(lambda: setattr(clean.inputs["outliers"], "value", "none")),
                None,
                None,
            )
        )
        results.append(("cleaning: save to pipeline", timed(clean.save), None, None))

        def build_selection() -> None:
            panel["select"] = FeatureSelectionPanel(
                df,
                features.FeatureParams(),
                target="target",
                task="classification",
                project_dir=project,
            )

        results.append(
            (
                "selection: build (relevance, redundancy)",
                timed(build_selection),
                timed(lambda: naive_relevance(sample, scored)),
                timed(lambda: naive_relevance(df, df)),
            )
        )
        select = panel["select"]
        select.rule.value, select.rule_value.value = "top_k", 10
        results.append(("selection: apply top-k rule", timed(select.apply_rule.click), None, None))
        results.append(("selection: save to pipeline", timed(select.save), None, None))

        numeric, categorical = cleaning.column_types(df, "target")

        def make_pipeline(family: str) -> Any:
            return modeling.build_pipeline(
                cleaning.build_preprocessor(cleaning.CleaningParams(), numeric, categorical),
                features.build_selector(features.FeatureParams(selection="none"), "classification"),
                modeling.make_estimator(family, "classification", seed=0),
            )

        def build_tuning() -> None:
            panel["tune"] = TuningPanel(
                df[numeric + categorical].head(20_000),
                df["target"].head(20_000),
                modeling.TrainParams(family="logistic_regression", n_iter=2, cv_folds=2),
                make_pipeline=make_pipeline,
                task="classification",
                project_dir=project,
            )

        results.append(("tuning: build panel", timed(build_tuning), None, None))
        tune = panel["tune"]
        results.append(("tuning: start search (runs in background)", timed(tune.run), None, None))
        tune.wait()
        results.append(
            (
                "tuning: sort results",
                timed(lambda: setattr(tune.sort_by, "value", "C")),
                None,
                None,
            )
        )
    finally:
        shutil.rmtree(project.parent)

    print(
        f"\n{'interaction':<44}{'panel s':>9}{'by hand s':>11}{'panel/hand':>11}"
        f"{'all rows s':>12}{'sampling saves':>16}"
    )
    print(f"{'':<44}{'(sample)':>9}{'(sample)':>11}{'':>11}{'(by hand)':>12}")
    for name, ours, same, full in results:
        line = f"{name:<44}{ours:>9.2f}"
        if same is not None and full is not None:
            line += f"{same:>11.2f}{ours / same:>10.1f}x{full:>12.2f}{full / same:>15.1f}x"
        print(line)
    print(
        "\npanel/hand: the panel's time over the same work by hand on the same sample (above 1:"
        " the panel's own work, widgets and plots, costs that much more).\nsampling saves: the "
        "by-hand work on all rows over the same on the sample, which is what the panels gain by "
        "sampling (and what a user gives up in exactness)."
    )
    interactions = [r for r in results if "build" not in r[0]]
    slowest = max(interactions, key=lambda r: r[1])
    built = max((r for r in results if "build" in r[0]), key=lambda r: r[1])
    print(f"\nSlowest interaction: {slowest[0]} ({slowest[1]:.2f} s)")
    print(f"Slowest panel build (once per cell run): {built[0]} ({built[1]:.2f} s)")


if __name__ == "__main__":
    main()
