"""One value per study that every process agrees on, whatever the start order (the parent run).

Two ``tune_*`` processes started together on a new study used to each see "no parent yet" and open
their own. The agreement now lives in Optuna's storage, next to the trials: a study user attribute
that the first process to record it owns. On this host the read-and-set is serialised by a lock
file beside the storage; with an RDB storage the (study, key) unique constraint makes a concurrent
second insert fail, and the loser re-reads the winner.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import optuna

from genreclf.tuning.storage import FileLock


def elect(study: optuna.Study, key: str, candidate: str, lock_path: Path,
          valid: Callable[[str], bool] = lambda v: True) -> str:
    """The study's agreed value of ``key``: an existing valid one, else ``candidate`` if it is first."""
    with FileLock(lock_path):
        current = study.user_attrs.get(key)  # read from the storage, not a cached copy
        if current is not None and valid(current):
            return current
        try:
            study.set_user_attr(key, candidate)
        except Exception:  # RDB: another host inserted the attribute first (IntegrityError inside Optuna)
            pass
        return study.user_attrs.get(key, candidate)
