"""Entry points ``tune_rf`` and ``tune_cnn``: an Optuna study tracked as one MLflow parent run.

    mlflow run . -e tune_cnn -P data=synthetic:60 -P n_trials=30 -P n_workers=2

1. open (or resume: same ``study_name``) the study; refuse to resume one created with another
   search space, model settings or data;
2. open its parent run (the same one on every resume, so one parent holds all the study's trials);
3. search: ``n_workers`` processes (this one + spawned) run trials, each a nested child run with its
   params, per-step values, final value and tags ``trial_number`` / ``optuna_state``;
4. log the summary, ``best_*`` tags, trials table and the Optuna plots (PNG) on the parent;
5. refit the best configuration (RF: train+val; CNN: train, early-stopped on val) in a nested run,
   evaluate it once on test, register it as a new version with the alias ``challenger``.

See ``tune_study.py`` for storage, budget and worker mechanics; ``docs/tuning.md`` for recipes.
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
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # plots are artifacts, never windows
import optuna

from genreclf.config import ConfigError, Resolved
from genreclf.data.covers import load_covers
from genreclf.progress import progress_bar
from genreclf.tracking import runs as tracking
from genreclf.tuning.objectives import make_objective, refit_cnn, refit_rf
from genreclf.tuning.space import DEFAULT_DIR, load_space
from genreclf.tuning.storage import finished, open_storage, redact, storage_url
from genreclf.tuning.worker import Search, work, worker_main

log = logging.getLogger(__name__)
# settings that do not change what a trial measures: a study may be resumed with other values
NOT_MEASURED = {"n_jobs", "register", "device", "workers", "resume", "gradcam_per_genre", "tta",
               "keep_checkpoints"}


def tune_rf_main(resolved: Resolved) -> dict:
    return run_tuning("rf", resolved)


def tune_cnn_main(resolved: Resolved) -> dict:
    return run_tuning("cnn", resolved)


def run_tuning(kind: str, resolved: Resolved) -> dict:
    data, tune = resolved.sections["data"], resolved.sections["tune"]
    if tune.n_trials < 1 or tune.n_workers < 1 or tune.timeout < 0:
        raise ConfigError(f"n_trials={tune.n_trials}, n_workers={tune.n_workers}: must be >= 1; "
                          f"timeout={tune.timeout}: >= 0 (0 = none)")
    uri = tracking.configure(data.experiment)
    space = load_space(tune.space or DEFAULT_DIR / f"space_{kind}.yaml", type(resolved.sections[kind]))
    covers = load_covers(data)
    name = tune.study_name or f"{kind}-{covers.digest[:8]}"
    url = storage_url(tune.storage, name, uri)
    study = _open_checked(name, open_storage(url, tune.n_workers), _fingerprint(kind, resolved, space, covers))
    shared = _share_cores(kind, resolved, tune.n_workers)  # the workers' settings (the refit gets all cores)
    objective, max_resource = make_objective(kind, shared, covers)  # warms the caches before workers start
    parent = study.user_attrs.get("mlflow_parent_run_id")
    parent = parent if parent and tracking.run_exists(parent) else None
    if parent and not tracking.in_active_experiment(parent):
        # MLflow nests runs only inside one experiment: this experiment gets a parent of its own
        log.info("study %s: its earlier trials are under run %s in experiment %r; this run starts a new parent "
                 "here (the study itself, in %s, goes on)", name, parent, tracking.experiment_name_of(parent),
                 redact(url))
        parent = None
    # under `mlflow run`, MLFLOW_RUN_ID names the project run: consume it here, or every nested start_run
    # (trials, refit, spawned workers) would resume the project run instead of creating a child
    project_run = os.environ.pop("MLFLOW_RUN_ID", None)
    with tracking.start_run(f"tune-{name}", f"tune_{kind}", kind, run_id=parent or project_run,
                            tags={"study_name": name, "tune_role": "study"}) as parent_id:
        if project_run and project_run != parent_id:  # `mlflow run` resuming a study: point at its parent
            tracking.tag_run(project_run, {"tune_parent_run_id": parent_id, "study_name": name,
                                           "tune_role": "continuation", "mlflow.runName": f"tune-{name}-continued"})
        study.set_user_attr("mlflow_parent_run_id", parent_id)
        tracking.log_config(resolved)
        tracking.log_text(Path(space.path).read_text(), "tune/search_space.yaml")
        tracking.log_new_params({"study_name": name, "storage": redact(url), "n_trials": tune.n_trials,
                                 "n_workers": tune.n_workers, "pruner": tune.pruner, "sampler": "TPESampler",
                                 "seed": tune.seed, "space": space.path, "cv_folds": tune.cv_folds})
        if parent is None:
            tracking.log_coverset(covers)
        search = Search(kind, shared, name, url, parent_id, tune.n_trials,
                        time.time() + tune.timeout if tune.timeout > 0 else None, space.path, tune.n_workers)
        start, since = time.perf_counter(), datetime.datetime.now()
        run_search(search, study, objective, max_resource)
        summary = summarise(study, time.perf_counter() - start, since, tune.n_workers)
        tracking.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
        log_plots(study)
        summary.update(refit(kind, study, covers, resolved, space, name, parent_id))
    log.info("study %s: %d finished (%d complete, %d pruned, %d failed), best value %s, test macro-F1 %s", name,
             summary["n_finished"], summary["n_complete"], summary["n_pruned"], summary["n_fail"],
             summary.get("best_value"), summary.get("test_macro_f1"))
    return {"study_name": name, "parent_run_id": parent_id, "storage": redact(url), **summary}


def _share_cores(kind: str, resolved: Resolved, n_workers: int) -> Resolved:
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


def _fingerprint(kind: str, resolved: Resolved, space, covers) -> str:
    model = {k: v for k, v in dataclasses.asdict(resolved.sections[kind]).items()
             if k not in NOT_MEASURED and k not in space.specs}
    what = {"kind": kind, "data": covers.digest, "space": space.specs, "model": model,
            "cv_folds": resolved.sections["tune"].cv_folds if kind == "rf" else None}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _open_checked(name: str, storage, fingerprint: str) -> optuna.Study:
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


def run_search(search: Search, study: optuna.Study, objective, max_resource: int) -> None:
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
        for p in procs:
            p.join()
        # a worker that died left a stale trial behind: fail it, re-queue it and finish the budget here
        work(search, objective, max_resource, on_trial=update)
    except BaseException:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
        raise
    finally:
        update()
        bar.close()
    for p in procs:
        if p.exitcode:
            log.warning("%s exited with code %s (a trial it left running was failed and re-queued)", p.name, p.exitcode)


def summarise(study: optuna.Study, seconds: float, since: datetime.datetime, n_workers: int) -> dict:
    trials = finished(study)
    states = [t.state.name for t in trials]
    out = {"n_finished": len(trials), "n_complete": states.count("COMPLETE"), "n_pruned": states.count("PRUNED"),
           "n_fail": states.count("FAIL"), "search_seconds": seconds,
           **bookkeeping_overhead(study, since=since, wall_s=seconds, n_workers=n_workers)}
    if out["n_complete"]:
        best = study.best_trial
        out.update(best_value=best.value, best_trial=best.number, best_params=best.params)
        tracking.set_tags({f"best_{k}": v for k, v in best.params.items()})
        # the parent shows the best configuration as its params (the searched ones; the rest are the
        # fixed settings of config.yaml) - a resumed study whose best changed keeps the first: tags say
        tracking.log_new_params(best.params)
        tracking.log_json({"trial": best.number, "value": best.value, "params": best.params}, "tune/best_params.json")
    frame = study.trials_dataframe()
    if len(frame):
        tracking.log_table(frame.astype({c: str for c in frame.columns if frame[c].dtype == object}), "tune/trials.csv")
    return out


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


def log_plots(study: optuna.Study) -> None:
    from optuna.visualization import matplotlib as ovm
    plots = {"optimization_history": ovm.plot_optimization_history, "param_importances": ovm.plot_param_importances,
             "parallel_coordinate": ovm.plot_parallel_coordinate}
    if any(t.intermediate_values for t in finished(study)):
        plots["intermediate_values"] = ovm.plot_intermediate_values
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ExperimentalWarning of the matplotlib backend
                ax = plot(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(max(fig.get_size_inches()[0], 9), max(fig.get_size_inches()[1], 6))
            fig.tight_layout()
            tracking.log_figure(fig, f"tune/{name}.png")
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. importances of < 2 complete trials
            log.warning("plot %s skipped: %s", name, exc)


def refit(kind: str, study: optuna.Study, covers, resolved: Resolved, space, name: str, parent_id: str) -> dict:
    """Refit the best trial's configuration once; log its test metrics on the parent run."""
    complete = [t for t in finished(study) if t.state.name == "COMPLETE"]
    if not complete:
        log.warning("study %s has no COMPLETE trial: nothing to refit", name)
        return {}
    best = study.best_trial
    parent = tracking.get_run(parent_id).data
    if parent.tags.get("refit_trial") == str(best.number) and parent.tags.get("refit_run_id"):
        log.info("best trial %d was refitted already (run %s)", best.number, parent.tags["refit_run_id"])
        return {**{k: v for k, v in parent.metrics.items() if k.startswith("test_")},
                "refit_run_id": parent.tags["refit_run_id"], "model_version": parent.tags.get("refit_model_version")}
    cfg = space.apply(resolved.sections[kind], best.params)
    tags = {"tuned_study": name, "tuned_trial": best.number, "tuned_value": round(best.value, 4),
            "tune_parent_run_id": parent_id}
    label = f"{kind}-tuned-trial{best.number:03d}"
    if kind == "rf":
        with tracking.start_run(label, "tune_rf", "rf", parent_run_id=parent_id,
                                tags={"tune_role": "refit", "study_name": name}) as run_id:
            tracking.log_params(dataclasses.asdict(cfg))
            tracking.log_coverset(covers)
            result = {**refit_rf(covers, resolved, cfg, label, tags), "run_id": run_id}
    else:
        result = refit_cnn(covers, resolved, cfg, label, tags)
    test = {k: v for k, v in result.items() if k.startswith("test_") and isinstance(v, (int, float))}
    tracking.log_metrics(test)
    tracking.set_tags({"refit_trial": best.number, "refit_run_id": result.get("run_id"),
                       "refit_model_version": result.get("model_version")})
    log.info("refit of trial %d: test macro-F1 %.4f (run %s, model version %s)", best.number,
             test.get("test_macro_f1", float("nan")), result.get("run_id"), result.get("model_version"))
    return {**test, "refit_run_id": result.get("run_id"), "model_version": result.get("model_version")}
