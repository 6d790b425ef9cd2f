"""The generated manifests agree with the real service: probes, port, command line."""

from __future__ import annotations

from pathlib import Path

import mlflow
from click.testing import CliRunner
from fastapi.testclient import TestClient
from ruamel.yaml import YAML
from servicekit import MODEL, Registry

from nbtools.cli import cli
from nbtools.cli.serve import serve
from nbtools.ops.shipping import ShippingParams, write_deployment_files
from nbtools.serving.app import create_app
from nbtools.serving.config import ServeConfig


def test_probes_and_command_match_the_real_service(registry: Registry, tmp_path: Path) -> None:
    write_deployment_files(ShippingParams(MODEL, registry.uri, port=8123), tmp_path)
    deployment = YAML(typ="safe").load((tmp_path / "k8s" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[:2] == ["nbtools", "serve"]
    context = serve.make_context("serve", args[2:])  # the real command accepts every option
    assert context.params["port"] == container["ports"][0]["containerPort"] == 8123
    assert context.params["host"] == "0.0.0.0"

    previous = mlflow.get_tracking_uri()
    try:
        app = create_app(ServeConfig(model=context.params["model"], tracking_uri=registry.uri))
        with TestClient(app) as client:
            for probe in ("readinessProbe", "livenessProbe"):
                path = container[probe]["httpGet"]["path"]
                assert client.get(path).status_code == 200, path
    finally:
        mlflow.set_tracking_uri(previous)


def test_deploy_command_writes_into_the_project(make_project) -> None:
    project = make_project("produce: {notebook: produce.ipynb}")
    result = CliRunner().invoke(
        cli, ["deploy", "--project", str(project), "--tracking-uri", "http://mlflow:5000"]
    )
    assert result.exit_code == 0, result.output
    deployment = YAML(typ="safe").load((project / "deployment/k8s/deployment.yaml").read_text())
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "models:/fixture-model@champion" in args
    assert (project / "deployment" / "Dockerfile").is_file()


def test_deploy_command_rejects_bad_resources_with_exit_2(make_project) -> None:
    project = make_project("produce: {notebook: produce.ipynb}")
    result = CliRunner().invoke(cli, ["deploy", "--project", str(project), "--cpu-limit", "lots"])
    assert result.exit_code == 2
    assert "'cpu_limit'" in result.output


def test_serve_command_names_a_model_it_cannot_find(registry: Registry, tmp_path: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(
        cli, ["serve", "--model", "models:/nope@champion", "--tracking-uri", registry.uri]
    )
    not_registry = runner.invoke(
        cli, ["serve", "--model", str(tmp_path), "--tracking-uri", registry.uri]
    )
    assert unknown.exit_code == 2
    assert "'nope'" in unknown.output and "'champion'" in unknown.output
    assert not_registry.exit_code == 2
    assert "models:/NAME@ALIAS" in not_registry.output
