"""Simulated drift on the demo churn data, for teaching the monitoring loop and testing it.

:func:`drifted_churn` draws new customers from :func:`nbtools.demo.make_churn` and moves
them away from the training data, each kind of drift by its own strength (0: none, 1: full):

- **covariate drift** (the inputs move, what they mean does not): the new customers are drawn
  with a preference for expensive plans and month-to-month contracts, so charges, contracts and
  the columns that go with them shift while churn still follows the same rules;
- **concept drift** (what the inputs mean moves): a competitor courts long-standing customers,
  so that share of the customers with more than two years of tenure now churn, which the old
  model, trained when long tenure meant loyalty, does not expect.

:func:`churn_stream` makes daily batches of such data with timestamps, each day drifted by its
own strength, as a scheduler would see them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nbtools.demo import make_churn
from nbtools.errors import InvalidParameterError


def drifted_churn(
    n_rows: int, *, covariate: float = 0.0, concept: float = 0.0, seed: int = 1
) -> pd.DataFrame:
    """Draw churn data drifted away from the demo data's population.

    Parameters
    ----------
    n_rows : int
        Number of rows.
    covariate, concept : float, default=0.0
        Strength of each kind of drift, from 0 (none) to 1 (full; see the module docstring).
    seed : int, default=1
        Seed; the demo data uses 0, so other seeds draw new customers.

    Returns
    -------
    DataFrame
        The columns of :func:`nbtools.demo.make_churn`, target ``churned`` included.

    Raises
    ------
    InvalidParameterError
        If a strength is outside [0, 1].
    """
    for name, strength in (("covariate", covariate), ("concept", concept)):
        if not 0 <= strength <= 1:
            raise InvalidParameterError(
                f"The '{name}' strength of simulated drift must be a float in the range [0, 1]. "
                f"Got {strength!r} instead."
            )
    rng = np.random.default_rng(seed)
    pool = make_churn(3 * n_rows, seed=seed)
    charges = pool["monthly_charges"].fillna(pool["monthly_charges"].median())
    tilt = ((charges - 65.0) / 25.0).clip(-2, 2) + (pool["contract"] == "month-to-month")
    weights = np.exp(1.5 * covariate * tilt.to_numpy(dtype=float))
    chosen = rng.choice(len(pool), n_rows, replace=False, p=weights / weights.sum())
    frame = pool.iloc[np.sort(chosen)].reset_index(drop=True)
    loyal = (frame["tenure_months"] > 24).to_numpy() & (rng.random(n_rows) < concept)
    frame.loc[loyal, "churned"] = "yes"
    return frame


def churn_stream(
    strengths: list[float],
    rows_per_day: int,
    *,
    concept: bool = True,
    start: str = "2026-01-01",
    seed: int = 1,
) -> pd.DataFrame:
    """Daily batches of new customers, each day drifted by its own strength.

    Parameters
    ----------
    strengths : list of float
        Drift strength of each day, from 0 (like the training data) to 1 (fully drifted), e.g.
        ``[0, 0, 1, 1]`` for a sudden change on the third day.
    rows_per_day : int
        Customers per day.
    concept : bool, default=True
        Let the concept drift too, not only the inputs.
    start : str, default="2026-01-01"
        The first day (UTC).
    seed : int, default=1
        Seed of the first day; day ``d`` uses ``seed + d``.

    Returns
    -------
    DataFrame
        :func:`drifted_churn` rows with a ``timestamp`` column spread over each day.
    """
    first = pd.Timestamp(start, tz="UTC")
    batches = []
    for day, strength in enumerate(strengths):
        batch = drifted_churn(
            rows_per_day,
            covariate=strength,
            concept=strength if concept else 0.0,
            seed=seed + day,
        )
        offsets = pd.to_timedelta(np.linspace(0, 86_399, rows_per_day), unit="s")
        batches.append(batch.assign(timestamp=first + pd.Timedelta(days=day) + offsets))
    return pd.concat(batches, ignore_index=True)
