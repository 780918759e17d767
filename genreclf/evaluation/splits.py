"""Repeated stratified splits of one cover set, for measurements whose spread we can state.

One 70/15/15 split of a small real set moves accuracy by several points; ``evaluate`` therefore
repeats the split ``repeats`` times with the seeds ``seed, seed + 1, ...``. Each split is made exactly
like the project's own (``genreclf.data.covers``): on the de-duplicated covers (near-duplicates are
dropped once, before any split, so no cover leaks into its twin's test fold), stratified per genre,
and keyed on each cover's content hash, so the same covers split the same way on every machine.
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from genreclf.config import DataConfig
from genreclf.data.covers import CoverSet, split_assignment  # the project's own split, reused
from genreclf.errors import UserError


class SplitError(UserError):
    """The repeated-split parameters are wrong."""


def repeated_splits(covers: CoverSet, data: DataConfig, repeats: int) -> list[CoverSet]:
    """``repeats`` views of ``covers``, each with its own train/val/test assignment (seed, seed + 1, ...).

    The views share the decoded images (no copy); each has its own ``digest``, so caches keyed on
    it (CNN embeddings) never mix splits.
    """
    if repeats < 1:
        raise SplitError(f"repeats={repeats}: need at least one split")
    every = np.arange(len(covers))
    views = []
    for r in range(repeats):
        cfg = dataclasses.replace(data, seed=data.seed + r)
        split = split_assignment(every, covers.labels, covers.content, covers.genres, cfg)
        digest = hashlib.sha256(f"{covers.digest}|split-seed={cfg.seed}".encode()).hexdigest()
        views.append(dataclasses.replace(covers, split=split, digest=digest))
    return views


def subsample_train(covers: CoverSet, per_genre: int, seed: int) -> CoverSet:
    """A view whose train split keeps at most ``per_genre`` covers of each genre (val and test unchanged).

    For the learning curve: the kept covers are the first by a content key, so a smaller size's
    covers are a subset of a larger size's covers.
    """
    split = covers.split.astype("U6")  # wide enough for "unused" (the split column is "U5": "train")
    train = covers.indices("train")
    for k in range(len(covers.genres)):
        members = train[covers.labels[train] == k]
        keys = [hashlib.sha256(f"{seed}:{covers.content[i]}".encode()).hexdigest() for i in members]
        drop = members[np.argsort(keys)][per_genre:]
        split[drop] = "unused"
    digest = hashlib.sha256(f"{covers.digest}|train-per-genre={per_genre}".encode()).hexdigest()
    return dataclasses.replace(covers, split=split, digest=digest)
