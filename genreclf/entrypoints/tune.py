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

See ``genreclf/tuning/`` (study, storage, worker) for the search mechanics; ``docs/tuning.md`` for recipes.
"""
from __future__ import annotations

import datetime
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.visualization import matplotlib as ovm

from genreclf.config import Resolved
from genreclf.data.covers import CoverSet
from genreclf.entrypoints import train
from genreclf.entrypoints.skeleton import entry_run, open_covers
from genreclf.models import get_family, resolve_callable
from genreclf.tracking import registry, runs
from genreclf.tuning.election import claim_refit, counts, elect_parent, refit_done_by_other
from genreclf.tuning.objectives import make_objective
from genreclf.tuning.search import Search
from genreclf.tuning.space import DEFAULT_DIR, SearchSpace, load_space
from genreclf.tuning.storage import finished, open_storage, redact, storage_url, study_lock
from genreclf.tuning.study import bookkeeping_overhead, fingerprint, open_checked, run_search, share_cores

log = logging.getLogger(__name__)


def tune_rf_main(resolved: Resolved) -> dict:
    return run_tuning("rf", resolved)


def tune_cnn_main(resolved: Resolved) -> dict:
    return run_tuning("cnn", resolved)


def run_tuning(kind: str, resolved: Resolved) -> dict:
    tune = resolved.tune
    space = load_space(tune.space or DEFAULT_DIR / f"space_{kind}.yaml", type(resolved.section(kind)))
    covers = open_covers(resolved)
    uri = runs.tracking_uri()
    name = tune.study_name or f"{kind}-{covers.digest[:8]}"
    url = storage_url(tune.storage, name, uri)
    storage = open_storage(url, tune.n_workers, heartbeat=tune.heartbeat_interval, grace=tune.grace_period)
    lock = study_lock(url, name, uri)
    with lock:  # workers on other hosts may be opening the same study right now
        study = open_checked(name, storage, fingerprint(kind, resolved, space, covers))
    shared = share_cores(kind, resolved, tune.n_workers)  # the workers' settings (the refit gets all cores)
    objective, max_resource = make_objective(kind, shared, covers)  # warms the caches before workers start
    # under `mlflow run`, MLFLOW_RUN_ID names the project run: consume it here, or every nested start_run
    # (trials, refit, spawned workers) would resume the project run instead of creating a child
    project_run = os.environ.pop("MLFLOW_RUN_ID", None)
    parent, created = elect_parent(study, lock, project_run, f"tune-{name}")
    params = {"study_name": name, "storage": redact(url), "n_trials": tune.n_trials, "n_workers": tune.n_workers,
              "pruner": tune.pruner, "sampler": "TPESampler", "seed": tune.seed, "space": space.path,
              "cv_folds": tune.cv_folds}
    # only the worker that created the parent run logs the cover set (a joining or resuming one finds it)
    with entry_run(resolved, covers if created else None, f"tune-{name}", kind, params=params,
                   entry_point=f"tune_{kind}", run_id=parent,
                   tags={"study_name": name, "tune_role": "study"}) as parent_id:
        if project_run and project_run != parent_id:  # `mlflow run` joining a study: point at its parent
            runs.tag_run(project_run, {"tune_parent_run_id": parent_id, "study_name": name,
                                       "tune_role": "continuation"})
            runs.rename_run(project_run, f"tune-{name}-continued")
        runs.log_text(Path(space.path).read_text(), "tune/search_space.yaml")
        search = Search(kind, shared, name, url, parent_id, tune.n_trials,
                        time.time() + tune.timeout if tune.timeout > 0 else None, space.path, tune.n_workers)
        start, since = time.perf_counter(), datetime.datetime.now()
        run_search(search, study, objective, max_resource)
        if claim_refit(study, lock):  # one worker of all that shared the study summarises and refits
            summary = summarise(study, time.perf_counter() - start, since, tune.n_workers)
            runs.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
            log_plots(study)
            summary.update(refit(kind, study, covers, resolved, space, name, parent_id))
        else:
            summary = {**counts(study), **refit_done_by_other(parent_id)}
    log.info("study %s: %d finished (%d complete, %d pruned, %d failed), best value %s, test macro-F1 %s", name,
             summary["n_finished"], summary["n_complete"], summary["n_pruned"], summary["n_fail"],
             summary.get("best_value"), summary.get("test_macro_f1"))
    return {"study_name": name, "parent_run_id": parent_id, "storage": redact(url), **summary}


def summarise(study: optuna.Study, seconds: float, since: datetime.datetime, n_workers: int) -> dict:
    out: dict[str, Any] = {**counts(study), "search_seconds": seconds,
           **bookkeeping_overhead(study, since=since, wall_s=seconds, n_workers=n_workers)}
    if out["n_complete"]:
        best = study.best_trial
        out.update(best_value=best.value, best_trial=best.number, best_params=best.params)
        runs.set_tags({f"best_{k}": v for k, v in best.params.items()})
        # the parent shows the best configuration as its params (the searched ones; the rest are the
        # fixed settings of config.yaml) - a resumed study whose best changed keeps the first: tags say
        runs.log_new_params(best.params)
        runs.log_json({"trial": best.number, "value": best.value, "params": best.params}, "tune/best_params.json")
    frame = study.trials_dataframe()
    if len(frame):
        runs.log_table(frame.astype({c: str for c in frame.columns if frame[c].dtype == object}), "tune/trials.csv")
    return out


def log_plots(study: optuna.Study) -> None:
    plots: dict[str, Any] = {"optimization_history": ovm.plot_optimization_history,
                             "param_importances": ovm.plot_param_importances,
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
            runs.log_figure(fig, f"tune/{name}.png")
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. importances of < 2 complete trials
            log.warning("plot %s skipped: %s", name, exc)


def refit(kind: str, study: optuna.Study, covers: CoverSet, resolved: Resolved, space: SearchSpace, name: str,
          parent_id: str) -> dict:
    """Refit the best trial's configuration once; log its test metrics on the parent run."""
    complete = [t for t in finished(study) if t.state.name == "COMPLETE"]
    if not complete:
        log.warning("study %s has no COMPLETE trial: nothing to refit", name)
        return {}
    best = study.best_trial
    parent = runs.get_run(parent_id).data
    if parent.tags.get("refit_trial") == str(best.number) and parent.tags.get("refit_run_id"):
        log.info("best trial %d was refitted already (run %s)", best.number, parent.tags["refit_run_id"])
        return {**{k: v for k, v in parent.metrics.items() if k.startswith("test_")},
                "refit_run_id": parent.tags["refit_run_id"], "model_version": parent.tags.get("refit_model_version")}
    cfg = space.apply(resolved.section(kind), best.params)
    tags = {"tuned_study": name, "tuned_trial": best.number, "tuned_value": round(best.value, 4),
            "tune_parent_run_id": parent_id}
    label = f"{kind}-tuned-trial{best.number:03d}"
    result = refit_family(kind, resolved, cfg, label, tags)
    test = {k: v for k, v in result.items() if k.startswith("test_") and isinstance(v, (int, float))}
    runs.log_metrics(test)
    runs.set_tags({"refit_trial": best.number, "refit_run_id": result.get("run_id"),
                   "refit_model_version": result.get("model_version")})
    log.info("refit of trial %d: test macro-F1 %.4f (run %s, model version %s)", best.number,
             test.get("test_macro_f1", float("nan")), result.get("run_id"), result.get("model_version"))
    return {**test, "refit_run_id": result.get("run_id"), "model_version": result.get("model_version")}


def refit_family(kind: str, resolved: Resolved, cfg, label: str, tags: dict) -> dict:
    """Train the best configuration with the family's own training entry point, nested under the active
    parent run. A family trained in one call (the forest) refits on train + val, since tuning already
    chose its parameters on folds of those covers; the CNN keeps val for early stopping."""
    family = get_family(kind)
    sub = Resolved(family.entry_point, {"data": resolved.data, family.section: cfg})
    role = {"tune_role": "refit", "study_name": tags["tuned_study"]}
    if family.fit:
        result = train.train(family, sub, fit_splits=("train", "val"), run_name=label, entry_point=f"tune_{kind}",
                             parent_run_id=runs.active_run_id(), tags={**role, "fit_splits": "train+val"})
    else:
        result = resolve_callable(family.train)(sub)
    if result.get("model_version") is not None:
        registry.mark_challenger(family.model_name, result["model_version"], tags)
    if result.get("run_id"):
        runs.tag_run(result["run_id"], {**tags, **role})
    return result
