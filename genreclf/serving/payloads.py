"""Using a registered model: ``genreclf predict`` for local files, and REST payloads for the server.

The server itself is MLflow's::

    mlflow models serve -m "models:/album-genre-cnn@champion" --env-manager local -p 5001

It takes the covers as base64 in JSON (``dataframe_split`` or ``inputs``, column ``image``) and
answers ``{"predictions": [{"genre": ..., "p_<genre>": ...}, ...]}``. Bad covers get HTTP 400 with a
message naming the row (see :mod:`genreclf.serving.contract`). The served model never opens a path a client
sends: a string is only ever decoded as base64 image bytes.
"""
from __future__ import annotations

import base64
import os
import stat
import sys

import pandas as pd

from genreclf.data.images import MAX_FILE_BYTES, BadImageError, decode_rgb
from genreclf.errors import UserError
from genreclf.serving.contract import IMAGE_COLUMN
from genreclf.tracking import registry


class ModelLoadError(UserError):
    """The model URI names nothing loadable (no such model, version or alias)."""


def payload(covers: list[bytes], format: str = "dataframe_split") -> dict:
    """The JSON body of a POST /invocations with these encoded covers (JPEG/PNG/... file bytes)."""
    b64 = [base64.b64encode(c).decode("ascii") for c in covers]
    if format == "dataframe_split":
        return {"dataframe_split": {"columns": [IMAGE_COLUMN], "data": [[b] for b in b64]}}
    if format == "inputs":
        return {"inputs": {IMAGE_COLUMN: b64}}
    raise ValueError(f"format={format!r}: use 'dataframe_split' or 'inputs'")


def top_genres(row: pd.Series, top: int) -> list[tuple[str, float]]:
    """The ``top`` most probable (genre, probability) pairs of one prediction row."""
    probs = {c[2:]: float(row[c]) for c in row.index if c.startswith("p_")}
    return sorted(probs.items(), key=lambda kv: -kv[1])[:max(1, top)]


def load_model(model_uri: str):
    try:
        return registry.load_pyfunc(model_uri)
    except Exception as exc:  # MlflowException, OSError: the URI is the user's to fix
        why = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).splitlines()[0]
        raise ModelLoadError(f"cannot load model {model_uri!r}: {why} (models come from genreclf "
                             "train_<family>, e.g. train_rf; @champion from genreclf promote)") from None


def read_cover_file(path: str) -> bytes:
    """A regular file's bytes, at most MAX_FILE_BYTES: a FIFO would hang, /dev/zero would never end."""
    with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise BadImageError(f"{path}: not a regular file (FIFO, device or folder); give an image file")
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise BadImageError(f"{path}: over the {MAX_FILE_BYTES // 2**20} MiB limit per cover")
    return data


def predict_files(model_uri: str, files: list[str], top: int = 3) -> int:
    """Print the predicted genre and the top probabilities of each cover file.

    A file that cannot be read or decoded is reported by name on stderr and the others are still
    predicted; the exit code is 1 when any file failed, else 0.
    """
    covers, failed = {}, 0
    for f in files:
        try:
            data = read_cover_file(f)
            decode_rgb(data, size=32, name=f)  # checked here so one bad file cannot fail the batch
            covers[f] = data
        except (OSError, BadImageError) as exc:
            msg = str(exc) if isinstance(exc, BadImageError) else f"{f}: cannot read ({exc.strerror or exc})"
            print(f"error: {msg}", file=sys.stderr)
            failed += 1
    if covers:
        model = load_model(model_uri)
        frame = model.predict(pd.DataFrame({IMAGE_COLUMN: list(covers.values())}))
        width = max(len(f) for f in covers)
        for f, (_, row) in zip(covers, frame.iterrows()):
            probs = ", ".join(f"{g} {p:.1%}" for g, p in top_genres(row, top))
            print(f"{f:<{width}}  {row['genre']:<12} ({probs})")
    if failed:
        print(f"{failed} of {len(files)} file(s) could not be predicted", file=sys.stderr)
    return 1 if failed else 0
