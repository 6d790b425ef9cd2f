"""Tree ensembles as flat NumPy arrays, evaluated for all trees and rows at once.

scikit-learn predicts with a tree ensemble one tree at a time, each a separate compiled call
from Python, after validating the input: for one row most of the time goes into the calls, not
the trees. :class:`FlatTrees` holds every node of every tree in one set of arrays and walks all
trees for all rows together, one depth level per step, so a prediction costs a few NumPy
operations per level whatever the number of trees.

The walk follows scikit-learn's own rules exactly:

- a missing value goes where the node sends missing values (``missing_go_to_left``);
- a numeric split sends ``x <= threshold`` left (random forests compare ``x`` as float32, as
  their trees are fitted on float32);
- a categorical split of gradient boosting sends the levels in its bitset left, and a level
  the model never saw in training, or a negative code, where missing values go.

Leaves point to themselves, so extra steps past a leaf change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FlatTrees", "flatten_boosting", "flatten_forest"]


@dataclass(frozen=True)
class FlatTrees:
    """Every node of a tree ensemble in flat arrays, indexed by a global node number.

    Parameters
    ----------
    roots : ndarray of int
        The root node of each tree.
    feature, threshold, missing_left, left, right : ndarray
        Per node: the feature column it splits on, the numeric threshold, where missing values
        go, and the children (a leaf's children are the leaf itself).
    value : ndarray
        Per node: the leaf value, shape ``(nodes,)`` or ``(nodes, outputs)``.
    depth : int
        Steps from a root to the deepest leaf.
    float32 : bool
        Whether feature values are compared as float32 (scikit-learn's decision trees).
    leaf : ndarray of bool
        Per node: whether it is a leaf.
    categorical : ndarray of bool or None
        Per node: whether it splits on a categorical feature's level set (gradient boosting).
    left_levels : ndarray of uint32 or None
        Per node, a 256-bit set of the levels it sends left: those of its split, and, when
        missing values go left, every level not seen in training.
    """

    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    depth: int
    float32: bool = False
    leaf: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    categorical: np.ndarray | None = None
    left_levels: np.ndarray | None = None

    def leaves(self, Z: np.ndarray) -> np.ndarray:
        """Return the leaf each row of ``Z`` reaches in each tree, shape ``(rows, trees)``."""
        if self.float32:
            Z = Z.astype(np.float32).astype(np.float64)
        rows = np.arange(len(Z))[:, None]
        node = np.broadcast_to(self.roots, (len(Z), len(self.roots)))
        for _ in range(self.depth):
            if self.leaf[node].all():
                break
            x = Z[rows, self.feature[node]]
            go_left = x <= self.threshold[node]
            if self.categorical is not None:
                split = self.categorical[node]
                if split.any():
                    go_left = np.where(split, self._by_level(node, x), go_left)
            go_left = np.where(np.isnan(x), self.missing_left[node], go_left)
            node = np.where(go_left, self.left[node], self.right[node])
        return node

    def _by_level(self, node: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Where a categorical split sends each level: its bit in the node's set; a missing
        value, or a code outside 0..255, goes where missing values go."""
        assert self.left_levels is not None
        inside = (x >= 0) & (x <= 255)
        code = np.where(inside, x, 0).astype(np.int64)
        bit = (self.left_levels[node, code >> 5] >> (code & 31).astype(np.uint32)) & 1
        return np.where(inside, bit == 1, self.missing_left[node])


def flatten_forest(estimators: list[Any]) -> FlatTrees:
    """Flatten the fitted decision trees of a random forest.

    The value of a classifier's leaf is its class shares (each tree's leaf counts normalised,
    as ``predict_proba`` does); a regressor's is its prediction.
    """
    parts = _Parts()
    for estimator in estimators:
        tree = estimator.tree_
        leaf = tree.children_left == -1
        value = tree.value[:, 0, :]
        if value.shape[1] > 1:  # class shares
            totals = value.sum(axis=1, keepdims=True)
            value = np.divide(value, totals, out=np.zeros_like(value), where=totals > 0)
        else:
            value = value[:, 0]
        missing_left = getattr(tree, "missing_go_to_left", np.zeros(len(leaf), dtype=np.uint8))
        parts.add(
            int(tree.max_depth),
            leaf=leaf,
            feature=tree.feature,
            threshold=tree.threshold,
            missing_left=np.asarray(missing_left, dtype=bool),
            left=tree.children_left,
            right=tree.children_right,
            value=value,
        )
    return parts.joined(float32=True)


def flatten_boosting(model: Any) -> FlatTrees:
    """Flatten the trees of a fitted ``HistGradientBoosting*`` model.

    The trees come in boosting order, one per class per iteration (one per iteration for
    regression and binary classification); the value of a leaf is its raw contribution.
    """
    known, feature_map = model._bin_mapper.make_known_categories_bitsets()
    parts = _Parts()
    for iteration in model._predictors:
        for predictor in iteration:
            nodes = predictor.nodes
            leaf = nodes["is_leaf"].astype(bool)
            categorical = nodes["is_categorical"].astype(bool) & ~leaf
            levels = np.zeros((len(nodes), 8), dtype=np.uint32)
            if categorical.any():
                where = np.flatnonzero(categorical)
                levels[where] = predictor.raw_left_cat_bitsets[nodes["bitset_idx"][where]]
                unseen = ~known[feature_map[nodes["feature_idx"][where]]]
                to_left = nodes["missing_go_to_left"][where].astype(bool)
                levels[where[to_left]] |= unseen[to_left]
            parts.add(
                int(predictor.get_max_depth()),
                leaf=leaf,
                feature=nodes["feature_idx"].astype(np.int64),
                threshold=nodes["num_threshold"],
                missing_left=nodes["missing_go_to_left"].astype(bool),
                left=nodes["left"].astype(np.int64),
                right=nodes["right"].astype(np.int64),
                value=np.where(leaf, nodes["value"], 0.0),
                categorical=categorical,
                left_levels=levels,
            )
    if not any(c.any() for c in parts.columns["categorical"]):
        del parts.columns["categorical"], parts.columns["left_levels"]
    return parts.joined()


class _Parts:
    """The trees' node arrays, gathered tree by tree, with node numbers made global."""

    def __init__(self) -> None:
        self.columns: dict[str, list[np.ndarray]] = {}
        self.roots: list[int] = []
        self.nodes = 0
        self.depth = 0

    def add(self, depth: int, *, leaf: np.ndarray, **arrays: np.ndarray) -> None:
        """Add one tree; a leaf's split fields are zeroed and its children are itself."""
        offset, own = self.nodes, np.arange(len(leaf))
        arrays["feature"] = np.where(leaf, 0, arrays["feature"])
        arrays["threshold"] = np.where(leaf, 0.0, arrays["threshold"])
        arrays["left"] = np.where(leaf, own, arrays["left"]) + offset
        arrays["right"] = np.where(leaf, own, arrays["right"]) + offset
        for name, array in {**arrays, "leaf": leaf}.items():
            self.columns.setdefault(name, []).append(array)
        self.roots.append(offset)
        self.nodes += len(leaf)
        self.depth = max(self.depth, depth)

    def joined(self, float32: bool = False) -> FlatTrees:
        """All trees as one :class:`FlatTrees`."""
        arrays = {name: np.concatenate(parts) for name, parts in self.columns.items()}
        return FlatTrees(np.asarray(self.roots), depth=self.depth, float32=float32, **arrays)
