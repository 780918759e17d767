"""The request guard in front of MLflow's /invocations handler, in-process: MLflow's real app (init) with
a stand-in model, driven by Starlette's TestClient; and the structure check on its own."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
from mlflow.pyfunc import scoring_server
from starlette.testclient import TestClient

from genreclf.data import decode_limits
from genreclf.serving import request_guard, request_shape
from genreclf.serving.contract import MAX_ROWS
from genreclf.tracking import mlflow_compat
from genreclf.tracking.mlflow_compat import HANDLER_DECORATOR

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(monkeypatch):
    seen = []

    def predict(data, params=None):
        seen.append(decode_limits.DEADLINE.get())
        return pd.DataFrame({"genre": ["Rock"] * len(data)})

    original = mlflow_compat.private(HANDLER_DECORATOR)
    monkeypatch.setattr(scoring_server, "_async_catch_mlflow_exception", getattr(original, "__wrapped__", original))
    assert mlflow_compat.wrap_handler_decorator(request_guard.guard) is True
    model = SimpleNamespace(metadata=SimpleNamespace(get_input_schema=lambda: None), predict=predict)
    with TestClient(scoring_server.init(model)) as c:
        c.seen = seen
        yield c


def _split(*values) -> dict:
    return {"dataframe_split": {"columns": ["image"], "data": [[v] for v in values]}}


def test_a_good_request_reaches_the_model_with_a_deadline(client):
    resp = client.post("/invocations", content=json.dumps(_split("QUJD")), headers=JSON)
    assert resp.status_code == 200, resp.text
    (deadline,) = client.seen
    assert deadline is not None and deadline.left() <= 0  # expired once the answer is out


@pytest.mark.parametrize("headers, body, status, reason", [
    ({}, b"{}", 415, "missing Content-Type"),
    ({"Content-Type": "application/vnd.apache.parquet"}, b"PAR1", 415, "not accepted"),
    ({"Content-Type": "text/csv"}, b"image\nQUJD\n", 415, "not accepted"),
    (JSON, b"{not json", 400, "not valid JSON"),
    (JSON, b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "nested too deeply"),
    (JSON, json.dumps({"inputs": {"image": ["A"] * (MAX_ROWS + 1)}}).encode(), 413, "rows is over the limit"),
    (JSON, json.dumps({"dataframe_split": {"columns": ["img"], "data": [["A" * 100_000]]}}).encode(), 400,
     "expected only the column 'image'"),
    (JSON, json.dumps({"dataframe_records": [{f"k{i}": 1 for i in range(2000)}]}).encode(), 400, "more values"),
    (JSON, b'{"image": ["QUJD"]}', 400, "exactly one of the keys"),
    (JSON, json.dumps(_split(None)).encode(), 400, "row 0: expected a base64 string"),
])
def test_refusals_are_short_and_lead_with_the_reason(client, headers, body, status, reason):
    resp = client.post("/invocations", content=body, headers=headers)
    assert resp.status_code == status, resp.text
    assert len(resp.content) < 1024 and reason in resp.json()["message"]
    assert not client.seen


def test_a_body_over_the_cap_is_refused_from_its_length(client, monkeypatch):
    monkeypatch.setattr(request_shape, "MAX_BODY_BYTES", 1000)
    monkeypatch.setattr(request_guard, "MAX_BODY_BYTES", 1000)
    resp = client.post("/invocations", content=json.dumps(_split("A" * 2000)), headers=JSON)
    assert resp.status_code == 413 and "over the limit" in resp.json()["message"]

    def chunks():  # no Content-Length: counted while it streams
        yield b'{"inputs": {"image": ["'
        for _ in range(10):
            yield b"A" * 500

    resp = client.post("/invocations", content=chunks(), headers=JSON)
    assert resp.status_code == 413


def test_inputs_padding_is_capped(monkeypatch):
    monkeypatch.setattr(request_shape, "MAX_PADDED_BYTES", 4000)
    with pytest.raises(request_shape.Refused, match="pads every row"):
        request_shape.check_document({"inputs": {"image": ["A" * 900] + ["A"] * 3}})
    request_shape.check_document(_split("A" * 900, "A", "A", "A"))  # no padding in a DataFrame


def test_decoding_stops_once_the_deadline_has_passed():
    from genreclf.data.images import decode_rgb, encode

    deadline = decode_limits.Deadline(60)
    token = decode_limits.DEADLINE.set(deadline)
    try:
        cover = encode(pd.DataFrame([[1, 2], [3, 4]]).to_numpy().astype("uint8").repeat(3).reshape(2, 2, 3))
        assert decode_rgb(cover).shape == (2, 2, 3)
        deadline.expire()
        with pytest.raises(decode_limits.DecodeTimeout, match="ran out of time"):
            decode_rgb(cover)
    finally:
        decode_limits.DEADLINE.reset(token)
