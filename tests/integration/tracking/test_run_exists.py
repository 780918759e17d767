"""run_exists tells "no such run" from a store that failed to answer, and reap_orphans on a real store
fails only the runs whose owner is proven gone."""
from __future__ import annotations

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from genreclf.serving.net import free_port
from genreclf.tracking import owner, runs

GONE_PID = 2**22 + 7  # above Linux's largest pid_max: no process ever has it


def test_not_found_is_false_and_a_deleted_run_is_gone(workdir):
    client = mlflow.MlflowClient()
    exp = client.create_experiment("exists")
    run_id = client.create_run(exp).info.run_id
    assert runs.run_exists(run_id) is True
    assert runs.run_exists("0" * 32) is False
    client.delete_run(run_id)
    assert runs.run_exists(run_id) is False


def test_an_unreachable_server_raises_instead_of_saying_no_run(workdir, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    try:
        with pytest.raises(MlflowException):
            runs.run_exists("0" * 32, attempts=2, pause_s=0.01)
    finally:
        mlflow.set_tracking_uri(previous)


def test_reap_orphans_on_a_real_store(workdir):
    client = mlflow.MlflowClient()
    exp = client.create_experiment("orphans")
    tags = owner.owner_tags()
    cases = {"live-clock-stepped": {"owner_started": repr(float(tags["owner_started"]) + 0.5)},
             "gone": {"owner_pid": str(GONE_PID)},
             "other-host": {"owner_host": "elsewhere", "owner_pid": str(GONE_PID)}}
    ids = {name: client.create_run(exp, tags={**tags, **extra}).info.run_id for name, extra in cases.items()}
    assert owner.reap_orphans(client, exp) == 1
    status = {name: client.get_run(rid).info.status for name, rid in ids.items()}
    assert status == {"live-clock-stepped": "RUNNING", "gone": "FAILED", "other-host": "RUNNING"}
    assert "its process died" in client.get_run(ids["gone"]).data.tags["failure_reason"]
