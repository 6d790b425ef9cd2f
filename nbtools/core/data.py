"""Loading a data source into a DataFrame, validating its schema and snapshotting it.

A *source* is one string, as a user types it in the ingest stage:

- ``"demo"``: the synthetic customer-churn table of :func:`make_churn`;
- a path to a CSV, Parquet or JSON-records file, relative to the project directory;
- a SQLAlchemy URL (``sqlite:///data/shop.db``) together with a ``table`` or a ``query``;
- an ``http(s)://`` URL answering with JSON records.

Every problem with a source (missing file, malformed CSV, unknown table, HTTP error, an empty
table, a useless column, a missing target) is raised as a
:class:`~nbtools.core.errors.DataSourceError` whose message names the source and the fix.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nbtools.core.errors import DataSourceError, InvalidParameterError

TASKS = ("classification", "regression", "clustering")
"""The tasks nbtools knows; ``"auto"`` lets :func:`infer_task` choose from the target."""

MAX_CLASSES = 20
"""A numeric target with at most this many distinct integer values is treated as classes."""

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


def require_columns(
    df: pd.DataFrame, columns: Iterable[str], *, parameter: str, stage: str
) -> None:
    """Check that every column a parameter names exists in ``df``.

    Parameters
    ----------
    df : pandas.DataFrame
        The data.
    columns : iterable of str
        Column names taken from the parameter.
    parameter, stage : str
        Name of the parameter and of its stage, for the message.

    Raises
    ------
    InvalidParameterError
        Naming the first missing column and listing the available ones.
    """
    for column in columns:
        if column not in df.columns:
            raise InvalidParameterError(
                f"The '{parameter}' parameter of stage '{stage}' names column '{column}', which "
                f"is not in the data. Available columns: {', '.join(map(str, df.columns))}."
            )


def infer_task(y: pd.Series | None) -> str:
    """Choose the learning task from the target column.

    Parameters
    ----------
    y : pandas.Series or None
        The target; ``None`` means there is no target.

    Returns
    -------
    str
        ``"clustering"`` without a target; ``"classification"`` for text, boolean or
        categorical targets and for integer-valued targets with at most :data:`MAX_CLASSES`
        distinct values; ``"regression"`` otherwise.

    Raises
    ------
    DataSourceError
        If every value of ``y`` is missing.
    """
    if y is None:
        return "clustering"
    values = y.dropna()
    if values.empty:
        raise DataSourceError(f"Target column '{y.name}' has no values: all of them are missing.")
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "classification"
    integral = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
    return "classification" if integral and values.nunique() <= MAX_CLASSES else "regression"


def validate_dataset(
    df: pd.DataFrame, *, target: str | None, task: str = "auto", source: str = "the data"
) -> str:
    """Check that a freshly loaded table can feed the pipeline, and settle the task.

    Parameters
    ----------
    df : pandas.DataFrame
        The loaded data.
    target : str or None
        Target column; ``None`` (or ``""``) for clustering without labels.
    task : str, default="auto"
        ``"auto"`` or one of :data:`TASKS`.
    source : str
        The source string, used in messages.

    Returns
    -------
    str
        The task: the given one, or the one :func:`infer_task` chose for ``"auto"``.

    Raises
    ------
    DataSourceError
        If the table has no rows or no feature columns, a column is entirely empty, column
        names repeat, the target is missing or all empty, a classification target has fewer
        than two classes, or a regression target is not numeric.
    InvalidParameterError
        If ``task`` is unknown, or a supervised task is asked for without a target.
    """
    if task != "auto" and task not in TASKS:
        raise InvalidParameterError(
            f"The 'task' parameter of stage 'ingest' must be one of auto, {', '.join(TASKS)}. "
            f"Got {task!r} instead."
        )
    target = target or None
    if df.shape[1] == 0:
        raise DataSourceError(f"The table read from '{source}' has no columns.")
    if len(df) == 0:
        raise DataSourceError(
            f"The table read from '{source}' has no rows (columns: "
            f"{', '.join(map(str, df.columns))})."
        )
    repeated = df.columns[df.columns.duplicated()].unique().tolist()
    if repeated:
        raise DataSourceError(
            f"Column names in '{source}' must be unique; {', '.join(map(repr, repeated))} "
            "appears more than once."
        )
    if target is not None and target not in df.columns:
        raise DataSourceError(
            f"Target column '{target}' is not in the data from '{source}'. Available columns: "
            f"{', '.join(map(str, df.columns))}."
        )
    for column in df.columns:
        if column != target and df[column].isna().all():
            raise DataSourceError(
                f"Column '{column}' is empty (all {len(df)} values are missing). Drop it with "
                f"-p ingest.ignore_columns=['{column}']."
            )
    if target is not None and df.shape[1] == 1:
        raise DataSourceError(f"The data from '{source}' has no column besides the target.")
    if target is None:
        if task in ("classification", "regression"):
            raise InvalidParameterError(
                f"The 'target' parameter of stage 'ingest' must name a column for a {task} "
                "task. Got no target; give one, or use task='clustering'."
            )
        return "clustering"
    y = df[target]
    if y.isna().all():
        raise DataSourceError(
            f"Target column '{target}' has no values: all {len(y)} of them are missing."
        )
    resolved = infer_task(y) if task == "auto" else task
    if resolved == "classification":
        classes = y.dropna().unique()
        if len(classes) < 2:
            raise DataSourceError(
                f"Target column '{target}' has a single class ({classes[0]!r}) in "
                f"{int(y.notna().sum())} rows; classification needs at least two classes."
            )
    elif resolved == "regression" and not pd.api.types.is_numeric_dtype(y):
        numbers = pd.to_numeric(y.dropna(), errors="coerce")
        if numbers.isna().any():
            example = y.dropna()[numbers.isna()].iloc[0]
            raise DataSourceError(
                f"Target column '{target}' must be numeric for regression; it holds text such "
                f"as {example!r}. Use task='classification' or fix the column."
            )
    return resolved


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


def write_snapshot(df: pd.DataFrame, path: str | Path) -> str:
    """Write a table as a Parquet snapshot and return its content hash.

    Parameters
    ----------
    df : pandas.DataFrame
        The table; its index is not written.
    path : str or Path
        Destination ``.parquet`` file; parent folders are created.

    Returns
    -------
    str
        :func:`content_hash` of the table, equal to the hash of the file read back.

    Raises
    ------
    DataSourceError
        If a column cannot be stored in Parquet (text mixed with numbers, say).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = df.reset_index(drop=True)
    try:
        frame.to_parquet(path, index=False)
    except Exception as exc:  # pyarrow's conversion errors share no useful base class
        path.unlink(missing_ok=True)
        raise DataSourceError(
            f"Cannot write the snapshot {path.name}: {exc}. A column that mixes text and "
            "numbers must be fixed at the source or left out with "
            "-p ingest.ignore_columns=[COLUMN]."
        ) from exc
    return content_hash(frame)


def make_churn(n_rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Generate a realistic synthetic customer-churn table.

    The target ``churned`` ("yes"/"no", about a third "yes") depends on the contract, tenure,
    charges, support calls, internet service and payment method, plus noise, so a model can
    learn it but not perfectly. Like real exports, the table is dirty: 2-4 % missing values in
    several columns, about 1 % duplicated rows, a few outliers in ``monthly_charges`` and
    ``support_calls``, and a few invalid rows with a negative ``tenure_months``.

    Parameters
    ----------
    n_rows : int, default=2000
        Number of rows. A million rows take about a second.
    seed : int, default=0
        Seed of the random generator; the same seed gives the same table.

    Returns
    -------
    pandas.DataFrame
        Columns ``signup_date, age, region, contract, tenure_months, internet_service,
        monthly_charges, total_charges, data_usage_gb, support_calls, payment_method,
        paperless_billing, churned``.

    Raises
    ------
    InvalidParameterError
        If ``n_rows`` is not a positive integer.
    """
    if isinstance(n_rows, bool) or not isinstance(n_rows, int | np.integer) or n_rows < 1:
        raise InvalidParameterError(f"'n_rows' must be a positive integer. Got {n_rows!r} instead.")
    rng = np.random.default_rng(seed)
    n = int(n_rows)

    contract = rng.choice(3, n, p=[0.55, 0.25, 0.20])
    # months as a customer, 0-72: short for monthly contracts, long for two-year ones
    tenure = np.round(
        72 * rng.beta(np.array([0.7, 1.3, 2.2])[contract], np.array([2.2, 1.3, 0.9])[contract])
    )
    internet = rng.choice(3, n, p=[0.35, 0.45, 0.20])
    payment = rng.choice(4, n, p=[0.35, 0.20, 0.22, 0.23])
    region = rng.choice(4, n, p=[0.30, 0.25, 0.25, 0.20])
    paperless = rng.random(n) < 0.6
    age = np.clip(np.round(rng.normal(46, 15, n)), 18, 90)
    monthly = np.clip(
        np.array([55.0, 85.0, 22.0])[internet] + 4.0 * paperless + rng.normal(0, 12, n), 15, 130
    )
    total = np.round(monthly * tenure * rng.normal(1.0, 0.05, n), 2)
    usage = np.round(np.where(internet == 2, 0.0, rng.lognormal(3.5, 0.8, n)), 1)
    support = rng.poisson(np.where(internet == 1, 2.0, 1.0))
    days = tenure * 30.44 + rng.integers(0, 30, n)
    signup = (pd.Timestamp("2025-01-01") - pd.to_timedelta(days, unit="D").round("D")).as_unit("us")

    logit = (
        -1.6
        + np.array([1.2, -0.2, -1.2])[contract]
        - 0.035 * tenure
        + 0.012 * (monthly - 65)
        + 0.30 * support
        + np.array([0.0, 0.55, -0.4])[internet]
        + np.array([0.5, 0.0, -0.1, -0.1])[payment]
        - 0.008 * (age - 46)
        + 0.15 * paperless
        + rng.normal(0, 0.7, n)
    )
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))

    # what real exports look like: outliers, invalid rows, missing values, duplicates
    # (exact shares of rows, so that even a small table shows every kind of problem)
    rows = _rows(rng, n, 0.003)
    monthly[rows] *= rng.uniform(5, 10, rows.size)
    rows = _rows(rng, n, 0.002)
    support[rows] += rng.integers(15, 40, rows.size)
    tenure = tenure.astype(np.int64)
    rows = _rows(rng, n, 0.003)
    tenure[rows] = -rng.integers(1, 24, rows.size)
    age[_rows(rng, n, 0.03)] = np.nan
    monthly[_rows(rng, n, 0.025)] = np.nan
    total[_rows(rng, n, 0.03)] = np.nan
    usage[_rows(rng, n, 0.04)] = np.nan
    internet[_rows(rng, n, 0.02)] = -1
    payment[_rows(rng, n, 0.02)] = -1

    columns: dict[str, Any] = {
        "signup_date": signup.to_numpy(copy=True),
        "age": age,
        "region": _labels(region, ["north", "south", "east", "west"]),
        "contract": _labels(contract, ["month-to-month", "one year", "two year"]),
        "tenure_months": tenure,
        "internet_service": _labels(internet, ["dsl", "fiber optic", "none"]),
        "monthly_charges": np.round(monthly, 2),
        "total_charges": total,
        "data_usage_gb": usage,
        "support_calls": support.astype(np.int64),
        "payment_method": _labels(
            payment, ["electronic check", "mailed check", "bank transfer", "credit card"]
        ),
        "paperless_billing": _labels(paperless.astype(int), ["no", "yes"]),
        "churned": _labels(churned.astype(int), ["no", "yes"]),
    }
    duplicates = rng.choice(n, size=n // 100, replace=False)
    originals = rng.integers(0, n, size=duplicates.size)
    for values in columns.values():
        values[duplicates] = values[originals]
    frame = pd.DataFrame(columns)
    for name, values in frame.items():
        if values.dtype == object:
            frame[name] = values.astype("str")
    return frame


def _rows(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    """Pick ``round(share * n)`` distinct row positions."""
    return rng.choice(n, size=round(share * n), replace=False)


def _labels(codes: np.ndarray, names: list[str]) -> np.ndarray:
    """Map integer codes to category names as an object array (code -1 means missing)."""
    lookup = np.array([*names, np.nan], dtype=object)
    return lookup[np.where(codes < 0, len(names), codes)]
