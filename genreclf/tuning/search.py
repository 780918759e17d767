"""What one tuning search is: the settings every worker process needs (picklable: spawned workers get it)."""
from __future__ import annotations

from dataclasses import dataclass

from genreclf.config import Resolved, TuneConfig


@dataclass
class Search:
    """Everything a worker process needs (picklable: spawned workers receive it)."""
    kind: str                       # rf | cnn
    resolved: Resolved
    study_name: str
    storage: str                    # journal file path or RDB URL
    parent_run_id: str
    n_trials: int
    deadline: float | None          # time.time() after which no new trial starts
    space_path: str
    n_workers: int = 1
    worker: int = 0

    @property
    def tune(self) -> TuneConfig:
        return self.resolved.tune
