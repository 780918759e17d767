"""Multi-index near-duplicate search gives exactly the O(N²) scan's answer, much faster."""
from __future__ import annotations

import numpy as np
import pytest

from genreclf.data import dedup
from genreclf.data.covers import _dedupe


def clustered_hashes(n: int, seed: int) -> np.ndarray:
    """Hashes in tight clusters (near-duplicates, chains, exact ties) among random ones."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2**63, size=max(1, n // 8), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    out = rng.integers(0, 2**63, size=n, dtype=np.uint64)
    clustered = rng.random(n) < 0.6
    flips = rng.integers(0, 7, size=n)  # 0..6 flipped bits: some within, some beyond max_dist
    for i in np.flatnonzero(clustered):
        h = centres[rng.integers(len(centres))]
        for bit in rng.choice(64, size=flips[i], replace=False):
            h ^= np.uint64(1) << np.uint64(bit)
        out[i] = h
    ties = rng.choice(n, size=n // 10, replace=False)
    out[ties] = out[rng.choice(n, size=len(ties))]  # exact copies, before and after their original
    return out


@pytest.mark.parametrize("max_dist", [0, 1, 4, 7, 10])
@pytest.mark.parametrize("seed", [0, 1])
def test_same_result_as_quadratic_scan(max_dist, seed):
    h = clustered_hashes(1500, seed)
    fast, slow = dedup.near_duplicates(h, max_dist), dedup.near_duplicates_bruteforce(h, max_dist)
    assert (slow >= 0).sum() > 50  # the data really has near-duplicates to find
    assert np.array_equal(fast, slow)


def test_keep_first_in_source_order_and_no_chaining():
    one = np.uint64(1)
    a = np.uint64(0)
    b = a ^ one                         # 1 bit from a
    c = b ^ (one << np.uint64(1))       # 1 bit from b, 2 from a
    h = np.array([c, a, b, a, c], dtype=np.uint64)
    # max_dist 1: c kept; a kept (2 from c); b dropped by the first kept cover near it (c at 0);
    # the second a is a's copy; the second c is c's copy
    assert dedup.near_duplicates(h, 1).tolist() == [-1, -1, 0, 1, 0]
    assert dedup.near_duplicates_bruteforce(h, 1).tolist() == [-1, -1, 0, 1, 0]
    # a dropped cover drops nothing: x kept, y (1 from x) dropped, z (1 from y, 2 from x) kept
    x, y, z = np.uint64(0), np.uint64(1), np.uint64(3)
    assert dedup.near_duplicates(np.array([x, y, z]), 1).tolist() == [-1, 0, -1]


def test_pairs_are_exact_beyond_exact_chunk_matches():
    rng = np.random.default_rng(3)
    h = rng.integers(0, 2**63, size=400, dtype=np.uint64)
    h[200:] = h[:200] ^ (np.uint64(0xFF) << np.uint64(28))  # 8 bits apart, spread over chunks
    a, b = dedup.near_pairs(h, 9)  # 9 bits: 8 chunks with one flipped bit each
    brute = [(i, j) for i in range(400) for j in range(i + 1, 400) if dedup.hamming(h[i], h[j]) <= 9]
    assert list(zip(a.tolist(), b.tolist())) == brute and len(brute) >= 200


def test_covers_dedupe_keeps_todays_counts():
    h = clustered_hashes(800, 5)
    labels = np.random.default_rng(5).integers(0, 4, size=900)
    idx = np.sort(np.random.default_rng(6).choice(900, size=800, replace=False))  # skipped files: gaps
    phash = np.zeros(900, dtype=np.uint64)
    phash[idx] = h
    kept, stats = _dedupe(idx, phash, labels, 4)
    parent = dedup.near_duplicates_bruteforce(h, 4)
    assert np.array_equal(kept, idx[parent < 0])
    dropped = np.flatnonzero(parent >= 0)
    across = int((labels[idx[dropped]] != labels[idx[parent[dropped]]]).sum())
    assert stats == {"duplicates_dropped": len(dropped), "duplicates_within_genre": len(dropped) - across,
                     "duplicates_across_genres": across}
    assert across > 0 and len(dropped) - across > 0


def test_no_covers_or_one():
    assert dedup.near_duplicates(np.zeros(0, np.uint64), 4).tolist() == []
    assert dedup.near_duplicates(np.array([7], np.uint64), 4).tolist() == [-1]
