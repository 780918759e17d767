"""The descriptor table's disk cache: reused for the same covers, rebuilt when the 25 features inside
it change version (a stale table would give the ensemble other descriptors than serving computes)."""
from __future__ import annotations

import numpy as np
import pytest

from genreclf.config import DataConfig
from genreclf.data.covers import load_covers
from genreclf.features import descriptors
from genreclf.features.descriptors import describe_many


@pytest.fixture
def covers(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRECLF_CACHE", str(tmp_path))
    return load_covers(DataConfig(data="synthetic:4", genres="Rock,Jazz", cache_size=32), progress=False)


def test_table_is_cached_and_keyed_on_the_feature_version(covers, tmp_path, monkeypatch):
    first = descriptors.descriptors_for(covers, progress=False)
    assert np.allclose(first, describe_many(np.asarray(covers.images)))
    assert len(list(tmp_path.glob("descriptors-*.npy"))) == 1
    descriptors.descriptors_for(covers, progress=False)  # same covers, same versions: the cached table
    assert len(list(tmp_path.glob("descriptors-*.npy"))) == 1
    monkeypatch.setattr(descriptors, "FEATURE_VERSION", 99)
    descriptors.descriptors_for(covers, progress=False)  # another feature version: a table of its own
    assert len(list(tmp_path.glob("descriptors-*.npy"))) == 2
