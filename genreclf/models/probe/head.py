"""A linear head on frozen pretrained embeddings: standardised logistic regression or linear SVM.

Which head and its ``C`` come from a short grid, judged on the validation split's macro-F1 (never
on test); ties go to the logistic head, then to the smaller ``C`` (the stronger regularisation). The
SVM's scores become probabilities by Platt scaling on internal folds of train. The fitted head is
a plain scikit-learn pipeline, so it persists as a skops file whose extra types are ``TRUSTED_TYPES``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from genreclf.errors import UserError
from genreclf.models.persist import load_estimator, save_estimator

log = logging.getLogger(__name__)
HEADS = ("logistic", "svm")
C_GRID: dict[str, tuple[float, ...]] = {"logistic": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
                                        "svm": (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03)}
# types of a fitted head that skops does not trust by default (both heads; checked by a test)
TRUSTED_TYPES = ["sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration"]


def make_head(kind: str, c: float, seed: int = 42) -> Pipeline:
    if kind == "logistic":
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, random_state=seed)
    elif kind == "svm":
        svc = LinearSVC(C=c, class_weight="balanced", max_iter=20_000, random_state=seed)
        clf = CalibratedClassifierCV(svc, method="sigmoid", cv=3, ensemble=False)
    else:
        raise UserError(f"head={kind!r}: use auto, {' or '.join(HEADS)}")
    return make_pipeline(StandardScaler(), clf)


@dataclass
class ProbeHead:
    estimator: Pipeline
    kind: str
    c: float
    val_macro_f1: float = float("nan")

    def predict_proba(self, X: np.ndarray, n_genres: int) -> np.ndarray:
        """(N, n_genres) probabilities; genres absent from train get 0."""
        out = np.zeros((len(X), n_genres))
        out[:, self.estimator.classes_.astype(int)] = self.estimator.predict_proba(X)
        return out

    def save(self, path: Path) -> str:
        return save_estimator(self.estimator, path)

    @classmethod
    def load(cls, path: str, kind: str, c: float) -> ProbeHead:
        return cls(load_estimator(path, TRUSTED_TYPES), kind, c)


def fit_probe(X_tr: np.ndarray, y_tr: np.ndarray, X_va: np.ndarray, y_va: np.ndarray, head: str = "auto",
              seed: int = 42) -> ProbeHead:
    """Fit every (head, C) candidate on train, keep the best by val macro-F1, refit nothing."""
    kinds = HEADS if head == "auto" else (head,)
    if any(k not in HEADS for k in kinds):
        raise UserError(f"head={head!r}: use auto, {' or '.join(HEADS)}")
    if len(y_va) == 0:
        raise UserError("the probe's head is chosen on the val split, which is empty: raise val_frac")
    best: ProbeHead | None = None
    for kind in kinds:
        for c in C_GRID[kind]:
            est = clone(make_head(kind, c, seed)).fit(X_tr, y_tr)
            f1 = float(f1_score(y_va, est.predict(X_va), average="macro"))
            if best is None or f1 > best.val_macro_f1:
                best = ProbeHead(est, kind, c, f1)
    assert best is not None
    log.info("probe: %s head, C=%g chosen on val (macro-F1 %.3f)", best.kind, best.c, best.val_macro_f1)
    return best
