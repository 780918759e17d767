"""``torchrun --nproc-per-node 2 -m genreclf.cli train_cnn`` on CPU (gloo): DDP training end to end.

Two processes train one run: each epoch's metrics logged once (rank 0 only), one registered
version whose test metrics a fresh process reproduces from the registered model, and a torchrun
launch killed after a checkpoint resumes (again under torchrun) to exactly the uninterrupted run.
Tiny settings: 48 synthetic covers at 32 px, resnet18 from scratch, a linear-probe epoch (the
embedding path) then two full-net epochs, batch 4 per process.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import mlflow
import psutil
import pytest
from helpers import ROOT, free_port, isolated_store

TINY = dict(data="synthetic:12", genres="HipHop,Rock,Pop,Electronic", cache_size=32, image_size=32,
            pretrained="false", epochs=3, lp_epochs=1, batch_size=4, patience=0, gradcam_per_genre=0, device="cpu")
PER_EPOCH = ("train_loss", "train_accuracy", "val_loss", "train/lr", "train/epoch_time_s")  # diagnostics: train/


def torchrun(env: dict, **over) -> list[str]:
    # loopback rendezvous and gloo on the loopback interface: nothing listens beyond this machine
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "-m", "genreclf.cli", "train_cnn"]
    return launcher + [f"--{k}={v}" for k, v in {**TINY, **over}.items()]


def env_for(store: dict) -> dict:
    # the workers import genreclf from this checkout, whatever the installed copy
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **store, "GLOO_SOCKET_IFNAME": "lo", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": path}


@pytest.fixture(scope="module")
def straight(tmp_path_factory, session_store):
    """One uninterrupted 2-process run (registered)."""
    with isolated_store(tmp_path_factory.mktemp("torchrun"), session_store / "cache") as store:
        env = env_for(store)
        out = subprocess.run(torchrun(env, experiment="straight"), env=env, capture_output=True, text=True,
                             timeout=400)
        assert out.returncode == 0, out.stderr[-4000:]
        run = mlflow.search_runs(experiment_names=["straight"], output_format="list")
        yield {"env": env, "stderr": out.stderr, "runs": run}


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher and its workers (torchrun starts them in sessions of their own)."""
    try:
        workers = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        workers = []
    for p in [psutil.Process(proc.pid), *workers]:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(workers, timeout=30)


def history(run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in mlflow.MlflowClient().get_metric_history(run_id, key))


def test_two_processes_train_one_run_and_one_version(straight):
    assert "joined process group: 2 processes, backend gloo" in straight["stderr"]
    assert len(straight["runs"]) == 1
    run = straight["runs"][0]
    assert run.info.status == "FINISHED" and run.data.tags["processes"] == "2"
    for key in PER_EPOCH:  # logged by rank 0 alone: exactly one value per epoch
        assert [s for s, _ in history(run.info.run_id, key)] == [0, 1, 2], key
    # val_* per epoch, plus the final model's value after the curve (step = epochs)
    assert [s for s, _ in history(run.info.run_id, "val_macro_f1")] == [0, 1, 2, 3]
    assert run.data.tags["checkpoint_epoch"] == "2"
    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name = 'album-genre-cnn'")
    assert len(versions) == 1 and versions[0].run_id == run.info.run_id
    assert client.get_model_version_by_alias("album-genre-cnn", "challenger").version == versions[0].version


FRESH = """
import json, sys
import mlflow
from genreclf.config import DataConfig
from genreclf.data.covers import load_covers
from genreclf.metrics import classification_metrics
tiny = json.loads(sys.argv[1])
data = DataConfig(data=tiny["data"], genres=tiny["genres"], cache_size=tiny["cache_size"])
covers = load_covers(data, progress=False)
model = mlflow.pyfunc.load_model("models:/album-genre-cnn@challenger").unwrap_python_model().predictor
te = covers.indices("test")
proba = model.predict_proba([covers.images[i] for i in te])
print(json.dumps({"n": len(te), **classification_metrics(covers.labels[te], proba, covers.genres, "test")}))
"""


def test_test_metrics_equal_a_fresh_evaluation_of_the_registered_model(straight):
    run = straight["runs"][0]
    out = subprocess.run([sys.executable, "-c", FRESH, json.dumps(TINY)], env=straight["env"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    fresh = json.loads(out.stdout.strip().splitlines()[-1])
    assert fresh.pop("n") == 8
    logged = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
    assert set(fresh) == set(logged) and len(logged) == 2 + 3 * 4
    assert fresh == pytest.approx(logged, abs=1e-12)


def test_killed_torchrun_resumes_to_the_uninterrupted_result(straight):
    env = straight["env"]
    proc = subprocess.Popen(torchrun(env, experiment="killed", register="false"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    client, run, deadline = mlflow.MlflowClient(), None, time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            runs = mlflow.search_runs(experiment_names=["killed"], output_format="list")
            if runs and "checkpoint_epoch" in client.get_run(runs[0].info.run_id).data.tags:
                run = runs[0]
                break
            time.sleep(0.2)
    finally:
        kill_tree(proc)
    assert run is not None, f"no checkpoint appeared: {proc.stderr.read().decode()[-3000:]}"
    killed = client.get_run(run.info.run_id)
    assert killed.info.status == "RUNNING" and int(killed.data.tags["checkpoint_epoch"]) < 2

    out = subprocess.run(torchrun(env, resume=run.info.run_id), env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-4000:]
    resumed = client.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed_after_epoch"] == killed.data.tags["checkpoint_epoch"]
    reference = straight["runs"][0].info.run_id
    for key in PER_EPOCH[:4] + ("val_macro_f1",):
        assert history(run.info.run_id, key) == history(reference, key), key
    for key in ("test_accuracy", "test_macro_f1"):
        assert resumed.data.metrics[key] == straight["runs"][0].data.metrics[key], key
