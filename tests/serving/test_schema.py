"""Unit tests of request parsing and signature checks, without a server."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbtools.errors import InvalidInputError
from nbtools.serving.payload import parse
from nbtools.serving.schema import Column, InputSchema

SCHEMA = InputSchema(
    [
        Column("age", "double", required=False),
        Column("region", "string"),
        Column("calls", "long"),
        Column("active", "boolean"),
    ]
)
JSON = "application/json"


def frame(body: bytes, content_type: str = JSON) -> pd.DataFrame:
    parsed = parse(body, content_type, SCHEMA.names)
    return SCHEMA.frame(parsed.columns, parsed.n_rows)


def test_values_are_converted_to_the_signature_types() -> None:
    X = frame(
        b'{"dataframe_records": [{"age": 41, "region": "north", "calls": "3", "active": "true"},'
        b' {"age": null, "region": 7, "calls": 2.0, "active": 0}]}'
    )
    assert X["age"].dtype == np.float64 and np.isnan(X["age"][1]) and X["age"][0] == 41.0
    assert X["region"].tolist() == ["north", "7"]
    assert X["calls"].tolist() == [3, 2]
    assert X["active"].tolist() == [True, False]


def test_an_optional_column_may_be_left_out() -> None:
    X = frame(b'{"inputs": {"region": ["a"], "calls": [1], "active": [true]}}')
    assert X.columns.tolist() == SCHEMA.names
    assert np.isnan(X["age"][0])


def test_csv_values_are_converted_too() -> None:
    X = frame(b"age,region,calls,active\n,south,4,false\n", "text/csv; charset=utf-8")
    assert np.isnan(X["age"][0]) and X["calls"][0] == 4 and not X["active"][0]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"instances": [{"region": "a", "calls": 1.5, "active": true}]}', "'calls'"),
        (b'{"instances": [{"region": "a", "calls": null, "active": true}]}', "'calls'"),
        (b'{"instances": [{"region": ["a"], "calls": 1, "active": true}]}', "'region'"),
        (b'{"instances": [{"region": "a", "calls": 1, "active": "maybe"}]}', "'active'"),
        (b'{"instances": [{"age": true, "region": "a", "calls": 1, "active": true}]}', "'age'"),
        (b'{"inputs": {"region": ["a", "b"], "calls": [1], "active": [true]}}', "same length"),
        (b'{"instances": [[1, "a", 1]]}', "4 columns"),
        (b'{"dataframe_split": {"columns": ["region", "region"], "data": [[1, 2]]}}', "twice"),
        (b'{"params": {"predict_proba": true}}', "exactly one of"),
        (b"[1, 2]", "Got a list"),
    ],
)
def test_bad_values_name_the_column_or_field(body: bytes, named: str) -> None:
    with pytest.raises(InvalidInputError, match=named) as caught:
        frame(body)
    assert caught.value.status == 400


def test_unsupported_content_types_and_charsets_are_415() -> None:
    for content_type in ("text/plain", None, "application/json; charset=latin-1"):
        with pytest.raises(InvalidInputError) as caught:
            frame(b"{}", content_type)  # type: ignore[arg-type]
        assert caught.value.status == 415
