"""Tuning workers: the loop that claims slots and runs trials, one MLflow child run per trial.

A trial records which process runs it (host, pid), samples its configuration from the search space,
opens a child run of the study's parent run, reports every step (per-step metrics to MLflow, the
value to Optuna's pruner) and closes with tags ``trial_number`` / ``optuna_state`` and its timings.
An exception, a NaN or an out-of-memory error makes it FAIL; the worker goes on with the next one.
Storage, budget, stale trials: ``tuning/storage.py``; locks: ``tuning/locks.py``.
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import math
import os
import time
from typing import Callable

import optuna
import torch

from genreclf.tracking import liveness, runs
from genreclf.tuning.locks import FileLock
from genreclf.tuning.objectives import make_objective
from genreclf.tuning.search import Search
from genreclf.tuning.space import SearchSpace, load_space
from genreclf.tuning.storage import (
    StudyLock,
    finished,
    is_rdb,
    open_storage,
    open_study,
    queued,
    reap_stale,
    store_lock,
    study_lock,
    used_slots,
    worker_record,
)

log = logging.getLogger(__name__)
FINISHED_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
WAIT_S = 1.0  # how often a worker with no free slot looks again


# ---------------------------------------------------------------- one trial = one child run
class TrialRun:
    """The MLflow child run of one trial; every write goes through the store lock."""

    def __init__(self, search: Search, trial: optuna.Trial, store: FileLock):
        self.search, self.trial, self.store = search, trial, store
        self.bookkeeping = 0.0   # seconds spent on MLflow / Optuna writes while the objective runs
        self.last = math.nan     # the last reported value: a pruned trial's value

    def open(self, cfg, params: dict) -> None:
        name = f"{self.search.kind}-trial-{self.trial.number:03d}"
        tags = {"trial_number": self.trial.number, "optuna_state": "RUNNING", "study_name": self.search.study_name,
                "tune_role": "trial", "searched_params": ",".join(sorted(params))}
        with self.store:
            self._cm = runs.start_run(name, f"tune_{self.search.kind}", self.search.kind,
                                      parent_run_id=self.search.parent_run_id,
                                      tags={k: str(v) for k, v in tags.items()})
            self.run_id = self._cm.__enter__()
            runs.log_params(dataclasses.asdict(cfg))
        self.trial.set_user_attr("mlflow_run_id", self.run_id)

    def report(self, step: int, metrics: dict[str, float], value: float) -> None:
        """Log one step's metrics, report ``value`` to Optuna, raise TrialPruned when told to."""
        t0 = time.perf_counter()
        with self.store:
            runs.log_metrics(metrics, step=step)
        self.last = float(value)
        self.trial.report(self.last, step)
        prune = self.trial.should_prune()
        self.bookkeeping += time.perf_counter() - t0
        if prune:
            raise optuna.TrialPruned(f"step {step}: {value:.4f} is below the pruner's threshold")

    def close(self, state: str, metrics: dict[str, float], exc: BaseException | None = None) -> None:
        tags = {"optuna_state": state}
        if exc is not None and state == "FAIL":
            tags["fail_reason"] = f"{type(exc).__name__}: {exc}"[:500]
        with self.store:
            runs.set_tags(tags)
            runs.log_metrics(metrics)
            if exc is None or state == "PRUNED":
                self._cm.__exit__(None, None, None)
            else:
                self._cm.__exit__(type(exc), exc, exc.__traceback__)


def run_trial(trial: optuna.Trial, search: Search, space: SearchSpace, objective: Callable, slots: StudyLock,
              store: FileLock) -> float:
    t0 = time.perf_counter()
    try:
        trial.set_user_attr("worker", worker_record())
    finally:
        slots.release()  # the slot is claimed (the trial exists and says whose it is): let others claim
    params = space.suggest(trial)
    cfg = dataclasses.replace(search.resolved.section(search.kind), **params)
    run = TrialRun(search, trial, store)
    run.open(cfg, params)
    work_start, state, value, err = time.perf_counter(), "FAIL", math.nan, None
    try:
        value = float(objective(cfg, run.report))
        if not math.isfinite(value):
            raise FloatingPointError(f"objective returned {value}")
        state = "COMPLETE"
    except optuna.TrialPruned as exc:
        state, err, value = "PRUNED", exc, run.last
    except BaseException as exc:  # noqa: BLE001 - recorded as FAIL, then re-raised for Optuna
        err = exc
        _free_memory()
        if isinstance(exc, KeyboardInterrupt):
            requeue(trial, params)
    work = time.perf_counter() - work_start - run.bookkeeping
    book = time.perf_counter() - t0 - work
    trial.set_user_attr("work_s", work)
    trial.set_user_attr("bookkeeping_s", book)
    # only a COMPLETE trial has a value: a pruned one's last intermediate value (which may beat the
    # study's best on a lucky fold/epoch) is kept apart, so trial_value never reads above the best
    final = {"trial_value": value} if state == "COMPLETE" else {"trial_last_value": value}
    run.close(state, {**final, "trial_work_s": work, "trial_bookkeeping_s": book}, err)
    if err is not None:
        raise err
    return value


def requeue(trial: optuna.Trial, params: dict) -> None:
    trial.study.enqueue_trial(params, user_attrs={"retry_of": trial.number})


def _free_memory() -> None:
    """After a failure (out of memory, most likely): give the next trial a clean slate."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- the worker loop
def work(search: Search, objective: Callable, max_resource: int, on_trial: Callable[[], None] | None = None) -> int:
    """Run trials until the study holds ``n_trials`` finished ones or the deadline passes.

    When every slot is taken but some trial still runs elsewhere (another worker, maybe on another
    host), wait for it: it may die, and then this worker fails it (heartbeat) and runs its retry. The
    wait ends when no trial of the study moves for ``stall_bound`` seconds (see ``stalled``). A
    queued retry always runs: if the dead trial was found only after every other slot was used, the
    retry is one trial over ``n_trials`` rather than a configuration silently never run.
    """
    uri = runs.configure(search.resolved.data.experiment)
    # trials nest under the study's parent, so they go where it is (under `mlflow run`: the experiment
    # of --experiment-name / MLFLOW_EXPERIMENT_NAME, not necessarily the `experiment` parameter)
    runs.use_experiment_of(search.parent_run_id)
    if search.kind == "cnn" and search.n_workers > 1:  # share the cores instead of oversubscribing them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // search.n_workers))
    space = load_space(search.space_path, type(search.resolved.section(search.kind)))
    slots, store, done = study_lock(search.storage, search.study_name, uri), store_lock(uri), 0
    tune = search.tune
    study = open_study(search, open_storage(search.storage, search.n_workers, store, tune.heartbeat_interval,
                                            tune.grace_period), max_resource)
    stop_at = optuna.study.MaxTrialsCallback(search.n_trials, states=FINISHED_STATES)
    stall = Stall(stall_bound(tune))
    while search.deadline is None or time.time() < search.deadline:
        slots.acquire()
        try:
            reap_stale(study, is_rdb(search.storage), store)
            if used_slots(study) >= search.n_trials and not queued(study):
                if len(finished(study)) >= search.n_trials or stalled(study, stall):
                    break
                slots.release()
                time.sleep(WAIT_S)  # a trial runs elsewhere: wait for it to finish or to be failed
                continue
            stall.reset()
            # a full gc costs ~0.3 s: worth it between CNN trials (tensors in cycles), not between forests
            study.optimize(lambda t: run_trial(t, search, space, objective, slots, store), n_trials=1,
                           catch=(Exception,), gc_after_trial=search.kind == "cnn", callbacks=[stop_at])
        finally:
            slots.release()
        done += 1
        if on_trial:
            on_trial()
    return done


class Stall:
    """Seconds since the study last moved (a trial started, reported a step or ended)."""

    def __init__(self, bound_s: float, clock: Callable[[], float] = time.monotonic):
        self.bound_s, self.clock = bound_s, clock
        self.reset()

    def reset(self) -> None:
        self._seen: tuple | None = None
        self._since = self.clock()

    def idle(self, study: optuna.Study) -> float:
        now = progress(study)
        if now != self._seen:
            self._seen, self._since = now, self.clock()
        return self.clock() - self._since


def stall_bound(tune) -> float:
    """How long a worker waits on trials of other workers while none of them moves: long enough for the
    heartbeat to fail a dead worker's trial (RDB storages; journal storages fail it at once on this host)."""
    return tune.grace_period + 2 * tune.heartbeat_interval


def progress(study: optuna.Study) -> tuple:
    return tuple((t.number, t.state.value, len(t.intermediate_values)) for t in study.get_trials(deepcopy=False))


def stalled(study: optuna.Study, stall: Stall) -> bool:
    """Whether to stop waiting for the trials that run elsewhere: none has moved for ``stall.bound_s``.

    Such a trial belongs to a live worker that reports nothing for that long, or to one this process cannot
    judge (another host or container, on a journal storage); it is left to its worker and the study stays
    resumable: a later run fails the trial once its worker is gone and runs the retry."""
    idle = stall.idle(study)
    if idle < stall.bound_s:
        return False
    others = [f"trial {t.number} ({liveness.describe(t.user_attrs.get('worker') or {})})"
              for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
    log.warning("stopped waiting after %.0f s for %s: no trial moved in that time; the study stays resumable",
                idle, ", ".join(others) or "the running trials")
    return True


def worker_main(search: Search) -> None:
    """Entry point of a spawned worker process."""
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s worker-{search.worker} %(levelname)s %(name)s: %(message)s")
    objective, max_resource = make_objective(search.kind, search.resolved, progress=False)
    n = work(search, objective, max_resource)
    log.info("worker %d ran %d trial(s)", search.worker, n)
