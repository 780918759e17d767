"""configure() inside a run keeps that run's experiment, so nested runs stay with their parent:
a tuning refit trains through train_cnn's entry point, which configures MLflow again."""
from __future__ import annotations

import mlflow
from mlflow.tracking._tracking_service.client import TrackingServiceClient

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


def test_an_experiment_created_by_another_process_at_the_same_moment_becomes_active(workdir, monkeypatch):
    """The race of two workers starting together on a new experiment: the name lookup misses, creation
    then fails with RESOURCE_ALREADY_EXISTS, and MLflow returns the experiment without activating it, so
    runs would land in Default. configure() must still activate it."""
    tracking.configure("warm-up")  # the store exists; the next lookup is the one that races
    exp_id = mlflow.MlflowClient().create_experiment("raced")  # "the other process" created it
    real = TrackingServiceClient.get_experiment_by_name
    calls = []

    def lookup_misses_once(self, name):  # the other process had not created it yet when we looked
        calls.append(name)
        return None if len(calls) == 1 else real(self, name)

    monkeypatch.setattr(TrackingServiceClient, "get_experiment_by_name", lookup_misses_once)
    tracking.configure("raced")
    monkeypatch.undo()
    assert calls and calls[0] == "raced"  # the race branch was taken
    with mlflow.start_run() as run:
        pass
    assert run.info.experiment_id == exp_id
