"""The console script: help lists the entry points; user errors are messages, not tracebacks."""
from __future__ import annotations

import os
import subprocess

import mlflow

from genreclf.commands import commands


def test_help_lists_every_entry_point(genreclf_cmd):
    out = subprocess.run(genreclf_cmd + ["--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for name in list(commands()) + ["predict"]:
        assert name in out.stdout


def test_unknown_genre_is_a_message_not_a_traceback(genreclf_cmd, workdir):
    out = subprocess.run(genreclf_cmd + ["features", "--data", "synthetic:5", "--genres", "Rock,Polka"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "unknown genre(s) ['Polka']" in out.stderr and "Traceback" not in out.stderr


def test_an_early_failure_under_mlflow_run_says_why_on_its_run(genreclf_cmd, workdir):
    client = mlflow.MlflowClient()
    run = client.create_run(client.create_experiment("project-run"))  # what `mlflow run` creates first
    env = {**os.environ, "MLFLOW_RUN_ID": run.info.run_id}
    out = subprocess.run(genreclf_cmd + ["features", "--data", "synthetic:5", "--genres", "Rock,Polka"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 2
    tags = client.get_run(run.info.run_id).data.tags
    assert tags["mlflow.runName"] == "features" and "unknown genre(s) ['Polka']" in tags["failure_reason"]


def test_bad_parameter_type_is_named(genreclf_cmd, workdir):
    out = subprocess.run(genreclf_cmd + ["train_cnn", "--epochs", "ten"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "epochs='ten': expected int" in out.stderr
