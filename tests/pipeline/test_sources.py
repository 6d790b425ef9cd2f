"""Fingerprints of data sources, of nbtools' own code, and what a stage declares it reads."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

import nbtools
from nbtools.errors import DataSourceError, PipelineSpecError
from nbtools.pipeline.checks import check_paths
from nbtools.pipeline.project import create_project
from nbtools.pipeline.sources import (
    FingerprintMemo,
    champion_state,
    code_fingerprint,
    file_digest,
    fingerprint_source,
)
from nbtools.pipeline.spec import DEFAULT_READS, load_pipeline


def test_a_file_is_hashed_again_only_when_its_size_or_mtime_change(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("x,y\n1,2\n")
    memo = FingerprintMemo(tmp_path)
    first = file_digest(path, memo)
    memo.save()

    # A stored hash is trusted while size and mtime match: proven by a planted hash.
    planted = FingerprintMemo(tmp_path)
    entry = planted.get(str(path.resolve()))
    assert entry is not None and entry["sha256"] == first
    planted.put(str(path.resolve()), {**entry, "sha256": "planted"})
    assert file_digest(path, planted) == "planted"

    os.utime(path, ns=(entry["mtime_ns"] + 10**9, entry["mtime_ns"] + 10**9))
    assert file_digest(path, planted) == first  # touched: read again, same content
    path.write_text("x,y\n1,3\n")
    assert file_digest(path, planted) != first


def test_folders_and_globs_cover_every_file_and_their_names(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "a.csv").write_text("x\n1\n")
    (folder / "b.csv").write_text("x\n2\n")
    (folder / ".hidden").write_text("ignored")
    memo = FingerprintMemo(tmp_path)

    def both() -> tuple[str, str]:
        return (
            fingerprint_source("parts", base_dir=tmp_path, memo=memo).digest,
            fingerprint_source("parts/*.csv", base_dir=tmp_path, memo=memo).digest,
        )

    before = both()
    (folder / ".hidden").write_text("still ignored")
    assert both() == before
    (folder / "b.csv").rename(folder / "c.csv")
    renamed = both()
    assert renamed[0] != before[0] and renamed[1] != before[1]
    (folder / "d.csv").write_text("x\n4\n")
    assert both()[0] != renamed[0] and both()[1] != renamed[1]
    with pytest.raises(DataSourceError, match=r"'parts/\*\.parquet' cannot be reached.*no file"):
        fingerprint_source("parts/*.parquet", base_dir=tmp_path, memo=memo)
    with pytest.raises(DataSourceError, match=r"'nothing.csv' cannot be reached.*looked for"):
        fingerprint_source("nothing.csv", base_dir=tmp_path, memo=memo)


def test_a_sql_fingerprint_is_the_query_result(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "shop.db") as connection:
        connection.execute("create table t (x integer)")
        connection.executemany("insert into t values (?)", [(1,), (2,)])
    memo = FingerprintMemo(tmp_path)
    url = "sqlite:///shop.db"
    table = fingerprint_source(url, base_dir=tmp_path, memo=memo, table="t")
    query = fingerprint_source(
        url, base_dir=tmp_path, memo=memo, query="select x from t where x > 1"
    )
    assert table.rows == 2 and query.rows == 1
    with sqlite3.connect(tmp_path / "shop.db") as connection:
        connection.execute("insert into t values (3)")
    grown = fingerprint_source(url, base_dir=tmp_path, memo=memo, table="t")
    assert grown.rows == 3 and grown.digest != table.digest
    with pytest.raises(DataSourceError, match=r"'sqlite:///gone.db' cannot be reached"):
        fingerprint_source("sqlite:///gone.db", base_dir=tmp_path, memo=memo, table="t")


def test_the_code_fingerprint_changes_with_any_package_file(tmp_path: Path) -> None:
    package = tmp_path / "nbtools"
    shutil.copytree(
        Path(nbtools.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
    )
    before = code_fingerprint(package)
    (package / "ml" / "__pycache__").mkdir()
    (package / "ml" / "__pycache__" / "data.cpython-311.pyc").write_bytes(b"bytecode")
    assert code_fingerprint(package) == before
    data = package / "ml" / "data.py"
    data.write_text(data.read_text() + "\n# an edit in an editable install\n")
    assert code_fingerprint(package) != before


def test_no_registry_database_means_no_champion(tmp_path: Path) -> None:
    state = champion_state(f"sqlite:///{tmp_path / 'mlflow.db'}", "m")
    assert state == {"model": "m", "champion": None}
    assert not (tmp_path / "mlflow.db").exists()


def test_the_template_declares_what_its_stages_read_as_the_defaults_do(tmp_path: Path) -> None:
    root = create_project(tmp_path / "p")
    declared = load_pipeline(root)
    assert {s.name: s.reads for s in declared.stages if s.reads} == DEFAULT_READS
    # A pipeline written before `reads` existed gets the same from its stage names.
    text = (root / "pipeline.yaml").read_text()
    lines = [line for line in text.splitlines() if not line.strip().startswith("reads:")]
    (root / "pipeline.yaml").write_text("\n".join(lines) + "\n")
    derived = load_pipeline(root)
    for stage in derived.stages:
        assert stage.reads is None
        assert stage.read_sources == declared.stage(stage.name).read_sources
        assert stage.reads_registry == (stage.name in ("evaluate", "deploy", "monitor"))
    assert derived.stage("ingest").read_sources == ("source",)


def test_a_declared_read_must_be_a_parameter_or_the_registry(tmp_path: Path) -> None:
    root = create_project(tmp_path / "p")
    text = (root / "pipeline.yaml").read_text()
    (root / "pipeline.yaml").write_text(text.replace("reads: [source]", "reads: [sauce]"))
    with pytest.raises(PipelineSpecError, match=r"'sauce'.*neither 'registry' nor a parameter"):
        _ = load_pipeline(root).stage("ingest").read_sources
    (problem,) = check_paths([root])  # what `nbtools check` reports
    assert "'reads' of stage 'ingest' names 'sauce'" in problem
    (root / "pipeline.yaml").write_text(text.replace("reads: [source]", "reads: source"))
    with pytest.raises(PipelineSpecError, match=r"'reads' must be a list"):
        load_pipeline(root)
