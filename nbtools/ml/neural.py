"""A neural network for tabular data, trained with PyTorch: the ``torch_mlp`` family.

:class:`TorchMLPClassifier` and :class:`TorchMLPRegressor` are scikit-learn estimators (``fit``,
``predict``, ``predict_proba``, ``get_params``), so they sit in the same model pipeline as every
other family, after the same preprocessing fitted on the training rows only. The network is a
multilayer perceptron:

- **inputs**: the numeric features, standardised inside the network (with the mean and spread
  of the training rows), and one learned **embedding** per categorical column that reaches it as
  native categories (the clean stage's ``encoding="auto"``): a vector of a few numbers per level,
  in place of a one-hot column per level. Index 0 of each embedding stands for a missing value
  or a level never seen in training.
- ``depth`` hidden layers of ``width`` units, each a linear layer, ReLU and dropout;
- an output layer: one logit per class (cross-entropy loss, optionally class-weighted) or one
  value (squared error on the standardised target).

**Training** uses AdamW in mini-batches. A seeded tenth of the rows (``validation_fraction``,
stratified for classification) is held out, and training stops when its loss has not improved
for ``patience`` epochs; the weights of the best epoch are kept. Each epoch's training and
validation loss and validation metric are kept in ``history_``, from which the train stage
writes TensorBoard event files and a plot (:mod:`nbtools.ml.training_curves`).

**Reproducible.** The seed (``random_state``) fixes the weights' start, the held-out rows and
the batches; PyTorch runs with deterministic algorithms and, on the CPU, on one thread (small
networks gain little from more, and a thread count changes the order of sums). The same seed
and data give the same model.

**A GPU when there is one.** ``device="auto"`` trains on CUDA when PyTorch sees a GPU, else on
the CPU; ``device_`` records which.

**Predicting needs NumPy only.** After training, the weights are kept as NumPy arrays and
predictions are computed from them (in float64, so that a row's prediction does not depend on
the rows sent with it, as float32 sums do): a saved model loads and
predicts where PyTorch is not installed (``nbtools serve``, ``mlflow models serve``), and
:func:`forward` is what the compiled serving path (:mod:`nbtools.serving.compiled`) calls.
Only training needs the extra: ``pip install 'nbtools[torch]'``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from nbtools.errors import InvalidParameterError

__all__ = [
    "INSTALL",
    "Network",
    "TorchMLPClassifier",
    "TorchMLPRegressor",
    "embedding_size",
    "forward",
    "require_torch",
]

#: The command that installs what the ``torch_mlp`` family trains with.
INSTALL = "pip install 'nbtools[torch]'"

#: Held-out rows needed for early stopping; with fewer, every epoch is trained.
_MIN_VALIDATION_ROWS = 10

#: A validation loss must improve on the best by this share to count as better.
_IMPROVEMENT = 1e-4


def require_torch() -> ModuleType:
    """Return the ``torch`` module.

    Raises
    ------
    InvalidParameterError
        When PyTorch is not installed, naming :data:`INSTALL`.
    """
    try:
        import torch
    except ImportError as error:
        raise InvalidParameterError(
            "The 'torch_mlp' family trains with PyTorch, which is not installed in this "
            f"environment ({error}). Install it with: {INSTALL}"
        ) from None
    return torch


def embedding_size(levels: int) -> int:
    """The width of a categorical column's embedding: grows slowly with its levels, 2 to 16."""
    return int(min(16, max(2, round(1.6 * (levels + 1) ** 0.56))))


@dataclass(frozen=True)
class Network:
    """A trained network's weights as NumPy arrays, enough to predict.

    Attributes
    ----------
    numeric, categorical : ndarray of int
        Positions of the numeric and categorical columns in the input matrix.
    mean, scale : ndarray
        Standardisation of the numeric columns.
    embeddings : list of ndarray
        One table per categorical column, ``(levels + 1, size)``; row 0 is missing or unseen.
    layers : list of (ndarray, ndarray)
        Weight ``(out, in)`` and bias of each linear layer; ReLU between them.
    """

    numeric: np.ndarray
    categorical: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    embeddings: list[np.ndarray]
    layers: list[tuple[np.ndarray, np.ndarray]]


def forward(network: Network, Z: np.ndarray) -> np.ndarray:
    """The network's outputs (logits or standardised values) for the input matrix ``Z``.

    ``Z`` holds numbers in the numeric positions and category codes (0, 1, ..., missing as NaN)
    in the categorical ones, as :meth:`TorchMLPClassifier.fit` received them.
    """
    Z = np.asarray(Z, dtype=np.float64)
    parts = [(Z[:, network.numeric] - network.mean) / network.scale]
    for position, table in zip(network.categorical, network.embeddings, strict=True):
        parts.append(table[_embedding_index(Z[:, position], len(table) - 1)])
    hidden = np.concatenate(parts, axis=1)
    for number, (weight, bias) in enumerate(network.layers):
        hidden = hidden @ weight.T + bias
        if number < len(network.layers) - 1:
            hidden = np.maximum(hidden, 0.0)
    return hidden


def _embedding_index(codes: np.ndarray, levels: int) -> np.ndarray:
    """Row of each code in its embedding table: code + 1, or 0 when missing or unseen."""
    known = ~np.isnan(codes) & (codes >= 0) & (codes < levels)
    return np.where(known, np.nan_to_num(codes) + 1, 0).astype(np.int64)


def _input_matrix(X: Any) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The input as a float matrix, which columns are categorical, and their levels.

    A DataFrame's ``category`` columns become their codes (missing as NaN); any other input is
    taken as numbers.
    """
    if not isinstance(X, pd.DataFrame):
        Z = np.asarray(X, dtype=np.float64)
        return Z, np.zeros(Z.shape[1], dtype=bool), []
    categorical = np.array([isinstance(t, pd.CategoricalDtype) for t in X.dtypes], dtype=bool)
    columns, levels = [], []
    for position in range(X.shape[1]):
        column = X.iloc[:, position]
        if categorical[position]:
            codes = column.cat.codes.to_numpy(dtype=np.float64)
            codes[codes < 0] = np.nan
            columns.append(codes)
            levels.append(len(column.cat.categories))
        else:
            columns.append(column.to_numpy(dtype=np.float64))
    return np.column_stack(columns), categorical, levels


@contextmanager
def _deterministic(torch: ModuleType, device: str) -> Iterator[None]:
    """Deterministic algorithms, and one thread on the CPU, for the duration of a fit."""
    enabled, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    if device == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=device == "cuda")
    if device == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled)
        torch.set_num_threads(threads)


class _TorchMLP(BaseEstimator):
    """What the classifier and the regressor share: inputs, training loop, weights."""

    #: The validation metric recorded per epoch in ``history_``.
    metric_name = ""

    def __init__(
        self,
        width: int = 128,
        depth: int = 2,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        epochs: int = 200,
        batch_size: int = 128,
        patience: int = 15,
        validation_fraction: float = 0.1,
        device: str = "auto",
        random_state: int | None = None,
    ) -> None:
        self.width = width
        self.depth = depth
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state

    # --- what each task defines -------------------------------------------------------------

    def _targets(self, y: Any) -> np.ndarray:
        raise NotImplementedError

    def _outputs(self) -> int:
        raise NotImplementedError

    def _loss(self, torch: ModuleType, y: np.ndarray) -> Any:
        raise NotImplementedError

    def _metric(self, outputs: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def _stratify(self, y: np.ndarray) -> np.ndarray | None:
        return None

    # --- training ---------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> _TorchMLP:
        """Train the network on ``X`` and ``y``; see the module docstring for how."""
        torch = require_torch()
        self._check_params()
        Z, categorical, levels = _input_matrix(X)
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = Z.shape[1]
        numeric = np.flatnonzero(~categorical)
        if np.isnan(Z[:, numeric]).any():
            raise ValueError(
                "The torch_mlp family needs numeric inputs without missing values; impute them "
                "first (the clean stage's preprocessing does)."
            )
        targets = self._targets(y)
        mean = Z[:, numeric].mean(axis=0)
        scale = Z[:, numeric].std(axis=0)
        scale[scale == 0] = 1.0
        self.device_ = _device(torch, self.device)
        seed = 0 if self.random_state is None else int(self.random_state)
        train, held_out = self._held_out(len(Z), targets, seed)
        with _deterministic(torch, self.device_):
            torch.manual_seed(seed)
            modules = _modules(torch, len(numeric), levels, self._outputs(), self)
            modules = modules.to(self.device_)
            self.history_, self.best_epoch_ = self._train(
                torch, modules, Z, (categorical, levels), (mean, scale), targets, train, held_out
            )
        embeddings = [_array(e.weight) for e in modules["embeddings"]]
        linear = [m for m in modules["body"] if isinstance(m, torch.nn.Linear)]
        self.network_ = Network(
            numeric=numeric,
            categorical=np.flatnonzero(categorical),
            mean=mean,
            scale=scale,
            embeddings=embeddings,
            layers=[(_array(m.weight), _array(m.bias)) for m in linear],
        )
        return self

    def _check_params(self) -> None:
        checks = {
            "width": self.width >= 1,
            "depth": self.depth >= 1,
            "dropout": 0 <= self.dropout < 1,
            "learning_rate": self.learning_rate > 0,
            "weight_decay": self.weight_decay >= 0,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "patience": self.patience >= 1,
            "validation_fraction": 0 <= self.validation_fraction < 1,
            "device": self.device in ("auto", "cpu", "cuda"),
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise InvalidParameterError(
                f"The torch_mlp family's {wrong[0]} is {getattr(self, wrong[0])!r}: width, "
                "depth, epochs, batch_size and patience must be at least 1, dropout and "
                "validation_fraction in [0, 1), learning_rate above 0, weight_decay at least 0, "
                "and device one of auto, cpu, cuda."
            )

    def _held_out(self, rows: int, targets: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows trained on and the rows held out for early stopping (maybe none)."""
        everything = np.arange(rows)
        size = round(rows * self.validation_fraction)
        if size < _MIN_VALIDATION_ROWS or rows - size < _MIN_VALIDATION_ROWS:
            return everything, everything[:0]
        stratify = self._stratify(targets)
        try:
            train, held_out = train_test_split(
                everything, test_size=size, random_state=seed, stratify=stratify
            )
        except ValueError:  # a class too rare to stratify on
            train, held_out = train_test_split(everything, test_size=size, random_state=seed)
        return np.sort(train), np.sort(held_out)

    def _train(
        self,
        torch: ModuleType,
        modules: Any,
        Z: np.ndarray,
        columns: tuple[np.ndarray, list[int]],
        standardisation: tuple[np.ndarray, np.ndarray],
        targets: np.ndarray,
        train: np.ndarray,
        held_out: np.ndarray,
    ) -> tuple[list[dict[str, float]], int]:
        """The training loop with early stopping; returns the history and the best epoch.

        ``columns`` is which columns are categorical and their levels, ``standardisation`` the
        numeric columns' mean and spread.
        """
        device = self.device_
        categorical, levels = columns
        mean, scale = standardisation
        numbers = torch.as_tensor(
            ((Z[:, ~categorical] - mean) / scale).astype(np.float32), device=device
        )
        positions = np.flatnonzero(categorical)
        codes = np.zeros((len(Z), len(positions)), dtype=np.int64)
        for index, (position, count) in enumerate(zip(positions, levels, strict=True)):
            codes[:, index] = _embedding_index(Z[:, position], count)
        code_tensor = torch.as_tensor(codes, device=device)
        labels = torch.as_tensor(targets, device=device)
        loss_of = self._loss(torch, targets[train])
        optimizer = torch.optim.AdamW(
            modules.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        generator = torch.Generator().manual_seed(torch.initial_seed())
        watched = held_out if len(held_out) else train
        history: list[dict[str, float]] = []
        best, best_epoch, best_state, waited = np.inf, 0, None, 0
        for epoch in range(1, self.epochs + 1):
            modules.train()
            total = 0.0
            order = torch.as_tensor(train)[torch.randperm(len(train), generator=generator)]
            for batch in order.split(self.batch_size):
                batch = batch.to(device)
                outputs = _run(torch, modules, numbers[batch], code_tensor[batch])
                loss = loss_of(outputs, labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            modules.eval()
            with torch.no_grad():
                index = torch.as_tensor(watched, device=device)
                outputs = _run(torch, modules, numbers[index], code_tensor[index])
                watched_loss = float(loss_of(outputs, labels[index]))
            entry = {"epoch": epoch, "train_loss": total / len(train)}
            if len(held_out):
                entry["validation_loss"] = watched_loss
                entry[f"validation_{self.metric_name}"] = self._metric(
                    outputs.cpu().numpy(), targets[held_out]
                )
            history.append(entry)
            if epoch == 1 or watched_loss < best - _IMPROVEMENT * abs(best):
                best, best_epoch, waited = watched_loss, epoch, 0
                best_state = copy.deepcopy(modules.state_dict())
            else:
                waited += 1
                if len(held_out) and waited >= self.patience:
                    break
        if best_state is not None:
            modules.load_state_dict(best_state)
        return history, best_epoch

    # --- predicting -------------------------------------------------------------------------

    def _forward(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "network_")
        Z, _, _ = _input_matrix(X)
        if Z.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {Z.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return forward(self.network_, Z)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing category codes are a level of their own
        return tags


def _array(parameter: Any) -> np.ndarray:
    """A trained parameter as a float64 NumPy array."""
    return np.asarray(parameter.detach().cpu().numpy(), dtype=np.float64)


def _device(torch: ModuleType, device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(
            "The torch_mlp family's device is 'cuda', but PyTorch sees no GPU here. Use "
            "device='auto' (the GPU when there is one, else the CPU) or 'cpu'."
        )
    return device


def _modules(
    torch: ModuleType, numeric: int, levels: list[int], outputs: int, shape: _TorchMLP
) -> Any:
    """The network's PyTorch modules: one embedding per categorical column, then the body of
    ``shape.depth`` hidden layers of ``shape.width`` units and ``outputs`` outputs."""
    nn = torch.nn
    embeddings = nn.ModuleList(nn.Embedding(n + 1, embedding_size(n)) for n in levels)
    size = numeric + sum(embedding_size(n) for n in levels)
    body: list[Any] = []
    for _ in range(shape.depth):
        body += [nn.Linear(size, shape.width), nn.ReLU(), nn.Dropout(shape.dropout)]
        size = shape.width
    body.append(nn.Linear(size, outputs))
    return nn.ModuleDict({"embeddings": embeddings, "body": nn.Sequential(*body)})


def _run(torch: ModuleType, modules: Any, numbers: Any, codes: Any) -> Any:
    """The network's outputs for a batch: numbers and each column's embedding, through the body."""
    parts = [numbers] + [table(codes[:, i]) for i, table in enumerate(modules["embeddings"])]
    return modules["body"](torch.cat(parts, dim=1))


class TorchMLPClassifier(ClassifierMixin, _TorchMLP):
    """A multilayer perceptron classifier trained with PyTorch (see the module docstring).

    Parameters
    ----------
    width, depth : int, default=128, 2
        Units per hidden layer, and hidden layers.
    dropout : float, default=0.1
        Share of a hidden layer's units dropped at random in each training step.
    learning_rate, weight_decay : float, default=1e-3, 1e-4
        AdamW's step size and weight decay.
    epochs : int, default=200
        The most passes over the training rows; early stopping usually ends sooner.
    batch_size, patience : int, default=128, 15
        Rows per step, and epochs without a better validation loss before stopping.
    validation_fraction : float, default=0.1
        Share of the rows held out for early stopping (stratified, seeded).
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where to train; auto takes CUDA when PyTorch sees a GPU.
    random_state : int or None, default=None
        The seed; None means 0, so that a fit is always reproducible.
    class_weight : {None, "balanced"}, default=None
        ``balanced`` weighs each class's loss by its inverse frequency.

    Attributes
    ----------
    classes_ : ndarray
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, and with held-out rows ``validation_loss`` and
        ``validation_accuracy``.
    best_epoch_ : int
        The epoch whose weights were kept.
    device_ : str
        ``"cpu"`` or ``"cuda"``.
    network_ : Network
        The weights, as NumPy arrays.
    """

    metric_name = "accuracy"

    def __init__(
        self,
        width: int = 128,
        depth: int = 2,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        epochs: int = 200,
        batch_size: int = 128,
        patience: int = 15,
        validation_fraction: float = 0.1,
        device: str = "auto",
        random_state: int | None = None,
        class_weight: str | None = None,
    ) -> None:
        super().__init__(
            width=width,
            depth=depth,
            dropout=dropout,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            epochs=epochs,
            batch_size=batch_size,
            patience=patience,
            validation_fraction=validation_fraction,
            device=device,
            random_state=random_state,
        )
        self.class_weight = class_weight

    def _targets(self, y: Any) -> np.ndarray:
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("The torch_mlp classifier needs at least two classes in y.")
        return codes.astype(np.int64)

    def _outputs(self) -> int:
        return len(self.classes_)

    def _loss(self, torch: ModuleType, y: np.ndarray) -> Any:
        weight = None
        if self.class_weight == "balanced":
            counts = np.bincount(y, minlength=len(self.classes_)).astype(np.float64)
            balanced = len(y) / (len(self.classes_) * np.maximum(counts, 1))
            weight = torch.as_tensor(balanced.astype(np.float32), device=self.device_)
        return torch.nn.CrossEntropyLoss(weight=weight)

    def _metric(self, outputs: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(np.argmax(outputs, axis=1) == y))

    def _stratify(self, y: np.ndarray) -> np.ndarray | None:
        return y

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, one column per entry of ``classes_``."""
        logits = self._forward(X).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row."""
        return self.classes_[np.argmax(self._forward(X), axis=1)]


class TorchMLPRegressor(RegressorMixin, _TorchMLP):
    """A multilayer perceptron regressor trained with PyTorch (see the module docstring).

    The parameters are :class:`TorchMLPClassifier`'s, without ``class_weight``. The target is
    standardised for training and predictions are on its own scale; ``history_`` holds
    ``validation_r2``.
    """

    metric_name = "r2"

    def _targets(self, y: Any) -> np.ndarray:
        values = np.asarray(y, dtype=np.float64)
        self.target_mean_ = float(values.mean())
        self.target_scale_ = float(values.std()) or 1.0
        return ((values - self.target_mean_) / self.target_scale_).astype(np.float32)

    def _outputs(self) -> int:
        return 1

    def _loss(self, torch: ModuleType, y: np.ndarray) -> Any:
        mse = torch.nn.MSELoss()
        return lambda outputs, labels: mse(outputs[:, 0], labels)

    def _metric(self, outputs: np.ndarray, y: np.ndarray) -> float:
        spread = float(np.sum((y - y.mean()) ** 2)) or 1.0
        return 1.0 - float(np.sum((outputs[:, 0] - y) ** 2)) / spread

    def predict(self, X: Any) -> np.ndarray:
        """The predicted values, on the target's scale."""
        values = self._forward(X)[:, 0].astype(np.float64)
        return values * self.target_scale_ + self.target_mean_
