"""The locks tuning workers share: a file lock (workers on one host) and a PostgreSQL advisory lock
(workers on every host). Both are released by the system when their holder dies, and every wait for
them is bounded: a wait past ``LOCK_WAIT_S`` raises ``LockTimeout`` naming the lock and the wait.

The advisory lock lives on its own connection, which the server ends (releasing the lock) when it stops
answering: the connection has a connect timeout, TCP keepalives and a statement timeout, so a dead server
or a cut network ends a wait instead of hanging it, and ``verify`` checks the lock is still held before a
decision relies on it.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from pathlib import Path

import sqlalchemy

log = logging.getLogger(__name__)
LOCK_WAIT_S = 600.0  # holders keep a lock for seconds (a slot claim, an MLflow write): ten minutes is a hung holder
STATEMENT_SLACK_S = 30  # a statement may run this much past the lock wait before the server cancels it
# libpq: give up connecting after 10 s; probe an idle connection after 30 s, every 10 s, 3 times
PG_CONNECT = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
              "keepalives_count": 3}
LIBPQ_DRIVERS = ("postgresql", "postgresql+psycopg2", "postgresql+psycopg")
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for lock_timeout


class LockTimeout(RuntimeError):
    """A lock was not granted within its bound."""


class LockLost(RuntimeError):
    """A lock this process held is gone (its connection died), so another process may hold it now."""


class FileLock:
    """An exclusive POSIX lock on a file (released by the kernel when the process dies)."""

    def __init__(self, path: Path | None, wait_s: float = LOCK_WAIT_S):
        self.path: Path | None = path
        self.wait_s = wait_s
        self._fd: int | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def acquire(self) -> None:
        if self.path is None or self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        start, pause = time.monotonic(), 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= self.wait_s:
                    os.close(fd)
                    raise LockTimeout(f"waited {waited:.0f} s for the file lock {self.path} without getting it: "
                                      "a process on this host holds it and does not let go") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)  # short pauses: the holders keep it for milliseconds
        self._fd = fd

    def verify(self) -> None:
        """Nothing to check: the kernel keeps the lock as long as this process lives."""

    def release(self) -> None:  # idempotent: the trial releases the slot lock as soon as it is claimed
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name`` (stable across hosts and Python versions)."""
    return int.from_bytes(hashlib.sha256(f"genreclf:{name}".encode()).digest()[:8], "big", signed=True)


def pg_connect_args(url: str) -> dict:
    """Connection timeout and keepalives for the libpq drivers (other drivers take other names: none)."""
    return dict(PG_CONNECT) if sqlalchemy.make_url(url).drivername in LIBPQ_DRIVERS else {}


class AdvisoryLock:
    """A PostgreSQL session-level advisory lock: one lock for workers on every host. Its connection
    lives as long as the lock object; the server releases the lock when the holder's connection dies
    (a killed worker never leaves it held)."""

    def __init__(self, url: str, name: str, wait_s: float = LOCK_WAIT_S):
        self.name, self.key, self.wait_s, self._held = name, lock_key(name), wait_s, False
        self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool,
                                                connect_args=pg_connect_args(url))
        self._conn: sqlalchemy.Connection | None = None

    def _what(self) -> str:
        return f"the PostgreSQL advisory lock {self.name!r} (key {self.key})"

    def _connection(self) -> sqlalchemy.Connection:
        """A live connection whose statements (the lock wait included) are bounded by the server."""
        if self._conn is not None:
            try:
                self._conn.execute(sqlalchemy.text("SELECT 1"))
                return self._conn
            except sqlalchemy.exc.DBAPIError as exc:  # it died while idle: this process held nothing on it
                log.info("%s: its idle connection died (%s); connecting again", self._what(), exc.orig)
                self._drop()
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(sqlalchemy.text("SELECT set_config('lock_timeout', :lock, false), "
                                     "set_config('statement_timeout', :stmt, false)"),
                     {"lock": f"{int(self.wait_s * 1000)}ms",
                      "stmt": f"{int((self.wait_s + STATEMENT_SLACK_S) * 1000)}ms"})
        self._conn = conn
        return conn

    def acquire(self) -> None:
        if self._held:
            self.verify()
            return
        conn, start = self._connection(), time.monotonic()
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
        except sqlalchemy.exc.DBAPIError as exc:
            code = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
            waited = time.monotonic() - start
            if code == LOCK_NOT_AVAILABLE:
                raise LockTimeout(f"waited {waited:.0f} s for {self._what()} without getting it: another worker "
                                  "holds it and does not let go") from None
            self._drop()
            raise LockLost(f"waiting for {self._what()} failed after {waited:.0f} s: {exc.orig}") from None
        self._held = True

    def verify(self) -> None:
        """Raise LockLost unless the lock is still held: its connection alive means the server keeps it."""
        if not self._held or self._conn is None:
            raise LockLost(f"{self._what()} is not held by this process")
        try:
            self._conn.execute(sqlalchemy.text("SELECT 1"))
        except sqlalchemy.exc.DBAPIError as exc:
            self._held = False
            self._drop()
            raise LockLost(f"{self._what()} was lost: its connection died ({exc.orig}); the server released it, "
                           "so another worker may hold it now") from None

    def release(self) -> None:  # idempotent, like FileLock.release
        if self._held and self._conn is not None:
            self._held = False
            try:
                self._conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            except sqlalchemy.exc.DBAPIError as exc:  # the connection died: the server released it already
                log.warning("%s: connection lost before the unlock (%s); the server released it", self._what(),
                            exc.orig)
                self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlalchemy.exc.DBAPIError:
                pass
            self._conn = None

    def close(self) -> None:
        self.release()
        self._drop()
        self._engine.dispose()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
