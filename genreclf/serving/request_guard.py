"""The guard in front of `mlflow models serve`'s POST /invocations handler: limits checked on the raw request.

:func:`guard` wraps the handler MLflow's ``scoring_server.init()`` builds (through
``mlflow_compat.wrap_handler_decorator``), so it runs after routing and MLflow's timeout middleware but
before the body is read. It refuses, with a short JSON answer (``error_code``, ``message``: the reason
first, never the payload):

* a missing or non-JSON Content-Type (415), a Content-Length or a streamed body over the cap (413),
  before more than the cap is read;
* a body whose JSON is not one format key of at most MAX_ROWS bounded covers of the column ``image``
  (400/413, see :mod:`genreclf.serving.request_shape`), checked in a worker thread.

A request that passes is replayed to MLflow's handler unchanged, with a decode deadline
(``decode_limits.DEADLINE``) that ends when the handler does: when MLflow's timeout answers 504, or the
request is otherwise over, the worker thread still decoding stops at its next checkpoint. Error answers
that MLflow itself builds (a schema error quotes the payload) are cut to their first line.
"""
from __future__ import annotations

import asyncio
import functools
import json
from typing import Any, Awaitable, Callable

from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT

from genreclf.data.decode_limits import DEADLINE, Deadline
from genreclf.serving.request_shape import (
    MAX_BODY_BYTES,
    Refused,
    check_body,
    check_content_type,
    check_length,
    over_body_cap,
)

MAX_ANSWER_BYTES = 1024  # an error answer: the reason, not the request
Handler = Callable[[Any], Awaitable[Any]]


def answer(status: int, reason: str):
    from fastapi.responses import Response

    body = json.dumps({"error_code": "INVALID_PARAMETER_VALUE" if status < 500 else "INTERNAL_ERROR",
                       "message": reason[:400]})
    return Response(content=body, status_code=status, media_type="application/json")


def guard(handler: Handler) -> Handler:
    """``handler`` (an async MLflow endpoint taking a Starlette Request) behind the request limits."""
    from starlette.requests import ClientDisconnect, Request

    @functools.wraps(handler)
    async def guarded(request: Request):
        try:
            check_content_type(request.headers.get("content-type"))
            check_length(request.headers.get("content-length"))
            body = await _read_body(request)
            await asyncio.to_thread(check_body, body)
        except Refused as refused:
            return answer(refused.status, refused.reason)
        except ClientDisconnect:
            return answer(400, "the client disconnected before sending the whole body")
        deadline = Deadline(float(MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()))
        token = DEADLINE.set(deadline)  # inherited by the asyncio.to_thread worker that runs the model
        try:
            response = await handler(Request(request.scope, _replay(body, request.receive)))
        finally:
            deadline.expire()  # cancelled (MLflow's 504) or done: decoding for this request stops
            DEADLINE.reset(token)
        return _short(response)

    return guarded


async def _read_body(request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise over_body_cap()
        chunks.append(chunk)
    return b"".join(chunks)


def _replay(body: bytes, receive: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    """An ASGI receive that yields the body already read, then defers to the connection (disconnects)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _short(response):
    """MLflow's own error answer, cut to the first line of its message when it is long."""
    status = getattr(response, "status_code", 200)
    content = getattr(response, "body", b"")
    if status < 400 or len(content) <= MAX_ANSWER_BYTES:
        return response
    try:
        message = str(json.loads(content).get("message", ""))
    except (ValueError, AttributeError):
        message = content[:200].decode("utf-8", "replace")
    first = message.split("\n", 1)[0].split(" '", 1)[0] if message else "request refused"
    return answer(status, first[:300])
