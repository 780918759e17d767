"""tracking/liveness.py and owner.reap_orphans: a run is reaped only when its owner is proven gone -
never for a clock step, a permission error, or an owner in another container or on another host."""
from __future__ import annotations

from types import SimpleNamespace

import psutil

from genreclf.tracking import liveness, owner

GONE_PID = 2**22 + 7  # above Linux's largest pid_max: no process ever has it


def me(**changes) -> dict:
    return {**liveness.identity(), **changes}


def test_this_process_is_alive_and_a_start_time_off_by_half_a_second_still_matches():
    assert liveness.alive(me()) is True
    assert liveness.alive(me(started=me()["started"] + 0.5)) is True
    assert liveness.alive(me(started=me()["started"] - 0.5)) is True


def test_a_recycled_pid_is_told_apart_by_its_start_time():
    assert liveness.alive(me(started=me()["started"] - 3600)) is False


def test_a_pid_gone_on_this_boot_is_dead():
    assert liveness.alive(me(pid=GONE_PID)) is False


def test_another_boot_of_this_machine_is_dead_whatever_the_pid():
    """A reboot ended every process of the earlier boot: the pid (this very process's) says nothing."""
    assert liveness.alive(me(boot="another-boot")) is False


def test_what_this_process_cannot_judge_is_unknown():
    assert liveness.alive(me(host="elsewhere", pid=GONE_PID)) is None  # another host
    assert liveness.alive(me(pidns="pid:[1]", pid=GONE_PID)) is None  # a container sharing the host name
    assert liveness.alive(me(machine="other-machine", boot="b", pid=GONE_PID)) is None  # same host name, other box
    assert liveness.alive({"host": me()["host"], "pid": "12"}) is None  # recorded by older code: parts missing
    assert liveness.alive(me(pid="not a pid")) is None


def test_permission_denied_is_unknown_not_dead(monkeypatch):
    recorded = me()

    def denied(pid):
        raise psutil.AccessDenied(pid)
    monkeypatch.setattr(liveness, "start_time", denied)
    assert liveness.alive(recorded) is None


def test_owner_tags_round_trip():
    tags = owner.owner_tags()
    assert set(tags) == set(owner.TAGS) and all(isinstance(v, str) for v in tags.values())
    assert owner.owner_alive(tags) is True
    assert owner.owner_alive({**tags, "owner_started": repr(float(tags["owner_started"]) + 0.5)}) is True
    assert owner.owner_alive({**tags, "owner_pid": str(GONE_PID)}) is False
    assert owner.owner_alive({**tags, "owner_host": "elsewhere", "owner_pid": str(GONE_PID)}) is None
    assert owner.owner_alive({}) is None


class FakeClient:
    """The three calls reap_orphans makes, on runs held in memory."""

    def __init__(self, runs: dict[str, dict]):
        self.runs = {rid: SimpleNamespace(info=SimpleNamespace(run_id=rid, status="RUNNING"),
                                          data=SimpleNamespace(tags=dict(tags))) for rid, tags in runs.items()}

    def search_runs(self, experiment_ids, filter_string, max_results):
        return [r for r in self.runs.values() if r.info.status == "RUNNING"]

    def set_tag(self, run_id, key, value):
        self.runs[run_id].data.tags[key] = value

    def set_terminated(self, run_id, status):
        self.runs[run_id].info.status = status


def test_reap_orphans_fails_only_runs_whose_owner_is_proven_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRECLF_CACHE", str(tmp_path))  # where pending failure reasons would wait
    tags = owner.owner_tags()
    client = FakeClient({
        "live-clock-stepped": {**tags, "owner_started": repr(float(tags["owner_started"]) + 0.5)},
        "gone": {**tags, "owner_pid": str(GONE_PID)},
        "earlier-boot": {**tags, "owner_boot": "another-boot"},
        "other-container": {**tags, "owner_pidns": "pid:[1]", "owner_pid": str(GONE_PID)},
        "other-host": {**tags, "owner_host": "elsewhere", "owner_pid": str(GONE_PID)},
        "no-owner": {},
    })
    assert owner.reap_orphans(client, "1") == 2
    status = {rid: r.info.status for rid, r in client.runs.items()}
    assert status == {"live-clock-stepped": "RUNNING", "gone": "FAILED", "earlier-boot": "FAILED",
                      "other-container": "RUNNING", "other-host": "RUNNING", "no-owner": "RUNNING"}
    assert f"pid {GONE_PID}" in client.runs["gone"].data.tags["failure_reason"]
