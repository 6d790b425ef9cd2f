"""Unit tests of nbtools.ops.model_card: what the card says, from the stages' hand-over files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nbtools.ops import model_card

DATASET = {
    "source": "data/known.csv",
    "target": "outcome",
    "task": "classification",
    "rows": 1600,
    "columns": {"driver": "float64", "region": "str", "outcome": "str"},
    "content_hash": "sha256:abc",
}
TRAINED = {"family": "logistic_regression", "scoring": "roc_auc", "cv_score": 0.9, "model_uri": "m"}
EVALUATED = {
    "rows": 320,
    "primary_metric": "roc_auc",
    "positive_label": "yes",
    "metrics": {"accuracy": 0.85, "roc_auc": 0.91},
    "dummy": {"accuracy": 0.5, "roc_auc": 0.5},
    "importance": {
        "metric": "roc_auc",
        "rows": 320,
        "repeats": 5,
        "summary": "The model relies most on **driver** (0.400 ± 0.010).",
        "columns": [
            {"column": "driver", "importance": 0.4, "std": 0.01, "above_noise": True},
            {"column": "noise", "importance": 0.0, "std": 0.01, "above_noise": False},
        ],
    },
    "slices": {
        "columns": ["region"],
        "metric": "roc_auc",
        "min_rows": 30,
        "overall": 0.91,
        "rows": [
            {
                "column": "region",
                "level": "special",
                "rows": 48,
                "roc_auc": 0.55,
                "drop": 0.36,
                "small": False,
            },
            {
                "column": "region",
                "level": "north",
                "rows": 260,
                "roc_auc": 0.95,
                "drop": -0.04,
                "small": False,
            },
            {
                "column": "region",
                "level": "tiny",
                "rows": 12,
                "roc_auc": 0.99,
                "drop": -0.08,
                "small": True,
            },
        ],
    },
}
DEPLOYMENT = {
    "aliases": ["challenger"],
    "promoted": False,
    "reason": "But on the slice region = 'special' its roc_auc drops: the champion stays.",
    "previous_champion": "1",
    "metric": "roc_auc",
}


def card(**changes: object) -> str:
    arguments = {
        "model_name": "known-model",
        "version": "2",
        "dataset": DATASET,
        "trained": TRAINED,
        "evaluated": EVALUATED,
        "deployment": DEPLOYMENT,
        "environment": ["scikit-learn==1.9.1"],
        "span": {"signup": ("2024-01-01T00:00:00", "2024-12-31T00:00:00")},
        **changes,
    }
    return model_card.model_card(**arguments)  # type: ignore[arg-type]


def test_the_card_states_data_metrics_importance_gate_environment_and_limits() -> None:
    text = card()
    assert text.startswith("# Model card: known-model version 2")
    assert "- snapshot hash: `sha256:abc`" in text and "1,600 in the snapshot" in text
    assert "time span (signup): 2024-01-01T00:00:00 to 2024-12-31T00:00:00" in text
    assert "predicting `outcome` (positive class 'yes'); deciding metric: roc_auc" in text
    assert "| roc_auc | 0.9100 | 0.5000 |" in text
    assert "| region | special | 48 | 0.5500 | 0.3600 | False |" in text
    assert "**driver**" in text and "Not promoted" in text and "version 1" in text
    assert "- `scikit-learn==1.9.1`" in text
    limits = text[text.index("## Limitations") :]
    assert "Too few test rows to say how the model does on: region = 'tiny' (12)" in limits
    assert "clearly worse than average" in limits and "region = 'special'" in limits
    assert "north" not in limits  # better than average
    assert "signup from 2024-01-01 to 2024-12-31" in limits
    assert "Within the noise of permutation importance: noise." in limits


def test_a_clustering_card_and_a_table_without_dates() -> None:
    evaluated = {"rows": 100, "primary_metric": "silhouette", "metrics": {"silhouette": 0.4}}
    text = card(evaluated=evaluated, span={})
    assert "time span: the data has no date column" in text
    assert "Not measured (no target to explain)." in text
    assert "### By slice" not in text


def test_time_span_and_the_html_render(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"when": pd.to_datetime(["2024-03-01", None, "2024-01-05"]), "x": [1, 2, 3]}
    )
    assert model_card.time_span(frame) == {"when": ("2024-01-05T00:00:00", "2024-03-01T00:00:00")}
    markdown, html = model_card.write_model_card(tmp_path, card())
    assert markdown.name == "model_card.md" and "## Limitations" in markdown.read_text()
    page = html.read_text()
    assert "<title>Model card: known-model version 2</title>" in page and "<table>" in page
    _, html = model_card.write_model_card(tmp_path, card(model_name="<b>m</b>"))
    assert "<b>m</b>" not in html.read_text()  # data is shown, never run as HTML
