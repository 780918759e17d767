"""A study as a whole: opening it safely, sharing the cores between its workers, running the search
(this process plus ``n_workers - 1`` spawned ones) and measuring what the bookkeeping costs.

A study remembers a fingerprint of what its trials measure (data, search space, fixed model
settings): resuming it with anything else would mix incomparable trials, so it is refused.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import multiprocessing as mp
import os
import statistics

import optuna

from genreclf.config import ConfigError, Resolved
from genreclf.data.covers import CoverSet
from genreclf.progress import progress_bar
from genreclf.tuning.objectives import Objective
from genreclf.tuning.search import Search
from genreclf.tuning.space import SearchSpace
from genreclf.tuning.storage import finished
from genreclf.tuning.worker import Stall, stall_bound, work, worker_main

log = logging.getLogger(__name__)
# settings that do not change what a trial measures: a study may be resumed with other values
NOT_MEASURED = {"n_jobs", "register", "device", "workers", "resume", "gradcam_per_genre", "tta",
                "keep_checkpoints"}
STOP_WAIT_S = 30  # how long a stopped worker gets to end (its trial's run closes, its locks go)


def share_cores(kind: str, resolved: Resolved, n_workers: int) -> Resolved:
    """Give each worker its share of the cores instead of letting every one of them take all."""
    if n_workers <= 1:
        return resolved
    share = max(1, (os.cpu_count() or 1) // n_workers)
    sections = dict(resolved.sections)
    if kind == "rf" and sections["rf"].n_jobs == -1:
        sections["rf"] = dataclasses.replace(sections["rf"], n_jobs=share)
    if kind == "cnn" and sections["cnn"].workers == -1:
        sections["cnn"] = dataclasses.replace(sections["cnn"], workers=min(2, share))
    return Resolved(resolved.entry_point, sections)


def fingerprint(kind: str, resolved: Resolved, space: SearchSpace, covers: CoverSet) -> str:
    model = {k: v for k, v in dataclasses.asdict(resolved.section(kind)).items()
             if k not in NOT_MEASURED and k not in space.specs}
    what = {"kind": kind, "data": covers.digest, "space": space.specs, "model": model,
            "cv_folds": resolved.tune.cv_folds if kind == "rf" else None}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def open_checked(name: str, storage: optuna.storages.BaseStorage, fingerprint: str) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    have = study.user_attrs.get("genreclf_fingerprint")
    if have is None:
        study.set_user_attr("genreclf_fingerprint", fingerprint)
    elif have != fingerprint:
        raise ConfigError(f"study {name!r} was created with another search space, model settings or data; "
                          "resume it with those, or start a new study with --study_name")
    else:
        log.info("resuming study %s: %d finished trial(s) so far", name, len(finished(study)))
    return study


def run_search(search: Search, study: optuna.Study, objective: Objective, max_resource: int) -> None:
    """This process works on the study while ``n_workers - 1`` spawned processes do the same."""
    bar = progress_bar(total=search.n_trials, initial=min(len(finished(study)), search.n_trials),
                       desc=f"tuning {search.study_name}", unit="trial")
    ctx = mp.get_context("spawn")  # fresh interpreters: no forked MLflow/SQLite/torch state
    procs = [ctx.Process(target=worker_main, args=(dataclasses.replace(search, worker=i),), name=f"tune-worker-{i}")
             for i in range(1, search.n_workers)]
    for p in procs:
        p.start()

    def update():
        bar.n = min(len(finished(study)), search.n_trials)
        bar.refresh()
    try:
        work(search, objective, max_resource, on_trial=update)
        join_workers(procs, study, stall_bound(search.tune))
        # a worker that died left a stale trial behind: fail it, re-queue it and finish the budget here
        work(search, objective, max_resource, on_trial=update)
    except BaseException:
        for p in procs:
            p.join(timeout=STOP_WAIT_S)
        stop([p for p in procs if p.is_alive()])
        raise
    finally:
        update()
        bar.close()
    for p in procs:
        if p.exitcode:
            log.warning("%s exited with code %s (a trial it left running was failed and re-queued)", p.name, p.exitcode)


def join_workers(procs: list, study: optuna.Study, bound_s: float, poll_s: float = 5.0) -> None:
    """Wait for the spawned workers while the study moves; stop the ones that are still running once no
    trial has moved for ``bound_s`` (hung: their trials are failed and retried by this process)."""
    stall = Stall(bound_s)
    while alive := [p for p in procs if p.is_alive()]:
        for p in alive:
            p.join(timeout=poll_s / len(alive))
        idle = stall.idle(study)
        if idle >= bound_s and (hung := [p for p in procs if p.is_alive()]):
            log.error("waited %.0f s for %s while no trial of the study moved: stopping them (their trials are "
                      "failed and retried by this process)",
                      idle, ", ".join(f"{p.name} (pid {p.pid})" for p in hung))
            stop(hung)
            return


def stop(procs: list) -> None:
    """Terminate, then kill what is left; every wait bounded."""
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout=STOP_WAIT_S)
        if p.is_alive():
            log.error("%s (pid %s) still runs %d s after SIGTERM: killing it", p.name, p.pid, STOP_WAIT_S)
            p.kill()
            p.join(timeout=STOP_WAIT_S)


def bookkeeping_overhead(study: optuna.Study, since: datetime.datetime | None = None, wall_s: float | None = None,
                         n_workers: int = 1) -> dict[str, float]:
    """Seconds of the objectives' own work vs the bookkeeping around them, over the finished trials
    (started after ``since``, if given).

    ``trial_bookkeeping_s_median``: inside a trial - sampling, the MLflow child run, per-step reports,
    Optuna writes, lock waits. With ``wall_s`` (the search's wall time), ``overhead_s_per_trial`` also
    counts what happens between trials (slot claim, stale check, ``ask``/``tell``).
    """
    work_s, book_s = [], []
    for t in finished(study):
        if "work_s" in t.user_attrs and t.datetime_start and t.datetime_complete and (
                since is None or t.datetime_start >= since):
            work_s.append(t.user_attrs["work_s"])
            book_s.append(max(0.0, (t.datetime_complete - t.datetime_start).total_seconds() - work_s[-1]))
    if not work_s:
        return {}
    work_med, book_med = statistics.median(work_s), statistics.median(book_s)
    out = {"trial_work_s_median": work_med, "trial_bookkeeping_s_median": book_med,
           "bookkeeping_share": book_med / max(work_med + book_med, 1e-9)}
    if wall_s is not None:
        out["overhead_s_per_trial"] = max(0.0, wall_s * n_workers - sum(work_s)) / len(work_s)
    return out
