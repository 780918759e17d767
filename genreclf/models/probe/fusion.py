"""Fusion: the ensemble's vote and the pretrained probe, probabilities averaged with a weight chosen on val.

The two read different evidence (hand-crafted colour/texture/layout descriptors; ImageNet features),
so their errors differ and a weighted mean gains over either where val says so. Both members fit on
the split's train covers and choose their own knobs on val; the weight is then chosen on val too.
"""
from __future__ import annotations

import numpy as np

from genreclf.models.ensemble.vote import fit_vote
from genreclf.models.probe.family import fit_on_split

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the probe's share; 0 and 1 let val fall back on one member


def choose_weight(p_vote: np.ndarray, p_probe: np.ndarray, y: np.ndarray) -> float:
    """The probe's share with the best val accuracy (ties: the one nearest an even mix)."""
    scores = [float((((1 - w) * p_vote + w * p_probe).argmax(1) == y).mean()) for w in WEIGHTS]
    best = max(scores)
    return min((w for w, s in zip(WEIGHTS, scores) if s == best), key=lambda w: abs(w - 0.5))


def evaluate_fusion(view, inputs: dict[str, np.ndarray], seed: int, options) -> np.ndarray:
    D, y, k = inputs["descriptors"], view.labels, len(view.genres)
    tr, va, te = view.indices("train"), view.indices("val"), view.indices("test")
    vote = fit_vote(D[tr], y[tr], D[va], y[va], k, seed, -1)
    head, X = fit_on_split(view, inputs["embeddings"], seed)
    w = choose_weight(vote.predict_proba(D[va], k), head.predict_proba(X[va], k), y[va])
    return (1 - w) * vote.predict_proba(D[te], k) + w * head.predict_proba(X[te], k)
