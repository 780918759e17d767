"""`mlflow run . -e train_rf` from the repository root, into a store of its own."""
from __future__ import annotations

import subprocess

import mlflow
import pytest
from helpers import ROOT, script, subprocess_env

from genreclf import RF_MODEL_NAME


@pytest.mark.slow
def test_mlflow_run_train_rf_entry_point(tmp_path, session_store):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = subprocess_env(uri, session_store / "cache")
    # experiments made up front, so no artifact lands in ./mlruns of the repo the project runs from
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    for name in ("rf-project", "album-genre"):
        client.create_experiment(name, artifact_location=(tmp_path / "artifacts" / name).as_uri())
    cmd = [script("mlflow"), "run", ".", "-e", "train_rf", "-P", "data=synthetic:30",
           "-P", "cache_size=64", "-P", "n_estimators=100", "--env-manager", "local", "--experiment-name", "rf-project"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = client.get_experiment_by_name("rf-project")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["model_family"] == "rf"
    assert run.data.params["n_estimators"] == "100" and run.data.metrics["test_accuracy"] >= 0.6
    (version,) = client.search_model_versions(f"name='{RF_MODEL_NAME}'")
    assert version.run_id == run.info.run_id
    assert client.get_model_version_by_alias(RF_MODEL_NAME, "challenger").version == version.version
