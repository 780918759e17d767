"""The data layer: every step of the project sees the same covers, genres and split.

``load_covers(cfg)`` does, for any source:
  1. read the raw records of the selected genres and digest their bytes;
  2. decode to RGB at ``cache_size`` (cached on disk under that digest, so later runs and tuning
     trials never decode again); undecodable files are skipped and counted;
  3. drop near-duplicate covers (perceptual hash), also across genres, before splitting;
  4. cap per genre, then a deterministic stratified split keyed on the covers' content.

Memory does not grow with the covers' pixels: encoded covers are streamed into the decode cache a
chunk at a time (held from the first read only while they fit in ``HOLD_BYTES``, else read again),
de-duplication is sub-quadratic (:mod:`genreclf.data.dedup`), and ``CoverSet.images`` is memory-mapped
from the cache. What stays in memory per cover is its metadata: id, label, sha1 and hash.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
from scipy.fft import dctn

from genreclf.config import DataConfig
from genreclf.data import cachefiles
from genreclf.data.dedup import near_duplicates
from genreclf.data.images import BadImageError, decode_rgb
from genreclf.data.sources import DataError, Source, open_source, select_genres
from genreclf.progress import progress_bar

log = logging.getLogger(__name__)
DECODE_VERSION = 2  # bump when decode_rgb changes, so old caches are not reused
HOLD_BYTES = 16 << 20  # encoded covers held from the first read; a larger source is read twice instead
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
    read_ids, read_labels, read_content, held = _scan(source, genres, cfg.data, progress)
    raw_digest = _digest(DECODE_VERSION, cfg.cache_size, read_ids, read_labels, read_content, genres)

    def blobs() -> Iterable[bytes]:  # held from the first read, or read again
        return held if held is not None else _reread(source, genres, read_content, cfg.data)
    images, phash, ok = _decoded(raw_digest, blobs, read_ids, cfg.cache_size, progress)
    held = None  # the encoded covers are not needed any more
    ids, labels = np.array(read_ids), np.array(read_labels, dtype=np.int64)
    content = np.array(read_content)
    skipped = list(source.unused) + [{"sample_id": str(ids[i]), "genre": genres[labels[i]], "reason": r}
                                     for i, r in enumerate(ok) if r]
    keep = np.array([not r for r in ok])
    report = {"read": int(len(ids)), "skipped": len(skipped), "skipped_files": skipped}
    if skipped:
        log.warning("skipped %d file(s) (unreadable, not used or undecodable), e.g. %s", len(skipped), skipped[0])

    idx = np.flatnonzero(keep)
    idx, dups = _dedupe(idx, phash, labels, cfg.dedup_distance)
    report.update(dups)
    idx = _cap(idx, labels, content, cfg.per_genre, cfg.seed)
    split = split_assignment(idx, labels, content, genres, cfg)
    report["kept"] = int(len(idx))
    report["per_genre"] = {g: int((labels[idx] == k).sum()) for k, g in enumerate(genres)}
    digest = _digest(raw_digest, list(ids[idx]), list(split), cfg.seed, cfg.val_frac, cfg.test_frac)
    log.info("covers: read %d, skipped %d, duplicates dropped %d, kept %d", report["read"],
             report["skipped"], report["duplicates_dropped"], report["kept"])
    return CoverSet(images=_kept(images, idx, digest),
                    labels=labels[idx], ids=ids[idx], content=content[idx], split=split,
                    genres=genres, source=cfg.data, digest=digest, report=report)


def _scan(source: Source, genres: list[str], data: str,
          progress: bool) -> tuple[list[str], list[int], list[str], list[bytes] | None]:
    """ids, labels and sha1 of every record; the encoded bytes too while they fit in HOLD_BYTES."""
    ids: list[str] = []
    labels: list[int] = []
    content: list[str] = []
    held: list[bytes] | None = []
    size = 0
    for raw in progress_bar(source.records(genres), desc=f"reading {data}", disable=not progress, leave=False):
        ids.append(raw.sample_id)
        labels.append(genres.index(raw.genre))
        content.append(hashlib.sha1(raw.data).hexdigest())
        if held is not None:
            size += len(raw.data)
            held.append(raw.data)
            if size > HOLD_BYTES:  # a large source: read it again when decoding instead of holding it
                held = None
    if not ids:
        raise DataError(f"data={data!r} has no covers for genres {genres}")
    return ids, labels, content, held


def _reread(source: Source, genres: list[str], content: list[str], data: str) -> Iterator[bytes]:
    """The encoded covers again, in the same order, checking they are the bytes that were digested."""
    n = 0
    for n, raw in enumerate(source.records(genres), 1):
        if n > len(content) or hashlib.sha1(raw.data).hexdigest() != content[n - 1]:
            raise DataError(f"data={data!r} changed while it was being read ({raw.sample_id}); run again")
        yield raw.data
    if n != len(content):
        raise DataError(f"data={data!r} changed while it was being read ({n} covers, then {len(content)})")


def _kept(images: np.ndarray, idx: np.ndarray, digest: str) -> np.ndarray:
    """The kept rows of the decoded cache, memory-mapped: the cache itself, or a copy of the subset
    written in chunks (peak memory: one chunk, whatever N)."""
    if len(idx) == len(images) and np.array_equal(idx, np.arange(len(images))):
        return images
    path = cache_root() / f"kept-{digest[:20]}.npy"
    if not path.exists():
        def write(f) -> None:
            _write_header(f, (len(idx),) + images.shape[1:])
            for s in range(0, len(idx), DECODE_CHUNK):
                f.write(np.ascontiguousarray(images[idx[s:s + DECODE_CHUNK]]).tobytes())
        cachefiles.write_atomic(path, write)
    return np.load(path, mmap_mode="r")


def _write_header(f, shape: tuple) -> None:
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                                             "fortran_order": False, "shape": shape})


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def _decoded(digest: str, blobs: Callable[[], Iterable[bytes]], ids: list[str], size: int, progress: bool):
    """Decoded covers + perceptual hashes + per-file skip reasons, from the cache when possible.

    ``blobs()`` yields the encoded covers; they are decoded and appended to the cache file a chunk
    at a time, so memory holds one chunk of covers, never all of them."""
    base = cache_root() / f"covers-{digest[:20]}"
    npy, meta = base.with_suffix(".npy"), base.with_suffix(".json")
    if npy.exists() or meta.exists():
        try:
            return _cached(npy, meta, len(ids), size)
        except cachefiles.Damaged as exc:
            cachefiles.rebuilding(npy, exc)
    reasons, hashes = [""] * len(ids), []

    def work(item):
        i, blob = item
        try:
            return decode_rgb(blob, size, name=str(ids[i]))
        except BadImageError as exc:
            reasons[i] = str(exc)
            return np.zeros((size, size, 3), dtype=np.uint8)
    sha = hashlib.sha256()

    def write(f) -> None:
        f = cachefiles.Hashing(f, sha)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool, \
                progress_bar(total=len(ids), desc="decoding covers", disable=not progress, leave=False) as bar:
            _write_header(f, (len(ids), size, size, 3))
            stream = enumerate(blobs())
            while chunk := list(itertools.islice(stream, DECODE_CHUNK)):
                images = np.stack(list(pool.map(work, chunk)))  # PIL decodes without the GIL
                hashes.append(phash64(images))
                f.write(images.tobytes())
                bar.update(len(chunk))
    # atomic under a unique temp name (a killed run, or two decodes at once, never leave a half-written
    # file); the .npy first, then the meta JSON with its checksum: the meta is the entry's commit record
    cachefiles.write_atomic(npy, write)
    phash = np.concatenate(hashes)
    cachefiles.write_json_atomic(meta, {"phash": [int(h) for h in phash], "skipped": reasons, "size": size,
                                        "n": len(ids), "sha256": sha.hexdigest()})
    return np.load(npy, mmap_mode="r"), phash, reasons


def _cached(npy: Path, meta: Path, n: int, size: int):
    """The cache entry, or Damaged: zeroed rows, truncation, a stale or broken meta file all show here."""
    info = cachefiles.read_json(meta)
    cachefiles.verify(npy, info.get("sha256"))
    try:
        images = np.load(npy, mmap_mode="r")
        phash, skipped = np.array(info["phash"], dtype=np.uint64), list(info["skipped"])
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise cachefiles.Damaged(f"unreadable entry ({type(exc).__name__})") from None
    if images.shape != (n, size, size, 3) or len(phash) != n or len(skipped) != n:
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


def _order_key(content: str, seed: int) -> str:
    # keyed on the cover's bytes, not its row number: the same covers split the same way everywhere
    return hashlib.sha256(f"{seed}:{content}".encode()).hexdigest()


def _cap(idx: np.ndarray, labels: np.ndarray, content: np.ndarray, per_genre: int, seed: int) -> np.ndarray:
    if per_genre <= 0:
        return idx
    keep = []
    for k in np.unique(labels[idx]):
        members = sorted(idx[labels[idx] == k], key=lambda i: _order_key(str(content[i]), seed + 1))
        keep.extend(members[:per_genre])
    return np.sort(np.array(keep, dtype=idx.dtype))


def split_assignment(idx, labels, content, genres, cfg: DataConfig) -> np.ndarray:
    """The split ("train", "val" or "test") of each cover of ``idx``: stratified per genre, keyed on content."""
    if not (0 < cfg.val_frac < 1 and 0 < cfg.test_frac < 1 and cfg.val_frac + cfg.test_frac < 1):
        raise DataError(f"val_frac={cfg.val_frac}, test_frac={cfg.test_frac}: each in (0, 1), sum < 1")
    split = np.empty(len(idx), dtype=object)
    for k, genre in enumerate(genres):
        pos = np.flatnonzero(labels[idx] == k)
        n = len(pos)
        n_val, n_test = round(n * cfg.val_frac), round(n * cfg.test_frac)
        if n < 3 or n_val < 1 or n_test < 1 or n - n_val - n_test < 1:
            raise DataError(f"genre {genre!r} has {n} usable covers: too few for a "
                            f"{1 - cfg.val_frac - cfg.test_frac:.0%}/{cfg.val_frac:.0%}/{cfg.test_frac:.0%} split")
        order = sorted(pos, key=lambda p: _order_key(content[idx[p]], cfg.seed))
        split[order[:n_test]] = "test"
        split[order[n_test:n_test + n_val]] = "val"
        split[order[n_test + n_val:]] = "train"
    return split.astype(str)
