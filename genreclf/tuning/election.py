"""Agreements between the workers of one study, whichever host they run on.

Workers agree through the study's user attributes in the Optuna storage, read and written under the
study lock (``storage.study_lock``: an advisory lock on PostgreSQL, so workers on every host):

* ``mlflow_parent_run_id``: the study's one MLflow parent run - whoever starts first creates it;
* ``refit_claim``: which worker refits the best trial - the first to see the study finished; the claim
  records the claimant's identity, so it expires with the claimant (``tracking/liveness.py``).
"""
from __future__ import annotations

import logging

import optuna

from genreclf.tracking import liveness, runs
from genreclf.tuning.storage import finished, worker_record

log = logging.getLogger(__name__)


def elect_parent(study: optuna.Study, lock, candidate: str | None, name: str) -> tuple[str, bool]:
    """The study's one MLflow parent run, whoever starts first: (run id, whether this process created it).

    Workers agree through the study's user attribute ``mlflow_parent_run_id`` in the Optuna storage,
    read and written under the study lock (an advisory lock on PostgreSQL: workers on every host).
    ``candidate`` (the `mlflow run` project run) becomes the parent if the study has none yet, or if its
    parent lives in another experiment: MLflow nests runs only inside one experiment, so this experiment
    gets a parent of its own (the study itself goes on).
    """
    with lock:
        parent = study.user_attrs.get("mlflow_parent_run_id")
        if parent and runs.run_exists(parent):
            if runs.in_active_experiment(parent):
                return parent, False
            log.info("study %s: its earlier trials are under run %s in experiment %r; a new parent starts here",
                     study.study_name, parent, runs.experiment_name_of(parent))
        parent = candidate or runs.create_run(name, {"tune_role": "study"})
        lock.verify()
        study.set_user_attr("mlflow_parent_run_id", parent)
        return parent, True


def claim_refit(study: optuna.Study, lock) -> bool:
    """Whether this worker refits: the first to finish claims the current best trial (study attribute
    ``refit_claim``, with the claimant's identity); the others, and a resume whose best has not changed,
    leave it. A claim whose claimant died before the refit finished is taken over; one whose claimant
    cannot be judged (another host or container) stays with it."""
    if not any(t.state.name == "COMPLETE" for t in finished(study)):
        return True  # nothing to refit: summarise() and refit() say so
    with lock:
        best = study.best_trial.number
        claim = study.user_attrs.get("refit_claim")
        if claim is not None and claim.get("trial") == best:
            owner = claim.get("worker") or {}
            if liveness.alive(owner) is not False or refitted(study, best):
                log.info("trial %d is refitted by %s", best, liveness.describe(owner))
                return False
            log.warning("trial %d: the worker that claimed its refit (%s) is gone and the refit is not recorded; "
                        "this worker takes it over", best, liveness.describe(owner))
        lock.verify()  # the claim below is sound only while the lock still keeps the others out
        study.set_user_attr("refit_claim", {"trial": best, "worker": worker_record()})
        return True


def refitted(study: optuna.Study, trial: int) -> bool:
    """Whether the study's parent run records a finished refit of ``trial`` (``tune.refit`` tags it)."""
    parent = study.user_attrs.get("mlflow_parent_run_id")
    if not parent:
        return False
    tags = runs.get_run(parent).data.tags
    return tags.get("refit_trial") == str(trial) and bool(tags.get("refit_run_id"))


def counts(study: optuna.Study) -> dict:
    states = [t.state.name for t in finished(study)]
    return {"n_finished": len(states), "n_complete": states.count("COMPLETE"), "n_pruned": states.count("PRUNED"),
            "n_fail": states.count("FAIL")}


def refit_done_by_other(parent_id: str) -> dict:
    """What the parent run records of the refit another worker made (nothing yet, if it still runs)."""
    parent = runs.get_run(parent_id).data
    return {**{k: v for k, v in parent.metrics.items() if k.startswith("test_")},
            "refit_run_id": parent.tags.get("refit_run_id"), "model_version": parent.tags.get("refit_model_version")}
