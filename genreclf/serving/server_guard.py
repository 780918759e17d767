"""Two answers of MLflow's scoring server that come before the model sees a request, made short 400s.

``mlflow models serve`` parses the JSON body itself (``scoring_server._decode_json_input``), so:

* JSON nested ~1,000 deep raises RecursionError there, which nothing catches: HTTP 500;
* invalid JSON is a 400 whose message quotes the *whole* request body after the reason.

The model's code file (``code_models/*.py``) runs in the server process when the server loads the
model, and calls :func:`install` there: the parser is wrapped so both become a 400 that states the
reason in one line. Only that function is wrapped; if a future MLflow renames it, nothing is patched
and MLflow's own behaviour stays (the serving test then shows it).
"""
from __future__ import annotations

import functools

_MARK = "_genreclf_guarded"


def install() -> bool:
    try:
        from mlflow.pyfunc import scoring_server
        from mlflow.pyfunc.scoring_server import MlflowInvalidInputException
    except ImportError:
        return False
    original = getattr(scoring_server, "_decode_json_input", None)
    if original is None or getattr(original, _MARK, False):
        return False

    @functools.wraps(original)
    def decode(json_input):
        try:
            return original(json_input)
        except RecursionError:
            raise MlflowInvalidInputException("request JSON is nested too deeply to parse") from None
        except MlflowInvalidInputException as exc:
            first = str(exc.message).split("\nInput:", 1)[0].splitlines()[0]
            first = first.removeprefix("Invalid input. ")[:300]
            raise MlflowInvalidInputException(first) from None

    setattr(decode, _MARK, True)
    scoring_server._decode_json_input = decode
    return True
