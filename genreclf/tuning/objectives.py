"""What a tuning trial measures, and the refit of the best configuration.

The search sees ``without_test(covers)``: a cover set from which the test split has been removed
(images, labels and ids), so no trial can read a test cover even by accident. The test covers come
back only in the refit, which evaluates the chosen configuration on them once.

* RF: stratified k-fold macro-F1 on the train split, over the cached 25 features; the running mean
  is reported after each fold (so the pruner may stop a hopeless forest after fold 2).
* CNN: ``training.fit`` on train, validation macro-F1 reported after each epoch (the pruner decides);
  the trial's value is the best validation macro-F1 of the run (the weights ``fit`` keeps).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Callable

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from genreclf.config import ConfigError, Resolved, TuneConfig
from genreclf.data.covers import CoverSet, load_covers
from genreclf.features.cover25 import features_for
from genreclf.models.cnn import training
from genreclf.models.rf.forest import fit_rf

log = logging.getLogger(__name__)
Objective = Callable[[object, Callable], float]   # (model config, report(step, metrics, value)) -> value


def subset(covers: CoverSet, *splits: str, tag: str) -> CoverSet:
    """The covers of ``splits`` only, as a CoverSet of their own (own digest: own feature cache)."""
    keep = covers.indices(*splits)
    return dataclasses.replace(
        covers, images=np.ascontiguousarray(covers.images[keep]), labels=covers.labels[keep], ids=covers.ids[keep],
        content=covers.content[keep], split=covers.split[keep],
        digest=hashlib.sha256(f"{covers.digest}|{tag}".encode()).hexdigest())


def without_test(covers: CoverSet) -> CoverSet:
    return subset(covers, "train", "val", tag="search")


def make_objective(kind: str, resolved: Resolved, covers: CoverSet | None = None,
                   progress: bool = True) -> tuple[Objective, int]:
    """The objective of a study and its pruning resource (folds or epochs)."""
    covers = covers if covers is not None else load_covers(resolved.data, progress=progress)
    search = without_test(covers)
    if kind == "rf":
        return rf_objective(search, resolved.tune, progress)
    return cnn_objective(search, progress), resolved.cnn.epochs


def rf_objective(search: CoverSet, tune: TuneConfig, progress: bool = True) -> tuple[Objective, int]:
    tr = search.indices("train")
    X, y = features_for(search, progress=progress).to_numpy()[tr], search.labels[tr]
    smallest = int(np.bincount(y, minlength=len(search.genres)).min())
    if not 2 <= tune.cv_folds <= smallest:
        raise ConfigError(f"cv_folds={tune.cv_folds}: need 2 <= cv_folds <= {smallest} "
                          f"(the covers of the rarest genre in the train split)")
    folds = list(StratifiedKFold(tune.cv_folds, shuffle=True, random_state=tune.seed).split(X, y))
    labels = list(range(len(search.genres)))

    def objective(cfg, report) -> float:
        scores = []
        for k, (fit_idx, eval_idx) in enumerate(folds):
            pred = fit_rf(X[fit_idx], y[fit_idx], cfg).predict(X[eval_idx])
            scores.append(f1_score(y[eval_idx], pred, labels=labels, average="macro", zero_division=0))
            report(k, {"cv_fold_macro_f1": scores[-1], "cv_macro_f1": float(np.mean(scores))}, float(np.mean(scores)))
        return float(np.mean(scores))
    return objective, tune.cv_folds


def cnn_objective(search: CoverSet, progress: bool = True) -> Objective:
    def objective(cfg, report) -> float:
        def on_epoch(epoch: int, metrics: dict) -> None:
            report(epoch, metrics, metrics["val_macro_f1"])
        return training.fit(search, cfg, on_epoch=on_epoch, progress=progress).best_val_macro_f1
    return objective
