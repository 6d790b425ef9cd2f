"""Writing choices into pipeline.yaml keeps the user's comments and refuses bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbtools.errors import InvalidParameterError
from nbtools.panels import save_parameters
from nbtools.pipeline.spec import load_pipeline


def test_saving_sets_the_stage_parameters_and_keeps_every_comment(project: Path) -> None:
    before = (project / "pipeline.yaml").read_text(encoding="utf-8")
    save_parameters(project, "clean", {"outliers": "none", "drop_columns": ["region"]})
    after = (project / "pipeline.yaml").read_text(encoding="utf-8")
    comments = [line.split("#", 1)[1] for line in before.splitlines() if "#" in line]
    assert all(comment in after for comment in comments)
    assert "drop_columns: [region]" in after
    resolved = load_pipeline(project).resolve()["clean"]
    assert resolved["outliers"] == "none"
    assert resolved["non_negative_columns"] == ["tenure_months", "monthly_charges", "total_charges"]


def test_saving_adds_a_parameters_mapping_to_a_stage_without_one(project: Path) -> None:
    save_parameters(project, "features", {"k": 5})
    assert load_pipeline(project).resolve()["features"]["k"] == 5


@pytest.mark.parametrize(
    ("values", "match"),
    [({"outliers": "sometimes"}, "outliers"), ({"no_such": 1}, "no parameter 'no_such'")],
)
def test_a_bad_value_leaves_the_file_unchanged(project: Path, values: dict, match: str) -> None:
    before = (project / "pipeline.yaml").read_text(encoding="utf-8")
    with pytest.raises(InvalidParameterError, match=match):
        save_parameters(project, "clean", values)
    assert (project / "pipeline.yaml").read_text(encoding="utf-8") == before
