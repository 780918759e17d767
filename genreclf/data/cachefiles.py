"""Files of the on-disk caches (decoded covers, feature tables): written atomically, checked on read.

A cache file is written under a unique temporary name in its own folder and renamed into place, so
neither a killed process nor two processes (or threads) filling the same entry ever leave a
half-written file under the final name. Each entry records the SHA-256 of its data file; a reader that
finds a missing, truncated or altered file says so and rebuilds instead of using it or failing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)


class Damaged(Exception):
    """A cache entry is incomplete or does not match its recorded checksum."""


def write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Call ``write(binary file object)`` on a unique temp file next to ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Hashing:
    """A binary file wrapper that feeds every written byte to ``digest`` (checksum while streaming)."""

    def __init__(self, f: Any, digest: Any):
        self.f, self.digest = f, digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.f.write(data)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, lambda f: f.write(json.dumps(obj).encode()))


def sha256_file(path: Path, chunk: int = 8 * 2**20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise Damaged(f"{path.name} is unreadable ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise Damaged(f"{path.name} is not a JSON object")
    return obj


def verify(path: Path, expected: str | None) -> None:
    """Raise Damaged unless ``path`` exists and its SHA-256 is ``expected``."""
    if not expected:
        raise Damaged(f"{path.name} has no recorded checksum")
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise Damaged(f"{path.name} is unreadable ({exc.strerror or exc})") from None
    if actual != expected:
        raise Damaged(f"{path.name} does not match its checksum")


def rebuilding(path: Path, why: Exception) -> None:
    log.warning("cache entry %s is damaged (%s); rebuilding it", path, why)
