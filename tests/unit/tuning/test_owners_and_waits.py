"""Tuning under dead and hung processes, on in-memory Optuna studies: the refit claim expires with its
claimant, a journal trial is failed only when its worker is proven gone, and every wait has a bound
whose end names what it waited for."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import optuna
import pytest

from genreclf.tracking import liveness
from genreclf.tuning import election, locks, storage, study, worker
from genreclf.tuning.storage import worker_record

GONE_PID = 2**22 + 7  # above Linux's largest pid_max: no process ever has it
optuna.logging.set_verbosity(optuna.logging.WARNING)


class Lock:
    """A study lock that is always granted; counts its checks."""
    verified = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def verify(self):
        self.verified += 1


def finished_study(claimant: dict | None = None) -> optuna.Study:
    s = optuna.create_study(direction="maximize")
    s.add_trial(optuna.trial.create_trial(params={"x": 1.0}, distributions={
        "x": optuna.distributions.FloatDistribution(0, 2)}, value=0.5))
    if claimant is not None:
        s.set_user_attr("refit_claim", {"trial": 0, "worker": claimant})
    return s


def test_refit_claim_of_a_dead_worker_is_taken_over():
    s, lock = finished_study({**worker_record(), "pid": GONE_PID}), Lock()
    assert election.claim_refit(s, lock) is True and lock.verified == 1
    assert s.user_attrs["refit_claim"]["worker"] == worker_record()  # the claim names this worker now


def test_refit_claim_of_a_live_or_unjudgeable_worker_stays():
    assert election.claim_refit(finished_study(worker_record()), Lock()) is False
    other_host = {**worker_record(), "host": "elsewhere", "pid": GONE_PID}
    assert election.claim_refit(finished_study(other_host), Lock()) is False


def test_a_dead_claimant_whose_refit_is_recorded_is_not_redone(monkeypatch):
    s = finished_study({**worker_record(), "pid": GONE_PID})
    s.set_user_attr("mlflow_parent_run_id", "parent")
    tags = {"refit_trial": "0", "refit_run_id": "r1"}
    monkeypatch.setattr(election.runs, "get_run", lambda rid: SimpleNamespace(data=SimpleNamespace(tags=tags)))
    assert election.claim_refit(s, Lock()) is False


def test_first_claim_is_taken():
    s = finished_study()
    assert election.claim_refit(s, Lock()) is True and s.user_attrs["refit_claim"]["trial"] == 0


def running(s: optuna.Study, record: dict | None) -> int:
    t = s.ask({"x": optuna.distributions.FloatDistribution(0, 2)})
    if record is not None:
        t.set_user_attr("worker", record)
    return t.number


def test_journal_trials_are_failed_only_when_their_worker_is_proven_gone():
    s = optuna.create_study(direction="maximize")
    me = worker_record()
    gone = running(s, {**me, "pid": GONE_PID})
    live = running(s, {**me, "started": me["started"] + 0.5})  # a clock step: still this process
    container = running(s, {**me, "pidns": "pid:[1]", "pid": GONE_PID})
    no_record = running(s, None)  # its worker died before writing one
    assert storage.reap_stale(s, rdb=False) == 2
    state = {t.number: t.state.name for t in s.get_trials()}
    assert state[gone] == state[no_record] == "FAIL" and state[live] == state[container] == "RUNNING"
    retries = s.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert sorted(storage.retried_from(t) for t in retries) == [gone, no_record]


def test_stall_measures_time_since_the_study_last_moved():
    now = [0.0]
    s = optuna.create_study(direction="maximize")
    stall = worker.Stall(10, clock=lambda: now[0])
    assert stall.idle(s) == 0
    now[0] = 4
    assert stall.idle(s) == 4
    running(s, None)  # a trial started: the study moved
    now[0] = 9
    assert stall.idle(s) == 0
    now[0] = 20
    assert stall.idle(s) == 11


def test_a_wait_on_trials_that_never_move_ends_naming_them(caplog):
    s = optuna.create_study(direction="maximize")
    number = running(s, {**worker_record(), "host": "elsewhere", "pid": 4242})
    now = [0.0]
    stall = worker.Stall(worker.stall_bound(SimpleNamespace(grace_period=300, heartbeat_interval=60)),
                         clock=lambda: now[0])
    assert stall.bound_s == 420
    assert worker.stalled(s, stall) is False
    now[0] = 419
    assert worker.stalled(s, stall) is False
    now[0] = 421
    with caplog.at_level(logging.WARNING):
        assert worker.stalled(s, stall) is True
    assert f"stopped waiting after 421 s for trial {number} (pid 4242 on elsewhere)" in caplog.text


class Hung:
    """A worker process that never ends by itself."""

    def __init__(self, name: str, stubborn: bool = False):
        self.name, self.pid, self.stubborn, self.alive, self.joins = name, 99, stubborn, True, []
        self.signals: list[str] = []

    def is_alive(self):
        return self.alive

    def join(self, timeout=None):
        assert timeout is not None, "an unbounded join"
        self.joins.append(timeout)

    def terminate(self):
        self.signals.append("TERM")
        self.alive = self.stubborn

    def kill(self):
        self.signals.append("KILL")
        self.alive = False


def test_join_stops_hung_workers_after_the_bound_and_names_them(caplog, monkeypatch):
    monkeypatch.setattr(study, "STOP_WAIT_S", 0.01)
    procs = [Hung("tune-worker-1"), Hung("tune-worker-2", stubborn=True)]
    with caplog.at_level(logging.ERROR):
        study.join_workers(procs, optuna.create_study(), bound_s=0.2, poll_s=0.01)
    assert not any(p.alive for p in procs)
    assert procs[0].signals == ["TERM"] and procs[1].signals == ["TERM", "KILL"]
    assert "tune-worker-1 (pid 99), tune-worker-2 (pid 99) while no trial of the study moved" in caplog.text
    assert "tune-worker-2 (pid 99) still runs" in caplog.text


def test_file_lock_wait_is_bounded_and_names_the_lock(tmp_path):
    held = locks.FileLock(tmp_path / "study.slots-lock")
    with held:
        waiting = locks.FileLock(tmp_path / "study.slots-lock", wait_s=0.2)
        with pytest.raises(locks.LockTimeout, match=r"waited 0 s for the file lock .*study.slots-lock"):
            waiting.acquire()
    with waiting:  # released: granted at once
        pass


def test_advisory_lock_connections_have_timeouts_and_keepalives():
    args = locks.pg_connect_args("postgresql://u@db.example/optuna")
    assert args["connect_timeout"] > 0 and args["keepalives"] == 1
    assert {"keepalives_idle", "keepalives_interval", "keepalives_count"} <= set(args)
    assert locks.pg_connect_args("postgresql+psycopg2://u@db.example/optuna") == args
    assert locks.pg_connect_args("postgresql+pg8000://u@db.example/optuna") == {}  # other option names


def test_identity_record_is_the_liveness_identity():
    assert liveness.alive(worker_record()) is True
