"""Which experiment new runs go to.

MLflow keeps its active experiment in private module state, with no public getter: the experiment
genreclf activates goes through :func:`activate`, which remembers it, and :func:`active_experiment_id`
answers from that memory (before any activation: the experiment MLflow's environment variables name).
"""
from __future__ import annotations

import mlflow
from mlflow.entities import Experiment
from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID, MLFLOW_EXPERIMENT_NAME
from mlflow.tracking.default_experiment import DEFAULT_EXPERIMENT_ID

_activated: str | None = None  # the experiment this process last made active


def activate(experiment_id: str) -> Experiment:
    """Make an experiment MLflow's active one (``mlflow.set_experiment``) and remember it."""
    global _activated
    exp = mlflow.set_experiment(experiment_id=experiment_id)
    _activated = exp.experiment_id
    return exp


def active_experiment_id() -> str | None:
    """The experiment new runs go to, or None when there is none yet.

    Before :func:`activate`, MLflow's own choice: the experiment named by MLFLOW_EXPERIMENT_NAME (as
    ``mlflow run`` and the README export it) when it exists, else MLFLOW_EXPERIMENT_ID, else Default.
    """
    if _activated:
        return _activated
    name, exp_id = MLFLOW_EXPERIMENT_NAME.get(), MLFLOW_EXPERIMENT_ID.get()
    if not name:
        return exp_id or DEFAULT_EXPERIMENT_ID
    try:
        exp = mlflow.get_experiment_by_name(name)
    except Exception:  # no experiment resolvable yet (e.g. an unreachable store)
        return None
    return exp.experiment_id if exp is not None and exp_id in (None, "", exp.experiment_id) else None
