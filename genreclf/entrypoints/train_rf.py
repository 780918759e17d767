"""Entry point ``train_rf``: fit the Random Forest on the train split only (nothing is selected on
test), evaluate val and test under the metric names the CNN runs use, explain it (impurity and
permutation importances) and register ``album-genre-rf`` @challenger - a pyfunc that takes cover
images, like the CNN, and extracts the features inside."""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from genreclf import RF_MODEL_NAME
from genreclf.config import Resolved, RFConfig, as_flat_dict
from genreclf.entrypoints.skeleton import entry_run, open_covers, provenance, register
from genreclf.metrics import evaluate_split
from genreclf.rf.features import FEATURE_VERSION, WORK, features_for
from genreclf.rf.forest import fit_rf, importance_figure, importance_table, make_rf, predict_proba, split_xy
from genreclf.serving import rf_model
from genreclf.tracking import runs as tracking

log = logging.getLogger(__name__)


def run_name(cfg: RFConfig) -> str:
    return f"rf-n{cfg.n_estimators}-d{cfg.max_depth or 'max'}"


def main(resolved: Resolved) -> dict:
    data, cfg = resolved.data, resolved.rf
    make_rf(cfg)  # validate the parameters before any expensive work
    covers = open_covers(resolved)
    name = run_name(cfg)
    params = {**as_flat_dict(data, cfg), "feature_version": FEATURE_VERSION, "work_size": WORK}
    with entry_run(resolved, covers, name, "rf", params=params) as run_id:
        start = time.perf_counter()
        table = features_for(covers)
        (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = (split_xy(covers, table, s) for s in ("train", "val", "test"))
        t_fit = time.perf_counter()
        model = fit_rf(X_tr, y_tr, cfg)
        tracking.log_metrics({"features_seconds": t_fit - start, "fit_seconds": time.perf_counter() - t_fit,
                              "train_covers": len(y_tr)})
        k, genres = len(covers.genres), covers.genres
        metrics = {**tracking.log_evaluation(evaluate_split("val", y_va, predict_proba(model, X_va, k), genres, name)),
                   **tracking.log_evaluation(evaluate_split("test", y_te, predict_proba(model, X_te, k), genres, name))}
        importances = importance_table(model, X_va, y_va, cfg.seed)
        tracking.log_table(importances, "importances/feature_importances.csv")
        tracking.log_figure(importance_figure(importances), "importances/feature_importances.png")
        with tempfile.TemporaryDirectory() as tmp:
            artifacts = rf_model.write_artifacts(Path(tmp), model, importances, table, covers, data.cache_size)
            model_uri, version = register(rf_model.RFCoverModel(), artifacts, covers, RF_MODEL_NAME, cfg.register,
                                          provenance(covers, run_id, "rf", metrics))
    log.info("%s: val accuracy %.3f, test accuracy %.3f, test macro-F1 %.3f; model %s (version %s)", name,
             metrics["val_accuracy"], metrics["test_accuracy"], metrics["test_macro_f1"], model_uri, version)
    return {"run_id": run_id, "model_uri": model_uri, "model_version": version, **metrics}
