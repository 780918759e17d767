"""`mlflow run . -e train_cnn` from the repository root, into a store of its own."""
from __future__ import annotations

import os
import subprocess

import mlflow
import pytest
from helpers import ROOT, script, subprocess_env

from genreclf import CNN_MODEL_NAME


def metric_steps(run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in mlflow.MlflowClient().get_metric_history(run_id, key)}


@pytest.mark.slow
def test_mlflow_run_entry_point(tmp_path):
    """`mlflow run . -e train_cnn ... --env-manager local` from the repo root, into a tmp store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = subprocess_env(uri, tmp_path / "cache", CUDA_VISIBLE_DEVICES="")
    mlflow.set_tracking_uri(uri)
    # artifacts go to tmp, never to ./mlruns in the repository
    mlflow.MlflowClient().create_experiment("cnn-cli", artifact_location=(tmp_path / "artifacts").as_uri())
    before = set(os.listdir(ROOT))
    cmd = [script("mlflow"), "run", ".", "-e", "train_cnn", "--experiment-name", "cnn-cli",
           "--env-manager", "local", "-P", "data=synthetic:12", "-P", "pretrained=false", "-P", "epochs=2",
           "-P", "image_size=64", "-P", "cache_size=64", "-P", "experiment=cnn-cli", "-P", "gradcam_per_genre=1"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    run = mlflow.search_runs(experiment_names=["cnn-cli"], output_format="list")[0]
    assert run.info.status == "FINISHED" and run.data.tags["entry_point"] == "train_cnn"
    assert sorted(metric_steps(run.info.run_id, "train_loss")) == [0, 1]
    assert "test_macro_f1" in run.data.metrics and "mlflow.project.entryPoint" in run.data.tags
    assert mlflow.MlflowClient().get_model_version_by_alias(CNN_MODEL_NAME, "challenger").run_id == run.info.run_id
    assert set(os.listdir(ROOT)) - before <= {"test-output"}, "the run left files in the repository"
