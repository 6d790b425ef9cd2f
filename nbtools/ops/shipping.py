"""What it takes to run the model service elsewhere: a Dockerfile and Kubernetes manifests.

:func:`write_deployment_files` writes, into one folder:

- ``Dockerfile``: a slim Python image with nbtools installed, running ``nbtools serve`` for the
  registered model, binding ``0.0.0.0`` inside the container, as a non-root user, with a
  ``HEALTHCHECK`` on ``/ping``;
- ``requirements.txt``: the serving stack, pinned to the versions installed here (the model's
  own requirements are pinned the same way when it is logged);
- ``k8s/deployment.yaml``: a Deployment with readiness (``/health``) and liveness (``/ping``)
  probes, resource requests and limits, the registry URI and an optional token from a Secret;
- ``k8s/service.yaml``: a ClusterIP Service in front of it;
- ``k8s/hpa.yaml``: a HorizontalPodAutoscaler on CPU utilisation.

The container reads the model from the registry at ``tracking_uri`` (an ``mlflow server`` the
cluster can reach; a project's local SQLite file is not) and follows its alias there.
The deploy stage notebook and ``nbtools deploy`` both call :func:`write_deployment_files`.
"""

from __future__ import annotations

import importlib.metadata
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from nbtools.errors import InvalidParameterError
from nbtools.ml.modeling import MODEL_REQUIREMENTS

#: Path of the liveness probe (the process answers).
LIVENESS_PATH = "/ping"
#: Path of the readiness probe (a model is loaded).
READINESS_PATH = "/health"

#: The serving stack, besides what the model itself needs (modeling.MODEL_REQUIREMENTS).
SERVING_REQUIREMENTS = ("mlflow", "fastapi", "uvicorn", "orjson", "pyarrow")

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_CPU = re.compile(r"^\d+(\.\d+)?m?$")
_MEMORY = re.compile(r"^\d+(Ki|Mi|Gi|Ti|K|M|G|T)?$")


@dataclass(frozen=True)
class ShippingParams:
    """What the Dockerfile and the manifests are parameterised by.

    Parameters
    ----------
    model_name : str
        Registered model name.
    tracking_uri : str
        MLflow tracking/registry URI the container reads the model from.
    alias : str, default="champion"
        Alias to serve and follow.
    app_name : str or None, default=None
        Kubernetes name of the Deployment, Service and autoscaler; by default derived from the
        model name.
    image : str or None, default=None
        Container image; by default ``<app_name>:latest``.
    port : int, default=8000
        Port the service listens on in the container.
    workers : int, default=2
        uvicorn worker processes per container.
    replicas : int, default=2
        Initial number of pods.
    min_replicas, max_replicas : int, default=2, 10
        Autoscaler bounds.
    target_cpu_percent : int, default=70
        Autoscaler target of average CPU utilisation.
    cpu_request, cpu_limit : str, default="500m", "2"
        CPU resources of a pod.
    memory_request, memory_limit : str, default="512Mi", "2Gi"
        Memory resources of a pod.
    python_version : str, default="3.11"
        Python of the base image.
    """

    model_name: str
    tracking_uri: str
    alias: str = "champion"
    app_name: str | None = None
    image: str | None = None
    port: int = 8000
    workers: int = 2
    replicas: int = 2
    min_replicas: int = 2
    max_replicas: int = 10
    target_cpu_percent: int = 70
    cpu_request: str = "500m"
    cpu_limit: str = "2"
    memory_request: str = "512Mi"
    memory_limit: str = "2Gi"
    python_version: str = "3.11"

    @property
    def name(self) -> str:
        """The Kubernetes name: ``app_name``, or the model name in DNS-label form."""
        if self.app_name:
            return self.app_name
        slug = re.sub(r"[^a-z0-9-]+", "-", self.model_name.lower()).strip("-")[:50]
        return f"{slug or 'model'}-serve"

    @property
    def model_uri(self) -> str:
        """The registry URI the container serves."""
        return f"models:/{self.model_name}@{self.alias}"

    def validate(self) -> ShippingParams:
        """Check every value; return self.

        Raises
        ------
        InvalidParameterError
            For a value Kubernetes or the service would refuse, naming it.
        """
        checks: list[tuple[str, bool, str]] = [
            ("model_name", bool(self.model_name.strip()), "a non-empty string"),
            ("tracking_uri", bool(self.tracking_uri.strip()), "a non-empty string"),
            (
                "app_name",
                bool(_NAME.match(self.name)) and len(self.name) <= 63,
                "a DNS label (lowercase letters, digits and '-', at most 63 characters)",
            ),
            ("port", 1 <= self.port <= 65535, "an integer in the range [1, 65535]"),
            ("workers", self.workers >= 1, "an integer >= 1"),
            ("replicas", self.replicas >= 1, "an integer >= 1"),
            (
                "min_replicas",
                1 <= self.min_replicas <= self.max_replicas,
                "an integer in the range [1, max_replicas]",
            ),
            (
                "target_cpu_percent",
                1 <= self.target_cpu_percent <= 100,
                "an integer in the range [1, 100]",
            ),
            ("cpu_request", bool(_CPU.match(self.cpu_request)), "a CPU quantity such as '500m'"),
            ("cpu_limit", bool(_CPU.match(self.cpu_limit)), "a CPU quantity such as '2'"),
            (
                "memory_request",
                bool(_MEMORY.match(self.memory_request)),
                "a memory quantity such as '512Mi'",
            ),
            (
                "memory_limit",
                bool(_MEMORY.match(self.memory_limit)),
                "a memory quantity such as '2Gi'",
            ),
        ]
        for field, ok, expected in checks:
            if not ok:
                value = self.name if field == "app_name" else getattr(self, field)
                raise InvalidParameterError(
                    f"The '{field}' deployment parameter must be {expected}. Got {value!r} instead."
                )
        return self


def requirements() -> list[str]:
    """The serving stack and the model's libraries pinned to the installed versions.

    nbtools itself is left out: it is installed from a wheel (it is not on PyPI).
    """
    names = [n for n in MODEL_REQUIREMENTS if n != "nbtools"] + list(SERVING_REQUIREMENTS)
    return [f"{name}=={importlib.metadata.version(name)}" for name in dict.fromkeys(names)]


def dockerfile(params: ShippingParams) -> str:
    """Return the Dockerfile text for ``params``."""
    return f"""\
# Model service for {params.model_uri}, written by nbtools.
# Build context: this folder, plus an nbtools wheel (`pip wheel --no-deps -w . <nbtools source>`).
FROM python:{params.python_version}-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \\
    MLFLOW_TRACKING_URI={params.tracking_uri}

COPY requirements.txt nbtools-*.whl /tmp/install/
RUN pip install -r /tmp/install/requirements.txt /tmp/install/nbtools-*.whl \\
    && rm -rf /tmp/install \\
    && useradd --create-home --uid 10001 serve
USER serve
WORKDIR /home/serve

EXPOSE {params.port}
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \\
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{params.port}{LIVENESS_PATH}')"
CMD ["nbtools", "serve", "--model", "{params.model_uri}", "--host", "0.0.0.0", \\
     "--port", "{params.port}", "--workers", "{params.workers}"]
"""


def manifests(params: ShippingParams) -> dict[str, dict[str, Any]]:
    """Return the Kubernetes manifests as dicts: ``deployment``, ``service`` and ``hpa``."""
    labels = {"app.kubernetes.io/name": params.name, "app.kubernetes.io/part-of": "nbtools"}
    container = _container(params)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": params.name, "labels": labels},
        "spec": {
            "replicas": params.replicas,
            "selector": {"matchLabels": labels},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": params.name, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": labels,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    hpa = _autoscaler(params, labels)
    return {"deployment": deployment, "service": service, "hpa": hpa}


def _probe(path: str, delay: int, period: int) -> dict[str, Any]:
    """An HTTP probe of the serve container on ``path``."""
    return {
        "httpGet": {"path": path, "port": "http"},
        "initialDelaySeconds": delay,
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }


def _container(params: ShippingParams) -> dict[str, Any]:
    """The serve container: its command, port, registry, token secret, probes and resources."""
    image = params.image or f"{params.name}:latest"
    return {
        "name": "serve",
        "image": image,
        "args": [
            "nbtools",
            "serve",
            "--model",
            params.model_uri,
            "--host",
            "0.0.0.0",
            "--port",
            str(params.port),
            "--workers",
            str(params.workers),
        ],
        "ports": [{"name": "http", "containerPort": params.port, "protocol": "TCP"}],
        "env": [
            {"name": "MLFLOW_TRACKING_URI", "value": params.tracking_uri},
            {
                "name": "NBTOOLS_SERVE_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {
                        "name": f"{params.name}-token",
                        "key": "token",
                        "optional": True,
                    }
                },
            },
        ],
        "readinessProbe": _probe(READINESS_PATH, 5, 5),
        "livenessProbe": _probe(LIVENESS_PATH, 30, 10),
        "resources": {
            "requests": {"cpu": params.cpu_request, "memory": params.memory_request},
            "limits": {"cpu": params.cpu_limit, "memory": params.memory_limit},
        },
    }


def _autoscaler(params: ShippingParams, labels: dict[str, str]) -> dict[str, Any]:
    """The horizontal pod autoscaler: replicas between the bounds, on CPU utilisation."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": params.name, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": params.name},
            "minReplicas": params.min_replicas,
            "maxReplicas": params.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": params.target_cpu_percent,
                        },
                    },
                }
            ],
        },
    }


def write_deployment_files(params: ShippingParams, output_dir: str | Path) -> list[Path]:
    """Write the Dockerfile, requirements.txt and the Kubernetes manifests into ``output_dir``.

    Parameters
    ----------
    params : ShippingParams
        The model, registry and resources.
    output_dir : str or Path
        Folder to write into (created); existing files of the same names are replaced.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    InvalidParameterError
        If a parameter is invalid (:meth:`ShippingParams.validate`).
    """
    params.validate()
    folder = Path(output_dir)
    (folder / "k8s").mkdir(parents=True, exist_ok=True)
    written = [folder / "Dockerfile", folder / "requirements.txt"]
    written[0].write_text(dockerfile(params), encoding="utf-8")
    written[1].write_text("\n".join(requirements()) + "\n", encoding="utf-8")
    yaml = YAML()
    yaml.default_flow_style = False
    for kind, manifest in manifests(params).items():
        buffer = io.StringIO()
        yaml.dump(manifest, buffer)
        path = folder / "k8s" / f"{kind}.yaml"
        path.write_text(buffer.getvalue(), encoding="utf-8")
        written.append(path)
    return written
