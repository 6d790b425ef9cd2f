"""The real service over HTTP: every payload format, every bad request, probabilities, the log."""

from __future__ import annotations

import io
import json
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from servicekit import MODEL, Registry, Service

from nbtools.ops.predictions import input_columns, read_predictions

pytestmark = pytest.mark.serving


@pytest.fixture(scope="module")
def expected(registry: Registry) -> np.ndarray:
    """What the registered champion predicts for the first five rows, loaded by MLflow itself."""
    from nbtools.ml.modeling import model_input

    mlflow.set_tracking_uri(registry.uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
    return np.asarray(model.predict(model_input(registry.X.head(5))))


def rows(registry: Registry) -> pd.DataFrame:
    return registry.X.head(5)


def records(registry: Registry) -> list[dict]:
    return json.loads(rows(registry).to_json(orient="records"))


def test_every_json_format_gives_the_models_predictions(
    service: Service, registry: Registry, expected: np.ndarray
) -> None:
    frame = rows(registry)
    split = json.loads(frame.to_json(orient="split", index=False))
    bodies = {
        "dataframe_split": {"dataframe_split": split},
        "dataframe_records": {"dataframe_records": records(registry)},
        "instances (records)": {"instances": records(registry)},
        "instances (rows)": {"instances": split["data"]},
        "inputs (columns)": {"inputs": {c: split_column(split, c) for c in split["columns"]}},
        "inputs (records)": {"inputs": records(registry)},
    }
    with service.client() as client:
        for name, body in bodies.items():
            response = client.post("/invocations", json=body)
            assert response.status_code == 200, (name, response.text)
            assert response.json()["predictions"] == expected.tolist(), name


def test_csv_and_parquet_bodies_give_the_same_predictions(
    service: Service, registry: Registry, expected: np.ndarray
) -> None:
    buffer = io.BytesIO()
    rows(registry).to_parquet(buffer)
    bodies = {
        "text/csv": rows(registry).to_csv(index=False).encode(),
        "application/vnd.apache.parquet": buffer.getvalue(),
    }
    with service.client() as client:
        for content_type, body in bodies.items():
            response = client.post(
                "/invocations", content=body, headers={"Content-Type": content_type}
            )
            assert response.status_code == 200, (content_type, response.text)
            assert response.json()["predictions"] == expected.tolist()


def test_integers_and_missing_values_are_converted_for_the_user(
    service: Service, registry: Registry
) -> None:
    record = records(registry)[0]
    record.update(tenure_months=12, support_calls=3, age=None, region=None)  # ints, nulls
    with service.client() as client:
        response = client.post("/invocations", json={"dataframe_records": [record]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0] in ("yes", "no")


def test_probabilities_on_request(service: Service, registry: Registry) -> None:
    body = {"dataframe_records": records(registry), "params": {"predict_proba": True}}
    with service.client() as client:
        by_params = client.post("/invocations", json=body).json()
        by_query = client.post(
            "/invocations?predict_proba=true", json={"dataframe_records": records(registry)}
        ).json()
        plain = client.post("/invocations", json={"dataframe_records": records(registry)}).json()
    assert "probabilities" not in plain
    assert by_params == by_query
    for probabilities, label in zip(
        by_params["probabilities"], by_params["predictions"], strict=True
    ):
        assert set(probabilities) == {"no", "yes"}
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert max(probabilities, key=probabilities.__getitem__) == label


def split_column(split: dict, name: str) -> list:
    index = split["columns"].index(name)
    return [row[index] for row in split["data"]]


def bad_requests(registry: Registry) -> list[tuple[str, dict, int, str]]:
    """(case, request options, expected status, text the message must contain)."""
    good = records(registry)[0]
    missing = {k: v for k, v in good.items() if k != "contract"}
    extra = {**good, "favourite_colour": "blue"}
    wrong = {**good, "monthly_charges": "abc"}
    nested = {**good, "age": {"years": 40}}
    json_headers = {"Content-Type": "application/json"}
    bad_csv = rows(registry).assign(monthly_charges="abc").to_csv(index=False).encode()
    return [
        ("missing column", {"json": {"dataframe_records": [missing]}}, 400, "'contract'"),
        ("extra column", {"json": {"dataframe_records": [extra]}}, 400, "'favourite_colour'"),
        ("wrong type", {"json": {"dataframe_records": [wrong]}}, 400, "'monthly_charges'"),
        ("unconvertible value", {"json": {"dataframe_records": [nested]}}, 400, "'age'"),
        ("empty batch", {"json": {"dataframe_records": []}}, 400, "no rows"),
        (
            "malformed JSON",
            {"content": b'{"dataframe_records": [', "headers": json_headers},
            400,
            "not valid JSON",
        ),
        ("no data key", {"json": {"rows": [good]}}, 400, "'rows'"),
        (
            "unknown param",
            {"json": {"instances": [good], "params": {"top_k": 3}}},
            400,
            "params.top_k",
        ),
        (
            "ragged split",
            {"json": {"dataframe_split": {"columns": ["age"], "data": [[1, 2]]}}},
            400,
            "Row 0",
        ),
        (
            "oversized body",
            {"content": b" " * 200_000, "headers": json_headers},
            413,
            "at most 100,000 bytes",
        ),
        (
            "unsupported type",
            {"content": b"a=1", "headers": {"Content-Type": "text/plain"}},
            415,
            "text/plain",
        ),
        (
            "bad CSV value",
            {"content": bad_csv, "headers": {"Content-Type": "text/csv"}},
            400,
            "'monthly_charges'",
        ),
        (
            "bad query flag",
            {"json": {"instances": [good]}, "params": {"predict_proba": "x"}},
            400,
            "predict_proba",
        ),
    ]


def test_bad_requests_get_a_4xx_naming_the_problem_and_the_service_keeps_serving(
    service: Service, registry: Registry, expected: np.ndarray
) -> None:
    with service.client() as client:
        for case, options, status, text in bad_requests(registry):
            response = client.post("/invocations", **options)
            assert response.status_code == status, (case, response.text)
            assert text in response.json()["message"], (case, response.json())
        assert client.get("/ping").status_code == 200
        again = client.post("/invocations", json={"dataframe_records": records(registry)})
    assert again.json()["predictions"] == expected.tolist()
    assert service.process.poll() is None


def test_health_version_and_metadata(service: Service) -> None:
    with service.client() as client:
        health = client.get("/health").json()
        metadata = client.get("/metadata").json()
        version = client.get("/version").text
    assert health == {"status": "ok", "model_version": "1"}
    assert version == mlflow.__version__
    assert metadata["model_name"] == MODEL
    assert metadata["model_version"] == "1"
    assert metadata["run_id"]
    assert metadata["classes"] == ["no", "yes"]
    assert "contract" in [c["name"] for c in metadata["signature"]["inputs"]]
    assert metadata["loaded_at"]
    assert metadata["runtime"]["engine"] == "compiled"
    assert "it predicts as the pipeline on" in metadata["runtime"]["engine_note"]


def test_the_compiled_model_answers_as_the_registered_pipeline_on_every_row(
    service: Service, registry: Registry
) -> None:
    from nbtools.ml.modeling import model_input
    from nbtools.serving.compiled import RTOL

    mlflow.set_tracking_uri(registry.uri)
    pipeline = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").get_raw_model()
    X = model_input(registry.X)
    split = json.loads(X.to_json(orient="split", index=False, double_precision=15))
    with service.client() as client:
        body = {"dataframe_split": split, "params": {"predict_proba": True}}
        answer = client.post("/invocations", json=body).json()
    assert answer["predictions"] == pipeline.predict(X).tolist()
    served = [[row[label] for label in pipeline.classes_] for row in answer["probabilities"]]
    np.testing.assert_allclose(served, pipeline.predict_proba(X), rtol=RTOL)


def test_no_endpoint_loads_a_model_from_a_request(service: Service) -> None:
    with service.client() as client:
        for path in ("/load", "/models", "/reload", "/invocations/models:/other@champion"):
            assert client.post(path, json={"model_uri": "/tmp/evil"}).status_code in (404, 405)


def test_every_prediction_is_logged_for_monitoring(service: Service, registry: Registry) -> None:
    with service.client() as client:
        response = client.post(
            "/invocations",
            json={"dataframe_records": records(registry)[:3], "params": {"predict_proba": True}},
            headers={"X-Request-ID": "req-log-test"},
        )
    assert response.headers["X-Request-ID"] == "req-log-test"
    deadline = time.monotonic() + 20
    logged = pd.DataFrame()
    while time.monotonic() < deadline:
        log = read_predictions(service.predictions)
        logged = log[log["request_id"] == "req-log-test"] if len(log) else log
        if len(logged) == 3:
            break
        time.sleep(0.2)
    assert len(logged) == 3
    assert (logged["model_name"] == MODEL).all()
    assert (logged["model_version"] == "1").all()
    assert str(logged["timestamp"].dt.tz) == "UTC"
    assert logged["prediction"].tolist() == response.json()["predictions"]
    assert logged["proba_yes"].tolist() == pytest.approx(
        [p["yes"] for p in response.json()["probabilities"]]
    )
    assert set(input_columns(logged)) == set(registry.X.columns)
    assert logged["contract"].tolist() == registry.X["contract"].head(3).tolist()
