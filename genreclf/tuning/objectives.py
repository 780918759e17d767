"""What a tuning trial measures, and the refit of the best configuration.

The search sees ``without_test(covers)``: a cover set from which the test split has been removed
(images, labels and ids), so no trial can read a test cover even by accident. The test covers come
back only in the refit, which evaluates the chosen configuration on them once.

* RF: stratified k-fold macro-F1 on the train split, over the cached 25 features; the running mean
  is reported after each fold (so the pruner may stop a hopeless forest after fold 2).
* CNN: ``cnn.fit`` on train, validation macro-F1 reported after each epoch (the pruner decides);
  the trial's value is the best validation macro-F1 of the run (the weights ``fit`` keeps).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from genreclf import CNN_MODEL_NAME, RF_MODEL_NAME
from genreclf import metrics as evaluation
from genreclf.config import ConfigError, Resolved
from genreclf.data.covers import load_covers
from genreclf.tracking import registry
from genreclf.tracking import runs as tracking

log = logging.getLogger(__name__)
Objective = Callable[[object, Callable], float]   # (model config, report(step, metrics, value)) -> value


def subset(covers, *splits: str, tag: str):
    """The covers of ``splits`` only, as a CoverSet of their own (own digest: own feature cache)."""
    keep = covers.indices(*splits)
    return dataclasses.replace(
        covers, images=np.ascontiguousarray(covers.images[keep]), labels=covers.labels[keep], ids=covers.ids[keep],
        content=covers.content[keep], split=covers.split[keep],
        digest=hashlib.sha256(f"{covers.digest}|{tag}".encode()).hexdigest())


def without_test(covers):
    return subset(covers, "train", "val", tag="search")


def make_objective(kind: str, resolved: Resolved, covers=None, progress: bool = True) -> tuple[Objective, int]:
    """The objective of a study and its pruning resource (folds or epochs)."""
    covers = covers if covers is not None else load_covers(resolved.sections["data"], progress=progress)
    search = without_test(covers)
    if kind == "rf":
        return rf_objective(search, resolved.sections["tune"], progress)
    return cnn_objective(search, progress), resolved.sections["cnn"].epochs


def rf_objective(search, tune, progress: bool = True) -> tuple[Objective, int]:
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    from genreclf.rf.features import features_for
    from genreclf.rf.forest import fit_rf
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


def cnn_objective(search, progress: bool = True) -> Objective:
    from genreclf.cnn import fit as cnn

    def objective(cfg, report) -> float:
        def on_epoch(epoch: int, metrics: dict) -> None:
            report(epoch, metrics, metrics["val_macro_f1"])
        return cnn.fit(search, cfg, on_epoch=on_epoch, log=False, checkpoint=False, progress=progress).best_val_macro_f1
    return objective


# ---------------------------------------------------------------- refit of the best configuration
def refit_rf(covers, resolved: Resolved, cfg, label: str, tags: dict) -> dict:
    """Fit the best forest on train+val, evaluate once on test, log and register it (active run)."""
    import pandas as pd

    from genreclf.rf.features import features_for
    from genreclf.rf.forest import RFCoverModel, _model_artifacts, fit_rf, importance_table, predict_proba
    from genreclf.serving.contract import input_example, signature
    search, test = without_test(covers), subset(covers, "test", tag="test")
    # the two halves' cached tables, in the covers' order: no cover's features are computed twice
    table = pd.concat([features_for(search), features_for(test)]).loc[[str(i) for i in covers.ids]]
    fit_idx, test_idx = covers.indices("train", "val"), covers.indices("test")
    X = table.to_numpy()
    model = fit_rf(X[fit_idx], covers.labels[fit_idx], cfg)
    k = len(covers.genres)
    metrics = evaluation.log_evaluation("test", covers.labels[test_idx], predict_proba(model, X[test_idx], k),
                                        covers.genres, label)
    # explains the final model after its one evaluation; nothing is chosen with it
    importances = importance_table(model, X[test_idx], covers.labels[test_idx], cfg.seed)
    tracking.log_table(importances, "importances/feature_importances.csv")
    tags = {**tags, "test_accuracy": round(metrics["test_accuracy"], 4),
            "test_macro_f1": round(metrics["test_macro_f1"], 4), "data_digest": covers.digest[:20],
            "genres": ",".join(covers.genres), "git_commit": tracking.git_commit(), "model_family": "rf",
            "source_run_id": tracking.active_run_id(), "fit_splits": "train+val"}
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = _model_artifacts(Path(tmp), model, importances, table, covers,
                                     resolved.sections["data"].cache_size)
        example = input_example([covers.images[i] for i in test_idx[:2]])
        model_uri, version = tracking.log_pyfunc(
            RFCoverModel(), artifacts=artifacts, input_example=example, signature=signature(covers.genres),
            registered_name=RF_MODEL_NAME if cfg.register else None, tags=tags)
    if version is not None:
        registry.mark_challenger(RF_MODEL_NAME, version, tags)
    return {**metrics, "model_uri": model_uri, "model_version": version}


def refit_cnn(covers, resolved: Resolved, cfg, label: str, tags: dict) -> dict:
    """Train the best CNN with ``train_cnn`` itself (nested under the active parent run)."""
    from genreclf.entrypoints.train_cnn import main as train_cnn
    refit = Resolved("train_cnn", {"data": resolved.sections["data"], "cnn": cfg})
    result = train_cnn(refit)  # the parent run is active: train_cnn opens a nested run
    if result.get("model_version") is not None:
        registry.mark_challenger(CNN_MODEL_NAME, result["model_version"], tags)
    if result.get("run_id"):
        tracking.tag_run(result["run_id"], {**tags, "tune_role": "refit", "study_name": tags["tuned_study"]})
    return result

