"""Entry point ``train_boost``: fit the vote of two forests and an SVM on the descriptors (the SVM's
C chosen on val, never on test), evaluate val and test under the shared metric names, and register
``album-genre-boost`` @challenger - a pyfunc that takes cover images like the RF and the CNN."""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from genreclf import BOOST_MODEL_NAME
from genreclf.boost.descriptors import DESCRIPTOR_VERSION, SIDE
from genreclf.boost.model import descriptors_for, fit_boost
from genreclf.config import Resolved, as_flat_dict
from genreclf.entrypoints.skeleton import entry_run, open_covers, provenance, register
from genreclf.metrics import evaluate_split
from genreclf.serving import boost_model
from genreclf.tracking import runs as tracking

log = logging.getLogger(__name__)
NAME = "boost-rf-svm"


def main(resolved: Resolved) -> dict:
    data, cfg = resolved.data, resolved.boost
    covers = open_covers(resolved)
    params = {**as_flat_dict(data, cfg), "descriptor_version": DESCRIPTOR_VERSION, "descriptor_side": SIDE}
    with entry_run(resolved, covers, NAME, "boost", params=params) as run_id:
        start = time.perf_counter()
        X, y = descriptors_for(covers), covers.labels
        tr, va, te = (covers.indices(s) for s in ("train", "val", "test"))
        t_fit = time.perf_counter()
        model = fit_boost(X[tr], y[tr], X[va], y[va], len(covers.genres), cfg.seed, cfg.n_jobs)
        tracking.log_metrics({"features_seconds": t_fit - start, "fit_seconds": time.perf_counter() - t_fit,
                              "train_covers": len(tr), "svm_c": model.c})
        k, genres = len(covers.genres), covers.genres
        metrics = {**tracking.log_evaluation(evaluate_split("val", y[va], model.predict_proba(X[va], k), genres, NAME)),
                   **tracking.log_evaluation(evaluate_split("test", y[te], model.predict_proba(X[te], k), genres,
                                                            NAME))}
        with tempfile.TemporaryDirectory() as tmp:
            artifacts = boost_model.write_artifacts(Path(tmp), model, genres, int(covers.images.shape[1]))
            model_uri, version = register(boost_model.BoostCoverModel(), artifacts, covers, BOOST_MODEL_NAME,
                                          cfg.register, provenance(covers, run_id, "boost", metrics))
    log.info("boost: val accuracy %.3f, test accuracy %.3f, test macro-F1 %.3f; model %s (version %s)",
             metrics["val_accuracy"], metrics["test_accuracy"], metrics["test_macro_f1"], model_uri, version)
    return {"run_id": run_id, "model_uri": model_uri, "model_version": version, **metrics}
