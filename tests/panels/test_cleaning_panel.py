"""The cleaning panel: start from parameters, preview, export, save, refuse bad choices."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nbtools.ml import cleaning
from nbtools.panels import CleaningPanel
from nbtools.pipeline.spec import load_pipeline


def _panel(churn: pd.DataFrame, project: Path | None = None, **params) -> CleaningPanel:
    start = cleaning.CleaningParams(**params)
    return CleaningPanel(churn, start, target="churned", project_dir=project)


def test_the_panel_starts_from_the_stage_parameters(churn: pd.DataFrame) -> None:
    panel = _panel(churn, outliers="clip", drop_columns=["region"])
    exported = panel.export()
    assert exported["outliers"] == "clip"
    assert exported["drop_columns"] == ["region"]
    assert panel.notice.value == ""  # 600 rows: no sample


def test_changing_choices_updates_the_preview_and_the_exported_parameters(
    churn: pd.DataFrame,
) -> None:
    panel = _panel(churn)
    panel.drop_columns.value = ("region",)
    panel.inputs["drop_duplicates"].value = True
    params = cleaning.CleaningParams(drop_columns=["region"], drop_duplicates=True)
    kept, report = cleaning.apply(churn, params, target="churned")
    assert report["duplicates_dropped"] > 0
    assert f"{len(kept):,} rows x {churn.shape[1] - 1} columns" in panel.preview.value
    assert f"duplicates {report['duplicates_dropped']:,} of {report['duplicates']:,}" in (
        panel.preview.value
    )
    exported = panel.export()
    assert exported["drop_columns"] == ["region"]
    assert exported["drop_duplicates"] is True
    expected, _ = cleaning.apply(churn, cleaning.CleaningParams(**exported), target="churned")
    pd.testing.assert_frame_equal(panel.apply()[0], expected)


def test_a_large_table_is_previewed_on_a_sample_and_the_panel_says_so(
    churn: pd.DataFrame,
) -> None:
    panel = CleaningPanel(churn, cleaning.CleaningParams(), target="churned", sample_size=100)
    assert "sample of 100 of 600 rows" in panel.notice.value
    assert "100 rows" in panel.preview.value


def test_save_writes_the_choices_into_pipeline_yaml(churn: pd.DataFrame, project: Path) -> None:
    start = cleaning.CleaningParams.from_dict(load_pipeline(project).resolve()["clean"])
    panel = CleaningPanel(churn, start, target="churned", project_dir=project)
    panel.inputs["outliers"].value = "clip"
    panel.save_button.click()
    assert "Saved to pipeline.yaml" in panel.message_text
    text = (project / "pipeline.yaml").read_text(encoding="utf-8")
    assert "outliers: clip" in text
    assert "# others are invalid" in text  # the user's comment on the stage is kept
    assert panel.saved == {"outliers": "clip"}


def test_a_strategy_that_does_not_fit_the_column_type_is_shown_and_not_saved(
    churn: pd.DataFrame, project: Path
) -> None:
    before = (project / "pipeline.yaml").read_text(encoding="utf-8")
    panel = _panel(churn, project)
    panel.non_negative_columns.value = ("contract",)
    assert "names column 'contract', which is not numeric" in panel.message_text
    panel.save_button.click()
    assert "not numeric" in panel.message_text
    assert (project / "pipeline.yaml").read_text(encoding="utf-8") == before


def test_an_out_of_range_value_is_shown_and_not_saved(churn: pd.DataFrame, project: Path) -> None:
    before = (project / "pipeline.yaml").read_text(encoding="utf-8")
    panel = _panel(churn, project)
    panel.inputs["iqr_factor"].value = -1.0
    assert "iqr_factor" in panel.message_text
    panel.save_button.click()
    assert (project / "pipeline.yaml").read_text(encoding="utf-8") == before


def test_a_column_choice_is_exported_and_saved(churn: pd.DataFrame, project: Path) -> None:
    panel = _panel(churn, project)
    panel.column.value = "age"
    panel.column_inputs["imputation"].value = "mean"
    panel.column_inputs["outliers"].value = "none"
    assert "age: imputation mean, outliers none" in panel.preview.value
    panel.save_button.click()
    resolved = load_pipeline(project).resolve()["clean"]
    assert resolved["column_choices"] == {"age": {"imputation": "mean", "outliers": "none"}}
    panel.column.value = "contract"
    assert panel.column_inputs["imputation"].value == ""  # shows the table-wide choice


def test_an_imputation_that_does_not_fit_the_column_type_is_not_saved(
    churn: pd.DataFrame, project: Path
) -> None:
    before = (project / "pipeline.yaml").read_text(encoding="utf-8")
    panel = _panel(churn, project)
    panel.column.value = "contract"
    panel.column_inputs["imputation"].value = "median"
    assert "which is categorical" in panel.message_text
    panel.save_button.click()
    assert (project / "pipeline.yaml").read_text(encoding="utf-8") == before
