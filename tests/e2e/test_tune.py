"""Optuna tuning: real Optuna journal storage, real MLflow store, real processes.

* tune_rf through `mlflow run ... --env-manager local`: one parent, n_trials children with states,
  the best refitted and registered @challenger, the plots on the parent;
* tune_cnn: per-epoch values and pruned trials;
* the search never reads the test split (corrupt it: the trial values do not move);
* failures (raise, NaN, out of memory) are FAIL trials and the study goes on;
* a study killed mid-trial resumes - here with two workers sharing it - to exactly n_trials finished
  trials: no duplicates, no lost trials, no "database is locked".
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from helpers import BIN, ROOT

from genreclf import CNN_MODEL_NAME, RF_MODEL_NAME
from genreclf.config import CNNConfig, DataConfig, Resolved, RFConfig, TuneConfig
from genreclf.data.covers import load_covers

DATA = {"data": "synthetic:20", "cache_size": 64}
FAST_RF_SPACE = """
n_estimators: {type: int, low: 10, high: 40, step: 10}
max_depth: {type: int, low: 0, high: 12, step: 4}
min_samples_leaf: {type: int, low: 1, high: 4}
max_features: {type: categorical, choices: [sqrt, "0.5"]}
class_weight: {type: categorical, choices: [none, balanced]}
"""
SLOW_RF_SPACE = "n_estimators: {type: int, low: 400, high: 600, step: 50}\n"  # ~2 s a trial: time to kill one


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def child_runs(experiment: str, parent_id: str, role: str = "trial") -> list:
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list",
                              filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return [r for r in runs if r.data.tags.get("tune_role") == role]


def journal_study(workdir: Path, name: str) -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(workdir / "optuna" / f"{name}.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def cli(workdir: Path, *args: str) -> list[str]:
    return [str(BIN / "genreclf"), "tune_rf", "--data", "synthetic:20", "--cache_size", "64", "--n_jobs", "1",
            "--experiment", "tune", *args]


def resolved(kind: str, space: str, **over) -> Resolved:
    model = RFConfig(n_jobs=1) if kind == "rf" else CNNConfig(
        pretrained=False, image_size=48, epochs=3, batch_size=16, freeze="backbone", patience=0,
        gradcam_per_genre=0, max_steps_per_epoch=2, tta=False)
    tune = TuneConfig(space=space, **{k: v for k, v in over.items() if hasattr(TuneConfig, k)})
    return Resolved(f"tune_{kind}", {"data": DataConfig(experiment="tune", **DATA), kind: model, "tune": tune})


# ------------------------------------------------------------------------------------------ tune_rf
@pytest.mark.slow
def test_tune_rf_through_mlflow_run(workdir):
    """`mlflow run . -e tune_rf` leaves one parent with n_trials children, plots, and a challenger."""
    exp = "tune-cli"
    mlflow.MlflowClient().create_experiment(exp, artifact_location=(workdir / "artifacts").as_uri())
    space = write(workdir / "space.yaml", FAST_RF_SPACE)
    before = set(os.listdir(ROOT))
    cmd = [str(BIN / "mlflow"), "run", str(ROOT), "-e", "tune_rf", "--env-manager", "local", "--experiment-name", exp,
           "-P", "data=synthetic:20", "-P", "cache_size=64", "-P", "n_trials=4", "-P", "n_jobs=1",
           "-P", f"space={space}", "-P", "study_name=cli-study"]  # experiment: the default, not exp
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert set(os.listdir(ROOT)) - before <= {"test-output"}, "the run left files in the repository"

    parent = [r for r in mlflow.search_runs(experiment_names=[exp], output_format="list")
              if r.data.tags.get("tune_role") == "study"]
    assert len(parent) == 1 and "mlflow.project.entryPoint" in parent[0].data.tags  # the project run itself
    parent = parent[0]
    trials = child_runs(exp, parent.info.run_id)
    assert sorted(int(r.data.tags["trial_number"]) for r in trials) == [0, 1, 2, 3]
    assert all(r.data.tags["optuna_state"] in {"COMPLETE", "PRUNED", "FAIL"} for r in trials)
    assert all(r.info.status == "FINISHED" and "n_estimators" in r.data.params for r in trials)
    steps = mlflow.MlflowClient().get_metric_history(trials[0].info.run_id, "cv_macro_f1")
    assert [m.step for m in steps][:2] == [0, 1]  # the running CV mean, reported per fold

    study = journal_study(workdir, "cli-study")
    assert len([t for t in study.trials if t.state.is_finished()]) == 4
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    assert parent.data.tags["best_n_estimators"] == str(study.best_params["n_estimators"])
    # the parent shows the best configuration as its params; a pruned trial has no trial_value
    assert parent.data.params["n_estimators"] == str(study.best_params["n_estimators"])
    assert all(r.data.metrics.get("trial_value", -1) <= study.best_value + 1e-12 for r in trials)
    assert all("trial_value" not in r.data.metrics for r in trials if r.data.tags["optuna_state"] == "PRUNED")
    assert 0 <= parent.data.metrics["test_macro_f1"] <= 1 and parent.data.metrics["study/n_finished"] == 4
    pngs = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "tune")}
    assert {"tune/optimization_history.png", "tune/param_importances.png", "tune/parallel_coordinate.png",
            "tune/intermediate_values.png"} <= pngs

    refit = child_runs(exp, parent.info.run_id, role="refit")
    assert len(refit) == 1 and refit[0].data.tags["study_name"] == "cli-study"
    version = mlflow.MlflowClient().get_model_version_by_alias(RF_MODEL_NAME, "challenger")
    assert version.run_id == refit[0].info.run_id and version.tags["tuned_trial"] == str(study.best_trial.number)
    assert refit[0].data.params["n_estimators"] == str(study.best_params["n_estimators"])
    # the experiment parameter (default album-genre) differs from the run's: trials and refit follow the
    # parent's experiment, nothing lands in album-genre
    assert not mlflow.search_runs(experiment_names=["album-genre"], output_format="list")


# ------------------------------------------------------------------------------------------ test split
def test_search_never_reads_the_test_split(workdir):
    """Replace every test cover by noise and shuffle the test labels: no trial value moves."""
    from genreclf.features.cover25 import features_for
    from genreclf.tuning.objectives import make_objective, subset, without_test
    covers = load_covers(DataConfig(**DATA), progress=False)
    te = covers.indices("test")
    images = np.array(covers.images)
    images[te] = np.random.default_rng(0).integers(0, 256, images[te].shape, dtype=np.uint8)
    labels = covers.labels.copy()
    labels[te] = np.roll(labels[te], 1)
    corrupted = dataclasses.replace(covers, images=images, labels=labels, digest="corrupted-" + covers.digest)
    assert not np.array_equal(features_for(subset(covers, "test", tag="t"), progress=False).to_numpy(),
                              features_for(subset(corrupted, "test", tag="t"), progress=False).to_numpy())
    assert "test" not in set(without_test(covers).split) and not set(without_test(covers).ids) & set(covers.ids[te])

    def values(kind: str, cover_set, configs) -> list[list[float]]:
        objective, _ = make_objective(kind, resolved(kind, ""), cover_set, progress=False)
        out = []
        for cfg in configs:
            seen: list[float] = []
            final = objective(cfg, lambda step, metrics, value, seen=seen: seen.append(value))
            out.append(seen + [final])
        return out
    rf = [RFConfig(n_estimators=n, max_depth=d, n_jobs=1) for n, d in ((20, 0), (40, 4))]
    assert values("rf", covers, rf) == values("rf", corrupted, rf)
    cnn = [dataclasses.replace(resolved("cnn", "").sections["cnn"], epochs=2)]
    clean = values("cnn", covers, cnn)
    assert clean == values("cnn", corrupted, cnn) and len(clean[0]) == 3  # 2 epochs + the final value


# ------------------------------------------------------------------------------------------ failures
def test_failed_trials_are_recorded_and_the_study_goes_on(workdir):
    """An exception, a NaN and an out-of-memory error each make a FAIL trial; the next trial runs."""
    import torch

    from genreclf.tracking import runs as tracking
    from genreclf.tuning.search import Search
    from genreclf.tuning.worker import work
    space = write(workdir / "space.yaml", "n_estimators: {type: int, low: 10, high: 20}\n")
    res = resolved("rf", space, n_trials=4)
    outcomes = iter([ValueError("bad configuration"), float("nan"), torch.OutOfMemoryError("CUDA out of memory"), 0.5])

    def objective(cfg, report):
        report(0, {"cv_macro_f1": 0.4}, 0.4)
        out = next(outcomes)
        if isinstance(out, BaseException):
            raise out
        return out
    tracking.configure("tune")
    with tracking.start_run("parent", "tune_rf", "rf") as parent:
        search = Search("rf", res, "failing", str(workdir / "optuna" / "failing.journal"), parent, 4, None, space)
        assert work(search, objective, max_resource=1) == 4
    study = journal_study(workdir, "failing")
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL", "FAIL", "COMPLETE"]
    runs = sorted(child_runs("tune", parent), key=lambda r: int(r.data.tags["trial_number"]))
    assert [r.data.tags["optuna_state"] for r in runs] == ["FAIL", "FAIL", "FAIL", "COMPLETE"]
    assert [r.info.status for r in runs] == ["FAILED", "FAILED", "FAILED", "FINISHED"]
    reasons = [r.data.tags.get("fail_reason", "") for r in runs]
    assert "bad configuration" in reasons[0] and "nan" in reasons[1] and "out of memory" in reasons[2]


# ------------------------------------------------------------------------------------------ tune_cnn
@pytest.mark.slow
def test_tune_cnn_reports_epochs_and_prunes(workdir):
    from genreclf.entrypoints.tune import run_tuning
    space = write(workdir / "space.yaml", "lr: {type: float, low: 1.0e-5, high: 3.0e-2, log: true}\n"
                                          "label_smoothing: {type: float, low: 0.0, high: 0.2}\n")
    out = run_tuning("cnn", resolved("cnn", space, n_trials=5, study_name="cnn-study"))
    assert out["n_finished"] == 5 and out["n_pruned"] >= 1 and out["n_complete"] >= 1
    trials = child_runs("tune", out["parent_run_id"])
    states = [r.data.tags["optuna_state"] for r in trials]
    assert len(trials) == 5 and states.count("PRUNED") == out["n_pruned"]
    client = mlflow.MlflowClient()
    for run in trials:  # one val_macro_f1 per epoch run; pruned trials stop early
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_macro_f1")]
        assert steps == list(range(len(steps))) and (len(steps) == 3) == (run.data.tags["optuna_state"] == "COMPLETE")
    pngs = {a.path for a in client.list_artifacts(out["parent_run_id"], "tune")}
    assert "tune/intermediate_values.png" in pngs and "tune/optimization_history.png" in pngs
    version = client.get_model_version_by_alias(CNN_MODEL_NAME, "challenger")
    assert version.run_id == out["refit_run_id"] and version.tags["tuned_study"] == "cnn-study"
    assert client.get_run(out["refit_run_id"]).data.tags["mlflow.parentRunId"] == out["parent_run_id"]
    assert client.get_run(out["parent_run_id"]).data.metrics["test_macro_f1"] == pytest.approx(out["test_macro_f1"])


# ------------------------------------------------------------------------------------------ resume + workers
@pytest.mark.slow
def test_killed_study_resumes_with_two_workers_to_exactly_n_trials(workdir):
    """Kill a study mid-trial; resume it with two workers: exactly n_trials finished trials, each once,
    the killed configuration retried, both workers busy, one parent run, no "database is locked"."""
    space = write(workdir / "space.yaml", SLOW_RF_SPACE)
    cmd = cli(workdir, "--n_trials", "8", "--study_name", "killme", "--space", space, "--register", "false")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal, deadline, killed = workdir / "optuna" / "killme.journal", time.time() + 120, None
    while time.time() < deadline and killed is None and proc.poll() is None:
        time.sleep(0.2)
        if not journal.exists():
            continue
        trials = journal_study(workdir, "killme").trials
        running = [t for t in trials if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs]
        if running and any(t.state.is_finished() for t in trials):
            proc.send_signal(signal.SIGKILL)
            killed = running[0]
    proc.wait(timeout=30)
    assert killed is not None, "never caught a trial running"
    parent_before = journal_study(workdir, "killme").user_attrs["mlflow_parent_run_id"]

    res = subprocess.run(cmd + ["--n_workers", "2"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "database is locked" not in res.stderr + res.stdout
    study = journal_study(workdir, "killme")
    assert sorted(t.number for t in study.trials) == list(range(8))  # no trial lost, none twice
    assert all(t.state.is_finished() for t in study.trials)
    assert [t.number for t in study.trials if t.state.name == "FAIL"] == [killed.number]
    retried = optuna.storages.RetryFailedTrialCallback.retried_trial_number
    retry = [t for t in study.trials if retried(t) == killed.number]
    assert len(retry) == 1 and retry[0].params == killed.params  # the interrupted configuration ran again
    resumed = [t for t in study.trials if t.number > killed.number]
    assert len({t.user_attrs["worker"]["pid"] for t in resumed}) == 2  # both workers ran trials

    assert study.user_attrs["mlflow_parent_run_id"] == parent_before  # one parent for the whole study
    runs = {int(r.data.tags["trial_number"]): r for r in child_runs("tune", parent_before)}
    assert sorted(runs) == list(range(8))
    assert runs[killed.number].info.status == "KILLED" and runs[killed.number].data.tags["optuna_state"] == "FAIL"
    assert all(r.info.status == "FINISHED" for n, r in runs.items() if n != killed.number)
    assert mlflow.MlflowClient().get_run(parent_before).info.status == "FINISHED"
