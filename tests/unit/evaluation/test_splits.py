"""Repeated splits: each a disjoint stratified partition, deterministic per seed, different across seeds."""
from __future__ import annotations

import numpy as np
import pytest

from genreclf.config import DataConfig
from genreclf.data.covers import load_covers
from genreclf.evaluation.report import interval
from genreclf.evaluation.splits import SplitError, repeated_splits, subsample_train

DATA = DataConfig(data="synthetic:20", genres="HipHop,Rock,Jazz", cache_size=32, experiment="splits-test")


@pytest.fixture(scope="module")
def covers(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENRECLF_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield load_covers(DATA, progress=False)


def test_each_split_is_a_disjoint_stratified_partition(covers):
    views = repeated_splits(covers, DATA, 4)
    assert len(views) == 4
    for view in views:
        tr, va, te = (set(view.content[view.indices(s)]) for s in ("train", "val", "test"))
        assert not (tr & va or tr & te or va & te)                     # disjoint, by cover content
        assert len(tr) + len(va) + len(te) == len(covers)              # nothing lost
        for k in range(len(covers.genres)):                            # every genre in every fold
            assert all((view.labels[view.indices(s)] == k).any() for s in ("train", "val", "test"))
        assert view.images is covers.images                            # a view, not a copy


def test_splits_are_deterministic_per_seed_and_differ_across_seeds(covers):
    first, again = repeated_splits(covers, DATA, 3), repeated_splits(covers, DATA, 3)
    assert all((a.split == b.split).all() and a.digest == b.digest for a, b in zip(first, again))
    tests = [frozenset(v.ids[v.indices("test")]) for v in first]
    assert len(set(tests)) == 3 and len({v.digest for v in first}) == 3
    # split r is the project's own split with seed + r: split 0 is exactly what train_rf/train_cnn use
    assert (first[0].split == covers.split).all()


def test_bad_repeats_is_a_clear_error(covers):
    with pytest.raises(SplitError, match="repeats=0"):
        repeated_splits(covers, DATA, 0)


def test_subsample_train_caps_train_only_and_nests(covers):
    view = repeated_splits(covers, DATA, 1)[0]
    small, larger = subsample_train(view, 3, 0), subsample_train(view, 6, 0)
    assert np.bincount(small.labels[small.indices("train")]).max() == 3
    assert set(small.ids[small.indices("train")]) < set(larger.ids[larger.indices("train")])
    assert (small.indices("test") == view.indices("test")).all() and (small.indices("val") == view.indices("val")).all()
    # the dropped train covers are marked in full, not cut to the split column's width ("unuse")
    assert set(small.split) == {"train", "val", "test", "unused"}


def test_interval_is_the_student_t_interval():
    mean, low, high = interval([0.30, 0.34, 0.32, 0.36, 0.28])
    assert mean == pytest.approx(0.32)
    # sd 0.0316, t(0.975, 4) = 2.776: half-width 0.0393
    assert high - mean == pytest.approx(0.0393, abs=2e-4) and mean - low == pytest.approx(high - mean)
    assert interval([0.5]) == (0.5, 0.5, 0.5)
