"""The private MLflow names genreclf relies on still exist with the shape it uses, and the scoring
server's JSON guard really replaces MLflow's parser. In-process only: no tracking server, no subprocess;
the scoring server's request handler (``invocations``) is called directly."""
from __future__ import annotations

import inspect
import json
from types import SimpleNamespace

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server

from genreclf.serving import server_guard
from genreclf.serving.contract import RequestRejected
from genreclf.tracking import mlflow_compat
from genreclf.tracking.mlflow_compat import (
    HANDLER_DECORATOR,
    INVALID_INPUT,
    JSON_DECODER,
    MESSAGE,
    PRIVATE,
    MlflowCompatError,
)

JSON = "application/json"


@pytest.fixture
def pristine_decoder(monkeypatch):
    """MLflow's own JSON parser in place for the test, and put back afterwards whatever the test installs."""
    original = inspect.unwrap(mlflow_compat.json_decoder())
    monkeypatch.setattr(scoring_server, "_decode_json_input", original)
    return original


def test_every_private_name_is_explained_and_tested_here():
    assert set(PRIVATE) == {JSON_DECODER, INVALID_INPUT, MESSAGE, HANDLER_DECORATOR}
    assert all(len(purpose) > 40 for purpose in PRIVATE.values())


def test_json_decoder_is_the_one_argument_parser_the_server_calls(pristine_decoder):
    decoder = mlflow_compat.private(JSON_DECODER)
    assert decoder is scoring_server._decode_json_input and callable(decoder)
    assert list(inspect.signature(decoder).parameters) == ["json_input"]
    assert decoder('{"inputs": [1]}') == {"inputs": [1]}
    with pytest.raises(mlflow_compat.invalid_input_error(), match="valid JSON"):
        decoder(b"{not json")


def test_invalid_input_error_is_a_400_with_mlflows_prefix():
    cls = mlflow_compat.private(INVALID_INPUT)
    assert cls is mlflow_compat.invalid_input_error() and issubclass(cls, MlflowException)
    exc = cls("the reason")
    assert exc.get_http_status_code() == 400 and exc.message == "Invalid input. the reason"


def test_message_attribute_keeps_only_the_first_value():
    mlflow_compat.check_message_attribute()
    exc = RequestRejected("row 3: not an image")
    exc.message = "Failed to predict data '<the whole payload>'. Error: row 3: not an image"  # what the server does
    assert exc.message == "row 3: not an image"
    assert json.loads(exc.serialize_as_json())["message"] == "row 3: not an image"


def test_the_scoring_server_answers_with_the_reason_only(pristine_decoder):
    def predict(data, params=None):
        raise RequestRejected("row 0: not a decodable image")

    model = SimpleNamespace(metadata=SimpleNamespace(), predict=predict)
    body = json.dumps({"inputs": {"image": ["QUJD" * 1000]}})
    with pytest.raises(RequestRejected) as caught:
        scoring_server.invocations(body, JSON, model, None)
    assert caught.value.message == "row 0: not a decodable image"


def test_a_missing_private_name_fails_loudly(monkeypatch):
    monkeypatch.delattr(scoring_server, "_decode_json_input")
    with pytest.raises(MlflowCompatError) as caught:
        server_guard.install()
    assert f"MLflow {mlflow.__version__}" in str(caught.value) and JSON_DECODER in str(caught.value)


def test_a_name_not_in_the_table_is_refused():
    with pytest.raises(KeyError):
        mlflow_compat.private("mlflow.tracking.fluent._get_experiment_id")


def test_the_guard_installs_once_and_answers_short_400s(pristine_decoder):
    assert server_guard.install() is True
    installed = mlflow_compat.json_decoder()
    assert installed is not pristine_decoder and mlflow_compat.is_guarded(installed)
    assert inspect.unwrap(installed) is pristine_decoder
    assert server_guard.install() is False and mlflow_compat.json_decoder() is installed

    model = SimpleNamespace(metadata=SimpleNamespace(), predict=lambda data, params=None: None)
    invalid = mlflow_compat.invalid_input_error()
    with pytest.raises(invalid, match="nested too deeply") as deep:
        scoring_server.invocations('{"inputs": ' + "[" * 5000 + "]" * 5000 + "}", JSON, model, None)
    assert deep.value.get_http_status_code() == 400
    with pytest.raises(invalid) as bad:
        scoring_server.invocations('{"inputs": {"image": ["' + "A" * 100_000, JSON, model, None)
    assert "valid JSON" in bad.value.message and len(bad.value.message) < 400
