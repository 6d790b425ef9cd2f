"""The workload of ``bench_engine.py``: the same functions for the plain script and the stages.

Four steps hand data over as Parquet (and the model as a pickle): ingest and clean, split,
train a logistic regression, evaluate on the held-out rows. ``branch_work`` is the CPU-bound
step of the two independent branch stages (single-threaded on purpose).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

FEATURES = [f"x{i}" for i in range(8)]


def make_data(rows: int, path: Path, seed: int = 0) -> Path:
    """Write a synthetic binary classification table with some duplicates and missing values."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURES)))
    y = (x @ rng.normal(size=len(FEATURES)) + rng.normal(scale=0.5, size=rows)) > 0
    df = pd.DataFrame(x, columns=FEATURES)
    df["target"] = y.astype("int8")
    df.loc[rng.random(rows) < 0.01, "x0"] = np.nan
    pd.concat([df, df.head(rows // 100)]).to_parquet(path)
    return path


def ingest(source: str, out: Path) -> int:
    """Read the table, drop duplicate rows and fill missing values; write ``clean.parquet``."""
    df = pd.read_parquet(source).drop_duplicates()
    df = df.fillna(0.0)
    df.to_parquet(out / "clean.parquet")
    return len(df)


def split(clean: Path, out: Path, seed: int) -> None:
    """Split 80/20 at random with ``seed``; write ``train.parquet`` and ``test.parquet``."""
    df = pd.read_parquet(clean / "clean.parquet")
    mask = np.random.default_rng(seed).random(len(df)) < 0.8
    df[mask].to_parquet(out / "train.parquet")
    df[~mask].to_parquet(out / "test.parquet")


def train(split_dir: Path, out: Path, c: float) -> None:
    """Fit a logistic regression with inverse regularisation ``c``; pickle it to ``model.pkl``."""
    df = pd.read_parquet(split_dir / "train.parquet")
    model = LogisticRegression(C=c, max_iter=200).fit(df[FEATURES], df["target"])
    (out / "model.pkl").write_bytes(pickle.dumps(model))


def evaluate(split_dir: Path, model_dir: Path) -> float:
    """Return the accuracy of the pickled model on ``test.parquet``."""
    df = pd.read_parquet(split_dir / "test.parquet")
    model = pickle.loads((model_dir / "model.pkl").read_bytes())
    return float(model.score(df[FEATURES], df["target"]))


def branch_work(seed: int, rounds: int) -> int:
    """Burn one core for a while in plain Python; return a checksum."""
    return sum((i * i + seed) % 7 for i in range(rounds))
