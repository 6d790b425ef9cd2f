"""The demo data: a synthetic customer-churn table that looks like a real, dirty export.

``nbtools new`` without ``--data`` gives a project this table (the ingest source ``"demo"``), and
:mod:`nbtools.ops.simulation` draws drifted customers from it to teach monitoring.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nbtools.errors import InvalidParameterError

__all__ = ["make_churn"]


def make_churn(n_rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Generate a realistic synthetic customer-churn table.

    The target ``churned`` ("yes"/"no", about a third "yes") depends on the contract, tenure,
    charges, support calls, internet service and payment method, plus noise, so a model can
    learn it but not perfectly. Like real exports, the table is dirty: 2-4 % missing values in
    several columns, about 1 % duplicated rows, a few outliers in ``monthly_charges`` and
    ``support_calls``, and a few invalid rows with a negative ``tenure_months``.

    Parameters
    ----------
    n_rows : int, default=2000
        Number of rows. A million rows take about a second.
    seed : int, default=0
        Seed of the random generator; the same seed gives the same table.

    Returns
    -------
    pandas.DataFrame
        Columns ``signup_date, age, region, contract, tenure_months, internet_service,
        monthly_charges, total_charges, data_usage_gb, support_calls, payment_method,
        paperless_billing, churned``.

    Raises
    ------
    InvalidParameterError
        If ``n_rows`` is not a positive integer.
    """
    if isinstance(n_rows, bool) or not isinstance(n_rows, int | np.integer) or n_rows < 1:
        raise InvalidParameterError(f"'n_rows' must be a positive integer. Got {n_rows!r} instead.")
    rng = np.random.default_rng(seed)
    n = int(n_rows)
    drawn = _customers(rng, n)
    churned = _churn(rng, n, drawn)
    _make_dirty(rng, n, drawn)
    columns = _columns(drawn, churned)
    duplicates = rng.choice(n, size=n // 100, replace=False)
    originals = rng.integers(0, n, size=duplicates.size)
    for values in columns.values():
        values[duplicates] = values[originals]
    frame = pd.DataFrame(columns)
    for name, values in frame.items():
        if values.dtype == object:
            frame[name] = values.astype("str")
    return frame


def _customers(rng: np.random.Generator, n: int) -> dict[str, Any]:
    """Draw the customers' attributes, as codes and numbers, before any dirt."""
    contract = rng.choice(3, n, p=[0.55, 0.25, 0.20])
    # months as a customer, 0-72: short for monthly contracts, long for two-year ones
    tenure = np.round(
        72 * rng.beta(np.array([0.7, 1.3, 2.2])[contract], np.array([2.2, 1.3, 0.9])[contract])
    )
    internet = rng.choice(3, n, p=[0.35, 0.45, 0.20])
    payment = rng.choice(4, n, p=[0.35, 0.20, 0.22, 0.23])
    region = rng.choice(4, n, p=[0.30, 0.25, 0.25, 0.20])
    paperless = rng.random(n) < 0.6
    age = np.clip(np.round(rng.normal(46, 15, n)), 18, 90)
    monthly = np.clip(
        np.array([55.0, 85.0, 22.0])[internet] + 4.0 * paperless + rng.normal(0, 12, n), 15, 130
    )
    total = np.round(monthly * tenure * rng.normal(1.0, 0.05, n), 2)
    usage = np.round(np.where(internet == 2, 0.0, rng.lognormal(3.5, 0.8, n)), 1)
    support = rng.poisson(np.where(internet == 1, 2.0, 1.0))
    days = tenure * 30.44 + rng.integers(0, 30, n)
    signup = (pd.Timestamp("2025-01-01") - pd.to_timedelta(days, unit="D").round("D")).as_unit("us")
    return {
        "contract": contract,
        "tenure": tenure,
        "internet": internet,
        "payment": payment,
        "region": region,
        "paperless": paperless,
        "age": age,
        "monthly": monthly,
        "total": total,
        "usage": usage,
        "support": support,
        "signup": signup,
    }


def _churn(rng: np.random.Generator, n: int, drawn: dict[str, Any]) -> np.ndarray:
    """Draw who churned, from a logistic model of the attributes plus noise."""
    contract, tenure, internet = drawn["contract"], drawn["tenure"], drawn["internet"]
    logit = (
        -1.6
        + np.array([1.2, -0.2, -1.2])[contract]
        - 0.035 * tenure
        + 0.012 * (drawn["monthly"] - 65)
        + 0.30 * drawn["support"]
        + np.array([0.0, 0.55, -0.4])[internet]
        + np.array([0.5, 0.0, -0.1, -0.1])[drawn["payment"]]
        - 0.008 * (drawn["age"] - 46)
        + 0.15 * drawn["paperless"]
        + rng.normal(0, 0.7, n)
    )
    churned: np.ndarray = rng.random(n) < 1 / (1 + np.exp(-logit))
    return churned


def _make_dirty(rng: np.random.Generator, n: int, drawn: dict[str, Any]) -> None:
    """Add what real exports look like: outliers, invalid rows and missing values.

    Exact shares of rows, so that even a small table shows every kind of problem.
    """
    monthly, support = drawn["monthly"], drawn["support"]
    rows = _rows(rng, n, 0.003)
    monthly[rows] *= rng.uniform(5, 10, rows.size)
    rows = _rows(rng, n, 0.002)
    support[rows] += rng.integers(15, 40, rows.size)
    tenure = drawn["tenure"] = drawn["tenure"].astype(np.int64)
    rows = _rows(rng, n, 0.003)
    tenure[rows] = -rng.integers(1, 24, rows.size)
    drawn["age"][_rows(rng, n, 0.03)] = np.nan
    monthly[_rows(rng, n, 0.025)] = np.nan
    drawn["total"][_rows(rng, n, 0.03)] = np.nan
    drawn["usage"][_rows(rng, n, 0.04)] = np.nan
    drawn["internet"][_rows(rng, n, 0.02)] = -1
    drawn["payment"][_rows(rng, n, 0.02)] = -1


def _columns(drawn: dict[str, Any], churned: np.ndarray) -> dict[str, Any]:
    """Name the columns and turn the codes into the categories an export shows."""
    return {
        "signup_date": drawn["signup"].to_numpy(copy=True),
        "age": drawn["age"],
        "region": _labels(drawn["region"], ["north", "south", "east", "west"]),
        "contract": _labels(drawn["contract"], ["month-to-month", "one year", "two year"]),
        "tenure_months": drawn["tenure"],
        "internet_service": _labels(drawn["internet"], ["dsl", "fiber optic", "none"]),
        "monthly_charges": np.round(drawn["monthly"], 2),
        "total_charges": drawn["total"],
        "data_usage_gb": drawn["usage"],
        "support_calls": drawn["support"].astype(np.int64),
        "payment_method": _labels(
            drawn["payment"], ["electronic check", "mailed check", "bank transfer", "credit card"]
        ),
        "paperless_billing": _labels(drawn["paperless"].astype(int), ["no", "yes"]),
        "churned": _labels(churned.astype(int), ["no", "yes"]),
    }


def _rows(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    """Pick ``round(share * n)`` distinct row positions."""
    return rng.choice(n, size=round(share * n), replace=False)


def _labels(codes: np.ndarray, names: list[str]) -> np.ndarray:
    """Map integer codes to category names as an object array (code -1 means missing)."""
    lookup = np.array([*names, np.nan], dtype=object)
    return lookup[np.where(codes < 0, len(names), codes)]
