"""The ensemble's estimator: a soft vote of three models on the descriptors.

A forest and an RBF SVM on the descriptors of :mod:`genreclf.features.descriptors`, and the
baseline's forest on the 25 features (the descriptors' last 25 columns). They err on different
covers, so averaging their probabilities beats each of them alone (docs/models.md: how the vote was
chosen, on validation folds of real covers). The SVM's ``C`` is the one knob; it is chosen on the
validation split (never on test), from a short grid.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from genreclf.config import RFConfig
from genreclf.features.cover25 import FEATURE_NAMES
from genreclf.models.rf.forest import make_rf

log = logging.getLogger(__name__)
C_GRID = (1.0, 3.0, 10.0)   # RBF-SVM regularisation candidates, picked on val
FOREST_TREES = 500


FEATURES = slice(-len(FEATURE_NAMES), None)  # the descriptors end with the 25 features


class VoteEnsemble:
    """Forest + SVM on the descriptors + the 25 features' forest, probabilities averaged.

    ``classes_`` of each member are the genre indices seen in training.
    """

    def __init__(self, forest: RandomForestClassifier, svm, c: float,
                 features_forest: RandomForestClassifier):
        self.forest, self.svm, self.c, self.features_forest = forest, svm, c, features_forest

    def members(self) -> list[tuple[Any, slice]]:
        """(model, the descriptor columns it reads) for each member of the vote."""
        return [(self.forest, slice(None)), (self.svm, slice(None)), (self.features_forest, FEATURES)]

    def predict_proba(self, X: np.ndarray, n_genres: int) -> np.ndarray:
        members = self.members()
        out = np.zeros((len(X), n_genres))
        for model, columns in members:
            out[:, model.classes_.astype(int)] += model.predict_proba(X[:, columns]) / len(members)
        return out


def _svm(c: float, seed: int):
    # Platt-scaled probabilities: a sigmoid fitted on internal folds of train (SVC(probability=True)'s method)
    svc = SVC(C=c, gamma="scale", class_weight="balanced", random_state=seed)
    return make_pipeline(StandardScaler(), CalibratedClassifierCV(svc, method="sigmoid", cv=3, ensemble=False))


def fit_vote(X_tr: np.ndarray, y_tr: np.ndarray, X_va: np.ndarray, y_va: np.ndarray, n_genres: int,
              seed: int = 42, n_jobs: int = 1) -> VoteEnsemble:
    """Fit the three on train; choose the SVM's C by the vote's val accuracy (ties: the smaller C)."""
    forest = RandomForestClassifier(FOREST_TREES, class_weight="balanced", random_state=seed,
                                    n_jobs=n_jobs).fit(X_tr, y_tr)
    # the RF baseline's forest (train_rf's defaults) on the 25 features
    features_forest = make_rf(RFConfig(seed=seed, n_jobs=n_jobs)).fit(X_tr[:, FEATURES], y_tr)
    candidates = [VoteEnsemble(forest, _svm(c, seed).fit(X_tr, y_tr), c, features_forest) for c in C_GRID]
    scores = [float((m.predict_proba(X_va, n_genres).argmax(1) == y_va).mean()) if len(y_va) else 0.0
              for m in candidates]
    best_acc = max(scores)
    best = candidates[scores.index(best_acc)]  # the first (smallest C) of equal scores
    log.info("ensemble: C=%g chosen on val (val accuracy %.3f)", best.c, best_acc)
    return best
