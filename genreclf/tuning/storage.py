"""Where a study lives and how its workers stay out of each other's way.

* Storage: a journal file next to the MLflow store by default (``<store dir>/optuna/<study>.journal``),
  or any RDB URL (PostgreSQL/MySQL share one study between hosts).
* Budget: ``n_trials`` counts *finished* trials (COMPLETE + PRUNED + FAIL). A worker claims a slot
  under the study lock (count finished + running, then ``ask``), so parallel workers never overshoot
  or duplicate. The study lock is a PostgreSQL advisory lock on PostgreSQL storages (one lock for
  every host; the server drops it when a worker dies) and a file lock next to the journal otherwise
  (one host); ``tuning/locks.py`` bounds every wait for them. Optuna's ``MaxTrialsCallback`` alone
  would overshoot: it stops a worker only *after* its trial, so N workers can each start one at
  ``n_trials - 1``.
* Stale trials: a RUNNING trial whose worker process is gone (killed, OOM-killed) is marked FAIL,
  its MLflow run closed and its parameters queued again (``RetryFailedTrialCallback``) - found on
  RDB storages through Optuna's heartbeat (workers on any host), on journal files through the
  worker identity each trial records (``tracking/liveness.py``).
* Schema: two workers opening a fresh PostgreSQL storage at once would both create Optuna's tables
  (UniqueViolation); the first creates them under an advisory lock while the others wait.
* MLflow from several processes: writes are serialised through a file lock when the store is
  SQLite, because two writers upgrading their locks at once get "database is locked" at once,
  whatever the busy timeout.
"""
from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path

import optuna
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState

from genreclf.config import ConfigError
from genreclf.params import redact
from genreclf.tracking import liveness, runs
from genreclf.tuning.locks import AdvisoryLock, FileLock
from genreclf.tuning.search import Search

log = logging.getLogger(__name__)
HEARTBEAT_S = 60          # RDB storages: a trial silent for GRACE_S is failed by the next worker
GRACE_S = 300
MAX_RETRY = 2             # a configuration whose worker died is run again at most this often
RDB_PREFIXES = ("sqlite:", "postgresql", "mysql", "oracle", "mssql")


# ---------------------------------------------------------------- storage and study
def store_dir(tracking_uri: str) -> Path:
    """The directory of the MLflow store (Optuna journals and lock files live beside it)."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///"):]).resolve().parent
    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        return Path(tracking_uri.removeprefix("file://").removeprefix("file:")).resolve().parent
    return Path.cwd()


def storage_url(spec: str, study_name: str, tracking_uri: str) -> str:
    if spec:
        return spec
    path = store_dir(tracking_uri) / "optuna" / f"{study_name}.journal"
    if "://" in tracking_uri and not tracking_uri.startswith(("sqlite:", "file:")):
        # a tracking server has no folder of ours: the journal stays on this host
        log.info("study %s: journal %s on this host; workers on other hosts need --storage postgresql://...",
                 study_name, path)
    return str(path)


def is_rdb(url: str) -> bool:
    return url.startswith(RDB_PREFIXES)


def open_storage(url: str, n_workers: int = 1, store: FileLock | None = None, heartbeat: int = HEARTBEAT_S,
                 grace: int = GRACE_S) -> optuna.storages.BaseStorage:
    """The study's storage; ``store`` is the MLflow store lock for closing the runs of stale trials."""
    if not is_rdb(url):
        path = Path(url.removeprefix("journal:")).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    on_stale = functools.partial(_after_stale, store=store, why=f"no heartbeat for {grace} s: its worker is gone")
    try:
        with warnings.catch_warnings(), schema_lock(url):
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat options
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat, grace_period=grace,
                                              failed_trial_callback=on_stale)
    except ImportError as exc:
        raise ConfigError(f"storage={redact(url)}: database driver missing ({exc}); e.g. "
                          "pip install psycopg2-binary (PostgreSQL) or PyMySQL (mysql+pymysql://)") from None
    except Exception as exc:  # sqlalchemy errors: unreachable host, bad credentials, bad URL
        raise ConfigError(f"cannot open Optuna storage {redact(url)}: {type(exc).__name__}: {exc}") from None


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


class schema_lock:
    """Hold the advisory lock for Optuna's schema while a PostgreSQL storage is opened (creates tables)."""

    def __init__(self, url: str):
        self._lock = AdvisoryLock(url, "optuna-schema") if is_postgres(url) else None

    def __enter__(self):
        if self._lock is not None:
            self._lock.acquire()
        return self

    def __exit__(self, *exc):
        if self._lock is not None:
            self._lock.close()


def make_pruner(name: str, n_trials: int, max_resource: int) -> optuna.pruners.BasePruner:
    """The pruner ``name``: one of TuneConfig.pruner's choices, checked when the section resolved."""
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, max_resource), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    # median: a quarter of the study (at most 5 trials) runs unpruned to set the median; epoch 0 is too noisy
    return optuna.pruners.MedianPruner(n_startup_trials=min(5, max(1, n_trials // 4)), n_warmup_steps=1)


def open_study(search: Search, storage, max_resource: int) -> optuna.Study:
    """Create or load the study, with a TPE sampler seeded per worker and per resume point.

    The seed moves with the number of trials already stored, so a resumed (or second) worker does not
    replay the random start-up proposals of the first.
    """
    name, tune = search.study_name, search.tune
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    seen = len(study.get_trials(deepcopy=False))
    sampler = optuna.samplers.TPESampler(seed=tune.seed + 1009 * search.worker + seen,
                                         constant_liar=search.n_workers > 1)
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                             pruner=make_pruner(tune.pruner, search.n_trials, max_resource))


def used_slots(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished() or t.state == TrialState.RUNNING)


def queued(study: optuna.Study) -> int:
    """Trials waiting to run: retries of failed ones (``RetryFailedTrialCallback``, an interrupted trial)."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def finished(study: optuna.Study) -> list:
    return [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]


# ---------------------------------------------------------------- locks
def store_lock(tracking_uri: str) -> FileLock:
    sqlite = tracking_uri.startswith("sqlite:///")
    return FileLock(Path(tracking_uri[len("sqlite:///"):]).resolve().with_suffix(".genreclf-lock") if sqlite else None)


StudyLock = FileLock | AdvisoryLock  # one host (file) or every host (PostgreSQL)


def study_lock(storage: str, study_name: str, tracking_uri: str) -> StudyLock:
    """The lock under which workers claim trial slots, elect the parent run and the refit."""
    if is_postgres(storage):
        return AdvisoryLock(storage, f"study:{study_name}")
    if is_rdb(storage):  # MySQL & co: no advisory lock here yet; exact only for workers on this host
        log.warning("storage %s: the trial budget is exact only for workers on this host "
                    "(use PostgreSQL for workers on several hosts)", redact(storage))
    return FileLock(store_dir(tracking_uri) / "optuna" / f"{study_name}.slots-lock")


# ---------------------------------------------------------------- stale trials
def worker_record() -> dict:
    """Which process runs a trial or holds the refit claim (``tracking/liveness.py``)."""
    return liveness.identity()


def reap_stale(study: optuna.Study, rdb: bool, store: FileLock | None = None) -> int:
    """Fail RUNNING trials whose worker is gone; call it holding the study lock.

    RDB storages: Optuna's heartbeat (any host). Journal files: the worker identity each trial records,
    judged by ``liveness.alive`` (a worker on another host or in another container is left alone) - a
    trial without a worker record was created by a process that died before writing it.
    """
    if rdb:
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # runs _after_stale on each one it fails
        return len(before - {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))})
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        if worker is not None and liveness.alive(worker) is not False:  # alive, or not ours to judge
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # another worker got there first
            continue
        _after_stale(study, study.get_trials(deepcopy=False)[t.number], store, "worker process died")
        n += 1
    return n


def _after_stale(study: optuna.Study, trial, store: FileLock | None = None, why: str = "worker process died") -> None:
    """Close the dead trial's MLflow run and give its configuration another chance."""
    log.warning("trial %d (worker %s) marked FAIL: %s; queued again", trial.number, trial.user_attrs.get("worker"), why)
    run_id = trial.user_attrs.get("mlflow_run_id")
    try:
        with store or FileLock(None):
            if run_id and runs.run_exists(run_id):
                runs.close_run(run_id, "KILLED", {"optuna_state": "FAIL", "fail_reason": why})
    except MlflowException as exc:  # the retry below matters more than the run's status (reaped later)
        log.warning("trial %d: could not close its run %s (%s)", trial.number, run_id, exc)
    if trial.params:
        optuna.storages.RetryFailedTrialCallback(max_retry=MAX_RETRY)(study, trial)


def retried_from(trial) -> int | None:
    """The number of the failed trial this one retries (None for a fresh trial)."""
    return optuna.storages.RetryFailedTrialCallback.retried_trial_number(trial)
