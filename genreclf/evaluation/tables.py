"""Per-cover inputs of the compared models, computed once per cover set (each builder caches on disk).

The reference features are computed as the benchmark's reference computes them: from each cover's
original encoded bytes at full resolution, one image at a time (so they are re-read from the source,
not taken from the decoded cache). Their table is cached under the covers' content hashes.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from genreclf.bench.reference import REFERENCE_NAMES, extract_reference, extract_reference_many
from genreclf.config import DataConfig
from genreclf.data.covers import cache_root
from genreclf.data.sources import DataError, open_source, select_genres
from genreclf.evaluation.compare import REFERENCE, Inputs
from genreclf.features.cover25 import default_workers, extract_bytes
from genreclf.models import resolve_callable

log = logging.getLogger(__name__)
REFERENCE_VERSION = 1  # bump when bench/reference.py changes
# covers: below this the reference features are computed in this process. A worker process has to
# import OpenCV and scikit-image first (seconds on a busy machine), more than a few covers cost.
REFERENCE_PARALLEL_FROM = 64


def encoded_covers(covers, data: DataConfig) -> list[bytes]:
    """The original encoded bytes of each kept cover, in cover order (re-read from the source)."""
    source = open_source(data.data, data.seed)
    wanted = {str(i): k for k, i in enumerate(covers.ids)}
    out: list[bytes | None] = [None] * len(covers)
    for raw in source.records(select_genres(data.genres, source.genres)):
        k = wanted.get(str(raw.sample_id))
        if k is not None:
            out[k] = raw.data
    missing = [str(covers.ids[k]) for k, b in enumerate(out) if b is None]
    if missing:
        raise DataError(f"data={data.data!r} changed while evaluating: {len(missing)} cover(s) gone, e.g. {missing[0]}")
    return out  # type: ignore[return-value]


def reference_table(covers, blobs: list[bytes]) -> np.ndarray:
    key = hashlib.sha256("|".join(covers.content).encode()).hexdigest()
    path = cache_root() / f"reference-v{REFERENCE_VERSION}-{key[:24]}.parquet"
    if path.exists():
        log.info("reference features from cache %s", path)
        return pd.read_parquet(path).to_numpy()
    chunks = [blobs[s:s + 32] for s in range(0, len(blobs), 32)]
    if len(blobs) >= REFERENCE_PARALLEL_FROM and default_workers() > 1:
        # the worker function lives in bench.reference, so a worker imports only the extractor's modules
        parts = Parallel(n_jobs=min(default_workers(), len(chunks)))(delayed(extract_reference_many)(c)
                                                                     for c in chunks)
    else:
        parts = [extract_reference_many(c) for c in chunks]
    table = pd.DataFrame(np.concatenate(parts), columns=REFERENCE_NAMES)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    table.to_parquet(tmp)
    os.replace(tmp, path)
    return table.to_numpy()


def inputs_for(covers, data: DataConfig, builders: dict[str, str]) -> tuple[Inputs, list[bytes]]:
    """The inputs the chosen rows read (name -> (N, D) array) and the covers' encoded bytes."""
    blobs = encoded_covers(covers, data)
    inputs = {name: reference_table(covers, blobs) if name == REFERENCE else resolve_callable(builder)(covers)
              for name, builder in builders.items()}
    return inputs, blobs


def speed_ratio(blobs: list[bytes], n: int) -> dict[str, float]:
    """Seconds per cover of our extractor and the reference on the same ``n`` encoded covers (one thread each)."""
    sample = blobs[:max(1, n)]
    start = time.perf_counter()
    for b in sample:
        extract_bytes(b)
    ours = (time.perf_counter() - start) / len(sample)
    start = time.perf_counter()
    for b in sample:
        extract_reference(b)
    reference = (time.perf_counter() - start) / len(sample)
    return {"features_ours_s_per_cover": ours, "features_reference_s_per_cover": reference,
            "features_speed_ratio": reference / ours, "features_speed_covers": float(len(sample))}
