"""The shared interface of both registered models (``album-genre-rf`` and ``album-genre-cnn``).

Input: a DataFrame with a column ``image`` of encoded image bytes (base64 over REST; MLflow
decodes it because the signature declares the column binary). In Python, decoded RGB arrays are
accepted too. Output: a DataFrame with ``genre`` and one ``p_<genre>`` probability per genre.

A bad row (not an image, empty, not bytes) raises an MlflowException with
INVALID_PARAMETER_VALUE that names the row, which the scoring server turns into HTTP 400 - never a
500 from deep inside OpenCV or PIL. File paths are never opened: a string is not an image.

Every request has a budget, checked before anything large is allocated: at most MAX_ROWS rows,
MAX_FILE_BYTES per encoded cover and MAX_REQUEST_BYTES in all, and each cover's decode is refused
from its header when its raster would exceed ``images.MAX_DECODE_BYTES`` (bytes, not pixels: a
16-bit image costs twice an 8-bit one, and every conversion copy is counted). Covers are decoded one
at a time, so a request holds at most its encoded bytes plus the decoded covers at the model's (small)
decode size. In ``mlflow models serve``, :mod:`genreclf.serving.request_guard` checks the raw body against
the same limits before MLflow parses it.
"""
from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, DataType, Schema

from genreclf.data.decode_limits import DecodeTimeout
from genreclf.data.images import MAX_FILE_BYTES, BadImageError, as_rgb, encode
from genreclf.tracking.mlflow_compat import ReasonOnlyException

log = logging.getLogger(__name__)
IMAGE_COLUMN = "image"
_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
MAX_BYTES = MAX_FILE_BYTES     # per cover
MAX_ROWS = 256                 # per request; clients batch larger jobs
MAX_REQUEST_BYTES = 64 * 2**20  # encoded covers per request


class RequestRejected(ReasonOnlyException):
    """A 400 whose message is only our reason.

    MLflow's scoring server rewrites the message of an MlflowException raised by predict to
    ``Failed to predict data '<the whole payload>'. Error: ...`` (an answer larger than the request,
    the reason at its end). This exception keeps the message it was created with.
    """


def bad_input(message: str) -> MlflowException:
    return RequestRejected(message[:500], error_code=INVALID_PARAMETER_VALUE)


def signature(genres: list[str]) -> ModelSignature:
    inputs = Schema([ColSpec(DataType.binary, IMAGE_COLUMN)])
    outputs = Schema([ColSpec(DataType.string, "genre")] + [ColSpec(DataType.double, f"p_{g}") for g in genres])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(covers: list[np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({IMAGE_COLUMN: [encode(c, "JPEG") for c in covers]})


def too_many_rows(n: int) -> str:
    return f"{n} rows is over the limit of {MAX_ROWS} covers per request; send them in smaller batches"


def rows_of(model_input) -> list:
    """The per-row cover objects of any accepted input shape."""
    if isinstance(model_input, pd.DataFrame):
        if IMAGE_COLUMN not in model_input.columns:
            raise bad_input(f"expected a column {IMAGE_COLUMN!r} of encoded image bytes; "
                            f"got columns {list(model_input.columns)}")
        return list(model_input[IMAGE_COLUMN])
    if isinstance(model_input, dict):
        if IMAGE_COLUMN not in model_input:
            raise bad_input(f"expected key {IMAGE_COLUMN!r}; got {list(model_input)}")
        value = model_input[IMAGE_COLUMN]
        return list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    if isinstance(model_input, np.ndarray) and model_input.ndim == 4:
        return list(model_input)  # a batch of decoded covers
    if isinstance(model_input, (list, tuple)):
        return list(model_input)
    if isinstance(model_input, (bytes, np.ndarray)):
        return [model_input]
    raise bad_input(f"unsupported input type {type(model_input).__name__}; "
                    f"send a DataFrame with a column {IMAGE_COLUMN!r} of image bytes")


def decode_rows(model_input, size: int) -> list[np.ndarray]:
    rows = rows_of(model_input)
    if not rows:
        raise bad_input("empty input: send at least one cover")
    if len(rows) > MAX_ROWS:
        raise bad_input(too_many_rows(len(rows)))
    total = sum(len(r) for r in rows if isinstance(r, (bytes, bytearray, str)))
    if total > MAX_REQUEST_BYTES:
        raise bad_input(f"{total} bytes of covers is over the limit of {MAX_REQUEST_BYTES} per request")
    out = []
    for i, obj in enumerate(rows):
        if isinstance(obj, str) or (isinstance(obj, bytes) and _BASE64_TEXT.fullmatch(obj)):
            # base64 that MLflow did not decode: an `inputs` payload reaches us as the base64 *text*
            # in numpy bytes (no image file is pure base64 alphabet). Never a path: never opened.
            try:
                obj = base64.b64decode(obj, validate=True)
            except (binascii.Error, ValueError):
                raise bad_input(f"row {i}: a string is not an image; send encoded image bytes "
                                f"(base64 in JSON)") from None
        if isinstance(obj, (bytes, bytearray)) and len(obj) > MAX_BYTES:
            raise bad_input(f"row {i}: {len(obj)} bytes is over the {MAX_BYTES} byte limit per cover")
        try:
            out.append(as_rgb(obj, size, name=f"row {i}"))
        except (BadImageError, DecodeTimeout) as exc:
            raise bad_input(str(exc)) from None
        except Exception as exc:  # an odd object in a Python call: still the caller's input, still a 400
            raise bad_input(f"row {i}: not an image ({type(exc).__name__})") from None
    return out


def to_frame(proba: np.ndarray, genres: list[str]) -> pd.DataFrame:
    proba = np.asarray(proba, dtype=np.float64)
    frame = pd.DataFrame(proba, columns=[f"p_{g}" for g in genres])
    frame.insert(0, "genre", [genres[k] for k in proba.argmax(axis=1)])
    return frame


class CoverModel(mlflow.pyfunc.PythonModel):
    """Base class: subclasses set ``self.genres`` and ``self.size`` and implement predict_proba."""

    genres: list[str]
    size: int

    def predict_proba(self, covers: list[np.ndarray]) -> np.ndarray:  # (N, n_genres)
        raise NotImplementedError

    # typed (a DataFrame in, a DataFrame out): MLflow then neither warns about missing hints nor
    # re-validates what decode_rows already checks with clearer messages.
    # MLflow infers no schema from pd.DataFrame: the explicit signature (a binary "image" column) stays the
    # contract, and dicts/arrays still work from Python
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        covers = decode_rows(model_input, self.size)
        try:
            proba = self.predict_proba(covers)
        except Exception as exc:  # a bug or the machine (memory): logged here, never a trace to the client
            log.exception("prediction failed")
            raise RequestRejected(f"prediction failed ({type(exc).__name__}); see the server log",
                                  error_code=INTERNAL_ERROR) from None
        return to_frame(proba, self.genres)
