"""Tests of nbtools.ml.data: sources, schema validation, hashing, the demo data set."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from nbtools.demo import make_churn
from nbtools.errors import DataSourceError, InvalidParameterError
from nbtools.ml.data import infer_task, validate_dataset, write_snapshot
from nbtools.tables import content_hash, load_source, redact_source, source_kind

SMALL = pd.DataFrame({"x": [1.0, 2.0, 3.0], "city": ["a", "b", "a"], "y": ["no", "yes", "no"]})


# --- the demo data set -------------------------------------------------------------------------


def test_make_churn_is_deterministic_and_seeded():
    assert make_churn(300, seed=3).equals(make_churn(300, seed=3))
    assert not make_churn(300, seed=3).equals(make_churn(300, seed=4))


def test_make_churn_has_the_promised_shape_and_dirt():
    df = make_churn(20_000, seed=0)
    assert len(df) == 20_000
    assert 10 <= df.shape[1] <= 14
    assert set(df["churned"].unique()) == {"yes", "no"}
    assert 0.2 < (df["churned"] == "yes").mean() < 0.45
    missing = df.isna().mean()
    assert ((missing > 0.015) & (missing < 0.05)).sum() >= 4
    assert 0.005 < df.duplicated().mean() < 0.015
    assert 0 < (df["tenure_months"] < 0).sum() < 0.01 * len(df)
    assert df["monthly_charges"].max() > 3 * df["monthly_charges"].quantile(0.99)
    assert pd.api.types.is_datetime64_any_dtype(df["signup_date"])
    for name in ("contract", "payment_method", "internet_service", "region"):
        assert pd.api.types.is_string_dtype(df[name])


def test_make_churn_target_is_learnable_but_noisy():
    df = make_churn(20_000, seed=1)
    rate = (df["churned"] == "yes").groupby(df["contract"]).mean()
    assert rate["month-to-month"] > 2 * rate["two year"]
    assert rate["two year"] > 0.02  # noisy: long contracts churn too


def test_make_churn_rejects_a_bad_row_count():
    with pytest.raises(InvalidParameterError, match=r"'n_rows' must be a positive integer"):
        make_churn(0)


# --- task inference ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (["yes", "no", "yes"], "classification"),
        ([True, False, True], "classification"),
        ([0, 1, 2, 1], "classification"),
        ([0.0, 1.0, np.nan, 1.0], "classification"),
        ([0.5, 1.7, 2.2], "regression"),
        (list(range(100)), "regression"),
    ],
)
def test_infer_task_from_the_target(values, task):
    assert infer_task(pd.Series(values, name="t")) == task


def test_infer_task_without_target_is_clustering():
    assert infer_task(None) == "clustering"


# --- sources -----------------------------------------------------------------------------------


def test_source_kinds():
    assert source_kind("demo") == "demo"
    assert source_kind("data/x.CSV") == "csv"
    assert source_kind("x.parquet") == "parquet"
    assert source_kind("sqlite:///shop.db") == "sql"
    assert source_kind("https://example.org/api") == "http"
    with pytest.raises(DataSourceError, match=r"extension '\.xlsx'"):
        source_kind("book.xlsx")


def test_passwords_in_source_urls_are_hidden():
    assert (
        redact_source("postgresql://bob:s3cret@db:5432/shop") == "postgresql://bob:***@db:5432/shop"
    )
    assert redact_source("https://x.org/api?page=1") == "https://x.org/api?page=1"
    assert redact_source("data/churn.csv") == "data/churn.csv"


def test_demo_source_is_the_churn_table():
    assert load_source("demo").equals(make_churn())


def test_csv_and_parquet_paths_are_relative_to_the_base_dir(tmp_path):
    (tmp_path / "data").mkdir()
    SMALL.to_csv(tmp_path / "data" / "s.csv", index=False)
    SMALL.to_parquet(tmp_path / "data" / "s.parquet", index=False)
    pd.testing.assert_frame_equal(load_source("data/s.csv", base_dir=tmp_path), SMALL)
    pd.testing.assert_frame_equal(load_source("data/s.parquet", base_dir=tmp_path), SMALL)


def test_json_file_of_records(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"items": SMALL.to_dict("records")}))
    pd.testing.assert_frame_equal(load_source("r.json", base_dir=tmp_path), SMALL)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataSourceError, match=r"'data/nope\.csv' does not exist"):
        load_source("data/nope.csv", base_dir=tmp_path)


def test_malformed_csv_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,4\n5,6,7\n")
    with pytest.raises(DataSourceError, match=r"bad\.csv' is malformed at line 4"):
        load_source("bad.csv", base_dir=tmp_path)


def test_empty_csv_is_reported(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataSourceError, match=r"is empty"):
        load_source("empty.csv", base_dir=tmp_path)


def test_corrupt_parquet_is_reported(tmp_path):
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(DataSourceError, match=r"not a readable Parquet file"):
        load_source("x.parquet", base_dir=tmp_path)


def test_table_parameter_needs_a_sql_source():
    with pytest.raises(InvalidParameterError, match=r"only applies to SQL sources"):
        load_source("demo", table="customers")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as connection:
        SMALL.to_sql("customers", connection, index=False)
        SMALL.to_sql("archive", connection, index=False)
    return path


def test_sqlite_table_and_query(sqlite_db):
    url = f"sqlite:///{sqlite_db}"
    pd.testing.assert_frame_equal(load_source(url, table="customers"), SMALL)
    only_a = load_source(url, query="SELECT x, y FROM customers WHERE city = 'a'")
    assert only_a["x"].tolist() == [1.0, 3.0]


def test_relative_sqlite_path_uses_the_base_dir(sqlite_db):
    loaded = load_source("sqlite:///shop.db", base_dir=sqlite_db.parent, table="customers")
    assert len(loaded) == 3


def test_sqlite_errors_list_the_tables(sqlite_db):
    url = f"sqlite:///{sqlite_db}"
    with pytest.raises(DataSourceError, match=r"Table 'orders' does not exist.*archive, customers"):
        load_source(url, table="orders")
    with pytest.raises(InvalidParameterError, match=r"needs the 'table' or the 'query'.*customers"):
        load_source(url)
    with pytest.raises(InvalidParameterError, match=r"exclude each other"):
        load_source(url, table="customers", query="SELECT 1")
    with pytest.raises(DataSourceError, match=r"Reading from"):
        load_source(url, query="SELECT nope FROM customers")


def test_missing_sqlite_file_is_not_created(tmp_path):
    with pytest.raises(DataSourceError, match=r"SQLite database 'missing.db' does not exist"):
        load_source("sqlite:///missing.db", base_dir=tmp_path, table="t")
    assert not (tmp_path / "missing.db").exists()


class _Handler(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, str, bytes]]] = {
        "/records": (200, "application/json", json.dumps(SMALL.to_dict("records")).encode()),
        "/wrapped": (
            200,
            "application/json",
            json.dumps({"count": 3, "data": SMALL.to_dict("records")}).encode(),
        ),
        "/two-lists": (200, "application/json", b'{"a": [{"x": 1}], "b": [{"x": 2}]}'),
        "/html": (200, "text/html", b"<html>hello</html>"),
    }
    release = threading.Event()

    def do_GET(self) -> None:
        if self.path == "/slow":
            self.release.wait(5)
            return
        status, content_type, body = self.routes.get(self.path, (404, "text/plain", b"nope"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    _Handler.release.set()
    server.shutdown()
    server.server_close()


def test_http_json_records(http_base):
    pd.testing.assert_frame_equal(load_source(f"{http_base}/records"), SMALL)
    pd.testing.assert_frame_equal(load_source(f"{http_base}/wrapped"), SMALL)


def test_http_errors_are_specific(http_base):
    with pytest.raises(DataSourceError, match=r"answered HTTP 404"):
        load_source(f"{http_base}/missing")
    with pytest.raises(DataSourceError, match=r"did not return JSON \(content type text/html"):
        load_source(f"{http_base}/html")
    with pytest.raises(DataSourceError, match=r"exactly one field.*found 2 \('a', 'b'\)"):
        load_source(f"{http_base}/two-lists")
    with pytest.raises(DataSourceError, match=r"did not answer within 0.2 s"):
        load_source(f"{http_base}/slow", timeout=0.2)


def test_unreachable_http_source():
    with pytest.raises(DataSourceError, match=r"could not be reached"):
        load_source("http://127.0.0.1:9/records", timeout=2)


# --- schema validation -------------------------------------------------------------------------


def test_valid_data_settles_the_task():
    assert validate_dataset(SMALL, target="y") == "classification"
    assert validate_dataset(SMALL, target="x", task="regression") == "regression"
    assert validate_dataset(SMALL, target=None) == "clustering"
    assert validate_dataset(SMALL, target="") == "clustering"


def test_missing_target_names_the_available_columns():
    with pytest.raises(DataSourceError, match=r"'churn' is not in .*Available columns: x, city, y"):
        validate_dataset(SMALL, target="churn")


def test_empty_column_says_how_to_drop_it():
    df = SMALL.assign(price=np.nan)
    expected = re.escape(
        "Column 'price' is empty (all 3 values are missing). "
        "Leave it out with the ingest stage's 'ignore_columns' parameter: ['price']."
    )
    with pytest.raises(DataSourceError, match=expected):
        validate_dataset(df, target="y")


def test_target_problems():
    for task in ("auto", "classification"):
        with pytest.raises(DataSourceError, match=r"'y' has no values: all 3 of them are missing"):
            validate_dataset(SMALL.assign(y=np.nan), target="y", task=task)
    with pytest.raises(DataSourceError, match=r"single class \('no'\).*at least two classes"):
        validate_dataset(SMALL.assign(y="no"), target="y")
    with pytest.raises(DataSourceError, match=r"must be numeric for regression.*'no'"):
        validate_dataset(SMALL, target="y", task="regression")
    with pytest.raises(InvalidParameterError, match=r"must name a column for a regression task"):
        validate_dataset(SMALL, target=None, task="regression")
    with pytest.raises(InvalidParameterError, match=r"'task' parameter of stage 'ingest'"):
        validate_dataset(SMALL, target="y", task="forecasting")


def test_tables_without_rows_or_columns():
    with pytest.raises(DataSourceError, match=r"has no rows"):
        validate_dataset(SMALL.iloc[0:0], target="y")
    with pytest.raises(DataSourceError, match=r"has no columns"):
        validate_dataset(pd.DataFrame(), target=None)
    with pytest.raises(DataSourceError, match=r"no column besides the target"):
        validate_dataset(SMALL[["y"]], target="y")


def test_repeated_column_names():
    df = pd.DataFrame([[1, 2, "a"]], columns=["x", "x", "y"])
    with pytest.raises(DataSourceError, match=r"'x' appears more than once"):
        validate_dataset(df, target="y")


# --- content hash and snapshot -----------------------------------------------------------------


def test_content_hash_is_stable_and_sensitive():
    df = make_churn(500)
    digest = content_hash(df)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert content_hash(make_churn(500)) == digest
    assert content_hash(df.set_index(df.index + 7)) == digest  # the index is not content
    changed = df.copy()
    changed.loc[3, "age"] = 99.0
    assert content_hash(changed) != digest
    assert content_hash(df.rename(columns={"age": "years"})) != digest
    assert content_hash(df.astype({"support_calls": "float64"})) != digest
    assert content_hash(df.iloc[::-1]) != digest


def test_snapshot_hash_matches_the_file_read_back(tmp_path):
    df = make_churn(500)
    digest = write_snapshot(df, tmp_path / "out" / "data.parquet")
    back = pd.read_parquet(tmp_path / "out" / "data.parquet")
    assert digest == content_hash(df) == content_hash(back)


def test_snapshot_of_a_mixed_column_names_it(tmp_path):
    mixed = pd.DataFrame({"code": [1, "A7", 3], "y": [1.0, 2.0, 3.0]})
    with pytest.raises(DataSourceError, match=r"Cannot write the snapshot .*code"):
        write_snapshot(mixed, tmp_path / "data.parquet")
    assert not (tmp_path / "data.parquet").exists()
