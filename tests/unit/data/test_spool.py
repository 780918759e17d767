"""Disk spools of per-cover metadata: round trips, the incremental digest, the on-disk content order."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from genreclf.data import covers as C
from genreclf.data import spool

TRICKY = ["Rock/ü0 \"q\".png", "a\\b", "new\nline", "日本/カバー.jpg", "", "x" * 300, "tab\t", "\ud800lone"]


@pytest.fixture
def small_chunks(monkeypatch, tmp_path):
    monkeypatch.setattr(spool, "CHUNK", 3)  # every path crosses chunk boundaries
    monkeypatch.setenv("GENRECLF_CACHE", str(tmp_path))
    return tmp_path


def test_digest_equals_json_dumps_of_the_whole(small_chunks):
    ids = np.array(TRICKY * 3)
    labels = np.arange(len(ids), dtype=np.int64) % 4
    parts = (2, 64, ids.tolist(), labels.tolist(), ["ab" * 20] * 5, ["Rock", "Pop"], 0.15, 42)
    whole = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()
    streamed = (spool.JsonDigest().value(2).value(64).items(ids).items(labels).items(np.array(["ab" * 20] * 5))
                .value(["Rock", "Pop"]).value(0.15).value(42))
    assert streamed.hexdigest() == whole == streamed.hexdigest()  # reading the value does not change it
    assert spool.JsonDigest().value(2).items(ids[:1]).hexdigest() != spool.JsonDigest().value(2).items(ids).hexdigest()


def test_texts_and_columns_round_trip(small_chunks):
    ids, blobs, col = spool.Texts(small_chunks), spool.Texts(small_chunks), spool.Column("U40", small_chunks)
    for k, t in enumerate(TRICKY):
        ids.append_str(t)
        blobs.append(bytes(range(k * 7 % 256)))
        col.append(f"{k:040x}")
    assert len(col) == len(TRICKY) and col.array().tolist() == [f"{k:040x}" for k in range(len(TRICKY))]
    assert ids.strings(small_chunks).tolist() == TRICKY
    assert list(blobs) == [bytes(range(k * 7 % 256)) for k in range(len(TRICKY))]
    assert spool.take(np.arange(10) * 2, np.array([9, 0, 4]), small_chunks).tolist() == [18, 0, 8]
    assert spool.zeros(7, "U5", small_chunks).tolist() == [""] * 7
    assert not list(small_chunks.iterdir())  # unnamed files: nothing is left in the folder


def test_content_order_equals_sorting_by_hex_key(small_chunks):
    rng = np.random.default_rng(0)
    content = np.array([hashlib.sha1(bytes([v])).hexdigest() for v in rng.integers(0, 12, 40)])  # with ties
    labels = rng.integers(0, 3, 40)
    idx = np.sort(rng.choice(40, 30, replace=False))
    for k in range(3):
        pos = np.flatnonzero(labels[idx] == k)
        expected = sorted(pos, key=lambda p: hashlib.sha256(f"7:{content[idx[p]]}".encode()).hexdigest())
        assert C._by_content(idx, labels, k, content, 7).tolist() == [int(p) for p in expected]
