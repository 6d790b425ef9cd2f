"""What running the pipeline away from a laptop needs: stage resources, secrets, notifications.

Three optional sections of ``pipeline.yaml``::

    secrets:                       # credentials by reference: never a value in this file
      WAREHOUSE_TOKEN:             # an environment variable; parameters say ${WAREHOUSE_TOKEN}
        kubernetes: warehouse      # on Kubernetes, from this secret (key: the variable's name)
      MLFLOW_TRACKING_PASSWORD: {} # read by MLflow itself; exports pass it on
    notify:
      webhook: NBTOOLS_WEBHOOK_URL # the environment variable holding the webhook's URL
      on: [run-failed, drift, decay, promoted, rejected]
    stages:
      train:
        resources: {cpu: 2, memory: 4Gi, gpu: 0}

A secret's value is read from the environment only where it is used (a data source being read
or fingerprinted): the run record, the manifest, the executed notebooks, MLflow and the exports
hold ``${NAME}`` and the secret's reference, never the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbtools.errors import PipelineSpecError
from nbtools.tables import SECRET_PATTERN

#: The events ``notify.on`` can list.
NOTIFY_EVENTS = ("run-failed", "drift", "decay", "promoted", "rejected")
_MEMORY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Resources:
    """What one execution of a stage needs: CPU cores, memory and GPUs.

    Parameters
    ----------
    cpu : float or None
        Cores (Kubernetes' ``cpu``; ``0.5`` is half a core).
    memory : str or None
        Memory in Kubernetes' notation, such as ``"4Gi"`` or ``"512Mi"``.
    gpu : int
        NVIDIA GPUs.
    """

    cpu: float | None = None
    memory: str | None = None
    gpu: int = 0

    @property
    def memory_bytes(self) -> int | None:
        """The memory in bytes, or None when unset."""
        if self.memory is None:
            return None
        units = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
        units |= {f"{k}i": 1024 ** (i + 1) for i, k in enumerate("KMGT")}
        number = re.match(r"^[\d.]+", self.memory)
        assert number is not None  # checked when parsed
        suffix = self.memory[number.end() :]
        return int(float(number.group()) * units.get(suffix, 1))

    def __bool__(self) -> bool:
        return self.cpu is not None or self.memory is not None or self.gpu > 0


@dataclass(frozen=True)
class Secret:
    """A credential the pipeline needs, by reference.

    Parameters
    ----------
    name : str
        The environment variable that holds it when a stage or MLflow runs.
    kubernetes : str or None
        The Kubernetes secret that exported pods take it from.
    key : str
        The key inside that Kubernetes secret.
    """

    name: str
    kubernetes: str | None = None
    key: str = ""


@dataclass(frozen=True)
class Notify:
    """Where and when the pipeline posts a message about what happened.

    Parameters
    ----------
    webhook : str
        The environment variable holding the webhook's URL (never the URL itself).
    on : tuple of str
        The events that post: some of :data:`NOTIFY_EVENTS`.
    """

    webhook: str
    on: tuple[str, ...] = NOTIFY_EVENTS


def parse_resources(raw: Any, where: str) -> Resources:
    """Read a stage's ``resources`` mapping.

    Raises
    ------
    PipelineSpecError
        For an unknown key or a value that is not a positive number (cpu), a Kubernetes
        quantity (memory) or a non-negative integer (gpu).
    """
    if raw is None:
        return Resources()
    if not isinstance(raw, dict) or set(raw) - {"cpu", "memory", "gpu"}:
        raise PipelineSpecError(
            f"'resources' of {where} must be a mapping of cpu, memory and gpu, such as "
            f"{{cpu: 2, memory: 4Gi, gpu: 1}}. Got {raw!r} instead."
        )
    cpu, memory, gpu = raw.get("cpu"), raw.get("memory"), raw.get("gpu", 0)
    if cpu is not None and (isinstance(cpu, bool) or not isinstance(cpu, int | float) or cpu <= 0):
        raise PipelineSpecError(
            f"'resources.cpu' of {where} must be a positive number of cores. Got {cpu!r} instead."
        )
    if memory is not None and not _MEMORY.match(str(memory)):
        raise PipelineSpecError(
            f"'resources.memory' of {where} must be a quantity such as 512Mi or 4Gi. "
            f"Got {memory!r} instead."
        )
    if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
        raise PipelineSpecError(
            f"'resources.gpu' of {where} must be a non-negative integer. Got {gpu!r} instead."
        )
    return Resources(cpu=cpu, memory=None if memory is None else str(memory), gpu=gpu)


def parse_secrets(raw: Any, path: Path) -> dict[str, Secret]:
    """Read the ``secrets`` section: environment variable name to its Kubernetes reference.

    Raises
    ------
    PipelineSpecError
        When a name is not an environment variable name, or an entry holds anything but
        ``kubernetes`` and ``key`` (a value, for instance).
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PipelineSpecError(
            f"'secrets' in {path} must map environment variable names to {{}} or "
            f"{{kubernetes: SECRET, key: KEY}}. Got {raw!r} instead."
        )
    found = {}
    for name, body in raw.items():
        body = body or {}
        if not _ENV_NAME.match(str(name)):
            raise PipelineSpecError(
                f"Secret '{name}' in {path} must be named like an environment variable "
                "(letters, digits and _)."
            )
        if not isinstance(body, dict) or set(body) - {"kubernetes", "key"}:
            raise PipelineSpecError(
                f"Secret '{name}' in {path} may only say where Kubernetes keeps it, as "
                "{kubernetes: SECRET, key: KEY}. A value never goes into pipeline.yaml: set "
                f"the environment variable {name} where the pipeline runs."
            )
        found[str(name)] = Secret(
            str(name),
            kubernetes=None if body.get("kubernetes") is None else str(body["kubernetes"]),
            key=str(body.get("key") or name),
        )
    return found


def parse_notify(raw: Any, path: Path) -> Notify | None:
    """Read the ``notify`` section.

    Raises
    ------
    PipelineSpecError
        When ``webhook`` is missing or looks like a URL, or ``on`` names an unknown event.
    """
    if raw is None:
        return None
    if isinstance(raw, dict) and True in raw:  # YAML 1.1 reads the key `on` as the boolean true
        raw = {("on" if key is True else key): value for key, value in raw.items()}
    if not isinstance(raw, dict) or set(raw) - {"webhook", "on"} or "webhook" not in raw:
        raise PipelineSpecError(
            f"'notify' in {path} must be a mapping with 'webhook' (an environment variable "
            f"name) and optionally 'on' (a list of {', '.join(NOTIFY_EVENTS)}). "
            f"Got {raw!r} instead."
        )
    webhook = str(raw["webhook"])
    if not _ENV_NAME.match(webhook):
        raise PipelineSpecError(
            f"'notify.webhook' in {path} must name the environment variable that holds the "
            f"webhook's URL, such as NBTOOLS_WEBHOOK_URL, not the URL itself (it carries a "
            f"token). Got {webhook!r} instead."
        )
    on = raw.get("on", list(NOTIFY_EVENTS))
    if not isinstance(on, list) or any(e not in NOTIFY_EVENTS for e in on):
        raise PipelineSpecError(
            f"'notify.on' in {path} must be a list of {', '.join(NOTIFY_EVENTS)}. "
            f"Got {on!r} instead."
        )
    return Notify(webhook, tuple(on))


def referenced_secrets(value: Any) -> list[str]:
    """Return the secret names that ``${NAME}`` references in a value (strings, lists, dicts)."""
    if isinstance(value, str):
        return SECRET_PATTERN.findall(value)
    if isinstance(value, dict):
        return [n for v in value.values() for n in referenced_secrets(v)]
    if isinstance(value, list | tuple):
        return [n for v in value for n in referenced_secrets(v)]
    return []


def check_secret_references(
    parameters: dict[str, Any], secrets: dict[str, Secret], where: str
) -> None:
    """Fail when a parameter references ``${NAME}`` that ``secrets`` does not declare.

    Raises
    ------
    PipelineSpecError
        Naming the parameter and the undeclared secret.
    """
    for key, value in parameters.items():
        for name in referenced_secrets(value):
            if name not in secrets:
                raise PipelineSpecError(
                    f"Parameter '{key}' of {where} references ${{{name}}}, which the 'secrets' "
                    f"section of pipeline.yaml does not declare. Add '{name}: {{}}' under "
                    "'secrets'."
                )
