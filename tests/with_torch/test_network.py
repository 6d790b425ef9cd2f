"""The torch_mlp estimators on their own: learning, early stopping, seeds, embeddings, and
predicting without PyTorch."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import train_test_split

from nbtools.errors import InvalidParameterError
from nbtools.ml.neural import TorchMLPClassifier, TorchMLPRegressor, embedding_size


def cancer() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """scikit-learn's breast cancer table with a categorical column of 5 levels and missing
    values, split in training and test rows."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    codes = np.random.default_rng(0).integers(-1, 5, len(X))
    X["clinic"] = pd.Categorical.from_codes(codes, categories=range(5))
    return train_test_split(X, y, random_state=0, stratify=y)


def test_the_classifier_learns_and_keeps_its_best_epoch() -> None:
    X_train, X_test, y_train, y_test = cancer()
    model = TorchMLPClassifier(random_state=0).fit(X_train, y_train)
    assert roc_auc_score(y_test, model.predict_proba(X_test)[:, 1]) > 0.97
    history = model.history_
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 5
    losses = [entry["validation_loss"] for entry in history]
    assert model.best_epoch_ == 1 + int(np.argmin(losses))
    assert len(history) < model.epochs  # early stopping ended it
    assert len(history) >= model.best_epoch_ + model.patience
    assert {"validation_accuracy", "validation_loss", "train_loss"} <= history[0].keys()
    assert model.device_ == "cpu"
    assert set(model.classes_) == {0, 1}


def test_a_seed_gives_the_same_model_and_another_seed_another() -> None:
    X_train, X_test, y_train, _ = cancer()
    first = TorchMLPClassifier(random_state=3).fit(X_train, y_train).predict_proba(X_test)
    again = TorchMLPClassifier(random_state=3).fit(X_train, y_train).predict_proba(X_test)
    other = TorchMLPClassifier(random_state=4).fit(X_train, y_train).predict_proba(X_test)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_categorical_columns_get_an_embedding_with_a_row_for_missing_and_unseen() -> None:
    X_train, X_test, y_train, _ = cancer()
    model = TorchMLPClassifier(random_state=0, epochs=5).fit(X_train, y_train)
    (table,) = model.network_.embeddings
    assert table.shape == (6, embedding_size(5))
    assert list(model.network_.categorical) == [X_train.columns.get_loc("clinic")]
    unseen = X_test.copy()
    unseen["clinic"] = pd.Categorical.from_codes([-1] * len(unseen), categories=range(5))
    matrix = unseen.assign(clinic=np.nan).to_numpy(dtype=float)
    matrix_unseen = matrix.copy()
    matrix_unseen[:, model.network_.categorical[0]] = 17  # a code beyond the levels
    np.testing.assert_array_equal(model.predict_proba(unseen), model.predict_proba(matrix))
    np.testing.assert_array_equal(model.predict_proba(matrix), model.predict_proba(matrix_unseen))


def test_the_regressor_predicts_on_the_targets_scale() -> None:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    model = TorchMLPRegressor(random_state=0).fit(X_train, y_train)
    assert r2_score(y_test, model.predict(X_test)) > 0.3
    assert abs(model.predict(X_test).mean() - y_train.mean()) < y_train.std()
    assert "validation_r2" in model.history_[0]


def test_balanced_class_weights_raise_the_rare_class_share() -> None:
    X_train, X_test, y_train, _ = cancer()
    rare = y_train.index[y_train == 0][:20]
    keep = y_train.index[y_train == 1].union(rare)
    plain = TorchMLPClassifier(random_state=0).fit(X_train.loc[keep], y_train.loc[keep])
    weighted = clone(plain).set_params(class_weight="balanced")
    weighted.fit(X_train.loc[keep], y_train.loc[keep])
    assert (weighted.predict(X_test) == 0).sum() > (plain.predict(X_test) == 0).sum()


def test_a_saved_model_predicts_where_pytorch_is_not_installed(tmp_path) -> None:
    X_train, X_test, y_train, _ = cancer()
    model = TorchMLPClassifier(random_state=0, epochs=10).fit(X_train, y_train)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    X_test.to_pickle(tmp_path / "rows.pkl")
    np.save(tmp_path / "expected.npy", model.predict_proba(X_test))
    script = (
        "import sys, pickle, numpy as np, pandas as pd\n"
        "class NoTorch:\n"  # any import of torch now fails, as where it is not installed
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('No module named torch')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        f"model = pickle.loads(open({str(tmp_path / 'model.pkl')!r}, 'rb').read())\n"
        f"rows = pd.read_pickle({str(tmp_path / 'rows.pkl')!r})\n"
        f"expected = np.load({str(tmp_path / 'expected.npy')!r})\n"
        "np.testing.assert_array_equal(model.predict_proba(rows), expected)\n"
        "try:\n    model.fit(rows, [0, 1] * (len(rows) // 2) + [0] * (len(rows) % 2))\n"
        "except Exception as error:\n    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "pip install 'nbtools[torch]'" in done.stdout


@pytest.mark.parametrize(
    ("params", "named"),
    [({"width": 0}, "width"), ({"dropout": 1.0}, "dropout"), ({"device": "tpu"}, "device")],
)
def test_bad_settings_are_named(params: dict, named: str) -> None:
    X_train, _, y_train, _ = cancer()
    with pytest.raises(InvalidParameterError, match=f"torch_mlp family's {named}"):
        TorchMLPClassifier(**params).fit(X_train, y_train)


def test_missing_numbers_are_refused_with_what_to_do() -> None:
    X_train, _, y_train, _ = cancer()
    X_train = X_train.copy()
    X_train.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="impute them first"):
        TorchMLPClassifier().fit(X_train, y_train)
