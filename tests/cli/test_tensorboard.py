"""``nbtools tensorboard`` before TensorBoard starts: the curves it finds, and what it says when
there are none, or no TensorBoard (the real TensorBoard is in tests/with_torch/)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nbtools.cli import cli
from nbtools.ops.tensorboard import find_curves, link_curves
from nbtools.records.runs import write_manifest

TRAINED, REUSED = "20260101-000000-abcdef", "20260102-000000-123456"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _project(root: Path, *, curves: bool = True) -> Path:
    """A project whose first run trained a stage (with curves or not) and whose second reused it."""
    root.mkdir(exist_ok=True)
    (root / "pipeline.yaml").write_text("name: p\nstages: {}\n", encoding="utf-8")
    trained = root / "runs" / TRAINED / "01_train"
    (trained / "tensorboard").mkdir(parents=True)
    if curves:
        (trained / "tensorboard" / "events.out.tfevents.1767225600.host.1.0").write_bytes(b"")
    stage = {"dir": "01_train", "status": "succeeded", "output_dir": str(trained)}
    write_manifest(root / "runs" / TRAINED, {"run_id": TRAINED, "stages": {"train": stage}})
    reused = {**stage, "status": "reused", "reused_from": TRAINED}
    write_manifest(root / "runs" / REUSED, {"run_id": REUSED, "stages": {"train": reused}})
    return root


def test_a_reused_stage_s_curves_show_under_each_run_that_used_them(tmp_path: Path) -> None:
    root = _project(tmp_path / "project")
    curves = find_curves(root / "runs")
    assert [(c.name, c.reused_from) for c in curves] == [
        (f"{REUSED}/train", TRAINED),
        (f"{TRAINED}/train", None),
    ]
    logdir = link_curves(curves, tmp_path / "logdir")
    written = root / "runs" / TRAINED / "01_train" / "tensorboard"
    for run_id in (TRAINED, REUSED):
        (link,) = (logdir / run_id / "train").iterdir()
        assert link.resolve() == next(written.iterdir()).resolve()


def test_an_unknown_run_id_is_named(tmp_path: Path) -> None:
    result = invoke("tensorboard", "2025", "--project", str(_project(tmp_path)))
    assert result.exit_code == 2
    assert "No run in" in result.output and "match the id '2025'" in result.output


def test_runs_without_curves_say_which_family_writes_them(tmp_path: Path) -> None:
    root = _project(tmp_path, curves=False)
    one = invoke("tensorboard", TRAINED[:10], "--project", str(root))
    every = invoke("tensorboard", "--project", str(root))
    assert one.exit_code == every.exit_code == 2
    assert f"Run {TRAINED} holds no training curves" in one.output
    assert f"No run in {root / 'runs'} holds training curves" in every.output
    for result in (one, every):
        assert "`nbtools run -p train.family=torch_mlp`" in result.output


def test_without_tensorboard_it_names_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setattr(sys, "executable", str(empty / "python"))
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # not importable either

    result = invoke("tensorboard", "--project", str(_project(tmp_path)))

    assert result.exit_code == 1
    assert "TensorBoard is not installed" in result.output
    assert "pip install 'nbtools[torch]'" in result.output
