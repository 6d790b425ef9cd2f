"""Loading pipeline.yaml: the graph, profiles and every spec error, without a kernel."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nbtools.errors import InvalidParameterError, PipelineSpecError, ProjectNotFoundError
from nbtools.pipeline.spec import find_project, load_pipeline

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


def project(tmp_path: Path, body: str) -> Path:
    for name in ("produce", "consume"):
        shutil.copy(NOTEBOOKS / f"{name}.ipynb", tmp_path / f"{name}.ipynb")
    (tmp_path / "pipeline.yaml").write_text(body, encoding="utf-8")
    return tmp_path


GOOD = """
name: demo
tracking_uri: sqlite:///mlflow.db
stages:
  consume: {notebook: consume.ipynb, inputs: [produce]}
  produce: {notebook: produce.ipynb}
profiles:
  smoke: {rows: 2, consume.factor: 0.5}
"""


def test_stages_come_in_dependency_order_with_absolute_tracking(tmp_path: Path) -> None:
    pipeline = load_pipeline(project(tmp_path, GOOD))
    assert [s.name for s in pipeline.stages] == ["produce", "consume"]
    assert pipeline.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert pipeline.model_name == "demo-model"
    assert [s.name for s in pipeline.upstream("consume")] == ["produce", "consume"]


def test_profiles_and_overrides_layer_over_notebook_defaults(tmp_path: Path) -> None:
    pipeline = load_pipeline(project(tmp_path, GOOD))
    assert pipeline.resolve()["produce"] == {"rows": 10, "label": "x"}
    smoke = pipeline.resolve("smoke", {"label": "y"})
    assert smoke == {"produce": {"rows": 2, "label": "y"}, "consume": {"factor": 0.5}}
    with pytest.raises(InvalidParameterError, match=r"no profile 'fast'. Profiles: smoke"):
        pipeline.resolve("fast")


def test_the_project_is_found_from_a_subfolder(tmp_path: Path) -> None:
    root = project(tmp_path, GOOD)
    (root / "sub" / "deeper").mkdir(parents=True)
    assert find_project(root / "sub" / "deeper") == root.resolve()
    with pytest.raises(ProjectNotFoundError, match="nbtools new DIR"):
        find_project(Path("/"))


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            "stages: {a: {notebook: produce.ipynb, inputs: [b]}, b: {notebook: consume.ipynb, "
            "inputs: [a]}}",
            "form a cycle: a -> b -> a",
        ),
        (
            "stages: {a: {notebook: produce.ipynb, inputs: [ghost]}}",
            "reads from 'ghost', which is not a stage",
        ),
        ("stages: {a: {notebook: missing.ipynb}}", "which does not exist"),
        ("stages: {a: {notebook: produce.ipynb}}\ncolour: blue", "Unknown key(s) colour"),
        ("stages: {}", "at least one stage"),
        ("stages: {a: {notebook: produce.ipynb}}\ncell_timeout: -1", "positive integer"),
        ("stages: [a", "not valid YAML"),
    ],
)
def test_a_broken_pipeline_is_refused_with_a_clear_message(
    tmp_path: Path, body: str, fragment: str
) -> None:
    with pytest.raises(PipelineSpecError) as caught:
        pipeline = load_pipeline(project(tmp_path, body))
        _ = [s.schema for s in pipeline.stages]
    assert fragment in str(caught.value)


def test_notify_reads_its_on_key_although_yaml_reads_on_as_true(tmp_path: Path) -> None:
    from nbtools.pipeline.deployment import NOTIFY_EVENTS, Notify

    body = GOOD + "notify:\n  webhook: TEAM_WEBHOOK\n  on: [run-failed, drift]\n"
    assert load_pipeline(project(tmp_path, body)).notify == Notify(
        "TEAM_WEBHOOK", ("run-failed", "drift")
    )
    body = GOOD + "notify: {webhook: TEAM_WEBHOOK}\n"
    assert load_pipeline(project(tmp_path, body)).notify == Notify("TEAM_WEBHOOK", NOTIFY_EVENTS)
    body = GOOD + "notify: {webhook: 'https://hooks.example/T0/s3cr3t'}\n"
    with pytest.raises(PipelineSpecError, match="not the URL itself"):
        load_pipeline(project(tmp_path, body))
