"""The one module that touches MLflow's private surface; the rest of genreclf uses MLflow's public API.

Every private name in use is listed in :data:`PRIVATE` with what it is for. A module attribute is read
only through :func:`private`; the one instance attribute (:data:`MESSAGE`) is verified at import by
:func:`check_message_attribute`. A name the installed MLflow lacks raises :class:`MlflowCompatError`,
naming the MLflow version and the name, where it is needed: nothing is skipped silently.
``tests/unit/tracking/test_mlflow_compat.py`` checks every entry against the installed MLflow, so an
upgrade that moves one fails there first.
"""
from __future__ import annotations

import functools
import importlib
from typing import Any, Callable

import mlflow
from mlflow.exceptions import MlflowException

JSON_DECODER = "mlflow.pyfunc.scoring_server._decode_json_input"
INVALID_INPUT = "mlflow.utils.proto_json_utils.MlflowInvalidInputException"
MESSAGE = "mlflow.exceptions.MlflowException.message"
HANDLER_DECORATOR = "mlflow.pyfunc.scoring_server._async_catch_mlflow_exception"

PRIVATE: dict[str, str] = {
    JSON_DECODER: "parses the JSON body of every request to `mlflow models serve` before the model sees it; "
                  "wrap_json_decoder replaces it (by module attribute: the server looks it up on each call)",
    INVALID_INPUT: "the scoring server's 400 for a body it cannot parse (an internal module, not the documented "
                   "API); the guard re-raises it with a one-line reason",
    HANDLER_DECORATOR: "the decorator the scoring server's init() puts on its POST /invocations handler, looked up "
                       "when init() runs (after the model, and so genreclf, is loaded); wrap_handler_decorator "
                       "puts genreclf's request guard in front of that handler, before the body is read",
    MESSAGE: "the instance attribute MlflowException.__init__ sets and the scoring server's invocations() "
             "rewrites to quote the whole request; ReasonOnlyException keeps its first value",
}

_GUARDED = "_genreclf_guarded"  # marks the installed wrapper, so a second install leaves it alone


class MlflowCompatError(RuntimeError):
    """The installed MLflow lacks a private name genreclf relies on: genreclf needs updating for it."""

    def __init__(self, name: str, why: str = "") -> None:
        purpose = PRIVATE.get(name, "")
        super().__init__(f"MLflow {mlflow.__version__} has no {name}{f' ({why})' if why else ''}; genreclf uses it "
                         f"for: {purpose}. Update genreclf/tracking/mlflow_compat.py for this MLflow version.")
        self.name = name


def private(name: str) -> Any:
    """The object a :data:`PRIVATE` entry ``module.attribute`` names, or MlflowCompatError."""
    if name not in PRIVATE or name == MESSAGE:
        raise KeyError(f"{name} is not a module attribute listed in mlflow_compat.PRIVATE")
    module_name, _, attr = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MlflowCompatError(name, f"module {module_name} does not import: {exc}") from exc
    if not hasattr(module, attr):
        raise MlflowCompatError(name)
    return getattr(module, attr)


def invalid_input_error() -> type[MlflowException]:
    """The exception class the scoring server answers with HTTP 400 for a body it cannot parse."""
    cls = private(INVALID_INPUT)
    if not (isinstance(cls, type) and issubclass(cls, MlflowException)):
        raise MlflowCompatError(INVALID_INPUT, "no longer an MlflowException subclass")
    return cls


def json_decoder() -> Callable[[Any], Any]:
    """The scoring server's JSON body parser as installed now (ours after :func:`wrap_json_decoder`)."""
    decoder = private(JSON_DECODER)
    if not callable(decoder):
        raise MlflowCompatError(JSON_DECODER, "no longer callable")
    return decoder


def is_guarded(func: Callable[..., Any]) -> bool:
    return bool(getattr(func, _GUARDED, False))


def wrap_json_decoder(make: Callable[[Callable[[Any], Any]], Callable[[Any], Any]]) -> bool:
    """Replace the scoring server's JSON body parser with ``make(original)``, once per process.

    Returns True when it installed the wrapper, False when one was installed already.
    """
    original = json_decoder()
    if is_guarded(original):
        return False
    wrapper = functools.wraps(original)(make(original))
    setattr(wrapper, _GUARDED, True)
    module_name, _, attr = JSON_DECODER.rpartition(".")
    setattr(importlib.import_module(module_name), attr, wrapper)
    return True


def wrap_handler_decorator(guard: Callable[[Callable[..., Any]], Callable[..., Any]]) -> bool:
    """Make the scoring server's handler decorator return ``guard(decorated handler)``, once per process.

    Returns True when it installed the wrapper, False when one was installed already.
    """
    original = private(HANDLER_DECORATOR)
    if not callable(original):
        raise MlflowCompatError(HANDLER_DECORATOR, "no longer callable")
    if is_guarded(original):
        return False

    @functools.wraps(original)
    def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
        return guard(original(handler))

    setattr(decorate, _GUARDED, True)
    module_name, _, attr = HANDLER_DECORATOR.rpartition(".")
    setattr(importlib.import_module(module_name), attr, decorate)
    return True


class ReasonOnlyException(MlflowException):
    """An MlflowException whose message stays the one it was created with.

    The scoring server rewrites the message of an MlflowException raised by predict to
    ``Failed to predict data '<the whole payload>'. Error: ...`` before answering with it; this
    class ignores every assignment after the first (the one ``MlflowException.__init__`` makes).
    """

    @property
    def message(self) -> str:
        return self._reason

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_reason"):
            self._reason = value


def check_message_attribute() -> None:
    """MlflowCompatError unless ``MlflowException.__init__`` still stores its message as ``message``."""
    probe = ReasonOnlyException("probe")
    if vars(probe).get("_reason") != "probe":
        raise MlflowCompatError(MESSAGE, "MlflowException.__init__ no longer assigns self.message")


check_message_attribute()  # at import: a RequestRejected without its message would answer with nothing
