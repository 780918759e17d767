"""A team's set-up on real engines: PostgreSQL, `mlflow server` on it with proxied artifacts,
two tuning workers started independently (own processes, own working folders and caches, as on other hosts)
on one Optuna study in PostgreSQL, one of them SIGKILLed mid-trial.

Then: exactly n_trials finished trials, the killed one failed by the heartbeat and retried, one parent
run with every trial nested, one refit, one @challenger; `promote` and a `models:/...@champion`
prediction and a `score` job, all through the server from a fresh folder (in-process: the
command line of this interpreter, with nothing but the server's URI).
"""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
from helpers import script, subprocess_env

from genreclf import RF_MODEL_NAME, cli
from genreclf.data.images import encode
from genreclf.data.synthetic import make_cover

pytestmark = pytest.mark.slow
EXP, STUDY, N_TRIALS = "pg-tune", "s1", 6
# forests big enough that the survivor's remaining trials outlast the grace period even on a quiet machine
# (with 100-200 trees the survivor can finish every slot first): the dead trial is failed (and its retry queued) while
# slots are still free, so the retry is one of the n_trials
SPACE = "n_estimators: {type: int, low: 400, high: 600, step: 100}\nmin_samples_leaf: {type: int, low: 1, high: 4}\n"
DATA = ["--data", "synthetic:12", "--cache_size", "64", "--experiment", EXP]


def start_worker(server, folder: Path, storage: str, space: str) -> subprocess.Popen:
    """A worker as on another host: its own folder and cover cache, only the server's URI - no shared disk."""
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [script("genreclf"), "tune_rf", *DATA, "--n_jobs", "1", "--cv_folds", "2", "--storage", storage,
           "--study_name", STUDY, "--n_trials", str(N_TRIALS), "--space", space,
           "--heartbeat_interval", "1", "--grace_period", "3"]
    env = subprocess_env(server.uri, folder / "cache")
    return subprocess.Popen(cmd, cwd=folder, env=env, stdout=open(folder / "out.log", "w"), stderr=subprocess.STDOUT)


def load_study(storage: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=STUDY, storage=storage)
    except KeyError:  # not created yet
        return None


def kill_one_mid_trial(workers: dict[int, subprocess.Popen], storage: str, timeout: float = 240):
    """SIGKILL the first worker seen running a trial that has its MLflow run; return that trial."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.3)
        study = load_study(storage)
        for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)) if study else []:
            pid = t.user_attrs.get("worker", {}).get("pid")
            if pid in workers and "mlflow_run_id" in t.user_attrs and workers[pid].poll() is None:
                workers[pid].send_signal(signal.SIGKILL)
                workers[pid].wait(timeout=30)
                return pid, t
    pytest.fail("never caught a trial running")


def test_workers_on_postgres_through_tracking_server(postgres, tracking_server, tmp_path, monkeypatch, capsys):
    storage = postgres.create_database("optuna")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    # two independent workers started at once: they race to create Optuna's schema and the parent run
    procs = [start_worker(tracking_server, tmp_path / f"host{i}", storage, str(space)) for i in range(2)]
    workers = {p.pid: p for p in procs}
    killed_pid, killed = kill_one_mid_trial(workers, storage)
    for p in procs:
        if p.pid != killed_pid:
            p.wait(timeout=400)
    logs = {i: (tmp_path / f"host{i}" / "out.log").read_text() for i in range(2)}
    for i, p in enumerate(procs):
        assert p.pid == killed_pid or p.returncode == 0, logs[i][-3000:]
    assert not any("UniqueViolation" in text or "IntegrityError" in text for text in logs.values())

    study = load_study(storage)
    trials = study.get_trials()
    assert len(trials) == N_TRIALS and all(t.state.is_finished() for t in trials)  # exactly n_trials in total
    assert [t.number for t in trials if t.state.name == "FAIL"] == [killed.number]
    retry = [t for t in trials if optuna.storages.RetryFailedTrialCallback.retried_trial_number(t) == killed.number]
    assert len(retry) == 1 and retry[0].params == killed.params and retry[0].state.name != "FAIL"
    assert retry[0].user_attrs["worker"]["pid"] != killed_pid

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.uri)
    mlflow.set_tracking_uri(tracking_server.uri)
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(experiment_names=[EXP], output_format="list")
    parents = [r for r in runs if r.data.tags.get("tune_role") == "study"]
    assert [r.info.run_id for r in parents] == [study.user_attrs["mlflow_parent_run_id"]]  # one parent
    parent = parents[0].info.run_id
    by_trial = {int(r.data.tags["trial_number"]): r for r in runs if r.data.tags.get("tune_role") == "trial"}
    assert sorted(by_trial) == list(range(N_TRIALS))
    assert all(r.data.tags["mlflow.parentRunId"] == parent for r in by_trial.values())  # every trial nested
    dead = by_trial[killed.number]
    assert dead.info.status == "KILLED" and "no heartbeat" in dead.data.tags["fail_reason"]
    refits = [r for r in runs if r.data.tags.get("tune_role") == "refit"]
    assert len(refits) == 1 and refits[0].data.tags["mlflow.parentRunId"] == parent  # one refit
    assert int(refits[0].data.params["n_estimators"]) == study.best_params["n_estimators"]
    versions = client.search_model_versions(f"name = '{RF_MODEL_NAME}'")
    challenger = client.get_model_version_by_alias(RF_MODEL_NAME, "challenger")
    assert len(versions) == 1 and challenger.run_id == refits[0].info.run_id  # one @challenger
    # artifacts went through the server into its --artifacts-destination (clients wrote no local files)
    assert refits[0].info.artifact_uri.startswith("mlflow-artifacts:")
    assert any(tracking_server.artifacts.rglob("MLmodel"))
    assert not any((tmp_path / f"host{i}" / "mlruns").exists() for i in range(2))

    client_dir = tmp_path / "laptop"  # a fresh client: no store, no cache, only the server's URI
    client_dir.mkdir()
    monkeypatch.chdir(client_dir)
    monkeypatch.setenv("GENRECLF_CACHE", str(client_dir / "cache"))
    assert cli.main(["promote", *DATA, "--model_name", RF_MODEL_NAME]) == 0
    assert client.get_model_version_by_alias(RF_MODEL_NAME, "champion").version == challenger.version

    cover = client_dir / "cover.png"
    cover.write_bytes(encode(make_cover("Rock", 7, seed=99, size=64), "PNG"))
    champion = f"models:/{RF_MODEL_NAME}@champion"
    capsys.readouterr()
    assert cli.main(["predict", "--model", champion, str(cover)]) == 0
    expected = mlflow.pyfunc.load_model(champion).predict(pd.DataFrame({"image": [cover.read_bytes()]}))["genre"][0]
    assert capsys.readouterr().out.split()[1] == expected

    assert cli.main(["score", "--model", champion, "--input", str(client_dir), "--output", str(tmp_path / "preds"),
                     "--experiment", "pg-score"]) == 0
    assert list(pd.read_parquet(tmp_path / "preds" / "part-00000.parquet")["genre"]) == [expected]
    score_run = mlflow.search_runs(experiment_names=["pg-score"], output_format="list")
    assert len(score_run) == 1 and score_run[0].data.metrics["n_scored"] == 1
    assert not (client_dir / "mlruns").exists() and not (client_dir / "mlflow.db").exists()  # all through the server
