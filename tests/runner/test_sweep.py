"""Reading parameter sweeps from ``-p`` and ``pipeline.yaml``, without a kernel."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from nbtools.errors import PipelineSpecError
from nbtools.pipeline.spec import load_pipeline
from nbtools.runner.sweep import parse_overrides, variants

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


def _project(tmp_path: Path, extra: str = "") -> Path:
    shutil.copy(NOTEBOOKS / "produce.ipynb", tmp_path / "produce.ipynb")
    nb = nbformat.read(NOTEBOOKS / "consume.ipynb", as_version=4)
    nb.cells[1].source = "columns = ['a']  # names\n" + nb.cells[1].source
    nbformat.write(nb, tmp_path / "consume.ipynb")
    (tmp_path / "pipeline.yaml").write_text(
        "name: demo\nstages:\n  produce: {notebook: produce.ipynb}\n"
        f"  consume: {{notebook: consume.ipynb, inputs: [produce]}}\n{extra}",
        encoding="utf-8",
    )
    return tmp_path


def test_commas_sweep_scalars_but_lists_keep_their_yaml_meaning(tmp_path: Path) -> None:
    pipeline = load_pipeline(_project(tmp_path))
    overrides, swept = parse_overrides(
        pipeline,
        ["consume.factor=0.1,1,10", "columns=a,b", "label=y", "produce.label='x,y'"],
    )
    assert swept == {"consume.factor": [0.1, 1, 10]}
    assert overrides == {"columns": "a,b", "label": "y", "produce.label": "x,y"}
    assert parse_overrides(pipeline, ["columns=[a, b]"]) == ({"columns": ["a", "b"]}, {})


def test_variants_are_every_combination_first_key_slowest() -> None:
    assert variants({"C": [1, 10], "rows": [2, 3]}) == [
        {"C": 1, "rows": 2},
        {"C": 1, "rows": 3},
        {"C": 10, "rows": 2},
        {"C": 10, "rows": 3},
    ]


def test_the_sweep_section_of_pipeline_yaml(tmp_path: Path) -> None:
    pipeline = load_pipeline(_project(tmp_path, "sweep:\n  consume.factor: [1, 2]\n"))
    assert pipeline.sweep == {"consume.factor": [1, 2]}
    (tmp_path / "pipeline.yaml").write_text(
        (tmp_path / "pipeline.yaml").read_text().replace("[1, 2]", "3"), encoding="utf-8"
    )
    with pytest.raises(PipelineSpecError, match=r"'sweep' in .* must map each parameter"):
        load_pipeline(tmp_path)
