"""The cache re-checks the data behind a source: files edited in place, new SQL rows, HTTP records.

Each test drives ``nbtools run`` on a project made by ``nbtools new``, with real kernels, a real
SQLite database and a real HTTP server on 127.0.0.1, and reads what a user would: the lines the
run prints, which stages ran, and the rows the snapshot holds.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from nbtools.cli import cli
from nbtools.demo import make_churn

pytestmark = pytest.mark.integration


def nbtools(*args: str | Path) -> tuple[int, str]:
    """Run the nbtools command line; return its exit status and everything it printed."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def run(root: Path, *args: str) -> tuple[dict[str, Any], str]:
    """``nbtools run --profile smoke`` in ``root``; return the new run's manifest and output."""
    status, output = nbtools("run", "--project", root, "--profile", "smoke", *args)
    assert status == 0, output
    run_id = next(line.split()[-1] for line in output.splitlines() if line.startswith("Run id:"))
    manifest = json.loads((root / "runs" / run_id / "manifest.json").read_text())
    return manifest, output


def statuses(manifest: dict[str, Any]) -> dict[str, str]:
    return {name: stage["status"] for name, stage in manifest["stages"].items()}


def new_project(where: Path, migrated_db: Path, *args: str) -> Path:
    status, output = nbtools("new", where, *args)
    assert status == 0, output
    shutil.copy(migrated_db, where / "mlflow.db")
    return where


def test_a_csv_edited_in_place_runs_ingest_and_what_follows_again(
    tmp_path: Path, migrated_db: Path
) -> None:
    root = new_project(tmp_path / "churn", migrated_db)
    csv = root / "data" / "churn.csv"
    first, _ = run(root, "--to", "clean")
    assert statuses(first) == {"ingest": "succeeded", "clean": "succeeded"}

    again, output = run(root, "--to", "clean")
    assert statuses(again) == {"ingest": "reused", "clean": "reused"}
    assert "source unchanged: data/churn.csv" in output

    # Touched, same content: the file is hashed again and found unchanged.
    stat = csv.stat()
    memo = root / ".nbtools" / "cache" / "fingerprints.json"
    hashed_before = json.loads(memo.read_text())[str(csv.resolve())]
    csv.touch()
    touched, output = run(root, "--to", "clean")
    assert csv.stat().st_mtime_ns != stat.st_mtime_ns
    assert statuses(touched) == {"ingest": "reused", "clean": "reused"}
    assert "source unchanged: data/churn.csv" in output
    hashed_after = json.loads(memo.read_text())[str(csv.resolve())]
    assert hashed_after["mtime_ns"] == csv.stat().st_mtime_ns
    assert hashed_after["sha256"] == hashed_before["sha256"]

    # Other bytes, same table (a blank line at the end): ingest runs, its snapshot is the same,
    # so clean is reused.
    with csv.open("a") as handle:
        handle.write("\n")
    same_table, output = run(root, "--to", "clean")
    assert statuses(same_table) == {"ingest": "succeeded", "clean": "reused"}
    assert same_table["stages"]["ingest"]["why"] == "source changed: data/churn.csv"
    assert "source changed: data/churn.csv, 2,000 rows, was 2,000; its outputs are unchanged" in (
        output
    )

    # Halved: ingest and clean run again on the new data, and the run says how it changed.
    frame = pd.read_csv(csv)
    frame.head(1000).to_csv(csv, index=False)
    halved, output = run(root, "--to", "clean")
    assert statuses(halved) == {"ingest": "succeeded", "clean": "succeeded"}
    assert "source changed: data/churn.csv, 1,000 rows, was 2,000" in output
    assert halved["stages"]["clean"]["why"] == "inputs changed"
    assert halved["stages"]["ingest"]["recorded"]["rows"] == 1000
    snapshot = Path(halved["stages"]["ingest"]["output_dir"]) / "data.parquet"
    assert len(pd.read_parquet(snapshot)) == 1000


def test_a_missing_source_is_a_clear_error_and_keeps_the_recorded_runs(
    tmp_path: Path, migrated_db: Path
) -> None:
    root = new_project(tmp_path / "churn", migrated_db)
    run(root, "--to", "ingest")
    runs = sorted(p.name for p in (root / "runs").iterdir())
    (root / "data" / "churn.csv").rename(root / "data" / "elsewhere.csv")

    status, output = nbtools("run", "--project", root, "--to", "ingest")
    assert status == 2
    assert "Data source 'data/churn.csv' cannot be reached" in output
    assert str(root / "data" / "churn.csv") in output
    assert sorted(p.name for p in (root / "runs").iterdir()) == runs


def test_new_rows_in_a_sqlite_table_run_ingest_again(tmp_path: Path, migrated_db: Path) -> None:
    root = new_project(
        tmp_path / "shop",
        migrated_db,
        "--data",
        "sqlite:///data/shop.db",
        "--table",
        "customers",
        "--target",
        "churned",
    )
    (root / "data").mkdir()
    rows = make_churn(300, seed=1)
    with sqlite3.connect(root / "data" / "shop.db") as connection:
        rows.head(200).to_sql("customers", connection, index=False)

    first, _ = run(root, "--to", "ingest")
    assert first["stages"]["ingest"]["recorded"]["rows"] == 200
    unchanged, output = run(root, "--to", "ingest")
    assert statuses(unchanged) == {"ingest": "reused"}
    assert "source unchanged: sqlite:///data/shop.db" in output

    with sqlite3.connect(root / "data" / "shop.db") as connection:
        rows.tail(100).to_sql("customers", connection, index=False, if_exists="append")
    grown, output = run(root, "--to", "ingest")
    assert statuses(grown) == {"ingest": "succeeded"}
    assert "source changed: sqlite:///data/shop.db, 300 rows, was 200" in output
    assert grown["stages"]["ingest"]["sources"]["source"]["rows"] == 300


class _Records(BaseHTTPRequestHandler):
    """Serves ``server.records`` as JSON; with ``server.etag`` set, answers conditional GETs."""

    server: Any

    def do_GET(self) -> None:
        body = json.dumps({"data": self.server.records}).encode()
        etag = f'"v{self.server.version}"' if self.server.etag else None
        self.server.requests.append(self.headers.get("If-None-Match"))
        if etag is not None and self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if etag is not None:
            self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def records_server() -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server on 127.0.0.1 answering with JSON records, in a thread."""
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Records)
    server.records, server.version, server.etag, server.requests = [], 1, False, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("etag", [True, False], ids=["etag", "content-hash"])
def test_http_records_that_change_run_ingest_again(
    tmp_path: Path, migrated_db: Path, records_server: Any, etag: bool
) -> None:
    frame = make_churn(60, seed=2).drop(columns=["signup_date"])
    records = json.loads(frame.to_json(orient="records"))
    records_server.records, records_server.etag = records[:40], etag
    url = f"http://127.0.0.1:{records_server.server_port}/customers"
    root = new_project(tmp_path / "api", migrated_db, "--data", url, "--target", "churned")

    run(root, "--to", "ingest")
    records_server.requests.clear()
    unchanged, output = run(root, "--to", "ingest")
    assert statuses(unchanged) == {"ingest": "reused"}
    assert f"source unchanged: {url}" in output
    # With an ETag the check is a conditional request (answered 304, no body); without, the
    # records are fetched and hashed.
    assert records_server.requests == (['"v1"'] if etag else [None])

    records_server.records, records_server.version = records, 2
    changed, output = run(root, "--to", "ingest")
    assert statuses(changed) == {"ingest": "succeeded"}
    assert f"source changed: {url}, 60 rows, was 40" in output

    records_server.shutdown()
    records_server.server_close()
    status, output = nbtools("run", "--project", root, "--to", "ingest")
    assert status == 2 and f"Data source '{url}' cannot be reached" in output
