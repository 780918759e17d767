"""The data layer: every step of the project sees the same covers, genres and split.

``load_covers(cfg)`` does, for any source:
  1. read the raw records of the selected genres and digest their bytes;
  2. decode to RGB at ``cache_size`` (cached on disk under that digest, so later runs and tuning
     trials never decode again); undecodable files are skipped and counted;
  3. drop near-duplicate covers (perceptual hash), also across genres, before splitting;
  4. cap per genre, then a deterministic stratified split keyed on the covers' content.

Memory does not grow with N: the source is read once, and each cover's encoded bytes, id, label and
sha1 go to unnamed spool files in the cache folder (:mod:`genreclf.data.spool`), read back memory-mapped;
the covers are decoded from that spool into the decode cache a chunk at a time; the digests are hashed
incrementally (the same values as hashing the JSON of the whole lists); the perceptual hashes are a
``.npy`` next to the decoded covers; splitting sorts its keys in a mapped file; de-duplication is
sub-quadratic (:mod:`genreclf.data.dedup`). ``CoverSet.images``, ``ids``, ``labels``, ``content`` and
``split`` are all memory-mapped. What stays O(N) in memory: de-dup's working arrays (about 100 bytes a
cover) and the report's entry per skipped file.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from scipy.fft import dctn

from genreclf.config import DataConfig
from genreclf.data import cachefiles, spool
from genreclf.data.dedup import near_duplicates
from genreclf.data.images import BadImageError, decode_rgb
from genreclf.data.sources import DataError, Source, open_source, select_genres
from genreclf.progress import progress_bar

log = logging.getLogger(__name__)
DECODE_VERSION = 2  # bump when decode_rgb changes, so old caches are not reused (part of every digest)
# bump when the decode cache's files change shape, not their pixels: it names the files, so an old
# entry is not reused, but stays out of the digests (feature caches and runs' data_digest tags stay valid)
CACHE_LAYOUT = 3
DECODE_CHUNK = 256     # covers decoded (and hashed, written) at a time


def cache_root() -> Path:
    root = Path(os.environ.get("GENRECLF_CACHE", Path.home() / ".cache" / "genreclf"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass
class CoverSet:
    images: np.ndarray          # (N, S, S, 3) uint8, decoded covers (memory-mapped from the cache)
    labels: np.ndarray          # (N,) int64 index into genres
    ids: np.ndarray             # (N,) sample ids (source-specific, stable)
    content: np.ndarray         # (N,) sha1 of each cover's encoded bytes
    split: np.ndarray           # (N,) 'train' | 'val' | 'test'
    genres: list[str]
    source: str
    digest: str                 # digest of covers + labels + split: keys feature caches, logged to runs
    report: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def indices(self, *splits: str) -> np.ndarray:
        return np.flatnonzero(np.isin(self.split, splits))

    def manifest(self) -> pd.DataFrame:
        return pd.DataFrame({"sample_id": self.ids, "genre": [self.genres[i] for i in self.labels],
                             "split": self.split, "sha1": self.content})


def load_covers(cfg: DataConfig, progress: bool = True) -> CoverSet:
    source = open_source(cfg.data, cfg.seed)
    genres = select_genres(cfg.genres, source.genres)
    scratch = cache_root()
    read_ids, read_labels, read_content, blobs = _scan(source, genres, cfg.data, progress, scratch)
    raw_digest = (spool.JsonDigest().value(DECODE_VERSION).value(cfg.cache_size).items(read_ids)
                  .items(read_labels).items(read_content).value(genres).hexdigest())
    images, phash, bad = _decoded(raw_digest, blobs, read_ids, cfg.cache_size, progress)
    del blobs  # the spooled encoded covers are not needed any more (their file goes with them)
    skipped = list(source.unused) + [{"sample_id": str(read_ids[i]), "genre": genres[read_labels[i]],
                                      "reason": bad[i]} for i in sorted(bad)]
    report = {"read": int(len(read_ids)), "skipped": len(skipped), "skipped_files": skipped}
    if skipped:
        log.warning("skipped %d file(s) (unreadable, not used or undecodable), e.g. %s", len(skipped), skipped[0])

    idx = _usable(len(read_ids), bad, scratch)
    idx, dups = _dedupe(idx, phash, read_labels, cfg.dedup_distance)
    report.update(dups)
    idx = _cap(idx, read_labels, read_content, cfg.per_genre, cfg.seed)
    split = split_assignment(idx, read_labels, read_content, genres, cfg)
    ids = spool.take(read_ids, idx, scratch)
    labels, content = spool.take(read_labels, idx, scratch), spool.take(read_content, idx, scratch)
    report["kept"] = int(len(idx))
    report["per_genre"] = {g: int((labels == k).sum()) for k, g in enumerate(genres)}
    digest = (spool.JsonDigest().value(raw_digest).items(ids).items(split)
              .value(cfg.seed).value(cfg.val_frac).value(cfg.test_frac).hexdigest())
    log.info("covers: read %d, skipped %d, duplicates dropped %d, kept %d", report["read"],
             report["skipped"], report["duplicates_dropped"], report["kept"])
    return CoverSet(images=_kept(images, idx, digest), labels=labels, ids=ids, content=content, split=split,
                    genres=genres, source=cfg.data, digest=digest, report=report)


def _scan(source: Source, genres: list[str], data: str, progress: bool, scratch: Path):
    """ids, labels and sha1 of every record, and the encoded covers themselves, spooled to disk."""
    ids, blobs = spool.Texts(scratch), spool.Texts(scratch)
    labels, content = spool.Column(np.int64, scratch), spool.Column("U40", scratch)
    for raw in progress_bar(source.records(genres), desc=f"reading {data}", disable=not progress, leave=False):
        ids.append_str(raw.sample_id)
        labels.append(genres.index(raw.genre))
        content.append(hashlib.sha1(raw.data).hexdigest())
        blobs.append(raw.data)  # decoded from here: exactly the bytes that were digested, read once
    if not len(labels):
        raise DataError(f"data={data!r} has no covers for genres {genres}")
    return ids.strings(scratch), labels.array(), content.array(), blobs


def _usable(n: int, bad: dict[int, str], scratch: Path) -> np.ndarray:
    """Positions of the covers that decoded, mapped (built a chunk at a time)."""
    skip = np.array(sorted(bad), dtype=np.int64)

    def chunks():
        for s in range(0, n, spool.CHUNK):
            pos = np.arange(s, min(n, s + spool.CHUNK))
            yield pos[~np.isin(pos, skip)]
    return spool.spooled(chunks(), np.int64, scratch)


def _kept(images: np.ndarray, idx: np.ndarray, digest: str) -> np.ndarray:
    """The kept rows of the decoded cache, memory-mapped: the cache itself, or a copy of the subset
    written in chunks (peak memory: one chunk, whatever N)."""
    if len(idx) == len(images) and np.array_equal(idx, np.arange(len(images))):
        return images
    path = cache_root() / f"kept-{digest[:20]}.npy"
    if not path.exists():
        def write(f) -> None:
            _write_header(f, (len(idx),) + images.shape[1:], np.uint8)
            for s in range(0, len(idx), DECODE_CHUNK):
                f.write(np.ascontiguousarray(images[idx[s:s + DECODE_CHUNK]]).tobytes())
        cachefiles.write_atomic(path, write)
    return np.load(path, mmap_mode="r")


def _write_header(f, shape: tuple, dtype=np.uint8) -> None:
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                             "fortran_order": False, "shape": shape})


def _decoded(digest: str, blobs: Iterable[bytes], ids: np.ndarray, size: int, progress: bool):
    """Decoded covers + perceptual hashes (both mapped) + {position: skip reason}, from the cache when possible.

    ``blobs`` yields the encoded covers; they are decoded and appended to the cache file a chunk
    at a time, so memory holds one chunk of covers, never all of them."""
    base = cache_root() / f"covers-{digest[:20]}-layout{CACHE_LAYOUT}"
    npy, meta = base.with_suffix(".npy"), base.with_suffix(".json")
    hashes_npy = cache_root() / f"phash-{digest[:20]}-layout{CACHE_LAYOUT}.npy"
    if npy.exists() or meta.exists():
        try:
            return _cached(npy, hashes_npy, meta, len(ids), size)
        except cachefiles.Damaged as exc:
            cachefiles.rebuilding(npy, exc)
    reasons: dict[int, str] = {}  # only the covers that failed: the report names each of them
    hashes = spool.Column(np.uint64, cache_root())

    def work(item):
        i, blob = item
        try:
            return decode_rgb(blob, size, name=str(ids[i]))
        except BadImageError as exc:
            reasons[i] = str(exc)
            return np.zeros((size, size, 3), dtype=np.uint8)
    sha, hash_sha = hashlib.sha256(), hashlib.sha256()

    def write(f) -> None:
        f = cachefiles.Hashing(f, sha)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool, \
                progress_bar(total=len(ids), desc="decoding covers", disable=not progress, leave=False) as bar:
            _write_header(f, (len(ids), size, size, 3), np.uint8)
            stream = enumerate(blobs)
            while chunk := list(itertools.islice(stream, DECODE_CHUNK)):
                images = np.stack(list(pool.map(work, chunk)))  # PIL decodes without the GIL
                hashes.extend(phash64(images))
                f.write(images.tobytes())
                bar.update(len(chunk))

    def write_hashes(f) -> None:
        f = cachefiles.Hashing(f, hash_sha)
        _write_header(f, (hashes.n,), np.uint64)
        f.write(hashes.array().tobytes())  # 8 bytes a cover, written from the mapped spool
    # atomic under a unique temp name (a killed run, or two decodes at once, never leave a half-written
    # file); the .npy files first, then the meta JSON with their checksums: the meta is the entry's commit record
    cachefiles.write_atomic(npy, write)
    cachefiles.write_atomic(hashes_npy, write_hashes)
    cachefiles.write_json_atomic(meta, {"skipped": sorted(reasons.items()), "size": size, "n": len(ids),
                                        "sha256": sha.hexdigest(), "phash_sha256": hash_sha.hexdigest()})
    return np.load(npy, mmap_mode="r"), np.load(hashes_npy, mmap_mode="r"), reasons


def _cached(npy: Path, hashes_npy: Path, meta: Path, n: int, size: int):
    """The cache entry, or Damaged: zeroed rows, truncation, a stale or broken meta file all show here."""
    info = cachefiles.read_json(meta)
    cachefiles.verify(npy, info.get("sha256"))
    cachefiles.verify(hashes_npy, info.get("phash_sha256"))
    try:
        images, phash = np.load(npy, mmap_mode="r"), np.load(hashes_npy, mmap_mode="r")
        skipped = {int(i): str(r) for i, r in info["skipped"]}
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise cachefiles.Damaged(f"unreadable entry ({type(exc).__name__})") from None
    if images.shape != (n, size, size, 3) or phash.shape != (n,) or not all(0 <= i < n for i in skipped):
        raise cachefiles.Damaged(f"shape {images.shape} does not match {n} covers at {size} px")
    log.info("decoded covers from cache %s", npy)
    return images, phash, skipped


def phash64(images: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hash of each (N, S, S, 3) cover."""
    out = np.zeros(len(images), dtype=np.uint64)
    step = max(1, images.shape[1] // 32)
    weights = (1 << np.arange(64, dtype=np.uint64)).astype(np.uint64)
    for s in range(0, len(images), 512):
        grey = images[s:s + 512, ::step, ::step].astype(np.float32).mean(axis=3)[:, :32, :32]
        coef = dctn(grey, axes=(1, 2), norm="ortho")[:, :8, :8].reshape(len(grey), 64)
        bits = coef > np.median(coef[:, 1:], axis=1, keepdims=True)
        out[s:s + 512] = (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    return out


def _dedupe(idx: np.ndarray, phash: np.ndarray, labels: np.ndarray, max_dist: int):
    """Keep the first cover (source order) of each group of near-duplicates (:mod:`genreclf.data.dedup`)."""
    parent = near_duplicates(phash[idx], max_dist)
    dropped = np.flatnonzero(parent >= 0)
    across = int((labels[idx[dropped]] != labels[idx[parent[dropped]]]).sum())
    within = len(dropped) - across
    stats = {"duplicates_dropped": within + across, "duplicates_within_genre": within,
             "duplicates_across_genres": across}
    if within + across:
        log.info("dropped %d near-duplicate covers (%d filed under another genre)", within + across, across)
    return idx[parent < 0], stats


ORDER = np.dtype([("key", "S32"), ("pos", np.int64)])  # a sort record: order key, then position (ties)


def _by_content(idx: np.ndarray, labels: np.ndarray, k: int, content: np.ndarray, seed: int) -> np.ndarray:
    """Positions p in ``idx`` of genre ``k``'s covers, ordered by the key of ``content[idx[p]]``.

    The key is keyed on the cover's bytes, not its row number: the same covers split the same way
    everywhere. Records are sorted in place in a mapped file (whole-record compare: key, then
    position, i.e. a stable sort by key), so no per-cover list is held."""
    def records():
        for s in range(0, len(idx), spool.CHUNK):
            pos = np.flatnonzero(labels[idx[s:s + spool.CHUNK]] == k) + s
            rec = np.empty(len(pos), ORDER)
            rec["key"] = [hashlib.sha256(f"{seed}:{c}".encode()).digest() for c in content[idx[pos]].tolist()]
            rec["pos"] = pos
            yield rec
    table = spool.spooled(records(), ORDER, cache_root())
    table.sort()
    return table["pos"]


def _cap(idx: np.ndarray, labels: np.ndarray, content: np.ndarray, per_genre: int, seed: int) -> np.ndarray:
    if per_genre <= 0:
        return idx
    keep = [idx[_by_content(idx, labels, k, content, seed + 1)[:per_genre]] for k in np.unique(labels[idx])]
    return np.sort(np.concatenate(keep).astype(idx.dtype))


def split_assignment(idx, labels, content, genres, cfg: DataConfig) -> np.ndarray:
    """The split ("train", "val" or "test") of each cover of ``idx``: stratified per genre, keyed on content."""
    split = spool.zeros(len(idx), "U5", cache_root())  # mapped, filled genre by genre
    for k, genre in enumerate(genres):
        order = _by_content(idx, labels, k, content, cfg.seed)
        n = len(order)
        n_val, n_test = round(n * cfg.val_frac), round(n * cfg.test_frac)
        if n < 3 or n_val < 1 or n_test < 1 or n - n_val - n_test < 1:
            raise DataError(f"genre {genre!r} has {n} usable covers: too few for a "
                            f"{1 - cfg.val_frac - cfg.test_frac:.0%}/{cfg.val_frac:.0%}/{cfg.test_frac:.0%} split")
        split[order[:n_test]] = "test"
        split[order[n_test:n_test + n_val]] = "val"
        split[order[n_test + n_val:]] = "train"
    return split
