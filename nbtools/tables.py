"""Reading a data source into a DataFrame, and hashing a table's content.

A *source* is one string, as a user types it in the ingest stage:

- ``"demo"``: the synthetic customer-churn table of :func:`nbtools.demo.make_churn`;
- a path to a CSV, Parquet or JSON-records file, relative to the project directory;
- a SQLAlchemy URL (``sqlite:///data/shop.db``) together with a ``table`` or a ``query``;
- an ``http(s)://`` URL answering with JSON records.

A source may reference credentials as ``${NAME}``: the environment variable ``NAME`` is read
only when the source is opened (:func:`expand_secrets`), so what is recorded holds the
reference, and messages show it instead of the value (:func:`hide_secrets`).

Every problem with a source (missing file, malformed CSV, unknown table, HTTP error, an empty
table, a useless column, a missing target) is raised as a
:class:`~nbtools.errors.DataSourceError` whose message names the source and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nbtools.demo import make_churn
from nbtools.errors import DataSourceError, InvalidParameterError

__all__ = [
    "content_hash",
    "expand_secrets",
    "hide_secrets",
    "load_source",
    "records_to_frame",
    "redact_source",
    "schema",
    "source_kind",
]

#: ``${NAME}`` in a source: the value of the environment variable ``NAME``.
SECRET_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_URL_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
_FILE_KINDS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
}


def source_kind(source: str) -> str:
    """Say which kind of data source a source string names.

    Parameters
    ----------
    source : str
        The source as typed in the ingest stage.

    Returns
    -------
    str
        One of ``"demo"``, ``"http"``, ``"sql"``, ``"csv"``, ``"parquet"``, ``"json"``.

    Raises
    ------
    DataSourceError
        If the source is empty or a file path with an unsupported extension.
    """
    text = source.strip()
    if not text:
        raise DataSourceError("The data source is empty. Give a file path, a URL or 'demo'.")
    if text == "demo":
        return "demo"
    match = _URL_SCHEME.match(text)
    if match:
        return "http" if match["scheme"].lower() in ("http", "https") else "sql"
    suffix = Path(text).suffix.lower()
    if suffix not in _FILE_KINDS:
        supported = ", ".join(sorted(_FILE_KINDS))
        raise DataSourceError(
            f"Cannot tell how to read '{source}': the file extension '{suffix}' is not one of "
            f"{supported}. Use one of those, a SQLAlchemy URL, an http(s) URL or 'demo'."
        )
    return _FILE_KINDS[suffix]


def redact_source(source: str) -> str:
    """Hide a password in a source URL, for messages, ``dataset.json`` and MLflow.

    Parameters
    ----------
    source : str
        A source string as :func:`load_source` takes it.

    Returns
    -------
    str
        The same string with the password of a URL (``user:secret@host``) replaced by ``***``.
    """
    parts = urllib.parse.urlsplit(source)
    if not _URL_SCHEME.match(source) or parts.password is None:
        return source
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def expand_secrets(source: str) -> str:
    """Return ``source`` with every ``${NAME}`` replaced by the environment variable ``NAME``.

    Call it only where the source is opened, never on what is recorded or shown.

    Raises
    ------
    DataSourceError
        When a referenced environment variable is not set.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise DataSourceError(
                f"The data source '{source}' references ${{{name}}}, but the environment "
                f"variable {name} is not set. Set it where the pipeline runs (on Kubernetes, "
                "from the secret that pipeline.yaml's 'secrets' names)."
            )
        return os.environ[name]

    return SECRET_PATTERN.sub(value, source)


def hide_secrets(text: str, source: str) -> str:
    """Put ``${NAME}`` back in ``text`` wherever it holds the value of a secret of ``source``.

    For messages of libraries (database drivers, HTTP clients) that quote the opened source.
    """
    for name in set(SECRET_PATTERN.findall(source)):
        secret = os.environ.get(name)
        if secret:
            text = text.replace(secret, f"${{{name}}}")
    return text


def load_source(
    source: str,
    *,
    base_dir: str | Path | None = None,
    table: str | None = None,
    query: str | None = None,
    timeout: float = 30.0,
) -> pd.DataFrame:
    """Read a data source into a DataFrame.

    Parameters
    ----------
    source : str
        ``"demo"``, a CSV / Parquet / JSON file path, a SQLAlchemy URL or an http(s) URL.
    base_dir : str or Path, optional
        Directory that relative file paths and relative SQLite database paths are resolved
        against (the project directory). Defaults to the working directory.
    table : str, optional
        Table to read, for SQL sources.
    query : str, optional
        SQL query to run instead of reading a whole table, for SQL sources.
    timeout : float, default=30.0
        Seconds to wait for an HTTP source to answer.

    Returns
    -------
    pandas.DataFrame
        The data, with a fresh ``RangeIndex``.

    Raises
    ------
    DataSourceError
        If the source cannot be read; the message names the source and the problem.
    InvalidParameterError
        If ``table`` or ``query`` is given for a source that is not SQL, or both are given.
    """
    if not SECRET_PATTERN.search(source):
        return _load(source, base_dir, table=table, query=query, timeout=timeout)
    try:
        return _load(expand_secrets(source), base_dir, table=table, query=query, timeout=timeout)
    except (DataSourceError, InvalidParameterError) as exc:
        # The chained exceptions quote the opened source: keep only the message, hidden.
        raise type(exc)(hide_secrets(str(exc), source)) from None


def _load(
    source: str,
    base_dir: str | Path | None,
    *,
    table: str | None,
    query: str | None,
    timeout: float,
) -> pd.DataFrame:
    kind = source_kind(source)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if kind != "sql" and (table is not None or query is not None):
        name = "table" if table is not None else "query"
        raise InvalidParameterError(
            f"The '{name}' parameter of stage 'ingest' only applies to SQL sources, "
            f"but the source '{redact_source(source)}' is a {kind} source. "
            f"Got {name}={table or query!r}."
        )
    if kind == "demo":
        return make_churn()
    if kind == "http":
        return _read_http(source.strip(), timeout=timeout)
    if kind == "sql":
        return _read_sql(source.strip(), base, table=table, query=query)
    path = Path(source.strip()).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise DataSourceError(f"Data file '{source}' does not exist (looked for {path}).")
    if kind == "csv":
        return _read_csv(path)
    if kind == "parquet":
        try:
            return pd.read_parquet(path).reset_index(drop=True)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise DataSourceError(f"'{path}' is not a readable Parquet file: {exc}") from exc
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataSourceError(f"'{path}' is not a valid JSON file: {exc}") from exc
    return records_to_frame(payload, where=str(path))


def _read_csv(path: Path) -> pd.DataFrame:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        return pd.read_csv(path, sep=sep)
    except pd.errors.EmptyDataError as exc:
        raise DataSourceError(f"CSV file '{path}' is empty: it has no header and no rows.") from exc
    except pd.errors.ParserError as exc:
        line = re.search(r"line (\d+)", str(exc))
        where = f" at line {line.group(1)}" if line else ""
        raise DataSourceError(
            f"CSV file '{path}' is malformed{where}: {exc}. Check the separator and quoting "
            f"on that line."
        ) from exc
    except UnicodeDecodeError as exc:
        raise DataSourceError(
            f"CSV file '{path}' is not UTF-8 text (byte {exc.start}): save it as UTF-8."
        ) from exc


def _read_sql(url: str, base: Path, *, table: str | None, query: str | None) -> pd.DataFrame:
    import sqlalchemy as sa
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    shown = redact_source(url)
    if table is not None and query is not None:
        raise InvalidParameterError(
            "The 'table' and 'query' parameters of stage 'ingest' exclude each other. "
            f"Got table={table!r} and query={query!r}; set one of them to None."
        )
    try:
        parsed = sa.engine.make_url(url)
    except ArgumentError as exc:
        raise DataSourceError(f"'{shown}' is not a valid SQLAlchemy URL: {exc}") from exc
    database = parsed.database
    if parsed.drivername.startswith("sqlite") and database and database != ":memory:":
        db_path = Path(database).expanduser()
        db_path = db_path if db_path.is_absolute() else base / db_path
        if not db_path.is_file():
            # sqlite would silently create an empty database here
            raise DataSourceError(f"SQLite database '{database}' does not exist ({db_path}).")
        parsed = parsed.set(database=str(db_path))
    try:
        engine = sa.create_engine(parsed)
    except NoSuchModuleError as exc:
        raise DataSourceError(
            f"No SQLAlchemy dialect for '{parsed.drivername}': install its driver package. {exc}"
        ) from exc
    try:
        with engine.connect() as connection:
            tables = sa.inspect(connection).get_table_names()
            if query is not None:
                return pd.read_sql_query(sa.text(query), connection)
            listing = ", ".join(tables) if tables else "none"
            if table is None:
                raise InvalidParameterError(
                    f"The SQL source '{shown}' needs the 'table' or the 'query' parameter of "
                    f"stage 'ingest'. Tables in the database: {listing}."
                )
            if table not in tables:
                raise DataSourceError(
                    f"Table '{table}' does not exist in '{shown}'. "
                    f"Tables in the database: {listing}."
                )
            return pd.read_sql_table(table, connection)
    except (SQLAlchemyError, pd.errors.DatabaseError) as exc:
        raise DataSourceError(f"Reading from '{shown}' failed: {exc}") from exc
    finally:
        engine.dispose()


def _read_http(url: str, *, timeout: float) -> pd.DataFrame:
    shown = redact_source(url)
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": "nbtools"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            content_type = response.headers.get("Content-Type", "unknown")
    except urllib.error.HTTPError as exc:
        raise DataSourceError(f"'{shown}' answered HTTP {exc.code} {exc.reason}.") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise DataSourceError(f"'{shown}' did not answer within {timeout:g} s.") from exc
        raise DataSourceError(f"'{shown}' could not be reached: {exc.reason}.") from exc
    except TimeoutError as exc:
        raise DataSourceError(f"'{shown}' did not answer within {timeout:g} s.") from exc
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataSourceError(
            f"'{shown}' did not return JSON (content type {content_type}): {exc}."
        ) from exc
    return records_to_frame(payload, where=shown)


def records_to_frame(payload: Any, *, where: str) -> pd.DataFrame:
    """Turn decoded JSON into a DataFrame of records.

    Parameters
    ----------
    payload : Any
        Decoded JSON: a list of objects (records), or an object with exactly one field that
        holds a list of records (``{"data": [...], "count": 3}``). Nested objects are flattened
        into dotted column names.
    where : str
        The file or URL the JSON came from, used in error messages.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    DataSourceError
        If the JSON is not shaped as records.
    """
    records = payload
    if isinstance(payload, dict):
        fields = [key for key, value in payload.items() if _is_records(value)]
        if len(fields) != 1:
            found = ", ".join(f"'{key}'" for key in fields) or "none"
            raise DataSourceError(
                f"The JSON object from '{where}' must have exactly one field holding a list of "
                f"records; found {len(fields)} ({found}). Fields: {', '.join(map(str, payload))}."
            )
        records = payload[fields[0]]
    if not _is_records(records):
        raise DataSourceError(
            f"The JSON from '{where}' is not a list of records (objects with one value per "
            f"column); got {type(payload).__name__}."
        )
    return pd.json_normalize(records)


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def schema(df: pd.DataFrame) -> dict[str, str]:
    """Map each column name to its dtype name, as written to ``dataset.json``.

    Parameters
    ----------
    df : pandas.DataFrame

    Returns
    -------
    dict of str to str
    """
    return {str(name): str(dtype) for name, dtype in df.dtypes.items()}


def content_hash(df: pd.DataFrame) -> str:
    """Compute a deterministic hash of a table's content.

    The hash covers the column names, their dtypes and every value in row order; the index is
    ignored. Equal tables (also after a Parquet round trip) hash equal.

    Parameters
    ----------
    df : pandas.DataFrame

    Returns
    -------
    str
        ``"sha256:<64 hex digits>"``.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(schema(df), sort_keys=False).encode())
    rows = pd.util.hash_pandas_object(df, index=False, categorize=True)
    digest.update(np.ascontiguousarray(rows.to_numpy(dtype=np.uint64)).tobytes())
    return f"sha256:{digest.hexdigest()}"
