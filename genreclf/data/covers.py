"""The data layer: every step of the project sees the same covers, genres and split.

``load_covers(cfg)`` does, for any source:
  1. read the raw records of the selected genres and digest their bytes;
  2. decode to RGB at ``cache_size`` (cached on disk under that digest, so later runs and tuning
     trials never decode again); undecodable files are skipped and counted;
  3. drop near-duplicate covers (perceptual hash), also across genres, before splitting;
  4. cap per genre, then a deterministic stratified split keyed on the covers' content.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.fft import dctn

from genreclf.config import DataConfig
from genreclf.data.images import BadImageError, decode_rgb
from genreclf.data.sources import DataError, open_source, select_genres
from genreclf.progress import progress_bar

log = logging.getLogger(__name__)
DECODE_VERSION = 1  # bump when decode_rgb changes, so old caches are not reused
SPLITS = ("train", "val", "test")


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
    ids, labels, blobs = [], [], []
    for raw in progress_bar(source.records(genres), desc=f"reading {cfg.data}", disable=not progress, leave=False):
        ids.append(raw.sample_id)
        labels.append(genres.index(raw.genre))
        blobs.append(raw.data)
    if not ids:
        raise DataError(f"data={cfg.data!r} has no covers for genres {genres}")
    content = np.array([hashlib.sha1(b).hexdigest() for b in blobs])
    raw_digest = _digest(DECODE_VERSION, cfg.cache_size, list(ids), labels, list(content), genres)
    images, phash, ok = _decoded(raw_digest, blobs, ids, cfg.cache_size, progress)
    del blobs
    ids, labels, content = np.array(ids), np.array(labels, dtype=np.int64), content
    skipped = [{"sample_id": str(ids[i]), "genre": genres[labels[i]], "reason": r}
               for i, r in enumerate(ok) if r]
    keep = np.array([not r for r in ok])
    report = {"read": int(len(ids)), "skipped": len(skipped), "skipped_files": skipped}
    if skipped:
        log.warning("skipped %d undecodable file(s), e.g. %s", len(skipped), skipped[0])

    idx = np.flatnonzero(keep)
    idx, dups = _dedupe(idx, phash, labels, cfg.dedup_distance)
    report.update(dups)
    idx = _cap(idx, labels, content, cfg.per_genre, cfg.seed)
    split = _split(idx, labels, content, genres, cfg)
    report["kept"] = int(len(idx))
    report["per_genre"] = {g: int((labels[idx] == k).sum()) for k, g in enumerate(genres)}
    digest = _digest(raw_digest, list(ids[idx]), list(split), cfg.seed, cfg.val_frac, cfg.test_frac)
    log.info("covers: read %d, skipped %d, duplicates dropped %d, kept %d", report["read"],
             report["skipped"], report["duplicates_dropped"], report["kept"])
    return CoverSet(images=_take(images, idx),
                    labels=labels[idx], ids=ids[idx], content=content[idx], split=split,
                    genres=genres, source=cfg.data, digest=digest, report=report)


def _take(arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Gather rows of a memory-mapped array in chunks (peak memory: the output array)."""
    out = np.empty((len(idx),) + arr.shape[1:], dtype=arr.dtype)
    for s in range(0, len(idx), 1024):
        out[s:s + 1024] = arr[idx[s:s + 1024]]
    return out


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def _decoded(digest: str, blobs: list[bytes], ids: list[str], size: int, progress: bool):
    """Decoded covers + perceptual hashes + per-file skip reasons, from the cache when possible."""
    base = cache_root() / f"covers-{digest[:20]}"
    npy, meta = base.with_suffix(".npy"), base.with_suffix(".json")
    if npy.exists() and meta.exists():
        info = json.loads(meta.read_text())
        log.info("decoded covers from cache %s", npy)
        return np.load(npy, mmap_mode="r"), np.array(info["phash"], dtype=np.uint64), info["skipped"]
    images = np.zeros((len(blobs), size, size, 3), dtype=np.uint8)
    reasons = [""] * len(blobs)

    def work(i):
        try:
            images[i] = decode_rgb(blobs[i], size, name=str(ids[i]))
        except BadImageError as exc:
            reasons[i] = str(exc)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # PIL decodes without the GIL
        list(progress_bar(pool.map(work, range(len(blobs))), total=len(blobs), desc="decoding covers",
                  disable=not progress, leave=False))
    phash = phash64(images)
    tmp = npy.with_suffix(".tmp.npy")
    np.save(tmp, images)
    os.replace(tmp, npy)  # atomic: a killed run never leaves a half-written cache behind
    meta.write_text(json.dumps({"phash": [int(h) for h in phash], "skipped": reasons, "size": size}))
    return np.load(npy, mmap_mode="r"), phash, reasons


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


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(axis=-1)


def _dedupe(idx: np.ndarray, phash: np.ndarray, labels: np.ndarray, max_dist: int):
    """Keep the first cover (source order) of each group of near-duplicates."""
    h = phash[idx]
    drop = np.zeros(len(idx), dtype=bool)
    within = across = 0
    for i in range(len(idx)):
        if drop[i]:
            continue
        near = np.flatnonzero(_popcount(h[i + 1:] ^ h[i]) <= max_dist) + i + 1
        near = near[~drop[near]]
        drop[near] = True
        same = labels[idx[near]] == labels[idx[i]]
        within += int(same.sum())
        across += int((~same).sum())
    stats = {"duplicates_dropped": within + across, "duplicates_within_genre": within,
             "duplicates_across_genres": across}
    if within + across:
        log.info("dropped %d near-duplicate covers (%d filed under another genre)", within + across, across)
    return idx[~drop], stats


def _order_key(content: str, seed: int) -> str:
    # keyed on the cover's bytes, not its row number: the same covers split the same way everywhere
    return hashlib.sha256(f"{seed}:{content}".encode()).hexdigest()


def _cap(idx: np.ndarray, labels: np.ndarray, content: np.ndarray, per_genre: int, seed: int) -> np.ndarray:
    if per_genre <= 0:
        return idx
    keep = []
    for k in np.unique(labels[idx]):
        members = sorted(idx[labels[idx] == k], key=lambda i: _order_key(content[i], seed + 1))
        keep.extend(members[:per_genre])
    return np.sort(np.array(keep, dtype=idx.dtype))


def _split(idx, labels, content, genres, cfg: DataConfig) -> np.ndarray:
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
