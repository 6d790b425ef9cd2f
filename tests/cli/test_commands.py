"""The command line without kernels: project creation, bad input, run listings, checks."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pandas as pd
import sqlalchemy
from click.testing import CliRunner
from ruamel.yaml import YAML

from nbtools.cli import cli
from nbtools.records.runs import write_manifest

FIXTURES = Path(__file__).parents[1] / "notebooks"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_new_creates_a_project_with_demo_data_and_every_stage(tmp_path: Path) -> None:
    result = invoke("new", str(tmp_path / "p"))
    assert result.exit_code == 0, result.output
    root = tmp_path / "p"
    assert sorted(p.name for p in root.glob("*.ipynb")) == [
        "01_ingest.ipynb",
        "02_clean.ipynb",
        "03_split.ipynb",
        "04_features.ipynb",
        "05_train.ipynb",
        "06_evaluate.ipynb",
        "07_deploy.ipynb",
        "08_monitor.ipynb",
    ]
    assert (root / "data" / "churn.csv").stat().st_size > 10_000
    assert invoke("check", str(root)).exit_code == 0


def test_new_with_own_data_keeps_the_template_comments(tmp_path: Path) -> None:
    data = tmp_path / "houses.csv"
    data.write_text("rooms,price\n3,100\n4,150\n")
    result = invoke(
        "new",
        str(tmp_path / "houses"),
        "--data",
        str(data),
        "--target",
        "price",
        "--task",
        "regression",
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "houses" / "pipeline.yaml").read_text()
    assert "# name of the model in the MLflow registry" in text
    spec = YAML(typ="safe").load(text)
    assert spec["name"] == "houses"
    assert spec["stages"]["ingest"]["parameters"] == {
        "source": str(data.resolve()),
        "target": "price",
        "task": "regression",
    }


def test_new_refuses_bad_input_with_exit_status_2(tmp_path: Path) -> None:
    missing = invoke("new", str(tmp_path / "a"), "--data", "nope.csv", "--target", "y")
    assert missing.exit_code == 2
    assert "nope.csv does not exist" in missing.output
    no_target = invoke("new", str(tmp_path / "b"), "--data", "sqlite:///x.db", "--table", "t")
    assert no_target.exit_code == 2
    assert "needs its target" in no_target.output
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    assert "is not empty" in invoke("new", str(tmp_path / "c")).output


def test_run_refuses_unknown_parameters_before_starting(tmp_path: Path) -> None:
    invoke("new", str(tmp_path / "p"))
    result = invoke("run", "--project", str(tmp_path / "p"), "-p", "train.colour=red")
    assert result.exit_code == 2
    assert "Stage 'train' has no parameter 'colour'" in result.output
    wrong_type = invoke("run", "--project", str(tmp_path / "p"), "-p", "split.test_size=big")
    assert wrong_type.exit_code == 2
    assert "'test_size' parameter of stage 'split' must be a float" in wrong_type.output
    assert not (tmp_path / "p" / "runs").exists()


def test_run_outside_a_project_says_how_to_make_one(tmp_path: Path) -> None:
    result = invoke("run", "--project", str(tmp_path))
    assert result.exit_code == 2
    assert "nbtools new DIR" in result.output


def test_runs_list_and_show_read_the_records(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text("stages: {}\n")
    stage = {
        "status": "succeeded",
        "dir": "06_evaluate",
        "duration_s": 2.5,
        "executed_notebook": "/r/06_evaluate/output.ipynb",
        "html": "/r/x.html",
        "recorded": {"test_f1": 0.8123, "rows": 10, "warnings": ["removed 9 of 10 rows (90.0%)"]},
        "error": None,
    }
    manifest = {
        "run_id": "20260101-000000-abcdef",
        "pipeline": "demo",
        "status": "succeeded",
        "started_at": "2026-01-01T00:00:00+00:00",
        "duration_s": 12.0,
        "profile": None,
        "mlflow": {"parent_run_id": "abc"},
        "error": None,
        "stages": {"evaluate": stage},
    }
    write_manifest(tmp_path / "runs" / manifest["run_id"], manifest)

    listed = invoke("runs", "list", "--project", str(tmp_path))
    assert "20260101-000000-abcdef" in listed.output
    assert "1/1 ok" in listed.output and "test_f1=0.8123" in listed.output
    shown = invoke("runs", "show", "20260101", "--project", str(tmp_path))
    assert "evaluate: succeeded (2.5 s)" in shown.output
    assert "/r/06_evaluate/output.ipynb" in shown.output
    assert "  warning: removed 9 of 10 rows (90.0%)" in shown.output
    as_json = invoke("runs", "show", "20260101", "--json", "--project", str(tmp_path))
    assert json.loads(as_json.output)["stages"]["evaluate"]["recorded"]["rows"] == 10
    missing = invoke("runs", "show", "nope", "--project", str(tmp_path))
    assert missing.exit_code == 2 and "No run in" in missing.output


def test_check_reports_stored_outputs_and_missing_runner_names(tmp_path: Path) -> None:
    nb = nbformat.read(FIXTURES / "produce.ipynb", as_version=4)
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text="hi")]
    nb.cells[1].source = "rows = 10  # the runner-injected names are missing"
    nbformat.write(nb, tmp_path / "bad.ipynb")
    result = invoke("check", str(tmp_path))
    assert result.exit_code == 1
    assert "stored with outputs" in result.output
    assert "must end with 'inputs = None'" in result.output


def test_new_with_a_misspelt_target_names_the_nearest_column_and_creates_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "titanic.csv"
    data.write_text("pclass,sex,age,survived\n1,female,29,1\n3,male,40,0\n")
    project = tmp_path / "titanic"
    nbtools = Path(sys.executable).with_name("nbtools")  # the real command, as a user types it
    result = subprocess.run(
        [nbtools, "new", project, "--data", data, "--target", "Survived"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "The target column 'Survived' is not in" in result.stderr
    assert "Did you mean 'survived'?" in result.stderr
    assert "pclass, sex, age, survived" in result.stderr
    assert not project.exists()
    fixed = subprocess.run(
        [nbtools, "new", project, "--data", data, "--target", "survived"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert fixed.returncode == 0, fixed.stderr
    assert (project / "pipeline.yaml").is_file()


def test_new_checks_the_target_of_parquet_sql_and_http_sources(tmp_path: Path) -> None:
    frame = pd.DataFrame({"rooms": [3, 4], "price": [100.0, 150.0]})
    frame.to_parquet(tmp_path / "houses.parquet")
    result = invoke("new", str(tmp_path / "a"), "--data", str(tmp_path / "houses.parquet"),
                    "--target", "prise")  # fmt: skip
    assert result.exit_code == 2 and "Did you mean 'price'?" in result.output
    assert not (tmp_path / "a").exists()

    url = f"sqlite:///{tmp_path / 'houses.db'}"
    with sqlalchemy.create_engine(url).begin() as connection:
        frame.to_sql("houses", connection, index=False)
    table = invoke("new", str(tmp_path / "b"), "--data", url, "--table", "houses",
                   "--target", "Price")  # fmt: skip
    assert table.exit_code == 2 and "Did you mean 'price'?" in table.output
    query = invoke("new", str(tmp_path / "c"), "--data", url, "--query",
                   "SELECT rooms, price AS cost FROM houses", "--target", "price")  # fmt: skip
    assert query.exit_code == 2 and "Its columns: rooms, cost." in query.output
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    good = invoke("new", str(tmp_path / "d"), "--data", url, "--table", "houses",
                  "--target", "price")  # fmt: skip
    assert good.exit_code == 0, good.output

    body = json.dumps([{"rooms": 3, "price": 100}, {"rooms": 4, "price": 150}]).encode()

    class Records(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Records)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"http://127.0.0.1:{server.server_port}/houses"
        http = invoke("new", str(tmp_path / "e"), "--data", address, "--target", "rom")
        assert http.exit_code == 2 and "Did you mean 'rooms'?" in http.output
        assert not (tmp_path / "e").exists()
    finally:
        server.shutdown()
        thread.join()


def test_new_without_a_close_column_lists_the_columns(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("alpha,beta\n1,2\n")
    result = invoke("new", str(tmp_path / "p"), "--data", str(data), "--target", "zzz")
    assert result.exit_code == 2
    assert "Did you mean" not in result.output and "Its columns: alpha, beta." in result.output
