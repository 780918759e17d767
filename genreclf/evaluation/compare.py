"""The models ``evaluate`` compares, each trained on one split's train (and val) covers only.

A runner takes one split (a CoverSet view) and the per-cover tables computed once for the whole
cover set, and returns the test covers' probabilities. Nothing is selected on test: the CNN
early-stops on val, the ensemble picks its one knob on val, the forests have fixed settings.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from genreclf.boost.model import fit_boost
from genreclf.cnn.fit import fit, predict
from genreclf.config import CNNConfig, RFConfig
from genreclf.errors import UserError
from genreclf.rf.forest import fit_rf, predict_proba

log = logging.getLogger(__name__)


@dataclass
class Tables:
    """Per-cover inputs computed once for the whole cover set (rows in cover order)."""
    ours: np.ndarray          # (N, 25) our features
    reference: np.ndarray     # (N, 25) the reference implementation's features (full-resolution covers)
    descriptors: np.ndarray   # (N, D) the ensemble's descriptors


@dataclass
class Settings:
    seed: int = 42
    cnn_size: int = 64
    cnn_epochs: int = 6
    n_jobs: int = -1


def _forest(settings: Settings) -> RFConfig:
    return RFConfig(seed=settings.seed, n_jobs=settings.n_jobs, register=False)  # the project's RF defaults


def majority(view, tables: Tables, settings: Settings) -> np.ndarray:
    counts = np.bincount(view.labels[view.indices("train")], minlength=len(view.genres))
    proba = np.zeros((len(view.indices("test")), len(view.genres)))
    proba[:, counts.argmax()] = 1.0
    return proba


def _rf_on(table: np.ndarray, view, settings: Settings) -> np.ndarray:
    tr, te = view.indices("train"), view.indices("test")
    model = fit_rf(table[tr], view.labels[tr], _forest(settings))
    return predict_proba(model, table[te], len(view.genres))


def rf_reference(view, tables: Tables, settings: Settings) -> np.ndarray:
    return _rf_on(tables.reference, view, settings)


def rf_ours(view, tables: Tables, settings: Settings) -> np.ndarray:
    return _rf_on(tables.ours, view, settings)


def boost(view, tables: Tables, settings: Settings) -> np.ndarray:
    X, y = tables.descriptors, view.labels
    tr, va, te = view.indices("train"), view.indices("val"), view.indices("test")
    model = fit_boost(X[tr], y[tr], X[va], y[va], len(view.genres), settings.seed, settings.n_jobs)
    return model.predict_proba(X[te], len(view.genres))


def cnn_config(settings: Settings) -> CNNConfig:
    """A small from-scratch ResNet-18: no pretrained weights, low resolution, few epochs (CPU budget)."""
    return CNNConfig(pretrained=False, image_size=settings.cnn_size, epochs=settings.cnn_epochs, batch_size=32,
                     lr=2e-3, backbone_lr_mult=1.0, warmup_epochs=1, patience=0, tta=False, workers=0,
                     register=False, seed=settings.seed, aug_scale_min=0.6)


def cnn(view, tables: Tables, settings: Settings) -> np.ndarray:
    cfg = cnn_config(settings)
    result = fit(view, cfg, progress=False)
    return predict(result.model, view, view.indices("test"), cfg, result.device)


RUNNERS: dict[str, Callable[..., np.ndarray]] = {
    "majority": majority, "rf_reference": rf_reference, "rf_ours": rf_ours, "cnn": cnn, "boost": boost}
LABELS = {"majority": "majority class", "rf_reference": "RF, reference features", "rf_ours": "RF, our 25 features",
          "cnn": "CNN from scratch", "boost": "boost (two forests + SVM)"}


def parse_models(spec: str) -> list[str]:
    names = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in names if m not in RUNNERS]
    if unknown or not names:
        raise UserError(f"models={spec!r}: unknown model(s) {unknown}; choose from {', '.join(RUNNERS)}")
    return names


def run_model(name: str, views: list, tables: Tables, settings: Settings) -> list[dict]:
    """One record per split: test labels, probabilities and the seconds train + predict took."""
    out = []
    for r, view in enumerate(views):
        start = time.perf_counter()
        proba = RUNNERS[name](view, tables, dataclasses.replace(settings, seed=settings.seed + r))
        seconds = time.perf_counter() - start
        y = view.labels[view.indices("test")]
        out.append({"split": r, "y": y, "proba": proba, "seconds": seconds})
        log.info("%s split %d: accuracy %.3f (%.1fs)", name, r, float((proba.argmax(1) == y).mean()), seconds)
    return out
