"""Checking a request's columns against the model signature and converting them to its types.

:class:`InputSchema` is read from an MLflow model signature. :meth:`InputSchema.frame` takes
the request's columns (a mapping of column name to values, as parsed by
:mod:`nbtools.serving.payload`) and returns the DataFrame the model is given: every signature
column present, nothing else, each converted to the signature's type. Anything that does not fit
raises :class:`~nbtools.errors.InvalidInputError` naming the column and the problem.

Conversions are lenient where no information is lost, as a user expects: an integer or a numeric
string for a ``double`` column, a number for a ``string`` column, ``"true"`` for a ``boolean``
one. nbtools' models declare integer columns as ``double`` so that missing values are accepted;
``null`` (or an empty CSV cell) is a missing value the model's imputer fills.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from nbtools.errors import InvalidInputError

_FLOATS = {"double", "float"}
_INTEGERS = {"long", "integer"}
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}

#: What a values column may be: a list from JSON, or a pandas Series from CSV or Parquet.
Values: TypeAlias = Sequence[Any] | pd.Series


@dataclass(frozen=True)
class Column:
    """One column of a model signature.

    Parameters
    ----------
    name : str
        Column name.
    kind : str
        MLflow data type: ``double``, ``float``, ``long``, ``integer``, ``string``,
        ``boolean`` or ``datetime``.
    required : bool, default=True
        Whether a request must carry it; an optional column left out is all missing values.
    """

    name: str
    kind: str
    required: bool = True


class InputSchema:
    """The input columns a model accepts, and the conversion of request values to them.

    Parameters
    ----------
    columns : sequence of Column
        The signature's columns, in order.
    """

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = tuple(columns)
        self.names = [c.name for c in self.columns]
        self._known = set(self.names)

    @classmethod
    def from_signature(cls, signature: Any) -> InputSchema:
        """Read the input columns of an MLflow :class:`~mlflow.models.ModelSignature`.

        Raises
        ------
        InvalidInputError
            If the signature has no named column inputs (a tensor-based or missing signature);
            such a model cannot be validated and is refused.
        """
        inputs = None if signature is None else signature.inputs
        if inputs is None or not inputs.has_input_names():
            raise InvalidInputError(
                "The model has no column-based input signature; nbtools serve needs one to "
                "check requests. Log the model with nbtools.ml.modeling.log_model."
            )
        return cls(
            [
                Column(str(spec.name), str(spec.type.name), bool(getattr(spec, "required", True)))
                for spec in inputs.inputs
            ]
        )

    def to_dict(self) -> list[dict[str, Any]]:
        """Return the columns as JSON-serialisable dicts (``name``, ``type``, ``required``)."""
        return [{"name": c.name, "type": c.kind, "required": c.required} for c in self.columns]

    def frame(self, columns: Mapping[str, Values], n_rows: int) -> pd.DataFrame:
        """Check the request's columns and return them as the model's input DataFrame.

        The DataFrame is built from :meth:`convert`'s arrays without copying them.

        Parameters
        ----------
        columns : mapping of str to values
            The request's values, one entry per column, each of length ``n_rows``.
        n_rows : int
            Number of rows of the request.

        Returns
        -------
        DataFrame
            The signature's columns, in its order, converted to its types.

        Raises
        ------
        InvalidInputError
            For no rows, an unexpected column, a missing required column, or a value that
            cannot be converted to its column's type.
        """
        return pd.DataFrame(self.convert(columns, n_rows), copy=False)

    def convert(self, columns: Mapping[str, Values], n_rows: int) -> dict[str, Any]:
        """Check the request's columns and convert them: one array per signature column.

        Takes and raises as :meth:`frame`; returns the arrays (NumPy, or pandas for booleans and
        dates), in the signature's order.
        """
        if n_rows == 0:
            raise InvalidInputError("The request holds no rows; send at least one row to predict.")
        extra = [name for name in columns if name not in self._known]
        if extra:
            raise InvalidInputError(
                f"Unexpected column(s) {_quoted(extra)}: the model takes only the columns "
                f"{_quoted(self.names)}. Remove the others from the request."
            )
        missing = [c.name for c in self.columns if c.required and c.name not in columns]
        if missing:
            raise InvalidInputError(
                f"Missing column(s) {_quoted(missing)}: the model needs every column of "
                f"{_quoted(self.names)}. Send a null value where one is unknown."
            )
        data = {}
        for column in self.columns:
            values = columns.get(column.name)
            data[column.name] = (
                _all_missing(column, n_rows) if values is None else _convert(column, values)
            )
        return data


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _all_missing(column: Column, n_rows: int) -> Any:
    return _convert(column, [None] * n_rows)


def _convert(column: Column, values: Values) -> Any:
    if column.kind in _FLOATS:
        return _floats(column, values)
    if column.kind in _INTEGERS:
        return _integers(column, values)
    if column.kind == "string":
        return _strings(column, values)
    if column.kind == "boolean":
        return _booleans(column, values)
    if column.kind == "datetime":
        return _datetimes(column, values)
    raise InvalidInputError(
        f"Column '{column.name}' has the signature type '{column.kind}', which nbtools serve "
        "does not convert; only double, float, long, integer, string, boolean and datetime."
    )


def _floats(column: Column, values: Values) -> np.ndarray:
    if isinstance(values, pd.Series) and pd.api.types.is_numeric_dtype(values.dtype):
        if pd.api.types.is_bool_dtype(values.dtype):
            _raise_bad(column, values.iloc[0], 0, "a number")
        return values.to_numpy(dtype="float64", na_value=np.nan)
    raw: list[Any] = list(values)
    try:
        array = np.asarray(raw, dtype="float64")
    except (TypeError, ValueError):
        array = None
    if array is not None and array.ndim == 1 and not any(isinstance(v, bool) for v in raw):
        return array
    for row, value in enumerate(raw):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        if isinstance(value, bool | dict | list):
            _raise_bad(column, value, row, "a number")
        try:
            float(value)
        except (TypeError, ValueError):
            _raise_bad(column, value, row, "a number")
    raise InvalidInputError(f"Column '{column.name}' must be a flat list of numbers.")


def _integers(column: Column, values: Values) -> np.ndarray:
    floats = _floats(column, values)
    for row, value in enumerate(floats):
        if not np.isfinite(value) or value != int(value):
            shown = None if np.isnan(value) else value
            _raise_bad(column, shown, row, "a whole number (no missing values)")
    return floats.astype("int64")


def _strings(column: Column, values: Values) -> np.ndarray:
    # An object array with NaN for missing values: what the fitted imputers and encoders treat
    # as missing (None is not), and faster to build than a pandas string column.
    raw = values.tolist() if isinstance(values, pd.Series) else list(values)
    out = np.empty(len(raw), dtype=object)
    for row, value in enumerate(raw):
        if isinstance(value, str):
            out[row] = value
        elif value is None or (isinstance(value, float) and np.isnan(value)):
            out[row] = np.nan
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[row] = str(value)
        else:
            _raise_bad(column, value, row, "a string")
    return out


def _booleans(column: Column, values: Values) -> pd.Series:
    raw = values.tolist() if isinstance(values, pd.Series) else list(values)
    out: list[bool | None] = []
    for row, value in enumerate(raw):
        if value is None or isinstance(value, bool):
            out.append(value)
        elif isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            out.append(value.strip().lower() in _TRUE)
        elif isinstance(value, int | float) and value in (0, 1):
            out.append(bool(value))
        else:
            _raise_bad(column, value, row, "true or false")
    return pd.Series(out, dtype="boolean")


def _datetimes(column: Column, values: Values) -> pd.Series:
    raw = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    try:
        return pd.Series(pd.to_datetime(raw, errors="raise", utc=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"Column '{column.name}' must hold dates (ISO 8601 such as '2024-05-31'); "
            f"a value cannot be read as a date: {exc}"
        ) from exc


def _raise_bad(column: Column, value: Any, row: int, expected: str) -> None:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    raise InvalidInputError(
        f"Column '{column.name}' must hold {expected} (signature type '{column.kind}'). "
        f"Got {shown} in row {row}, which cannot be converted."
    )
