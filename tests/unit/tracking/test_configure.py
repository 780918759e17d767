"""configure() inside a run keeps that run's experiment, so nested runs stay with their parent (issue 14.1):
a tuning refit trains through train_cnn's entry point, which configures MLflow again."""
from __future__ import annotations

import mlflow

from genreclf.tracking import runs as tracking


def test_a_nested_run_stays_in_its_parents_experiment(workdir):
    mlflow.set_experiment("where-the-parent-is")
    with mlflow.start_run() as parent:
        tracking.configure("album-genre")  # the experiment parameter names another experiment
        with mlflow.start_run(nested=True) as child:
            pass
    client = mlflow.MlflowClient()
    assert client.get_run(child.info.run_id).info.experiment_id == parent.info.experiment_id
    assert client.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert mlflow.get_experiment_by_name("album-genre") is None
