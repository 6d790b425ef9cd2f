"""The ``torch_mlp`` family against the neural network a scikit-learn user would write.

Run from the repository root, in an environment with both extras::

    pip install -e '.[bench,torch]'
    python benchmarks/bench_torch_mlp.py [--only NAME]... [--quick]

On each real public table of ``benchmarks/quality_data.py`` (nothing is downloaded):

1. The table is cleaned once by nbtools' clean step (``cleaning.apply`` with its defaults) and
   split 80/20, seeded (stratified for classes). Both models get the same cleaned rows.
2. **nbtools**: the train stage's model pipeline of ``torch_mlp`` with its defaults
   (``model_choice.pipeline_factory``: imputation, embeddings for categories, the network with
   early stopping), fitted on the training rows.
3. **The peer**: scikit-learn's ``MLPClassifier``/``MLPRegressor`` with ``early_stopping=True``
   behind median/most-frequent imputation, scaling and one-hot encoding (and, for regression,
   a standardised target through ``TransformedTargetRegressor``, as nbtools' network has), seed 0.
4. For reference, scikit-learn's default ``HistGradientBoosting*`` on the same rows: the family
   ``family="auto"`` starts from.

Printed per table: the test score of each (ROC AUC for two classes, accuracy for more, R² for
regression), nbtools minus the peer, and fit seconds with the ratio nbtools / peer. What
differs: nbtools' network trains with PyTorch on one thread, the peer with NumPy's BLAS on every
core; PyTorch's import and first step are paid before timing (once per process, about 1.5 s);
library versions are those installed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

sys.path.insert(0, str(Path(__file__).parent))

from quality_data import TABLES, Table

from nbtools.ml import cleaning, features, model_choice
from nbtools.ml.neural import TorchMLPClassifier

SEED = 0


def score(task: str, model: object, X: pd.DataFrame, y: pd.Series) -> float:
    """The compared metric of a fitted model on the rows ``X``, ``y``."""
    if task == "binary":
        return float(roc_auc_score(y, model.predict_proba(X)[:, 1]))
    if task == "multiclass":
        return float(accuracy_score(y, model.predict(X)))
    return float(r2_score(y, model.predict(X)))


def peer(task: str, numeric: list[str], categorical: list[str]) -> object:
    """The scikit-learn network a user would write for these columns."""
    columns = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                categorical,
            ),
        ]
    )
    if task == "regression":
        network = TransformedTargetRegressor(
            MLPRegressor(early_stopping=True, random_state=SEED, max_iter=500),
            transformer=StandardScaler(),
        )
        return make_pipeline(columns, network)
    return make_pipeline(columns, MLPClassifier(early_stopping=True, random_state=SEED))


def boosting(task: str, categorical: list[str]) -> object:
    """scikit-learn's default gradient boosting, with native categories."""
    if task == "regression":
        return HistGradientBoostingRegressor(categorical_features="from_dtype", random_state=SEED)
    return HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=SEED)


def known_levels(X: pd.DataFrame, train: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """``X`` with the training rows' categories; a level unseen in training becomes missing."""
    X = X.copy()
    for column in categorical:
        levels = train[column].cat.categories
        X[column] = pd.Categorical(X[column].where(X[column].isin(levels)), categories=levels)
    return X


def run(table: Table) -> dict[str, object]:
    """Fit the three models on one table; return their scores and fit times."""
    raw = table.load().dropna(subset=[table.target])
    cleaned = cleaning.apply(raw, cleaning.CleaningParams(), target=table.target)[0]
    numeric, categorical = cleaning.column_types(cleaned, table.target)
    X, y = cleaned[numeric + categorical], cleaned[table.target]
    stratify = None if table.task == "regression" else y
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=SEED, stratify=stratify
    )
    task = "regression" if table.task == "regression" else "classification"
    ours = model_choice.pipeline_factory(
        cleaning.CleaningParams(),
        features.FeatureParams(),
        numeric,
        categorical,
        task=task,
        seed=SEED,
        levels={c: int(X_train[c].nunique()) for c in categorical},
    )("torch_mlp")
    as_categories = X_train.astype({c: "category" for c in categorical})
    row: dict[str, object] = {"table": table.name, "rows": len(X), "task": table.task}
    for name, model, train_X, test_X in (
        ("nbtools", ours, X_train, X_test),
        ("peer", peer(table.task, numeric, categorical), X_train, X_test),
        (
            "boosting",
            boosting(table.task, categorical),
            as_categories,
            known_levels(X_test, as_categories, categorical),
        ),
    ):
        started = time.perf_counter()
        model.fit(train_X, y_train)
        row[f"{name}_seconds"] = time.perf_counter() - started
        row[name] = score(table.task, model, test_X, y_test)
    return row


def main() -> int:
    """Run the benchmark and print the table of results."""
    names = [t.name for t in TABLES]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=names, help="Run only this table.")
    parser.add_argument("--quick", action="store_true", help="Leave out tables over 250,000 rows.")
    args = parser.parse_args()
    chosen = [t for t in TABLES if (not args.only or t.name in args.only)]
    chosen = [t for t in chosen if not (args.quick and t.big)]
    # PyTorch's import and its first training step (about 1.5 s once per process) come before
    # any timing, as scikit-learn's are already loaded: the times compare fits.
    TorchMLPClassifier(epochs=1).fit(np.eye(4), [0, 1, 0, 1])
    rows = []
    for table in chosen:
        row = run(table)
        rows.append(row)
        print(
            f"{row['table']:<14} {row['rows']:>7,} {row['task']:<10} nbtools {row['nbtools']:.4f} "
            f"peer {row['peer']:.4f} diff {row['nbtools'] - row['peer']:+.4f} "
            f"boosting {row['boosting']:.4f}  fit s {row['nbtools_seconds']:.1f} / "
            f"{row['peer_seconds']:.1f} = x{row['nbtools_seconds'] / row['peer_seconds']:.2f} "
            f"(boosting {row['boosting_seconds']:.1f})",
            flush=True,
        )
    frame = pd.DataFrame(rows)
    diff = frame["nbtools"] - frame["peer"]
    ratio = frame["nbtools_seconds"] / frame["peer_seconds"]
    wins = int((frame["nbtools"] > frame["boosting"]).sum())
    losses = int((frame["nbtools"] < frame["boosting"]).sum())
    print(
        f"\nnbtools minus peer: median {np.median(diff):+.4f}, worst {diff.min():+.4f}; "
        f"fit time ratio nbtools / peer: median x{np.median(ratio):.2f}; against default "
        f"gradient boosting: {wins} better, {losses} worse of {len(frame)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
