"""Per-cover columns spooled to disk while the covers stream past, so memory stays flat whatever N.

A :class:`Column` appends fixed-width records a chunk at a time to an unnamed temporary file in the
cache folder and is read back memory-mapped: its pages belong to the kernel's page cache (evicted
under pressure, written back to disk), not to the process's heap. The file has no name from the
start (``tempfile.TemporaryFile``), so a killed run leaves nothing behind and the mapping stays
valid for as long as an array uses it. :class:`Texts` holds records of varying length (ids, encoded
covers) as one byte stream plus end offsets.

:class:`JsonDigest` hashes exactly what ``json.dumps`` of a list of parts would give, a chunk of items
at a time: a digest over N covers needs no N-sized list or string, and equals the digest of the whole text.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

CHUNK = 4096  # records buffered in memory before they go to the file


class Column:
    """An append-only array of ``dtype`` records on disk; ``array()`` maps what was appended."""

    def __init__(self, dtype: Any, folder: Path):
        self.dtype = np.dtype(dtype)
        self.file = tempfile.TemporaryFile(dir=folder, prefix=".spool-")
        self.n = 0
        self._buf: list = []

    def __len__(self) -> int:
        return self.n + len(self._buf)

    def append(self, value: Any) -> None:
        self._buf.append(value)
        if len(self._buf) >= CHUNK:
            self._flush()

    def extend(self, values: np.ndarray) -> None:
        self._flush()
        values = np.ascontiguousarray(values, dtype=self.dtype)
        self.file.write(values.tobytes())
        self.n += len(values)

    def _flush(self) -> None:
        if self._buf:
            self.file.write(np.asarray(self._buf, dtype=self.dtype).tobytes())
            self.n += len(self._buf)
            self._buf = []

    def array(self) -> np.ndarray:
        """The records so far, memory-mapped (writable: scratch arrays are sorted in place)."""
        self._flush()
        self.file.flush()
        if self.n == 0 or self.dtype.itemsize == 0:  # mmap cannot map an empty file
            return np.zeros(self.n, dtype=self.dtype)
        return np.asarray(np.memmap(self.file, dtype=self.dtype, mode="r+", shape=(self.n,)))


def spooled(values: Iterable[np.ndarray], dtype: Any, folder: Path) -> np.ndarray:
    """Chunks of an array written to a Column and mapped back: the whole never sits in memory."""
    col = Column(dtype, folder)
    for chunk in values:
        col.extend(chunk)
    return col.array()


def zeros(n: int, dtype: Any, folder: Path) -> np.ndarray:
    """A mapped, writable array of ``n`` zero records (an output filled by position)."""
    return spooled((np.zeros(min(CHUNK, n - s), dtype) for s in range(0, n, CHUNK)), dtype, folder)


def take(arr: np.ndarray, idx: np.ndarray, folder: Path) -> np.ndarray:
    """``arr[idx]``, built a chunk at a time into a mapped Column."""
    return spooled((arr[idx[s:s + CHUNK]] for s in range(0, len(idx), CHUNK)), arr.dtype, folder)


class Texts:
    """Byte strings of varying length (encoded covers, utf-8 ids), appended and read back by position."""

    def __init__(self, folder: Path):
        self.data = tempfile.TemporaryFile(dir=folder, prefix=".spool-")
        self.ends = Column(np.int64, folder)
        self.size = 0
        self.widest = 0  # in characters, for ``strings()``

    def append(self, blob: bytes) -> None:
        self.data.write(blob)
        self.size += len(blob)
        self.ends.append(self.size)

    def append_str(self, text: str) -> None:
        self.append(text.encode("utf-8", "surrogatepass"))
        self.widest = max(self.widest, len(text))

    def __iter__(self) -> Iterator[bytes]:
        """Every record in order, a chunk mapped at a time."""
        self.data.flush()
        ends = self.ends.array()
        if self.size == 0:  # mmap cannot map an empty file
            yield from (b"" for _ in range(len(ends)))
            return
        raw = np.memmap(self.data, dtype=np.uint8, mode="r", shape=(self.size,))
        start = 0
        for end in _chunked(ends):
            yield raw[start:end].tobytes()
            start = end

    def strings(self, folder: Path) -> np.ndarray:
        """The records appended with ``append_str``, as a mapped fixed-width unicode array."""
        decoded = (b.decode("utf-8", "surrogatepass") for b in self)
        width = f"U{max(1, self.widest)}"
        return spooled(_batched(decoded, width), width, folder)


def _chunked(arr: np.ndarray) -> Iterator[int]:
    for s in range(0, len(arr), CHUNK):
        yield from arr[s:s + CHUNK].tolist()


def _batched(items: Iterator[str], dtype: str) -> Iterator[np.ndarray]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) >= CHUNK:
            yield np.array(batch, dtype=dtype)
            batch = []
    if batch:
        yield np.array(batch, dtype=dtype)


class JsonDigest:
    """sha256 of ``json.dumps(parts, default=str)``, fed one part at a time; a list part may be an array
    fed in chunks. Same value as hashing the whole JSON text, so existing cache keys and digests stay valid."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256(b"[")
        self.parts = 0

    def _sep(self) -> None:
        if self.parts:
            self.sha.update(b", ")
        self.parts += 1

    def value(self, value: Any) -> JsonDigest:
        self._sep()
        self.sha.update(json.dumps(value, default=str).encode())
        return self

    def items(self, arr: np.ndarray) -> JsonDigest:
        """A list part: the items of ``arr`` (str or int), as json.dumps writes a list of them."""
        self._sep()
        self.sha.update(b"[")
        for s in range(0, len(arr), CHUNK):
            text = json.dumps(arr[s:s + CHUNK].tolist(), default=str)[1:-1]
            self.sha.update((", " if s else "").encode() + text.encode())
        self.sha.update(b"]")
        return self

    def hexdigest(self) -> str:
        done = self.sha.copy()
        done.update(b"]")
        return done.hexdigest()
