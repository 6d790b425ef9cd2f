"""Reading a request body in MLflow's scoring protocol into columns and parameters.

The protocol is the one ``mlflow models serve`` speaks, so existing clients work unchanged:

- ``application/json`` with exactly one of

  - ``dataframe_split``: ``{"columns": [...], "data": [[...], ...]}`` (pandas ``orient="split"``);
  - ``dataframe_records``: ``[{"col": value, ...}, ...]`` (pandas ``orient="records"``);
  - ``instances``: a list of records, or of rows in the signature's column order;
  - ``inputs``: ``{"col": [values...], ...}`` (columnar), or a list like ``instances``;

  and optionally ``params`` (nbtools knows ``predict_proba``, a boolean);
- ``text/csv``: a header line with the column names, then one line per row;
- ``application/vnd.apache.parquet`` (or ``application/x-parquet``): a Parquet file.

:func:`parse` returns a :class:`Payload`: the columns (name to values), the row count and the
parameters. Anything malformed raises :class:`~nbtools.errors.InvalidInputError` naming
the field and the problem, with the HTTP status to answer with.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import orjson
import pandas as pd

from nbtools.errors import InvalidInputError
from nbtools.serving.schema import Values

JSON = "application/json"
CSV = "text/csv"
PARQUET_TYPES = ("application/vnd.apache.parquet", "application/x-parquet", "application/parquet")
DATA_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")

#: Parameters a request may pass in ``params`` (and their types).
KNOWN_PARAMS = {"predict_proba": bool}


@dataclass(frozen=True)
class Payload:
    """A parsed request.

    Parameters
    ----------
    columns : dict
        Column name to its values (a list, or a pandas Series for CSV and Parquet).
    n_rows : int
        Number of rows.
    params : dict
        The request's ``params``, checked against :data:`KNOWN_PARAMS`.
    """

    columns: dict[str, Values]
    n_rows: int
    params: dict[str, Any] = field(default_factory=dict)


def parse(body: bytes, content_type: str | None, column_order: list[str]) -> Payload:
    """Parse a request body according to its content type.

    Parameters
    ----------
    body : bytes
        The raw request body.
    content_type : str or None
        The ``Content-Type`` header.
    column_order : list of str
        The signature's column names, for rows given as plain lists (``instances``/``inputs``).

    Raises
    ------
    InvalidInputError
        Status 415 for an unsupported content type or charset, 400 for a malformed body.
    """
    mime, _, options = (content_type or "").partition(";")
    mime = mime.strip().lower()
    charset = options.partition("charset=")[2].strip().strip('"').lower()
    if charset and charset not in ("utf-8", "utf8"):
        raise InvalidInputError(
            f"The request's charset must be utf-8. Got '{charset}' instead.", status=415
        )
    if mime == JSON:
        return parse_json(body, column_order)
    if mime == CSV:
        return _table(_read(pd.read_csv, body, "CSV", dtype=str), "CSV")
    if mime in PARQUET_TYPES:
        return _table(_read(pd.read_parquet, body, "Parquet"), "Parquet")
    raise InvalidInputError(
        f"The Content-Type must be one of {JSON}, {CSV} or {PARQUET_TYPES[0]}. "
        f"Got '{content_type or 'none'}' instead.",
        status=415,
    )


def parse_json(body: bytes, column_order: list[str]) -> Payload:
    """Parse a JSON body in MLflow's scoring protocol (see the module docstring).

    Raises
    ------
    InvalidInputError
        For malformed JSON, no data key or several, unknown keys, or a malformed data field.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(document, dict):
        raise InvalidInputError(
            f"The JSON body must be an object with one of the keys {', '.join(DATA_KEYS)}. "
            f"Got a {type(document).__name__} instead."
        )
    keys = [k for k in DATA_KEYS if k in document]
    unknown = [k for k in document if k not in DATA_KEYS and k != "params"]
    if len(keys) != 1 or unknown:
        found = ", ".join(f"'{k}'" for k in document) or "none"
        raise InvalidInputError(
            f"The JSON body must have exactly one of the keys {', '.join(DATA_KEYS)} "
            f"(and optionally 'params'). Got the keys {found} instead."
        )
    key = keys[0]
    value = document[key]
    params = _params(document.get("params"))
    if key == "dataframe_split":
        columns, n_rows = _split(value)
    elif key == "inputs" and isinstance(value, dict):
        columns, n_rows = _columnar(value, key)
    else:
        columns, n_rows = _rows(value, key, column_order)
    return Payload(columns, n_rows, params)


def _params(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(
            f"'params' must be an object. Got a {type(value).__name__} instead."
        )
    for name, item in value.items():
        expected = KNOWN_PARAMS.get(name)
        if expected is None:
            raise InvalidInputError(
                f"Unknown parameter 'params.{name}'. Known parameters: {', '.join(KNOWN_PARAMS)}."
            )
        if not isinstance(item, expected):
            raise InvalidInputError(
                f"'params.{name}' must be a {expected.__name__}. Got {item!r} instead."
            )
    return dict(value)


def _split(value: Any) -> tuple[dict[str, Values], int]:
    if not isinstance(value, dict) or "data" not in value:
        raise InvalidInputError(
            "'dataframe_split' must be an object with 'columns' and 'data' "
            '({"columns": ["a", "b"], "data": [[1, 2]]}).'
        )
    names, data = value.get("columns"), value["data"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidInputError("'dataframe_split.columns' must be a list of column names.")
    if not isinstance(data, list):
        raise InvalidInputError("'dataframe_split.data' must be a list of rows.")
    for row, item in enumerate(data):
        if not isinstance(item, list) or len(item) != len(names):
            raise InvalidInputError(
                f"Row {row} of 'dataframe_split.data' must be a list of {len(names)} values, "
                f"one per column. Got {_short(item)} instead."
            )
    _check_unique(names, "dataframe_split.columns")
    if not data:
        return {name: [] for name in names}, 0
    return {
        name: list(values) for name, values in zip(names, zip(*data, strict=True), strict=True)
    }, len(data)


def _columnar(value: dict[str, Any], key: str) -> tuple[dict[str, Values], int]:
    lengths = set()
    for name, values in value.items():
        if not isinstance(values, list):
            raise InvalidInputError(
                f"'{key}.{name}' must be a list of values, one per row. "
                f"Got {_short(values)} instead."
            )
        lengths.add(len(values))
    if len(lengths) > 1:
        raise InvalidInputError(
            f"The columns of '{key}' must all have the same length. Got lengths "
            f"{sorted(lengths)} instead."
        )
    return dict(value), lengths.pop() if lengths else 0


def _rows(value: Any, key: str, column_order: list[str]) -> tuple[dict[str, Values], int]:
    if not isinstance(value, list):
        raise InvalidInputError(
            f"'{key}' must be a list of rows. Got a {type(value).__name__} instead."
        )
    if not value:
        return {}, 0
    if all(isinstance(r, dict) for r in value):
        names: dict[str, None] = {}
        for record in value:
            names.update(dict.fromkeys(record))
        return {name: [r.get(name) for r in value] for name in names}, len(value)
    if key != "dataframe_records" and all(isinstance(r, list) for r in value):
        for row, item in enumerate(value):
            if len(item) != len(column_order):
                raise InvalidInputError(
                    f"Row {row} of '{key}' has {len(item)} values; the model takes "
                    f"{len(column_order)} columns in this order: {', '.join(column_order)}."
                )
        return {
            name: list(values)
            for name, values in zip(column_order, zip(*value, strict=True), strict=True)
        }, len(value)
    shape = "objects (column name to value)"
    if key != "dataframe_records":
        shape += " or lists (values in the signature's column order)"
    raise InvalidInputError(f"Every row of '{key}' must be one of {shape}, all alike.")


def _read(reader: Any, body: bytes, kind: str, **options: Any) -> pd.DataFrame:
    try:
        frame = reader(io.BytesIO(body), **options)
    except Exception as exc:  # each reader has its own family of parse errors
        raise InvalidInputError(
            f"The request body is not a readable {kind} table: {type(exc).__name__}: {exc}"
        ) from exc
    assert isinstance(frame, pd.DataFrame)
    return frame


def _table(frame: pd.DataFrame, kind: str) -> Payload:
    names = [str(c) for c in frame.columns]
    _check_unique(names, f"the {kind} header")
    return Payload({str(c): frame[c] for c in frame.columns}, len(frame))


def _check_unique(names: list[str], where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInputError(f"Column '{name}' appears twice in {where}.")
        seen.add(name)


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
