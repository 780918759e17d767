"""How much decoding may run at once, and until when: a shared memory reservation and a per-request deadline.

Every decode reserves its counted bytes (``images.decode_cost``) from one process-wide pool of
``MAX_DECODES_IN_FLIGHT x MAX_DECODE_BYTES`` before it loads a pixel, so any number of concurrent requests
hold at most that much decoded raster; a decode that would not fit waits for others to finish.

A server sets :data:`DEADLINE` for the request it handles (a context variable: asyncio tasks and
``asyncio.to_thread`` workers inherit it). Decoding checks it between steps and between bands, so no
decode runs on after its request's time is up or its answer has been sent.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
import time
from contextvars import ContextVar
from typing import Iterator

from genreclf.errors import UserError

MAX_DECODE_BYTES = 128 * 2**20  # one cover's decode, counted by images.decode_cost
MAX_DECODES_IN_FLIGHT = 2       # worst-case decodes at once, per process
TRIM_AFTER_BYTES = 32 * 2**20   # a decode this large hands its freed memory back to the OS when it ends


class DecodeTimeout(UserError):
    """The request this decode belongs to is out of time (or already answered)."""


class Deadline:
    """A monotonic time after which work for one request stops; :meth:`expire` ends it at once."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def expire(self) -> None:
        self.at = 0.0

    def left(self) -> float:
        return self.at - time.monotonic()


DEADLINE: ContextVar[Deadline | None] = ContextVar("genreclf_decode_deadline", default=None)


def check_time(name: str) -> None:
    """DecodeTimeout when the current request's deadline has passed; nothing outside a request."""
    deadline = DEADLINE.get()
    if deadline is not None and deadline.left() <= 0:
        raise DecodeTimeout(f"{name}: decoding stopped, the request ran out of time")


class _Pool:
    """Bytes of decoded raster that may be held at once; reserve() blocks until the bytes are free."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, nbytes: int, name: str) -> Iterator[None]:
        nbytes = min(nbytes, self.capacity)  # a decode within the per-cover budget always fits eventually
        with self._cond:
            while self.held + nbytes > self.capacity:
                deadline = DEADLINE.get()
                wait = None if deadline is None else deadline.left()
                if wait is not None and wait <= 0:
                    raise DecodeTimeout(f"{name}: decoding not started, the request ran out of time "
                                        f"waiting for other decodes to finish")
                self._cond.wait(wait if wait is None else min(wait, 1.0))
            self.held += nbytes
        try:
            yield
        finally:
            with self._cond:
                self.held -= nbytes
                self._cond.notify_all()
            if nbytes >= TRIM_AFTER_BYTES:
                _trim()


def _load_trim():
    """glibc's malloc_trim, or None elsewhere."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


_MALLOC_TRIM = _load_trim()


def _trim() -> None:
    # The raster, libtiff's strip buffer and the bands are freed into the decoding thread's malloc arena,
    # which keeps them resident: a server would hold its worst decodes forever without this.
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


POOL = _Pool(MAX_DECODES_IN_FLIGHT * MAX_DECODE_BYTES)
