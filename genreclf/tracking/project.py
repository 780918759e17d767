"""Project steps: child runs of the ``main`` pipeline, and reuse of a step that already ran.

Each step is the project's own entry point, run through ``mlflow.projects.run`` with
``env_manager="local"`` as a child run of the parent, like MLflow's multistep workflow example.
"""
from __future__ import annotations

import json
import os
from typing import Any

import mlflow
import mlflow.projects
from mlflow.entities import Run
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_PROJECT_ENTRY_POINT

from genreclf.tracking.owner import tag_failure
from genreclf.tracking.runs import client, rename_run, search_runs


def name_project_run(name: str) -> None:
    """Under `mlflow run`, give the project run a readable name at once, so a run that fails before
    its entry point names it properly is not left with MLflow's random one (``redolent-rat-490``)."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        rename_run(run_id, name)


def tag_project_failure(exc: BaseException) -> None:
    """Under `mlflow run`, record why the command failed on the project run, which MLflow marks FAILED
    without a reason when the error comes before the entry point's own run (unknown genre, no weights)."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        tag_failure(client(), run_id, exc)


def child_runs(experiment: str, parent_run_id: str) -> list[Run]:
    return search_runs(experiment, f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent_run_id}'")


def find_finished_run(experiment: str, entry_point: str, params: dict[str, Any], commit: str) -> Run | None:
    """A FINISHED run of ``entry_point`` with these parameters at this git commit, if any."""
    for run in search_runs(experiment, f"tags.entry_point = '{entry_point}' and attributes.status = 'FINISHED'"):
        if commit and run.data.tags.get("git_commit") != commit:
            continue
        logged = run.data.tags.get("step_params")
        if logged == json.dumps(params, sort_keys=True, default=str):
            return run
    return None


def active_experiment_name() -> str:
    """The experiment of the active run (under `mlflow run`: the one the user chose for the project)."""
    return mlflow.get_experiment(mlflow.active_run().info.experiment_id).name


def create_child_run(experiment: str, parent_run_id: str, entry_point: str, tags: dict[str, Any]) -> str:
    """Create (not start) a run of ``entry_point``, named after it and nested under ``parent_run_id``; the
    project step then fills it (``mlflow.projects.run`` given a run id leaves these tags to its caller)."""
    exp = mlflow.get_experiment_by_name(experiment)
    reserved = {MLFLOW_PARENT_RUN_ID: parent_run_id, MLFLOW_PROJECT_ENTRY_POINT: entry_point}
    run = client().create_run(exp.experiment_id, run_name=entry_point,
                              tags={**reserved, **{k: str(v) for k, v in tags.items()}})
    return run.info.run_id


def run_project_step(project_dir: str, entry_point: str, parameters: dict[str, Any], run_id: str) -> None:
    """Run one MLproject entry point in the current environment, filling the run ``run_id``.

    Raises mlflow's ExecutionException when the step fails (its run is then marked FAILED).
    """
    mlflow.projects.run(uri=str(project_dir), entry_point=entry_point, parameters=parameters,
                        env_manager="local", run_id=run_id, synchronous=True)
