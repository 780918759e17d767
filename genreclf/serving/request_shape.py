"""What a POST /invocations body may look like, checked on its raw bytes before MLflow or pandas builds anything.

The served models take one column, ``image``, of base64 covers, in one of MLflow's four JSON formats.
:func:`check_body` refuses anything else with a :class:`Refused` (status + one-line reason):

* more than :data:`MAX_BODY_BYTES` (413), seen from Content-Length or while the body streams in;
* a Content-Type other than JSON (415): parquet and CSV are refused, not parsed, since a 2 KB
  zstd parquet cell inflates to 64 MiB inside pyarrow before any row could be counted;
* more JSON structure than a request of :data:`MAX_ROWS` covers has (counted on the bytes, so
  ``json.loads`` never builds a large object graph, and deep nesting never reaches the parser);
* any shape but one format key holding at most MAX_ROWS strings of the column ``image``, each at most
  the per-cover cap; ``inputs``/``instances`` become a numpy array padded to the longest string, so
  rows x longest x 4 bytes is capped too.
"""
from __future__ import annotations

import json
import re
from typing import Any

from genreclf.serving.contract import IMAGE_COLUMN, MAX_BYTES, MAX_ROWS, too_many_rows

MAX_BODY_BYTES = 16 * 2**20     # a request body: 256 typical covers in base64, well under MAX_REQUEST_BYTES
MAX_PADDED_BYTES = 64 * 2**20   # numpy's fixed-width copy of an `inputs`/`instances` column
MAX_B64_CHARS = -(-MAX_BYTES // 3) * 4
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
JSON_TYPES = ("application/json",)
# a request of MAX_ROWS covers needs about one bracket and two commas per row; room for `params` besides
MAX_BRACKETS = 2 * MAX_ROWS + 16
MAX_SEPARATORS = 4 * MAX_ROWS + 64
_NOT_BRACKET = re.compile(rb"[^\\[\\]{}]")


class Refused(Exception):
    """A request answered before MLflow sees it: HTTP ``status`` with ``reason`` (short, no payload)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason[:400]


def check_content_type(content_type: str | None) -> None:
    if not content_type:
        raise Refused(415, "missing Content-Type: send application/json")
    mime, *params = (p.strip().lower() for p in content_type.split(";"))
    if mime not in JSON_TYPES:
        raise Refused(415, f"Content-Type {mime[:60]!r} is not accepted: send application/json "
                           f"(columns: {IMAGE_COLUMN!r}, base64 covers)")
    for param in params:
        if param and param not in ("charset=utf-8", "charset=utf8"):
            raise Refused(415, f"Content-Type parameter {param[:40]!r} is not accepted: only charset=utf-8")


def check_length(declared: str | None) -> None:
    if declared is None:
        return
    if not declared.strip().isdigit():
        raise Refused(400, "Content-Length is not a number")
    if int(declared) > MAX_BODY_BYTES:
        raise Refused(413, f"request body of {int(declared)} bytes is over the limit of {MAX_BODY_BYTES}; "
                           f"send fewer covers per request")


def over_body_cap() -> Refused:
    return Refused(413, f"request body is over the limit of {MAX_BODY_BYTES} bytes; send fewer covers per request")


def check_body(body: bytes) -> None:
    """Refused unless ``body`` is JSON of one format key with at most MAX_ROWS bounded covers."""
    if len(body) > MAX_BODY_BYTES:
        raise over_body_cap()
    brackets = body.count(b"[") + body.count(b"{")
    if brackets > MAX_BRACKETS:
        deep = _depth(body) > 32
        raise Refused(400, "request JSON is nested too deeply to parse" if deep else
                           f"request JSON holds more values than {MAX_ROWS} covers need")
    if body.count(b",") + body.count(b":") > MAX_SEPARATORS:
        raise Refused(400, f"request JSON holds more values than {MAX_ROWS} covers need")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        where = f" (at character {exc.pos})" if isinstance(exc, json.JSONDecodeError) else ""
        raise Refused(400, f"request body is not valid JSON{where}") from None
    check_document(doc)


def check_document(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise Refused(400, f"request JSON must be an object with one of the keys {', '.join(FORMATS)}")
    keys = [k for k in doc if k in FORMATS]
    others = [k for k in doc if k not in FORMATS and k != "params"]
    if len(keys) != 1 or others:
        raise Refused(400, f"request JSON must have exactly one of the keys {', '.join(FORMATS)} "
                           f"(and optionally params); got {_names(doc)}")
    if "params" in doc and not isinstance(doc["params"], dict):
        raise Refused(400, "params must be a JSON object")
    fmt = keys[0]
    rows = _rows(fmt, doc[fmt])
    if len(rows) > MAX_ROWS:
        raise Refused(413, too_many_rows(len(rows)))
    longest = 0
    for i, value in enumerate(rows):
        if not isinstance(value, str):
            raise Refused(400, f"row {i}: expected a base64 string of image bytes, got {_kind(value)}")
        if len(value) > MAX_B64_CHARS:
            raise Refused(413, f"row {i}: {len(value) * 3 // 4} bytes is over the {MAX_BYTES} byte limit per cover")
        longest = max(longest, len(value))
    padded = 4 * longest * len(rows)
    if fmt in ("inputs", "instances") and padded > MAX_PADDED_BYTES:
        raise Refused(413, f"{fmt} pads every row to the longest ({padded // 2**20} MiB for this request, "
                           f"limit {MAX_PADDED_BYTES // 2**20} MiB): send dataframe_split or smaller batches")


def _rows(fmt: str, value: Any) -> list:
    """The per-row values of the image column, or Refused for any other shape."""
    column = f"expected only the column {IMAGE_COLUMN!r}"
    if fmt == "dataframe_split":
        if not isinstance(value, dict) or not set(value) <= {"columns", "data", "index"}:
            raise Refused(400, f"dataframe_split must be an object with columns and data; {column}")
        if value.get("columns") != [IMAGE_COLUMN]:
            raise Refused(400, f"{column}; got columns {_names(value.get('columns'))}")
        data = value.get("data")
        if not isinstance(data, list) or not all(isinstance(r, list) and len(r) == 1 for r in data):
            raise Refused(400, f"dataframe_split data must be a list of one-element rows; {column}")
        return [r[0] for r in data]
    if isinstance(value, dict):  # inputs / instances in column form
        if fmt == "dataframe_records" or set(value) != {IMAGE_COLUMN}:
            raise Refused(400, f"{column}; got keys {_names(value)}")
        col = value[IMAGE_COLUMN]
        return col if isinstance(col, list) else [col]
    if isinstance(value, list):  # records
        for i, rec in enumerate(value[:MAX_ROWS + 1]):
            if not isinstance(rec, dict) or set(rec) != {IMAGE_COLUMN}:
                got = _names(rec) if isinstance(rec, dict) else _kind(rec)
                raise Refused(400, f"row {i}: {column}; got {got}")
        return [rec[IMAGE_COLUMN] for rec in value]
    raise Refused(400, f"{fmt} must be an object or a list; {column}")


def _names(obj: Any) -> str:
    names = list(obj)[:5] if isinstance(obj, (dict, list)) else [obj]
    more = f" and {len(obj) - 5} more" if isinstance(obj, (dict, list)) and len(obj) > 5 else ""
    return ", ".join(repr(n)[:40] for n in names) + more


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _depth(body: bytes, limit: int = 4096) -> int:
    """The deepest bracket nesting among the first ``limit`` brackets (strings included: a bound, not a parse)."""
    depth = deepest = 0
    for byte in _NOT_BRACKET.sub(b"", body)[:limit]:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest
