"""Near-duplicate search on 64-bit perceptual hashes, below O(N²): multi-index hashing.

The rule (the same as the quadratic scan ``near_duplicates_bruteforce``, kept for tests and the bench):
walk the covers in source order; a cover within ``max_dist`` bits of an earlier *kept* cover is
dropped and attributed to the first such kept cover. Dropped covers drop nothing themselves.

Finding the pairs within ``max_dist`` uses the pigeonhole principle (Norouzi et al., "Fast search
in Hamming space with multi-index hashing", CVPR 2012): cut the 64 bits into ``m`` chunks; two hashes
within ``r`` bits differ in at most ``r // m`` bits in at least one chunk. So each chunk is a sorted
table, every hash probes its chunk value and the values within ``r // m`` flipped bits, and only the
candidates found there get their full distance checked. With the default r=4: five 12-13 bit
chunks, exact matches only. The cost grows with the number of candidate pairs (about N²/2^13 for
spread-out hashes, i.e. tiny next to N² until millions of covers), not with every pair.
Identical hashes are folded into one first (a folder of blank covers must not become a clique).
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

BITS = 64
MAX_CHUNKS = 8            # >= 8 bit chunks: smaller ones make every bucket huge
PAIRS_PER_BLOCK = 1 << 13  # candidate pairs materialised at once: ~0.4 MB of index arrays, which stay in
#                           the CPU caches (much larger blocks are slower and add a peak of their own)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.asarray(a, dtype=np.uint64) ^ np.asarray(b, dtype=np.uint64))


def near_duplicates(hashes: np.ndarray, max_dist: int) -> np.ndarray:
    """For each hash (in source order): -1 if kept, else the position of the kept hash that drops it."""
    h = np.asarray(hashes, dtype=np.uint64)
    parent = np.full(len(h), -1, dtype=np.int64)
    if len(h) < 2 or max_dist < 0:
        return parent
    uniq, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    first, inverse = first.astype(np.int32), inverse.astype(np.int32)  # positions: 4 bytes, not 8, per cover
    order = np.argsort(first, kind="stable").astype(np.int32)  # distinct hashes in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    reps, rep_pos = uniq[order], first[order]       # rep k first appears at position rep_pos[k]
    a, b = near_pairs(reps, max_dist)
    rep_parent = _keep_first(len(reps), a, b)
    # every cover follows its representative: kept rep -> the later copies are its duplicates;
    # dropped rep -> its copies go to the same kept cover (they are exactly as far from it)
    r = rank[inverse]
    parent[:] = np.where(rep_parent[r] >= 0, rep_pos[np.maximum(rep_parent[r], 0)], rep_pos[r])
    parent[rep_pos] = np.where(rep_parent >= 0, rep_pos[np.maximum(rep_parent, 0)], -1)
    return parent


def near_pairs(h: np.ndarray, max_dist: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (a < b) of positions with hamming(h[a], h[b]) <= max_dist, sorted by (a, b)."""
    n = len(h)
    m = min(max_dist + 1, MAX_CHUNKS)
    radius = max_dist // m
    bounds = np.linspace(0, BITS, m + 1).astype(int)
    found = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        width = int(hi - lo)
        # the smallest type that holds a chunk (2 bytes for the default 12-13 bit chunks), int32 positions
        keys = ((h >> np.uint64(lo)) & np.uint64((1 << width) - 1)).astype(np.min_scalar_type((1 << width) - 1))
        order = np.argsort(keys, kind="stable").astype(np.int32)
        table = keys[order]
        for mask in _masks(width, radius):
            probe = keys ^ keys.dtype.type(mask)
            start, stop = np.searchsorted(table, probe, "left"), np.searchsorted(table, probe, "right")
            found += list(_verified(h, order, start, stop, max_dist))
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    code = np.unique(np.concatenate(found))          # a * n + b: dedupes pairs met in several chunks
    return code // n, code % n


def _masks(width: int, radius: int):
    for k in range(radius + 1):
        for bits in combinations(range(width), k):
            yield sum(1 << i for i in bits)


def _verified(h, order, start, stop, max_dist):
    """Candidate pairs (query, table[start:stop]) in blocks of bounded size, keeping the true ones."""
    counts = stop - start
    ends = np.cumsum(counts)
    q0 = 0
    while q0 < len(h):  # block of queries whose candidates fit PAIRS_PER_BLOCK (at least one query)
        base = ends[q0 - 1] if q0 else 0
        q1 = max(q0 + 1, int(np.searchsorted(ends, base + PAIRS_PER_BLOCK, "right")))
        c = counts[q0:q1]
        a = np.repeat(np.arange(q0, q1), c)
        offset = np.arange(len(a)) - np.repeat(np.cumsum(c) - c, c)
        b = order[np.repeat(start[q0:q1], c) + offset]
        ok = (a < b) & (hamming(h[a], h[b]) <= max_dist)
        yield a[ok] * len(h) + b[ok]
        q0 = q1


def _keep_first(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Apply the keep-first rule to near pairs (a < b, sorted by a): -1 kept, else the dropping position."""
    parent = np.full(n, -1, dtype=np.int64)
    if len(a) == 0:
        return parent
    heads, starts = np.unique(a, return_index=True)
    ends = np.append(starts[1:], len(a))
    for i, s, e in zip(heads.tolist(), starts.tolist(), ends.tolist()):
        if parent[i] >= 0:          # dropped covers drop nothing
            continue
        near = b[s:e]
        near = near[parent[near] < 0]
        parent[near] = i
    return parent


def near_duplicates_bruteforce(hashes: np.ndarray, max_dist: int) -> np.ndarray:
    """The original O(N²) scan, for tests and the bench: same output as ``near_duplicates``."""
    h = np.asarray(hashes, dtype=np.uint64)
    parent = np.full(len(h), -1, dtype=np.int64)
    for i in range(len(h)):
        if parent[i] >= 0:
            continue
        near = np.flatnonzero(hamming(h[i + 1:], h[i]) <= max_dist) + i + 1
        near = near[parent[near] < 0]
        parent[near] = i
    return parent
