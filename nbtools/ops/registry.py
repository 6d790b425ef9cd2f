"""Deployment on the MLflow model registry: register, gate against the champion, move aliases.

The registry is driven by aliases only (stages are deprecated in MLflow):

- ``challenger``: the latest version that went through the gate;
- ``champion``: the version in service, ``models:/<name>@champion``, which serving follows.

A deployment registers the new model, scores it and the current champion on the same rows
(:func:`gate`), then moves the aliases (:func:`promote`): the new version always becomes the
challenger, and becomes the champion as well when the gate promotes it, which it does when the
lower confidence bound of its gain (a paired bootstrap on those rows) is above the margin, or
when there is no champion yet. The decision is kept as tags on the
new model version, so the registry itself says why each version was or was not promoted.

Every function talks to the registry of the active MLflow tracking URI
(:func:`mlflow.get_tracking_uri`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from nbtools.errors import ModelRegistryError
from nbtools.ops._gate import GateDecision
from nbtools.ops._gate import gate as gate

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_PREFIX = "nbtools.gate."

_MAX_TAG_LENGTH = 5000


def register(model_uri: str, model_name: str, *, tags: Mapping[str, Any] | None = None) -> str:
    """Register a logged model as a new version of ``model_name``.

    Parameters
    ----------
    model_uri : str
        URI of the logged model, such as ``models:/m-...`` (the train stage's ``model_uri``).
    model_name : str
        Name of the registered model; created on first use.
    tags : mapping, optional
        Tags of the new version (values are turned into strings), e.g. the dataset hash.

    Returns
    -------
    str
        The new version number.

    Raises
    ------
    ModelRegistryError
        If MLflow cannot register the model (unknown URI, unreachable registry).
    """
    try:
        version = mlflow.register_model(
            model_uri, model_name, tags={k: str(v) for k, v in (tags or {}).items()}
        )
    except MlflowException as exc:
        raise ModelRegistryError(
            f"Cannot register the model at '{model_uri}' as '{model_name}' in the registry at "
            f"{mlflow.get_tracking_uri()}: {exc.message}"
        ) from exc
    return str(version.version)


def champion_version(model_name: str) -> ModelVersion | None:
    """Return the version holding the ``champion`` alias, or None when there is none yet.

    Parameters
    ----------
    model_name : str
        Name of the registered model; an unknown name has no champion.
    """
    client = MlflowClient()
    try:
        model = client.get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    version = model.aliases.get(CHAMPION)
    return None if version is None else client.get_model_version(model_name, str(version))


def load_champion(
    model_name: str, *, replace_broken: bool = False
) -> tuple[str | None, Any | None]:
    """Load the champion as a scikit-learn model, from ``models:/<model_name>@champion``.

    Parameters
    ----------
    model_name : str
        Name of the registered model.
    replace_broken : bool, default=False
        What to do with a champion that cannot be loaded (artifacts deleted, a library it needs
        missing): False raises; True warns and returns its version without a model, so that
        :func:`gate` lets the challenger replace it.

    Returns
    -------
    version : str or None
        The champion's version; None when there is no champion.
    model : estimator or None
        The loaded model; None when there is no champion or it is broken and replaced.

    Raises
    ------
    ModelRegistryError
        If the champion cannot be loaded and ``replace_broken`` is False.
    """
    champion = champion_version(model_name)
    if champion is None:
        return None, None
    version = str(champion.version)
    try:
        return version, mlflow.sklearn.load_model(f"models:/{model_name}@{CHAMPION}")
    except Exception as exc:  # any failure to unpickle or fetch makes the champion unusable
        problem = (
            f"The champion of model '{model_name}' (version {version}) cannot be loaded: "
            f"{type(exc).__name__}: {exc}"
        )
        if not replace_broken:
            raise ModelRegistryError(
                f"{problem}. Repair or delete that version, or let the new model replace it "
                "with replace_broken=True (the deploy stage's replace_broken_champion=True)."
            ) from exc
        warnings.warn(f"{problem}. It is treated as absent, as requested.", stacklevel=2)
        return version, None


def promote(model_name: str, version: str | int, decision: GateDecision) -> list[str]:
    """Move the aliases after a gate decision and record the decision on the version.

    The version always gets ``challenger``; it gets ``champion`` too when ``decision.promoted``.
    The decision is stored as ``nbtools.gate.*`` tags of the version.

    Parameters
    ----------
    model_name : str
        Name of the registered model.
    version : str or int
        The version that went through the gate (from :func:`register`).
    decision : GateDecision
        The gate's decision for that version.

    Returns
    -------
    list of str
        The aliases the version holds afterwards, sorted.
    """
    client = MlflowClient()
    version = str(version)
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    if decision.promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    for key, value in decision.to_dict().items():
        if value is not None:
            text = str(value).lower() if isinstance(value, bool) else str(value)
            client.set_model_version_tag(
                model_name, version, TAG_PREFIX + key, text[:_MAX_TAG_LENGTH]
            )
    return sorted(client.get_model_version(model_name, version).aliases)


def version_history(model_name: str) -> pd.DataFrame:
    """List the registered versions of a model with their aliases and gate decisions.

    Parameters
    ----------
    model_name : str
        Name of the registered model; an unknown name gives an empty table.

    Returns
    -------
    DataFrame
        One row per version, newest first, indexed by version: ``aliases``, ``promoted``,
        ``metric``, ``score`` (its own), ``champion_score`` (what it was compared with) and
        ``created``.
    """
    columns = ["aliases", "promoted", "metric", "score", "champion_score", "created"]
    client = MlflowClient()
    versions = client.search_model_versions(f"name = '{model_name}'")
    # Search results leave out the aliases; the registered model holds them.
    aliases = client.get_registered_model(model_name).aliases if versions else {}
    rows = []
    for v in versions:
        tags = v.tags or {}
        held = sorted(a for a, number in aliases.items() if str(number) == str(v.version))
        rows.append(
            {
                "version": int(v.version),
                "aliases": ", ".join(held),
                "promoted": tags.get(TAG_PREFIX + "promoted"),
                "metric": tags.get(TAG_PREFIX + "metric"),
                "score": _float(tags.get(TAG_PREFIX + "challenger_score")),
                "champion_score": _float(tags.get(TAG_PREFIX + "champion_score")),
                "created": pd.to_datetime(v.creation_timestamp, unit="ms"),
            }
        )
    table = pd.DataFrame(rows, columns=["version", *columns])
    return table.sort_values("version", ascending=False).set_index("version")


def _float(text: str | None) -> float | None:
    return None if text is None else float(text)
