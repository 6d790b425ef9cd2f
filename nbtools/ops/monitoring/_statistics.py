"""Statistics behind :mod:`nbtools.ops.monitoring.drift`: reference summaries and per-column tests.

Everything here works on plain NumPy arrays and pandas Series, vectorised: one sort per numeric
column gives its quantiles and its bin counts, so a million rows take a fraction of a second.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from nbtools.ops.monitoring import _sketch

OTHER = "<other>"  # bucket for categories outside the reference's most frequent ones
DISCRETE_MAX_VALUES = 5  # numeric columns with at most this many values are tested as categorical
PSI_EPSILON = 1e-4  # share used in place of an empty bin, so PSI stays finite
KNOWN_MAX_CATEGORIES = 10_000  # categories listed for the new-category check (beyond: unchecked)
NORM_FLOOR = 1e-3  # smallest standard deviation the Wasserstein distance is divided by


# --- reference -------------------------------------------------------------------------------


def column_kind(series: pd.Series) -> str:
    """``"datetime"``, ``"numeric"`` (numbers but not booleans) or ``"categorical"``."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return "numeric"
    return "categorical"


def finite_values(series: pd.Series, kind: str = "numeric") -> np.ndarray:
    """The finite values of a numeric column, or of a datetime column as days since 1970.

    Missing and infinite values, and text that does not parse as a date, are dropped.
    """
    if kind == "datetime":
        with warnings.catch_warnings():  # text in several formats is parsed element by element
            warnings.simplefilter("ignore", UserWarning)
            stamps = pd.to_datetime(series, errors="coerce", utc=True)
        series = (stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(days=1)
    values = series.to_numpy(dtype=float, na_value=np.nan)
    return values[np.isfinite(values)]


def numeric_reference(
    series: pd.Series, sample_size: int, rng: np.random.Generator, kind: str = "numeric"
) -> dict[str, Any]:
    """Sketch, decile histogram, sample and moments of a numeric or datetime column.

    The sketch (:func:`nbtools.ops.monitoring._sketch.sketch`) keeps the tails, the minimum and the
    maximum, for the Wasserstein distance; the sample serves the Kolmogorov-Smirnov test.
    """
    values = np.sort(finite_values(series, kind))
    n = int(values.size)
    out: dict[str, Any] = {
        "kind": kind,
        "dtype": str(series.dtype),
        "count": n,
        "missing": int(series.size - n),
    }
    if n == 0:
        return out
    edges = np.unique(sorted_quantiles(values, np.linspace(0.1, 0.9, 9)))
    keep = np.sort(rng.choice(n, size=sample_size, replace=False)) if n > sample_size else None
    std = float(values.std())
    out.update(
        mean=float(values.mean()),
        std=std,
        min=float(values[0]),
        max=float(values[-1]),
        **_sketch.sketch(values, std),
        histogram={
            "edges": edges.tolist(),
            "counts": sorted_bin_counts(values, edges).astype(int).tolist(),
        },
        sample=(values if keep is None else values[keep]).tolist(),
    )
    distinct, counts = np.unique(values, return_counts=True)
    if distinct.size <= DISCRETE_MAX_VALUES:
        out["frequencies"] = {number_key(v): int(c) for v, c in zip(distinct, counts, strict=True)}
        out["other"] = 0
    return out


def categorical_reference(series: pd.Series, max_categories: int = 100) -> dict[str, Any]:
    """Category counts keyed by text: the most frequent ones, the rest pooled as ``other``.

    The names of the pooled categories are kept too (up to ``KNOWN_MAX_CATEGORIES`` in all),
    with the number of categories seen once, for the new-category check.
    """
    counts = category_counts(series).sort_values(ascending=False, kind="stable")
    kept = counts.iloc[:max_categories]
    rest = counts.iloc[max_categories:]
    complete = counts.size <= KNOWN_MAX_CATEGORIES
    return {
        "kind": "categorical",
        "dtype": str(series.dtype),
        "count": int(counts.sum()),
        "missing": int(series.isna().sum()),
        "frequencies": {str(k): int(v) for k, v in kept.items()},
        "other": int(rest.sum()),
        "other_categories": [str(k) for k in rest.index] if complete else None,
        "singletons": int((counts == 1).sum()),
    }


def category_counts(series: pd.Series) -> pd.Series:
    """Counts of the non-missing values of a column, keyed by their text form."""
    counts = series.value_counts(dropna=True)
    # Several values can share a text form (1 and "1"): the reference is keyed by text.
    return counts.groupby(counts.index.map(str)).sum()


def number_key(value: float) -> str:
    """The text key of a value of a discrete numeric column (``1`` and ``1.0`` share one)."""
    return repr(float(value))


def sorted_quantiles(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantiles of sorted values with linear interpolation (NumPy's default), without sorting."""
    position = levels * (values.size - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, values.size - 1)
    return values[low] + (position - low) * (values[high] - values[low])


def sorted_bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of sorted values in the bins (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    cumulative = np.searchsorted(values, edges, side="right")
    return np.diff(np.concatenate([[0], cumulative, [values.size]]))


# --- tests -----------------------------------------------------------------------------------


def test_column(
    name: str,
    ref: dict[str, Any],
    current: pd.Series,
    *,
    alpha: float,
    min_rows: int,
    large_sample: int,
    wasserstein_threshold: float,
    js_threshold: float,
    missing_threshold: float,
    new_category_threshold: float,
) -> dict[str, Any]:
    """Test one column; the p-value adjustment and the distribution decision come later.

    Besides the distribution test, two checks of their own: the share of missing values (a
    one-sided binomial test against the reference's share, flagged when the rise also reaches
    ``missing_threshold``), and the share of values in categories the reference never saw
    (flagged when it exceeds the share of unseen values the reference itself predicts, its
    Good-Turing estimate, by ``new_category_threshold`` and significantly).
    """
    numeric = ref["kind"] != "categorical"
    numeric_values = np.sort(finite_values(current, ref["kind"])) if numeric else None
    cur_count = int(numeric_values.size if numeric_values is not None else current.notna().sum())
    out: dict[str, Any] = {
        "column": name,
        "kind": ref["kind"],
        "test": "not_enough_data",
        "statistic": None,
        "p_value": None,
        "p_value_adjusted": None,
        "threshold": alpha,
        "psi": None,
        "reference_count": int(ref["count"]),
        "current_count": cur_count,
        **missing_check(ref, int(current.size), cur_count, alpha, min_rows, missing_threshold),
        **new_category_check(ref, current, alpha, min_rows, new_category_threshold),
    }
    if min(int(ref["count"]), cur_count) < min_rows:
        return out
    large = min(int(ref["count"]), cur_count) > large_sample
    if "frequencies" in ref:
        ref_counts, cur_counts = paired_counts(ref, current)
        out["psi"] = psi(ref_counts, cur_counts)
        if large:
            out.update(
                test="jensen_shannon",
                threshold=js_threshold,
                statistic=float(
                    jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum())
                ),
            )
        else:
            out["test"] = "chi_square"
            out["statistic"], out["p_value"] = chi_square(ref_counts, cur_counts)
        return out
    assert numeric_values is not None
    edges = np.asarray(ref["histogram"]["edges"], dtype=float)
    out["psi"] = psi(
        np.asarray(ref["histogram"]["counts"], dtype=float),
        sorted_bin_counts(numeric_values, edges),
    )
    if large:
        # A column tested as continuous has more than 5 distinct values, so its std is > 0.
        atoms, weights = _sketch.atoms_of(ref)
        distance = _sketch.wasserstein(atoms, weights, numeric_values)
        out.update(test="wasserstein", threshold=wasserstein_threshold)
        out["statistic"] = distance / max(float(ref["std"]), NORM_FLOOR)
    else:
        result = stats.ks_2samp(np.asarray(ref["sample"], dtype=float), numeric_values)
        out.update(test="ks", statistic=float(result.statistic), p_value=float(result.pvalue))
    return out


def missing_check(
    ref: dict[str, Any], rows: int, present: int, alpha: float, min_rows: int, rise: float
) -> dict[str, Any]:
    """Missing shares on both sides; whether the current one rose beyond chance and ``rise``."""
    ref_rows = int(ref["count"]) + int(ref.get("missing", 0))
    ref_share = int(ref.get("missing", 0)) / ref_rows if ref_rows else 0.0
    missing = rows - present
    out: dict[str, Any] = {
        "missing_reference": ref_share,
        "missing_current": missing / rows if rows else 0.0,
        "missing_drift": None,
    }
    if rows < min_rows:
        return out
    # Half a value in place of none, so that a reference without gaps still allows a few.
    expected = max(ref_share, 0.5 / (ref_rows + 1))
    p_value = stats.binomtest(missing, rows, expected, alternative="greater").pvalue
    out["missing_drift"] = bool(missing / rows - ref_share >= rise and p_value <= alpha)
    return out


def new_category_check(
    ref: dict[str, Any], current: pd.Series, alpha: float, min_rows: int, rise: float
) -> dict[str, Any]:
    """Values in categories the reference never saw: their share, the ten most frequent, a flag.

    Unchecked (None) for continuous columns and for categorical columns with more than
    ``KNOWN_MAX_CATEGORIES`` categories, whose names the reference does not keep.
    """
    out: dict[str, Any] = {"new_share": None, "new_categories": [], "new_category_drift": None}
    known_rest = ref.get("other_categories", [] if ref.get("other", 0) == 0 else None)
    if "frequencies" not in ref or known_rest is None:
        return out
    if ref["kind"] == "categorical":
        counts = category_counts(current)
    else:
        distinct, number = np.unique(finite_values(current, ref["kind"]), return_counts=True)
        counts = pd.Series(number, index=[number_key(v) for v in distinct])
    total = int(counts.sum())
    if total == 0:
        return out
    unseen = counts[~counts.index.isin([*ref["frequencies"], *known_rest])]
    unseen = unseen.sort_values(ascending=False, kind="stable")
    share = float(unseen.sum()) / total
    out.update(new_share=share, new_categories=[str(k) for k in unseen.index[:10]])
    if total < min_rows:
        return out
    ref_count = max(int(ref["count"]), 1)
    # Good-Turing: the share of reference values seen once estimates the share of unseen ones.
    expected = int(ref.get("singletons", 0)) / ref_count
    floor = max(expected, 0.5 / (ref_count + 1))
    p_value = stats.binomtest(int(unseen.sum()), total, min(floor, 1.0), alternative="greater")
    out["new_category_drift"] = bool(share - expected >= rise and p_value.pvalue <= alpha)
    return out


def paired_counts(ref: dict[str, Any], current: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Reference and current counts over the reference's categories plus the other bucket."""
    if ref["kind"] != "categorical":
        distinct, counts = np.unique(finite_values(current, ref["kind"]), return_counts=True)
        cur = pd.Series(counts, index=[number_key(v) for v in distinct])
    else:
        cur = category_counts(current)
    keys = list(ref["frequencies"])
    known = cur.index.isin(keys)
    ref_counts = np.array([*ref["frequencies"].values(), ref.get("other", 0)], dtype=float)
    cur_counts = np.append(cur.reindex(keys, fill_value=0).to_numpy(dtype=float), cur[~known].sum())
    return ref_counts, cur_counts


def chi_square(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity of two count vectors; (statistic, p-value)."""
    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Population stability index between two count vectors over the same bins."""
    ref = np.maximum(ref_counts / ref_counts.sum(), PSI_EPSILON)
    cur = np.maximum(cur_counts / cur_counts.sum(), PSI_EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))
