"""Runs under real faults: a live owner, a kill -9, a truncated checkpoint, a full disk."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import mlflow
import pytest
from helpers import ROOT, subprocess_env

from genreclf.models.cnn.checkpoints import ResumeError
from genreclf.tracking import checkpoints
from genreclf.tracking import runs as tracking

HOLDER = """
import sys, time, tempfile, pathlib
from genreclf.tracking import runs as tracking
tracking.configure("faults")
with tracking.start_run("cnn-held", "train_cnn", "cnn") as run_id:
    d = pathlib.Path(tempfile.mkdtemp())
    (d / "last.pt").write_bytes(b"PK\\x03\\x04 a checkpoint cut short by the kill")
    tracking.log_artifact(d / "last.pt", "checkpoints")
    tracking.set_tags({"checkpoint_epoch": 0})
    print(run_id, flush=True)
    time.sleep(600)
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_resume_refused_while_owner_lives_then_killed_run_is_failed_and_damaged_checkpoint_named(workdir):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        run_id = proc.stdout.readline().strip()
        assert run_id, "the holder did not open its run"
        tracking.configure("faults")
        with pytest.raises(ResumeError, match=f"still being trained by process {proc.pid}"):
            checkpoints.load(run_id)
    finally:
        proc.send_signal(signal.SIGKILL)  # a real kill: no handler runs, the run stays RUNNING
        proc.wait(timeout=30)
    assert tracking.get_run(run_id).info.status == "RUNNING"
    assert tracking.reap_orphans() == 1
    run = tracking.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["failure_reason"].startswith("its process died")
    with pytest.raises(ResumeError, match="checkpoints/last.pt is damaged"):
        checkpoints.load(run_id)


def test_error_inside_a_run_ends_it_failed_with_the_reason(workdir):
    tracking.configure("faults")
    with pytest.raises(OSError):
        with tracking.start_run("rf-x", "train_rf", "rf") as run_id:
            raise OSError(28, "No space left on device")
    run = tracking.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "OSError: [Errno 28] No space left on device"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs (a real full disk) needs root")
def test_full_disk_fails_the_run_with_one_line_and_the_reason_is_recorded(workdir, tmp_path, monkeypatch):
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    try:
        uri = f"sqlite:///{mnt / 'mlflow.db'}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.chdir(mnt)  # the experiment's artifact root (./mlruns) on the small disk too
        mlflow.set_tracking_uri(uri)
        tracking.configure("album-genre")  # the store and its experiment, on the small disk
        env = subprocess_env(uri, tmp_path / "cache", PYTHONPATH=str(ROOT))
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        (mnt / "filler").write_bytes(b"\0" * (free - 400 * 1024))  # the model's files no longer fit
        out = subprocess.run([sys.executable, "-m", "genreclf.cli", "train_rf", "--data", "synthetic:6", "--genres",
                              "Rock,Jazz,Pop", "--cache_size", "32", "--n_estimators", "10"], env=env, cwd=mnt,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 1, out.stderr[-2000:]
        assert "genreclf train_rf: error: the disk is full" in out.stderr and "Traceback" not in out.stderr
        (mnt / "filler").unlink()
        monkeypatch.setenv("GENRECLF_CACHE", env["GENRECLF_CACHE"])
        tracking.reap_orphans()  # what the next command does first: the run's process is gone
        runs = mlflow.search_runs(experiment_names=["album-genre"], filter_string="tags.entry_point = 'train_rf'",
                                  output_format="list")
        assert [r.info.status for r in runs] == ["FAILED"]
        reason = runs[0].data.tags["failure_reason"]
        assert "disk is full" in reason or "No space left" in reason, reason
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
