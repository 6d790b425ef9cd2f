"""Secrets by reference: a data source that needs a token says ``${NAME}``, and nothing a run,
a failed run, an export or a schedule writes holds the token's value."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from nbtools.demo import make_churn
from nbtools.pipeline.project import create_project

pytestmark = pytest.mark.integration

NBTOOLS = str(Path(sys.executable).parent / "nbtools")
TOKEN = "tok-5c1e7a9b3d"  # the warehouse's real token
WRONG = "tok-0ld-4f2e8c"  # a revoked one


@pytest.fixture
def warehouse() -> Iterator[str]:
    """An HTTP API on 127.0.0.1 answering JSON records only to ``?token=TOKEN``."""
    body = make_churn().head(400).to_json(orient="records", date_format="iso").encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            given = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
            status = 200 if given == TOKEN else 401
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if status == 200 else b'{"error": "bad token"}')

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/customers"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _nbtools(*args: str, token: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WAREHOUSE_TOKEN": token}
    return subprocess.run(
        [NBTOOLS, *args], capture_output=True, text=True, check=False, cwd=cwd, env=env
    )


def _files_holding(folder: Path, *values: str) -> list[str]:
    return [
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and any(v.encode() in path.read_bytes() for v in values)
    ]


def test_no_file_a_run_an_export_or_a_schedule_writes_holds_the_secret(
    tmp_path: Path, warehouse: str, extra_venv
) -> None:
    root = create_project(tmp_path / "churn")
    spec = (root / "pipeline.yaml").read_text(encoding="utf-8")
    source = f"{warehouse}?token=${{WAREHOUSE_TOKEN}}"
    spec = re.sub(r"(\n      source: )\S+", rf"\g<1>'{source}'", spec, count=1)
    spec += "\nsecrets:\n  WAREHOUSE_TOKEN: {kubernetes: warehouse, key: token}\n"
    (root / "pipeline.yaml").write_text(spec, encoding="utf-8")

    first = _nbtools("run", "--to", "ingest", token=TOKEN, cwd=root)
    again = _nbtools("run", "--to", "ingest", token=TOKEN, cwd=root)
    revoked = _nbtools("run", "--to", "ingest", "--force", "ingest", token=WRONG, cwd=root)
    missing = subprocess.run(
        [NBTOOLS, "run", "--to", "ingest"], capture_output=True, text=True, cwd=root, check=False
    )
    kfp = str(extra_venv("kfp", "kfp>=2.17", "kfp-kubernetes>=2.17") / "python")
    exports = [
        ("export", "airflow"),
        ("export", "airflow", "export/pods", "--operator", "kubernetes", "--image", "i:1"),
        ("export", "kubeflow", "--image", "i:1", "--volume", "v", "--kfp-python", kfp),
        ("schedule", "kubernetes", "0 3 * * *", "--image", "i:1", "--output", "cronjob.yaml"),
        ("schedule", "cron", "0 3 * * *", "--print"),
    ]
    written = [_nbtools(*command, token=TOKEN, cwd=root) for command in exports]

    assert first.returncode == 0, first.stdout + first.stderr
    assert "reused" in again.stdout and "ingest" in again.stdout
    assert revoked.returncode != 0
    assert "${WAREHOUSE_TOKEN}" in revoked.stdout + revoked.stderr
    assert "401" in revoked.stdout + revoked.stderr
    assert "WAREHOUSE_TOKEN is not set" in missing.stderr
    assert [w.returncode for w in written] == [0] * len(exports), [w.stderr for w in written]
    for done in (first, again, revoked, missing, *written):
        assert TOKEN not in done.stdout + done.stderr
        assert WRONG not in done.stdout + done.stderr
    assert (root / "export" / "kubeflow" / "pipeline.yaml").is_file()
    assert (root / "runs").is_dir() and (root / "mlflow.db").is_file()
    # every file: run records, executed notebooks, manifests, the cache, MLflow's database
    # and artifacts, the exports and the CronJob
    assert _files_holding(root, TOKEN, WRONG) == []
    assert "secretKeyRef" in (root / "cronjob.yaml").read_text()
