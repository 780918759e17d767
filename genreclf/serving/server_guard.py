"""Two answers of MLflow's scoring server that come before the model sees a request, made short 400s.

``mlflow models serve`` parses the JSON body itself, before the model (a private MLflow function, see
``genreclf.tracking.mlflow_compat``), so:

* JSON nested ~1,000 deep raises RecursionError there, which nothing catches: HTTP 500;
* invalid JSON is a 400 whose message quotes the *whole* request body after the reason.

The model's code file runs in the server process when the server loads the model, and calls
:func:`install` there: the parser is wrapped so both become a 400 that states the reason in one line.
If the installed MLflow no longer has that parser, :func:`install` raises ``MlflowCompatError``
naming it, rather than leaving MLflow's own answers in place unnoticed.
"""
from __future__ import annotations

from typing import Any, Callable

from genreclf.tracking import mlflow_compat

MAX_REASON = 300  # characters of MLflow's reason kept in the answer


def install() -> bool:
    """Wrap the scoring server's JSON parser; True when installed now, False when it already was."""
    return mlflow_compat.wrap_json_decoder(_guarded)


def _guarded(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    invalid = mlflow_compat.invalid_input_error()

    def decode(json_input):
        try:
            return original(json_input)
        except RecursionError:
            raise invalid("request JSON is nested too deeply to parse") from None
        except invalid as exc:
            first = str(exc.message).split("\nInput:", 1)[0].splitlines()[0]
            raise invalid(first.removeprefix("Invalid input. ")[:MAX_REASON]) from None

    return decode
