"""The reference side of the Wasserstein distance: a sketch that keeps the tails.

A numeric reference column is kept as weighted values ("atoms"): every distinct value with its
count when there are at most ``EXACT_MAX_VALUES`` of them, else the medians of cells of the
sorted values, weighted by the cells' counts. The cells start as ``SKETCH_CELLS`` cells of equal
count, with the minimum and the maximum in cells of their own, and every cell whose values lie
far from its median is halved until the whole sketch is within ``SKETCH_TOLERANCE`` reference
standard deviations of the data in Wasserstein distance. A few values far out (sentinels, a unit
change in some rows) spread their cell widely, so they end up alone and kept exactly; a dense
middle stays coarse.

The distance itself (:func:`wasserstein`) is exact between those atoms and the current values,
which are always at hand in full. Since the Wasserstein distance is a metric, it differs from the
distance to the full reference by at most the sketch's own error, which is measured when the
sketch is built and kept with it (``sketch_error``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

EXACT_MAX_VALUES = 5000  # up to this many distinct values the reference keeps every one
SKETCH_CELLS = 1000  # first split of a larger column: equal-count cells, then refined
SKETCH_TOLERANCE = 1e-3  # the sketch's own Wasserstein error, in reference standard deviations
MAX_ATOMS = 20_000  # refinement stops here even if the tolerance is not met
MAX_ROUNDS = 40


def sketch(values: np.ndarray, std: float) -> dict[str, Any]:
    """Summarise sorted finite values as weighted atoms for the Wasserstein distance.

    Parameters
    ----------
    values : ndarray
        The column's finite values, sorted.
    std : float
        Their standard deviation, the unit of the tolerance.

    Returns
    -------
    dict
        ``{"atoms": [...], "weights": [...], "sketch_error": float}``: sorted values, their counts
        (summing to ``values.size``) and the Wasserstein distance between the atoms and the values,
        in standard deviations (0 when every value is kept).
    """
    n = values.size
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    if change.size + 1 <= EXACT_MAX_VALUES:
        starts = np.concatenate([[0], change])
        counts = np.diff(np.append(starts, n))
        return {
            "atoms": values[starts].tolist(),
            "weights": counts.astype(int).tolist(),
            "sketch_error": 0.0,
        }
    centred = values - values[n // 2]  # prefix sums of centred values lose less to rounding
    prefix = np.concatenate([[0.0], np.cumsum(centred)])
    inner = np.linspace(1, n - 1, SKETCH_CELLS + 1).round().astype(np.int64)
    bounds = np.unique(np.concatenate([[0, 1], inner, [n - 1, n]]))
    budget = SKETCH_TOLERANCE * max(std, 1e-12) * n  # on the sum of absolute deviations
    for _ in range(MAX_ROUNDS):
        cost = _cell_costs(centred, prefix, bounds)
        total = cost.sum()
        if total <= budget or bounds.size > MAX_ATOMS:
            break
        # Halve the cells that carry more than their share of the budget, largest first.
        wide = (cost > budget / (bounds.size - 1)) & (np.diff(bounds) > 1)
        if not wide.any():
            wide = (cost >= np.sort(cost)[-max(1, cost.size // 10)]) & (np.diff(bounds) > 1)
            if not wide.any():
                break
        halves = (bounds[:-1][wide] + bounds[1:][wide]) // 2
        bounds = np.unique(np.concatenate([bounds, halves]))
    starts, ends = bounds[:-1], bounds[1:]
    medians = values[(starts + ends - 1) // 2]
    error = float(_cell_costs(centred, prefix, bounds).sum()) / n / max(std, 1e-12)
    return {
        "atoms": medians.tolist(),
        "weights": (ends - starts).astype(int).tolist(),
        "sketch_error": error,
    }


def _cell_costs(values: np.ndarray, prefix: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Per cell [start, end) of sorted values: the sum of absolute deviations from its median."""
    starts, ends = bounds[:-1], bounds[1:]
    mid = (starts + ends - 1) // 2
    median = values[mid]
    above = prefix[ends] - prefix[mid] - (ends - mid) * median
    below = (mid - starts) * median - (prefix[mid] - prefix[starts])
    return np.maximum(above + below, 0.0)


def atoms_of(ref: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The weighted atoms of a numeric reference column (sorted values, weights summing to 1).

    References written before the sketch kept 1,000 quantiles at the middle of equal slices:
    those are read as 1,000 equally weighted atoms.
    """
    if "atoms" in ref:
        atoms = np.asarray(ref["atoms"], dtype=float)
        weights = np.asarray(ref["weights"], dtype=float)
    else:
        atoms = np.asarray(ref["quantiles"], dtype=float)
        weights = np.ones(atoms.size)
    return atoms, weights / weights.sum()


def wasserstein(atoms: np.ndarray, weights: np.ndarray, current: np.ndarray) -> float:
    """The 1-Wasserstein distance between weighted atoms and sorted current values, exactly.

    Parameters
    ----------
    atoms, weights : ndarray
        Sorted reference values and their weights (summing to 1).
    current : ndarray
        The current values, sorted.

    Returns
    -------
    float
        The integral of the absolute difference of the two cumulative distribution functions,
        as ``scipy.stats.wasserstein_distance`` computes it for the same two distributions.
    """
    # Merge the atoms into the sorted current values (linear, no sort); at each point of the
    # merged grid each CDF is the weight of its own side's points up to there. Ties make
    # zero-length steps, so either order within a tie gives the same integral.
    at = np.searchsorted(current, atoms, side="left") + np.arange(atoms.size)
    grid = np.insert(current, at - np.arange(atoms.size), atoms)
    ref_step = np.zeros(grid.size)
    ref_step[at] = weights
    cur_step = np.full(grid.size, 1.0 / current.size)
    cur_step[at] = 0.0
    gap = np.cumsum(ref_step[:-1]) - np.cumsum(cur_step[:-1])
    return float(np.sum(np.abs(gap) * np.diff(grid)))


def weighted_quantiles(atoms: np.ndarray, weights: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantiles of weighted atoms (the smallest atom whose cumulative weight reaches a level)."""
    cumulative = np.cumsum(weights)
    index = np.searchsorted(cumulative, levels * cumulative[-1], side="left")
    return atoms[np.minimum(index, atoms.size - 1)]
