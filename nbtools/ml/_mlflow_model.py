"""Saving a fitted model pipeline as an MLflow model: its pinned requirements, the signature and
the rows it is inferred from, and the metadata it carries.

:mod:`nbtools.ml.modeling` re-exports everything public here.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from nbtools.ml._families import check_task

__all__ = [
    "MODEL_REQUIREMENTS",
    "SAMPLE_FILE",
    "SAMPLE_ROWS",
    "SIGNATURE_ROWS",
    "log_model",
    "model_input",
    "pip_requirements",
    "save_model",
    "serving_sample",
    "signature_rows",
]

#: The packages a logged model needs, pinned to the installed versions in its requirements.
MODEL_REQUIREMENTS = ("scikit-learn", "pandas", "numpy", "scipy", "cloudpickle", "nbtools")


def pip_requirements() -> list[str]:
    """Return the pinned requirements of a logged model: fast (MLflow infers them in seconds)."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in MODEL_REQUIREMENTS]


def model_input(X: pd.DataFrame) -> pd.DataFrame:
    """Return ``X`` with integer columns as float64, the types a logged model's signature declares.

    Integer columns cannot hold missing values, so the signature declares them as doubles; a
    pandas DataFrame passed to ``mlflow.pyfunc`` predict must then carry float64 there too
    (JSON requests to a served model are converted automatically).
    """
    integers = {c: "float64" for c in X.columns if pd.api.types.is_integer_dtype(X[c].dtype)}
    return X.astype(integers) if integers else X


#: Rows a model's signature is inferred from, besides one row per column that has missing values.
SIGNATURE_ROWS = 1000


def signature_rows(X: pd.DataFrame) -> pd.DataFrame:
    """Return the rows a logged model's signature is inferred from.

    MLflow declares a column optional only when the example has a missing value in it, and
    inferring from every training row costs a prediction on each. The first
    :data:`SIGNATURE_ROWS` rows, plus the first row with a missing value of each column that has
    one, give the same signature at a fraction of the cost.
    """
    head = X.head(SIGNATURE_ROWS)
    missing = X.isna()
    extra = sorted(
        {
            int(missing[column].to_numpy().argmax())
            for column in X.columns
            if missing[column].any() and not head[column].isna().any()
        }
    )
    return pd.concat([head, X.iloc[extra]]) if extra else head


#: The file, among a logged model's extra files, holding :data:`SAMPLE_ROWS` rows as a request.
SAMPLE_FILE = "serving_sample.json"

#: Rows of the stored sample that a service checks a compiled model against.
SAMPLE_ROWS = 200


def _model_kwargs(
    pipeline: Pipeline, X_example: pd.DataFrame, task: str | None, folder: Path
) -> dict[str, Any]:
    """The keyword arguments of MLflow's ``save_model`` and ``log_model``; the stored sample is
    written into ``folder``, which must outlive the call."""
    from mlflow.models import infer_signature

    metadata = {"nbtools_version": importlib.metadata.version("nbtools")}
    if task is not None:
        check_task(task)
        metadata["task"] = task
    example = model_input(signature_rows(X_example))
    sample = folder / SAMPLE_FILE
    sample.write_text(
        serving_sample(example).to_json(orient="split", index=False, date_format="iso")
    )
    return {
        "signature": infer_signature(example, pipeline.predict(example)),
        "input_example": example.head(5),
        "pip_requirements": pip_requirements(),
        "serialization_format": "cloudpickle",
        "metadata": metadata,
        "extra_files": [str(sample)],
    }


def serving_sample(example: pd.DataFrame) -> pd.DataFrame:
    """Return the rows stored with a model for checking a compiled form of it.

    They are a seeded sample of :data:`SAMPLE_ROWS` of the signature rows, plus every row that
    holds the only missing value of a column among them, so the check sees missing values.
    """
    rows = example.sample(min(SAMPLE_ROWS, len(example)), random_state=0)
    missing = example.isna()
    extra = [
        example.index[missing[column].to_numpy().argmax()]
        for column in example.columns
        if missing[column].any() and not rows[column].isna().any()
    ]
    return pd.concat([rows, example.loc[sorted(set(extra))]]) if extra else rows


class _DeliberateCloudpickle(logging.Filter):
    """Drops MLflow's warning on every cloudpickle save: nbtools chooses the format on purpose.

    skops would refuse nbtools' own transformers, and MLflow 3 gates skops and pickle loading
    behind the same switch, since both read their allow-list from the model itself.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "pickle or cloudpickle format" not in record.getMessage()


logging.getLogger("mlflow.sklearn").addFilter(_DeliberateCloudpickle())


def log_model(pipeline: Pipeline, X_example: pd.DataFrame, *, task: str) -> str:
    """Log a fitted pipeline as an MLflow model of the active run and return its model URI.

    The model carries a signature inferred from ``X_example`` (integer columns declared as
    doubles so that missing values are accepted), the first five rows as input example, a
    sample of rows as a request in ``extra_files/`` (:func:`serving_sample`, which ``nbtools
    serve`` checks a compiled form of the model against), and explicit pinned requirements
    (:func:`pip_requirements`). It is serialised with cloudpickle:
    skops refuses nbtools' own transformers, and models are loaded only from our own registry.
    Through ``mlflow.pyfunc`` a classifier predicts labels, a regressor values and a clustering
    model cluster ids.

    Parameters
    ----------
    pipeline : Pipeline
        The fitted model pipeline.
    X_example : pandas.DataFrame
        Training features to infer the signature from (:func:`signature_rows` picks the rows).
    task : str
        Stored in the model's metadata.

    Returns
    -------
    str
        The logged model's URI (``models:/m-...``), loadable with ``mlflow.pyfunc.load_model``.
    """
    import mlflow.sklearn

    with tempfile.TemporaryDirectory() as folder:
        kwargs = _model_kwargs(pipeline, X_example, task, Path(folder))
        info = mlflow.sklearn.log_model(pipeline, name="model", **kwargs)
    return info.model_uri


def save_model(
    pipeline: Pipeline, path: str | Path, X_example: pd.DataFrame, *, task: str | None = None
) -> Path:
    """Save a fitted pipeline as an MLflow model folder, exactly as :func:`log_model` logs it.

    ``path`` is the folder to write, typically ``stage.output("model")``; the other parameters
    are those of :func:`log_model`. An MLflow model already saved there (a re-run of the stage)
    is replaced; any other non-empty folder is left alone and MLflow refuses to write there.

    Returns
    -------
    pathlib.Path
        The model folder, loadable with ``mlflow.sklearn.load_model`` or ``mlflow.pyfunc``.
    """
    import mlflow.sklearn

    path = Path(path)
    if (path / "MLmodel").is_file():
        shutil.rmtree(path)
    with tempfile.TemporaryDirectory() as folder:
        kwargs = _model_kwargs(pipeline, X_example, task, Path(folder))
        mlflow.sklearn.save_model(pipeline, str(path), **kwargs)
    return path
