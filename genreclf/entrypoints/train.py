"""The training entry point of every family that trains in one call (``train_rf``, ``train_ensemble``, ...).

    configure MLflow -> load the covers -> start the run -> family.fit (domain code, returns values)
    -> log its parameters, metrics, tables and figures -> evaluate val and test under the shared
    metric names -> log the pyfunc, register it @challenger with provenance tags

Nothing is selected on test: a family fits on train and chooses its knobs on val.
"""
from __future__ import annotations

import logging

from genreclf.config import Resolved
from genreclf.entrypoints.skeleton import entry_run, open_covers, provenance
from genreclf.metrics import evaluate_split
from genreclf.models import Family, family_of_entry, resolve_callable
from genreclf.serving.cover_model import log_cover_model
from genreclf.tracking import runs

log = logging.getLogger(__name__)


def main(resolved: Resolved) -> dict:
    return train(family_of_entry(resolved.entry_point), resolved)


def train(family: Family, resolved: Resolved, *, fit_splits: tuple[str, ...] = ("train",), run_name: str = "",
          **start) -> dict:
    """One tracked training run of ``family`` fitted on ``fit_splits`` (a tuning refit passes train + val;
    then only test is evaluated); ``start`` reaches ``entry_run`` (entry point, parent run, tags)."""
    cfg = resolved.section(family.section)
    covers = open_covers(resolved)
    fit = resolve_callable(family.fit)
    name = run_name or (resolve_callable(family.run_name)(cfg) if family.run_name else family.name)
    options = {} if fit_splits == ("train",) else {"fit_splits": fit_splits}
    with entry_run(resolved, covers, name, family.name, params=None, **start) as run_id:
        trained = fit(covers, cfg, **options)
        runs.log_new_params(trained.params)
        runs.log_metrics(trained.metrics)
        for path, table in trained.tables.items():
            runs.log_table(table, path)
        for path, figure in trained.figures.items():
            runs.log_figure(figure, path)
        metrics: dict[str, float] = {}
        for split, proba in trained.proba.items():
            labels = covers.labels[covers.indices(split)]
            metrics.update(runs.log_evaluation(evaluate_split(split, labels, proba, covers.genres, name)))
        model_uri, version = log_cover_model(family, trained.write, trained.meta, covers, cfg.register,
                                      provenance(covers, run_id, family.name, metrics))
    log.info("%s: val accuracy %s, test accuracy %.3f, test macro-F1 %.3f; model %s (version %s)", name,
             f"{metrics['val_accuracy']:.3f}" if "val_accuracy" in metrics else "- (fitted on val)",
             metrics["test_accuracy"], metrics["test_macro_f1"], model_uri, version)
    return {"run_id": run_id, "model_uri": model_uri, "model_version": version, **metrics}
