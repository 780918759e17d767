"""Bench stage ``datalayer``: ``load_covers`` time and peak memory at ``data_sizes`` covers.

The covers are synthetic and tiny (48 px JPEGs in an image folder, one sub-folder per genre, each
smaller set a prefix of the largest via hard links), with 2% planted near-duplicates (re-encoded
copies of earlier covers, some filed under another genre), so de-duplication has work to do.

* time: a cold ``load_covers`` (empty decode cache: read, sha1, decode, hash, de-duplicate, split,
  write the kept covers) per size; the sizes run back to back in each repeat, in alternating order,
  and the scaling figure is the median over repeats of (time ratio / size ratio), largest vs
  smallest - 1.0 is linear, the target is <= 1.3.
* memory: the peak of Python/numpy allocations (``tracemalloc``, a separate cold run: tracing slows
  the timed one) - memory-mapped cache pages are not allocations and are not counted. The comparison
  value is what the layer held before it streamed: the encoded files plus the decoded array.
* de-dup: the multi-index search against the O(N²) scan on the same hashes (the largest size's
  scan is limited to its first ``BRUTE_MAX`` covers, where it would take minutes).
"""
from __future__ import annotations

import functools
import itertools
import os
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from genreclf.bench import ab
from genreclf.bench.runner import ab_cells, genres_of
from genreclf.config import ConfigError, DataConfig
from genreclf.data import covers as data_layer
from genreclf.data import dedup
from genreclf.data.covers import CoverSet
from genreclf.data.images import encode
from genreclf.progress import progress_bar

SIZE = 48           # side of the generated covers
CACHE_SIZE = 32     # decode size in the bench (tiny: the data layer's own cost, not pixels)
DUP_EVERY = 50      # every 50th cover is a re-encoded copy of an earlier one
BRUTE_MAX = 20_000  # the O(N²) check runs on at most this many covers


def tiny_cover(rng: np.random.Generator, tint: np.ndarray) -> np.ndarray:
    """A smooth random pattern (a 4x4 grid, upsampled) with grain: distinct perceptual hashes."""
    grid = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(grid).resize((SIZE, SIZE), Image.BICUBIC), dtype=np.float64)
    img = 0.7 * img + 0.3 * tint + rng.normal(0, 6, img.shape[:2])[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def make_folder(root: Path, genres: list[str], n: int, seed: int = 11) -> None:
    """n covers spread over the genres, written as <root>/<genre>/<index>.jpg."""
    rng = np.random.default_rng(seed)
    tints = {g: rng.integers(0, 256, 3) for g in genres}
    made: list[np.ndarray] = []
    for g in genres:
        (root / g).mkdir(parents=True, exist_ok=True)
    for i in progress_bar(range(n), desc="generating covers", leave=False):
        g = genres[i % len(genres)]
        if i % DUP_EVERY == DUP_EVERY - 1 and made:  # a copy of an earlier cover (maybe another genre)
            blob = encode(made[int(rng.integers(len(made)))], "JPEG", 75)
        else:
            made.append(tiny_cover(rng, tints[g]))
            blob = encode(made[-1], "JPEG", 90)
        (root / g / f"{i:07d}.jpg").write_bytes(blob)


def prefix_folder(src: Path, dst: Path, genres: list[str], n: int) -> None:
    """The first n covers of ``src`` (same generation order), hard-linked."""
    for g in genres:
        (dst / g).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        g = genres[i % len(genres)]
        os.link(src / g / f"{i:07d}.jpg", dst / g / f"{i:07d}.jpg")


def cold_load(folder: Path, genres: list[str], cache: Path) -> CoverSet:
    """load_covers with an empty decode cache (GENRECLF_CACHE pointed at a fresh folder)."""
    old = os.environ.get("GENRECLF_CACHE")
    os.environ["GENRECLF_CACHE"] = str(cache)
    try:
        return data_layer.load_covers(DataConfig(data=str(folder), genres=",".join(genres), cache_size=CACHE_SIZE),
                                      progress=False)
    finally:
        os.environ.pop("GENRECLF_CACHE") if old is None else os.environ.__setitem__("GENRECLF_CACHE", old)


def fresh_load(tmp: Path, genres: list[str], n: int, runs: Iterator[int]) -> CoverSet:
    """A cold load of the ``n`` covers' folder, each call into a new cache folder."""
    return cold_load(tmp / f"n{n}", genres, tmp / f"cache{next(runs)}")


def peak_bytes(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def dedup_check(folder: Path, genres: list[str], cache: Path, n: int) -> dict:
    """The sub-quadratic search against the O(N²) scan on the covers' own hashes (cache already warm)."""
    hashes = np.load(next(cache.glob("phash-*.npy")))
    m = min(n, BRUTE_MAX)
    start = time.perf_counter()
    fast = dedup.near_duplicates(hashes[:m], DataConfig.dedup_distance)
    fast_s = time.perf_counter() - start
    start = time.perf_counter()
    slow = dedup.near_duplicates_bruteforce(hashes[:m], DataConfig.dedup_distance)
    slow_s = time.perf_counter() - start
    return {"checked": m, "identical": bool(np.array_equal(fast, slow)), "dropped": int((fast >= 0).sum()),
            "fast_s": fast_s, "bruteforce_s": slow_s}


def datalayer_stage(ctx) -> tuple[dict, list]:
    b = ctx["cfg"]
    sizes = sorted(int(s) for s in b.data_sizes.split(",") if s.strip())
    if len(sizes) < 2 or sizes[0] < 1:
        raise ConfigError(f"bench: data_sizes={b.data_sizes!r} needs >= 2 positive sizes")
    sizes = [max(40, s // 50) for s in sizes] if b.quick else sizes
    genres = genres_of(ctx["resolved"])
    metrics: dict[str, float] = {}
    rows: list[tuple] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        make_folder(tmp / f"n{sizes[-1]}", genres, sizes[-1])
        for n in sizes[:-1]:
            prefix_folder(tmp / f"n{sizes[-1]}", tmp / f"n{n}", genres, n)
        runs = itertools.count()
        held = {n: sum(f.stat().st_size for f in (tmp / f"n{n}").rglob("*.jpg")) + n * CACHE_SIZE**2 * 3
                for n in sizes}
        timed = ab.interleaved({n: functools.partial(fresh_load, tmp, genres, n, runs) for n in sizes},
                               ctx["repeats"])
        peaks = {n: peak_bytes(functools.partial(cold_load, tmp / f"n{n}", genres, tmp / f"mem{n}")) for n in sizes}
        checks = {n: dedup_check(tmp / f"n{n}", genres, tmp / f"mem{n}", n) for n in sizes}
        kept = {n: len(cold_load(tmp / f"n{n}", genres, tmp / f"mem{n}")) for n in sizes}  # warm: the cache
    lo, hi = sizes[0], sizes[-1]
    scaling = ab.paired([w / lo_w for (w, _), (lo_w, _) in zip(timed[hi], timed[lo])], [hi / lo] * ctx["repeats"])
    t_lo = ab.summary(timed[lo])["median_s"]
    for n in sizes:
        wall = ab.summary(timed[n])["median_s"]
        metrics.update({f"seconds_{n}": wall, f"covers_per_s_{n}": n / wall, f"peak_mb_{n}": peaks[n] / 2**20,
                        f"held_before_mb_{n}": held[n] / 2**20, f"kept_{n}": kept[n],
                        f"dedup_identical_{n}": int(checks[n]["identical"]), f"dedup_checked_{n}": checks[n]["checked"],
                        f"dedup_dropped_{n}": checks[n]["dropped"], f"dedup_fast_s_{n}": checks[n]["fast_s"],
                        f"dedup_bruteforce_s_{n}": checks[n]["bruteforce_s"]})
        rows.append(("data layer", f"load_covers s, {n} covers, cold cache ({n / wall:.0f} covers/s)", wall,
                     f"s at {lo} x size ratio", t_lo * n / lo, wall / (t_lo * n / lo), "<= 1.3"))
        rows.append(("data layer", f"peak MB (tracemalloc), {n} covers", peaks[n] / 2**20,
                     "MB the layer held before (files + decoded)", held[n] / 2**20, peaks[n] / held[n], "bounded"))
        c = checks[n]
        rows.append(("data layer", f"de-dup s, multi-index, {c['checked']} covers ({c['dropped']} dropped)",
                     c["fast_s"], "O(N²) scan s" + (", identical" if c["identical"] else ", DIFFERENT"),
                     c["bruteforce_s"], c["bruteforce_s"] / max(c["fast_s"], 1e-9), "identical"))
    per_cover = (peaks[hi] - peaks[lo]) / (hi - lo)  # what still grows: per-cover metadata (ids, sha1, hash)
    metrics.update({"time_linearity": scaling["ratio"], "time_linearity_rel_iqr": scaling["rel_iqr"],
                    "peak_ratio": peaks[hi] / peaks[lo], "peak_growth_bytes_per_cover": per_cover,
                    "dedup_identical": int(all(c["identical"] for c in checks.values()))})
    rows.append(("scaling", f"data layer: time ratio / size ratio, {lo}->{hi} (paired per repeat)", scaling["ratio"],
                 "linear", 1.0, scaling["ratio"], "<= 1.3", *ab_cells(scaling)))
    rows.append(("scaling", f"data layer: peak MB at {hi} / at {lo}", peaks[hi] / 2**20, f"peak MB at {lo}",
                 peaks[lo] / 2**20, peaks[hi] / peaks[lo], "flat"))
    rows.append(("scaling", f"data layer: peak growth, bytes per extra cover, {lo}->{hi}", per_cover,
                 "bytes per cover held before", held[hi] / hi, per_cover / (held[hi] / hi), "metadata only"))
    return metrics, rows

