"""Guards of MLflow's scoring server, installed in the server process when it loads the model.

``mlflow models serve`` runs ``scoring_server.init(load_model(...))``; loading runs the model's code
file, which calls :func:`install`, before ``init`` builds the app. :func:`install` then

* puts :func:`genreclf.serving.request_guard.guard` in front of the POST /invocations handler (via the
  decorator ``init`` applies to it): body size, Content-Type and JSON structure are checked on the raw
  request before MLflow reads or parses it;
* wraps MLflow's JSON parser (a private function, see ``genreclf.tracking.mlflow_compat``), for callers
  of ``scoring_server.invocations`` that bypass the app: JSON nested ~1,000 deep raises RecursionError
  there (an HTTP 500), and invalid JSON is a 400 that quotes the whole body; both become one-line 400s.

If the installed MLflow no longer has either name, :func:`install` raises ``MlflowCompatError`` naming
it, rather than leaving MLflow's own answers in place unnoticed.
"""
from __future__ import annotations

from typing import Any, Callable

from genreclf.serving import request_guard
from genreclf.tracking import mlflow_compat

MAX_REASON = 300  # characters of MLflow's reason kept in the answer


def install() -> bool:
    """Install both guards; True when the JSON parser's was installed now, False when it already was."""
    installed = mlflow_compat.wrap_json_decoder(_guarded)
    mlflow_compat.wrap_handler_decorator(request_guard.guard)
    return installed


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
