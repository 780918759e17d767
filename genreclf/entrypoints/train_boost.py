"""Entry point ``train_boost``: fit the forest + SVM ensemble on the descriptors, evaluate val and test
under the shared metric names, and register ``album-genre-boost`` (alias challenger)."""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from genreclf import BOOST_MODEL_NAME
from genreclf import metrics as evaluation
from genreclf.boost.descriptors import DESCRIPTOR_VERSION, SIDE
from genreclf.boost.model import descriptors_for, fit_boost
from genreclf.boost.pyfunc import BoostCoverModel, write_artifacts
from genreclf.config import as_flat_dict
from genreclf.data.covers import load_covers
from genreclf.serving.contract import input_example, signature
from genreclf.tracking import registry
from genreclf.tracking import runs as tracking

log = logging.getLogger(__name__)


def main(resolved) -> dict:
    data, cfg = resolved.data, resolved.boost
    tracking.configure(data.experiment)
    covers = load_covers(data)
    with tracking.start_run("boost-rf-svm", "train_boost", "boost") as run_id:
        tracking.log_config(resolved)
        tracking.log_new_params({**as_flat_dict(data, cfg), "descriptor_version": DESCRIPTOR_VERSION,
                                 "descriptor_side": SIDE})
        tracking.log_coverset(covers)
        start = time.perf_counter()
        X, y = descriptors_for(covers), covers.labels
        tr, va, te = (covers.indices(s) for s in ("train", "val", "test"))
        t_fit = time.perf_counter()
        model = fit_boost(X[tr], y[tr], X[va], y[va], len(covers.genres), cfg.seed, cfg.n_jobs)
        tracking.log_metrics({"features_seconds": t_fit - start, "fit_seconds": time.perf_counter() - t_fit,
                              "train_covers": len(tr), "svm_c": model.c})
        n = len(covers.genres)
        metrics = {**evaluation.log_evaluation("val", y[va], model.predict_proba(X[va], n), covers.genres, "boost"),
                   **evaluation.log_evaluation("test", y[te], model.predict_proba(X[te], n), covers.genres, "boost")}
        tags = {**{k: round(metrics[k], 4) for k in ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1")},
                "data_digest": covers.digest[:20], "genres": ",".join(covers.genres),
                "git_commit": tracking.git_commit(), "source_run_id": run_id, "model_family": "boost"}
        with tempfile.TemporaryDirectory() as tmp:
            artifacts = write_artifacts(Path(tmp), model, covers.genres, int(covers.images.shape[1]))
            model_uri, version = tracking.log_pyfunc(
                BoostCoverModel(), artifacts=artifacts, input_example=input_example([covers.images[i] for i in te[:2]]),
                signature=signature(covers.genres), registered_name=BOOST_MODEL_NAME if cfg.register else None,
                tags=tags)
        if version is not None:
            registry.mark_challenger(BOOST_MODEL_NAME, version, tags)
    log.info("boost: val accuracy %.3f, test accuracy %.3f, test macro-F1 %.3f; model %s (version %s)",
             metrics["val_accuracy"], metrics["test_accuracy"], metrics["test_macro_f1"], model_uri, version)
    return {"run_id": run_id, "model_uri": model_uri, "model_version": version, **metrics}
