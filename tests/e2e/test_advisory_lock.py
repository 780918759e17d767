"""The study lock on a real PostgreSQL server: a wait past its bound raises an error naming the lock and
the wait; the lock's connection carries its timeouts and keepalives; a lock whose connection died is
reported lost (never relied on) and is granted to the next worker."""
from __future__ import annotations

import time

import psycopg2
import pytest
import sqlalchemy

from genreclf.tuning.locks import AdvisoryLock, LockLost, LockTimeout

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def url(postgres):
    return postgres.create_database("locks")


def backend_pid(lock: AdvisoryLock) -> int:
    assert lock._conn is not None
    return lock._conn.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar_one()


def test_a_wait_past_its_bound_names_the_lock_and_the_wait(url):
    holder, waiter = AdvisoryLock(url, "study:bounded", wait_s=1), AdvisoryLock(url, "study:bounded", wait_s=1)
    try:
        holder.acquire()
        start = time.monotonic()
        with pytest.raises(LockTimeout, match=r"waited 1 s for the PostgreSQL advisory lock 'study:bounded'"):
            waiter.acquire()
        assert time.monotonic() - start < 10
        holder.release()
        waiter.acquire()  # the same object, once the holder lets go
    finally:
        holder.close()
        waiter.close()


def test_the_connection_has_timeouts_and_keepalives(url):
    lock = AdvisoryLock(url, "study:settings", wait_s=2)
    try:
        with lock:
            conn = lock._conn
            assert conn is not None
            show = {name: conn.execute(sqlalchemy.text(f"SHOW {name}")).scalar_one()
                    for name in ("lock_timeout", "statement_timeout")}
            assert show == {"lock_timeout": "2s", "statement_timeout": "32s"}
            info = conn.connection.dbapi_connection.info  # psycopg (3) or psycopg2, whichever the URL picks
            dsn = info.get_parameters() if hasattr(info, "get_parameters") else info.dsn_parameters
            assert dsn["connect_timeout"] == "10" and dsn["keepalives"] == "1"
            assert {"keepalives_idle", "keepalives_interval", "keepalives_count"} <= set(dsn)
    finally:
        lock.close()


def test_a_lock_whose_connection_died_is_reported_lost_and_goes_to_the_next_worker(url):
    first, second = AdvisoryLock(url, "study:lost", wait_s=1), AdvisoryLock(url, "study:lost", wait_s=1)
    admin = psycopg2.connect(url)
    admin.autocommit = True
    try:
        first.acquire()
        with admin.cursor() as cur:  # what a server restart or a cut network does to the holder's session
            cur.execute("SELECT pg_terminate_backend(%s)", (backend_pid(first),))
        with pytest.raises(LockLost, match=r"'study:lost' .* was lost: its connection died"):
            first.verify()
        second.acquire()  # the server released it with the session
        with pytest.raises(LockTimeout):
            first.acquire()  # a fresh connection, and a bounded wait behind the new holder
        second.release()
        first.acquire()
        first.release()
    finally:
        admin.close()
        first.close()
        second.close()
