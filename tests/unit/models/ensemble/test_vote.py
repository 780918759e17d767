"""The ensemble's vote: three members (forest and SVM on the descriptors, forest on the 25 features)."""
from __future__ import annotations

import numpy as np

from genreclf.data import synthetic
from genreclf.features.cover25 import FEATURE_NAMES, extract
from genreclf.features.descriptors import describe
from genreclf.models.ensemble.vote import FEATURES, fit_vote


def _data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, 40))
    X[:, -len(FEATURE_NAMES):] += y[:, None] * 0.8  # the "features" block carries the genre
    return X, y


def test_three_members_vote_with_equal_weight():
    X, y = _data(90, 0)
    Xv, yv = _data(30, 1)
    model = fit_vote(X, y, Xv, yv, n_genres=4, seed=3)  # genre 3 never seen: its column stays 0
    assert model.features_forest is not None and model.features_forest.n_features_in_ == len(FEATURE_NAMES)
    assert model.forest.n_features_in_ == model.svm.n_features_in_ == 40
    p = model.predict_proba(Xv, 4)
    parts = [model.forest.predict_proba(Xv), model.svm.predict_proba(Xv),
             model.features_forest.predict_proba(Xv[:, FEATURES])]
    np.testing.assert_allclose(p[:, :3], sum(parts) / 3)
    assert (p[:, 3] == 0).all() and np.allclose(p.sum(axis=1), 1.0)
    assert (p.argmax(1) == yv).mean() > 0.8


def test_the_features_forest_reads_the_25_features():
    cover = synthetic.make_cover("Rock", 2, size=96)
    np.testing.assert_array_equal(describe(cover)[FEATURES], extract(cover))
