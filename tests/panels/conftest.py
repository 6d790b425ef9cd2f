"""Fixtures of the panel tests: a small project on disk and the demo table, no kernel."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nbtools import demo
from nbtools.pipeline.project import create_project


@pytest.fixture
def project(tmp_path: Path, migrated_db: Path) -> Path:
    """A fresh demo project (its pipeline.yaml keeps the template's comments)."""
    root = create_project(tmp_path / "churn")
    (root / "mlflow.db").write_bytes(migrated_db.read_bytes())
    return root


@pytest.fixture(scope="session")
def churn() -> pd.DataFrame:
    """The bundled demo table, 600 rows."""
    return demo.make_churn(600, seed=0)
