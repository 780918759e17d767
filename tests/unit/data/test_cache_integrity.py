"""The decoded-cover and feature caches under damage and concurrency."""
from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest

from genreclf import config as C
from genreclf.data.covers import cache_root, load_covers
from genreclf.features.cover25 import features_for

CFG = {"data": "synthetic:5", "genres": "Rock,Jazz", "cache_size": 24, "dedup_distance": 0}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRECLF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _load(**extra):
    return load_covers(C.build(C.DataConfig, None, {**CFG, **extra}), progress=False)


def _entry(cache) -> tuple:
    (npy,) = cache.glob("covers-*.npy")
    return npy, npy.with_suffix(".json")


def _damage_cases():
    def zero_rows(npy, meta):
        arr = np.load(npy, mmap_mode="r+")
        arr[:3] = 0  # black covers under the same digest: must be caught, never trained on
        arr.flush()

    def truncate_npy(npy, meta):
        npy.write_bytes(npy.read_bytes()[:1000])

    def truncate_meta(npy, meta):
        meta.write_text(meta.read_text()[:40])

    def delete_meta(npy, meta):
        meta.unlink()
    return [zero_rows, truncate_npy, truncate_meta, delete_meta]


@pytest.mark.parametrize("damage", _damage_cases(), ids=lambda f: f.__name__)
def test_damaged_cover_cache_is_detected_and_rebuilt(cache, caplog, damage):
    first = _load()
    before = np.array(first.images)  # a copy: first.images maps the cache file the damage writes to
    npy, meta = _entry(cache)
    damage(npy, meta)
    with caplog.at_level(logging.WARNING):
        again = _load()
    assert "is damaged" in caplog.text and "rebuilding" in caplog.text
    assert again.digest == first.digest and np.array_equal(again.images, before)
    assert json.loads(meta.read_text())["sha256"]
    assert not list(cache.glob(".*tmp"))


def test_damaged_feature_cache_is_rebuilt(cache, caplog):
    covers = _load()
    table = features_for(covers, progress=False)
    (parquet,) = cache.glob("features-*.parquet")
    parquet.write_bytes(parquet.read_bytes()[:200])
    with caplog.at_level(logging.WARNING):
        again = features_for(covers, progress=False)
    assert "is damaged" in caplog.text
    assert again.equals(table)


def test_two_cold_decodes_in_one_process_do_not_collide(cache):
    results, errors = [], []

    def load():
        try:
            results.append(_load(cache_size=28))
        except Exception as exc:  # a shared temporary file name would collide here
            errors.append(exc)
    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 3
    assert all(np.array_equal(r.images, results[0].images) for r in results)
    assert not list(cache_root().glob(".*tmp"))
