"""The soft-vote ensemble as a family: two forests and an RBF SVM on the cover descriptors.

The SVM's ``C`` is chosen on the val split (never on test). The predictor describes covers at the
training cache size, so a cover gives the descriptors it had in training.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from genreclf.config import EnsembleConfig
from genreclf.data.covers import CoverSet
from genreclf.features.cover25 import FEATURE_VERSION
from genreclf.features.descriptors import DESCRIPTOR_VERSION, N_DESCRIPTORS, SIDE, describe_many, descriptors_for
from genreclf.models.ensemble.vote import VoteEnsemble, fit_vote
from genreclf.models.family import Trained
from genreclf.models.persist import FOREST_TYPES, load_estimator, save_estimator

# beyond the forest's tree type: the two private classes of a fitted CalibratedClassifierCV
SVM_TYPES = ["sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration"]


def run_name(cfg: EnsembleConfig) -> str:
    return "ensemble-rf-svm"


def fit(covers: CoverSet, cfg: EnsembleConfig) -> Trained:
    start = time.perf_counter()
    X, y = descriptors_for(covers), covers.labels
    tr, va, te = (covers.indices(s) for s in ("train", "val", "test"))
    t_fit = time.perf_counter()
    model = fit_vote(X[tr], y[tr], X[va], y[va], len(covers.genres), cfg.seed, cfg.n_jobs)
    k = len(covers.genres)

    def write(folder: Path) -> dict[str, str]:
        members = {"forest": model.forest, "svm": model.svm, "features_forest": model.features_forest}
        return {name: save_estimator(est, folder / f"{name}.skops") for name, est in members.items()}

    return Trained(
        proba={"val": model.predict_proba(X[va], k), "test": model.predict_proba(X[te], k)},
        write=write, meta={"c": model.c, "descriptor_version": DESCRIPTOR_VERSION, "n_descriptors": N_DESCRIPTORS,
                           "feature_version": FEATURE_VERSION},
        params={"descriptor_version": DESCRIPTOR_VERSION, "descriptor_side": SIDE},
        metrics={"features_seconds": t_fit - start, "fit_seconds": time.perf_counter() - t_fit,
                 "train_covers": float(len(tr)), "svm_c": model.c})


class VotePredictor:
    def __init__(self, artifacts: dict[str, str], meta: dict):
        if (meta["descriptor_version"], meta["n_descriptors"], meta["feature_version"]) != \
                (DESCRIPTOR_VERSION, N_DESCRIPTORS, FEATURE_VERSION):
            raise RuntimeError(f"this model was trained on descriptor version {meta['descriptor_version']} "
                               f"(features {meta['feature_version']}) but genreclf computes version "
                               f"{DESCRIPTOR_VERSION} (features {FEATURE_VERSION}); retrain it (train_ensemble)")
        self.genres, self.size = list(meta["genres"]), int(meta["decode_size"])
        self.ensemble = VoteEnsemble(load_estimator(artifacts["forest"], FOREST_TYPES),
                                     load_estimator(artifacts["svm"], SVM_TYPES), float(meta["c"]),
                                     load_estimator(artifacts["features_forest"], FOREST_TYPES))
        for forest in (self.ensemble.forest, self.ensemble.features_forest):
            forest.n_jobs = 1  # serving predicts a few covers at a time; threads cost more than they give

    def predict_proba(self, covers: list[np.ndarray]) -> np.ndarray:
        return self.ensemble.predict_proba(describe_many(covers), len(self.genres))


def load(artifacts: dict[str, str], meta: dict) -> VotePredictor:
    return VotePredictor(artifacts, meta)


def descriptor_matrix(covers: CoverSet) -> np.ndarray:
    return descriptors_for(covers, progress=False)


def evaluate_vote(view, inputs: dict[str, np.ndarray], seed: int, options) -> np.ndarray:
    X, y = inputs["descriptors"], view.labels
    tr, va, te = view.indices("train"), view.indices("val"), view.indices("test")
    model = fit_vote(X[tr], y[tr], X[va], y[va], len(view.genres), seed, -1)
    return model.predict_proba(X[te], len(view.genres))
