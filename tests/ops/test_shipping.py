"""Tests of nbtools.ops.shipping: the Dockerfile and Kubernetes manifests, by structure."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from nbtools.errors import InvalidParameterError
from nbtools.ops.shipping import ShippingParams, write_deployment_files


def params(**changes: object) -> ShippingParams:
    base: dict[str, object] = {
        "model_name": "Churn_Model",
        "tracking_uri": "http://mlflow.internal:5000",
    }
    return ShippingParams(**{**base, **changes})  # type: ignore[arg-type]


def load(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())


def test_writes_the_dockerfile_requirements_and_three_manifests(tmp_path: Path) -> None:
    written = write_deployment_files(params(), tmp_path)
    names = sorted(str(p.relative_to(tmp_path)) for p in written)
    assert names == [
        "Dockerfile",
        "k8s/deployment.yaml",
        "k8s/hpa.yaml",
        "k8s/service.yaml",
        "requirements.txt",
    ]
    kinds = {load(tmp_path / "k8s" / f"{n}.yaml")["kind"] for n in ("deployment", "service", "hpa")}
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    requirements = (tmp_path / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in requirements} >= {
        "mlflow",
        "fastapi",
        "uvicorn",
        "scikit-learn",
    }
    assert all("==" in r for r in requirements)


def test_the_manifests_fit_together(tmp_path: Path) -> None:
    write_deployment_files(params(port=9000, workers=3, max_replicas=7), tmp_path)
    deployment = load(tmp_path / "k8s" / "deployment.yaml")
    service = load(tmp_path / "k8s" / "service.yaml")
    hpa = load(tmp_path / "k8s" / "hpa.yaml")
    name = deployment["metadata"]["name"]
    assert name == "churn-model-serve"  # a DNS label derived from the model name
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert service["spec"]["selector"] == labels
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    assert port["containerPort"] == 9000
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert container["readinessProbe"]["httpGet"]["port"] == port["name"]
    assert container["livenessProbe"]["httpGet"]["port"] == port["name"]
    assert container["args"][container["args"].index("--port") + 1] == "9000"
    assert container["args"][container["args"].index("--workers") + 1] == "3"
    assert container["args"][container["args"].index("--model") + 1] == (
        "models:/Churn_Model@champion"
    )
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.internal:5000"
    assert env["NBTOOLS_SERVE_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": name,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 7)


def test_the_dockerfile_runs_the_service_on_the_same_port(tmp_path: Path) -> None:
    write_deployment_files(params(port=9000), tmp_path)
    text = (tmp_path / "Dockerfile").read_text()
    assert "EXPOSE 9000" in text
    assert '"--port", "9000"' in text
    assert '"--host", "0.0.0.0"' in text
    assert "http://127.0.0.1:9000/ping" in text
    assert "USER serve" in text


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"port": 0}, "'port'"),
        ({"cpu_limit": "two"}, "'cpu_limit'"),
        ({"memory_request": "1 GB"}, "'memory_request'"),
        ({"min_replicas": 5, "max_replicas": 3}, "'min_replicas'"),
        ({"app_name": "Not_A_Label"}, "'app_name'"),
        ({"target_cpu_percent": 150}, "'target_cpu_percent'"),
    ],
)
def test_invalid_parameters_are_named(tmp_path: Path, change: dict, named: str) -> None:
    with pytest.raises(InvalidParameterError, match=named):
        write_deployment_files(params(**change), tmp_path)
    assert not (tmp_path / "Dockerfile").exists()
