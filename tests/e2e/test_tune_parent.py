"""Two `tune_rf` processes started together on a new study: one parent run, one refit, one version."""
from __future__ import annotations

import os
import subprocess
import sys

import mlflow
from helpers import ROOT

from genreclf import RF_MODEL_NAME

# a search space of small forests: the race is about the study's parent and refit, not the search
SPACE = "n_estimators: {type: int, low: 5, high: 10}\nmin_samples_leaf: {type: int, low: 1, high: 3}\n"


def test_two_processes_on_a_new_study_share_one_parent_and_refit_once(workdir):
    (workdir / "space.yaml").write_text(SPACE)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "genreclf.cli", "tune_rf", "--data", "synthetic:8", "--genres", "Rock,Jazz,Pop",
           "--cache_size", "32", "--n_trials", "2", "--cv_folds", "2", "--n_jobs", "1", "--study_name", "race",
           "--experiment", "race", "--space", str(workdir / "space.yaml")]
    # the store exists already (two processes creating a fresh SQLite store race in MLflow's own
    # migrations); the study is new: that is the race this test is about
    mlflow.set_experiment("race")
    procs = [subprocess.Popen(cmd, env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=500)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    runs = mlflow.search_runs(experiment_names=["race"], output_format="list")
    parents = [r for r in runs if r.data.tags.get("tune_role") == "study"]
    refits = [r for r in runs if r.data.tags.get("tune_role") == "refit"]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
              and r.data.tags.get("tune_role") != "refit"]
    assert len(parents) == 1, [r.info.run_id for r in parents]
    assert len(refits) == 1 and len(trials) == 2
    versions = mlflow.MlflowClient().search_model_versions(f"name = '{RF_MODEL_NAME}'")
    assert len(versions) == 1
